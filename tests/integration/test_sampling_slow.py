"""Random selection, measured 200 times over: the sampling check's false-failure rate and power.

With N = sampling.flows_needed(4) new flows per run and alpha = 1e-6:
  - kube-proxy's rules (0.25, 0.33…, 0.5, rest) must pass every one of 200 runs
    (expected false failures: 200 x 1e-6);
  - the realistic mistake, rules 1-3 all `--probability 0.25` and the last one taking the rest
    (shares 0.25 / 0.1875 / 0.140625 / 0.421875), must fail every one of 200 runs against what
    kube-proxy's rules promise (1/4 each).

Slow (~3 minutes: each sample costs ~0.4 s, mostly starting the probe agent); `make test` leaves
it out with -m "not slow".
"""

from __future__ import annotations

import re
import statistics
import time
from fractions import Fraction

import pytest

from lab_runner.evidence import sampling
from lab_runner.evidence.probing import Target
from lab_runner.probes import stats
from lab_runner.ruleset.parse import parse

pytestmark = pytest.mark.slow

RUNS = 200
SERVICE = Target("10.104.5.205", 8080, "tcp")
SVC_CHAIN = "KUBE-SVC-Q7IJ732UBZY4AJKA"
CLIENT_IP = "192.168.49.1"
QUARTER = "0.2500000000"


def endpoint_order(document: str) -> list[str]:
    """The DNAT destinations ("ip:port") in the order the service chain tries its endpoints."""
    rule = r"^(?:\[\d+:\d+\] )?-A "  # iptables-save -c puts [packets:bytes] first
    seps = re.findall(rf"{rule}{SVC_CHAIN} .*-j (KUBE-SEP-\w+)$", document, re.M)
    dnat = dict(re.findall(rf"{rule}(KUBE-SEP-\w+) .*-j DNAT --to-destination (\S+)$", document, re.M))
    return [dnat[sep] for sep in seps]


def all_quarter_document(lab) -> str:
    """The per-sync document with every endpoint rule but the last at 0.25 (the last takes the rest)."""
    document = lab.rendered_rules(base_jumps=False)
    pick = re.compile(rf"^(-A {SVC_CHAIN} .*--probability )\S+( -j KUBE-SEP-\w+)$", re.M)
    wrong, changed = pick.subn(rf"\g<1>{QUARTER}\g<2>", document)
    assert changed == 3, f"expected 3 endpoint rules with a probability, changed {changed}"
    return wrong


def intended(lab) -> dict[str, Fraction]:
    """What kube-proxy's own rules promise a client's new flow (the rule tracer, exact)."""
    return sampling.expected_distribution(parse(lab.rendered_rules()), lab.model, CLIENT_IP, SERVICE)


def summary(name: str, seconds: list[float], walls: list[float]) -> str:
    return (f"{name}: {len(walls)} samples in {sum(walls):.1f} s, median {statistics.median(walls):.3f} s "
            f"per sample (burst alone median {statistics.median(seconds) * 1000:.1f} ms)")


def test_kube_proxy_rules_pass_200_times(lab3):
    n = sampling.flows_needed(4)
    promised = intended(lab3)
    assert sorted(promised) == sorted(f"{p.ip}:80" for p in lab3.model.pods)
    assert all(abs(float(p) - 0.25) < 1e-9 for p in promised.values())
    failures, walls, seconds = [], [], []
    for i in range(RUNS):
        started = time.perf_counter()
        report = sampling.sample(lab3, SERVICE, n)
        walls.append(time.perf_counter() - started)
        seconds.append(report.seconds)
        assert report.flows == n and sum(report.observed.values()) == n
        # The live rules are kube-proxy's: the kit's expectation is the promised one.
        assert report.expected == promised
        if not report.passed or sampling.NO_DNAT in report.observed:
            failures.append((i, report.observed, report.result))
    print(summary(f"kube-proxy rules, N={n}", seconds, walls))
    assert failures == [], f"{len(failures)} of {RUNS} runs failed the correct rules: {failures[:5]}"


def test_all_quarter_rules_fail_200_times(lab3):
    n = sampling.flows_needed(4)
    promised = intended(lab3)
    wrong = all_quarter_document(lab3)
    order = endpoint_order(wrong)
    assert len(order) == 4, order
    shares = stats.outcome_probabilities([Fraction(1, 4)] * 3 + [None])
    assert [float(s) for s in shares] == [0.25, 0.1875, 0.140625, 0.421875]
    lab3.restore(wrong)
    try:
        listing = lab3.exec("node", ["iptables", "-t", "nat", "-S", SVC_CHAIN], check=True).stdout
        assert listing.count("--probability 0.25000000000") == 3, listing
        assert endpoint_order(lab3.save()) == order, "the applied chain is not the rendered one"
        missed, inconsistent, walls, seconds = [], [], [], []
        for i in range(RUNS):
            started = time.perf_counter()
            report = sampling.sample(lab3, SERVICE, n)
            walls.append(time.perf_counter() - started)
            seconds.append(report.seconds)
            assert report.flows == n and sum(report.observed.values()) == n
            # The kit's own expectation follows the live (wrong) rules: 0.25, 0.1875, …
            assert report.expected == dict(zip(order, shares))
            if not report.passed:  # the kernel did not do what the wrong rules say
                inconsistent.append((i, report.observed, report.result))
            verdict = stats.gof(report.observed, promised, alpha=sampling.DEFAULT_ALPHA)
            if verdict.passed:  # the mistake went unnoticed
                missed.append((i, report.observed, verdict))
        print(summary(f"all-0.25 rules, N={n}", seconds, walls))
        assert missed == [], f"{len(missed)} of {RUNS} runs did not catch the all-0.25 rules: {missed[:5]}"
        assert inconsistent == [], (f"{len(inconsistent)} of {RUNS} runs: the kernel's spread did not "
                                    f"fit the rules it was given: {inconsistent[:5]}")
    finally:
        lab3.restore(lab3.rendered_rules(base_jumps=False))
    restored = lab3.exec("node", ["iptables", "-t", "nat", "-S", SVC_CHAIN], check=True).stdout
    assert "--probability 0.33333333349" in restored and "0.50000000000" in restored
