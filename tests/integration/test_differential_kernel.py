"""Issue 20's live tier, as root: the kept regression cases (fixtures/differential/, in `make
test`) and, marked slow, generated student-like edits of lab 3's nat table, each applied to one
live lab-3 node, judged by iptables-restore, the kit's intake and the tracer, and by real
connections from every caller class (the client, each pod, hairpins included, and the node).

For each variant (tests/strategies/edits.py):
- iptables-restore and the intake accept or refuse it alike (the whole nat table is restored
  without --noflush, so each variant replaces the one before);
- if the tracer models it, from each caller N new connections (first-packet fates: 0.5 s each)
  are compared with the tracer's exact prediction, read as what a caller can observe (which pod
  answered and the source it saw, or no answer). A fate seen that the tracer gives no chance,
  or counts whose binomial p-value is below 1e-6, is a disagreement; Hypothesis shrinks it to
  the smallest list of edits.

Environment: KPLAB_DIFF_EXAMPLES (default 25), KPLAB_DIFF_MINUTES (a time budget: examples after
it pass untried), KPLAB_DIFF_SEED, KPLAB_DIFF_LOG (a JSON-lines file: one line per variant, for
the figures of the closing note), KPLAB_DIFF_COLLECT=1 (log disagreements and go on, for a
survey run, instead of failing and shrinking), KPLAB_DIFF_CONNECTIONS (per caller, default 16).
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, Phase, example, given, seed, settings

from lab_runner.errors import RestoreFailed, SubmissionError
from lab_runner.evidence import probing
from lab_runner.evidence.probing import Target
from lab_runner.grading.submission import as_iptables_restore
from lab_runner.lab import LiveLab
from lab_runner.ruleset.semantics import unsupported
from lab_runner.ruleset.tracer import TraceLimit
from tests.strategies.edits import Document, NewRule, dnat_to, edit_lists, edited, nat_table
from tests.strategies.observable import NONE, Callers, cases

pytestmark = pytest.mark.needs_root

EXAMPLES = int(os.environ.get("KPLAB_DIFF_EXAMPLES", "25"))
MINUTES = float(os.environ.get("KPLAB_DIFF_MINUTES", "0") or 0)
SEED = int(os.environ.get("KPLAB_DIFF_SEED", "20261204"))
LOG = os.environ.get("KPLAB_DIFF_LOG")
COLLECT = os.environ.get("KPLAB_DIFF_COLLECT") == "1"
CONNECTIONS = int(os.environ.get("KPLAB_DIFF_CONNECTIONS", "16"))
ALPHA = 1e-6
TIMEOUT = 0.5  # before the SYN's first retransmission (1 s): the first packet's fate
STARTED = time.monotonic()
TRIED: set[str] = set()


@pytest.fixture(scope="module")
def lab():
    with LiveLab.up("lab-3") as live:
        yield live


# -- what a caller can observe, and what the tracer predicts of it ----------------------------

LATE = "connected, then no answer in time"  # the SYN was answered: some answered fate


def observed(report) -> str:
    if report.answered and report.pod_view is not None:
        return f"{report.pod_view.pod} saw {report.pod_view.src}"
    if report.answer.get("answer") == "timeout" and report.answer.get("connect_ms") is not None:
        return LATE  # the app was slow (2 cores, six callers at once), not the rules
    return NONE if not report.answered else f"answered by no pod ({report.answer.get('answer')})"


def connect(live: LiveLab, caller: str, target: Target, count: int) -> dict[str, int]:
    """`count` new connections from the caller (the agent stops after 3 silent ones in a row;
    then it is asked again), counted by what the caller observed."""
    counts: dict[str, int] = {}
    made = 0
    while made < count:
        reports, _ = probing.connections(live, caller, target, count=count - made, counters=False,
                                         timeout=TIMEOUT, budget=60)
        for report in reports:
            key = observed(report)
            counts[key] = counts.get(key, 0) + 1
        made += len(reports)
    return counts


def connect_all(live: LiveLab, callers: list[str], target: Target) -> dict[str, dict[str, int]]:
    """connect() from every caller at once (each from its own namespace), conntrack emptied
    first so that every connection is new to the nat table."""
    live.exec("node", ["conntrack", "-F"])
    with ThreadPoolExecutor(max_workers=len(callers)) as pool:
        return dict(zip(callers, pool.map(
            lambda caller: connect(live, caller, target, CONNECTIONS), callers)))


def binomial_p(k: int, n: int, p: float) -> float:
    """Two-sided exact p-value: the chance of a count at most as likely as k."""
    probs = [math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(n + 1)]
    return min(1.0, sum(q for q in probs if q <= probs[k] * (1 + 1e-9)))


def disagreement(predicted: dict[str, Fraction], counts: dict[str, int]) -> str | None:
    """What the connections show against the prediction, or None: a fate the tracer gives no
    chance, or a count with a binomial p-value below ALPHA (late answers may belong to any
    answered fate: one that looks too rare is tested with them added)."""
    n = sum(counts.values())
    late = counts.get(LATE, 0)
    answered = any(key != NONE for key in predicted)
    for key, k in counts.items():
        if predicted.get(key, 0) == 0 and not (key == LATE and answered):
            return f"{k} of {n} connections: {key}, which the tracer gives no chance"
    for key, p in predicted.items():
        k = counts.get(key, 0)
        if key != NONE and k < n * p:
            k = min(k + late, n * p)  # late ones count for it, up to its expected share
        if binomial_p(round(k), n, float(p)) < ALPHA:
            return f"{key}: {counts.get(key, 0)} of {n} connections, the tracer says {float(p):.4f}"
    return None


# -- the test --------------------------------------------------------------------------------------

def _log(entry: dict) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


def _kernel_refuses(live: LiveLab, text: str) -> str | None:
    try:
        live.restore(text, noflush=False)
    except RestoreFailed as exc:
        return (exc.stderr or str(exc)).strip()[:300]
    return None


@pytest.fixture(scope="module")
def base(lab) -> Document:
    return Document.of(nat_table(lab.rendered_rules()))


def test_the_unedited_table_agrees_from_every_caller(lab, base):
    node = Callers(lab.model)
    assert _kernel_refuses(lab, base.text) is None
    ruleset = as_iptables_restore(base.text, "lab-3.rules")
    entry: dict = {}
    assert _compare(lab, node, ruleset, entry) is None, entry


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)]
                 if c.xfail else []) for c in cases()])
def test_a_kept_variant_does_on_the_kernel_what_it_did(lab, base, case):
    """fixtures/differential/: iptables-restore loads it or refuses it as recorded, and each
    caller's connections show the recorded fates (which the static test holds the tracer to)."""
    try:
        refused = _kernel_refuses(lab, case.text)
        assert (refused is None) == case.loads, refused
        if case.loads:
            measured = measure(lab, case.expect, Callers(lab.model).target)
            assert not any(problem for problem, _, _ in measured.values()), measured
    finally:
        _kernel_refuses(lab, base.text)


@pytest.mark.slow
@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
          phases=[Phase.explicit, Phase.generate] + ([] if COLLECT else [Phase.shrink]),
          suppress_health_check=list(HealthCheck))
@given(edits=edit_lists())
# What issue 20 item 3 added to the tracer, tried every run (rule 8 is the first endpoint's
# DNAT, rule 16 the Service's rule in KUBE-SERVICES).
@example(edits=[dnat_to(8, "172.17.0.2-172.17.0.7:80", False)])  # nf_nat's hash per caller
@example(edits=[dnat_to(8, "172.17.0.2:80-81", False)])  # 8080 is not in 80-81: port 80
@example(edits=[dnat_to(8, "172.17.0.5:80", True)])  # --to-destination=
@example(edits=[NewRule(16, "-p tcp -j REDIRECT --to-ports 80")])
@example(edits=[NewRule(16, "-m addrtype --dst-type UNICAST -j RETURN")])
@example(edits=[NewRule(16, "-m addrtype ! --dst-type UNICAST -j RETURN")])
def test_the_kernel_does_what_the_tracer_predicts(lab, base, edits):
    if MINUTES and time.monotonic() - STARTED > MINUTES * 60:
        return  # past the time budget: the remaining examples pass untried
    node = Callers(lab.model)
    text = edited(base, edits).text
    if COLLECT and text in TRIED:
        return  # Hypothesis generates near neighbours: a survey spends the lab on new text
    TRIED.add(text)
    entry: dict = {"edits": repr(edits), "at": time.time()}
    began = time.monotonic()
    try:
        kernel = _kernel_refuses(lab, text)
        try:
            ruleset = as_iptables_restore(text, "variant.rules")
            kit = None
        except SubmissionError as exc:
            ruleset, kit = None, str(exc)
        if (kernel is None) != (kit is None):
            entry.update(status="intake-differs", kernel=kernel, kit=kit)
            problem = f"iptables-restore: {kernel or 'loads it'}; the intake: {kit or 'takes it'}"
        elif kernel is not None:
            entry.update(status="refused")
            problem = None
        elif (unmodelled := unsupported(ruleset, routes=True)) is not None:
            entry.update(status="unsupported", what=unmodelled.what)
            problem = None
        else:
            problem = _compare(lab, node, ruleset, entry)
    finally:
        entry["seconds"] = round(time.monotonic() - began, 2)
        _log(entry)
        _kernel_refuses(lab, base.text)
    if problem and not COLLECT:
        pytest.fail(f"{problem}\n{edits}\n{text}")


def _compare(live: LiveLab, node: Callers, ruleset, entry: dict) -> str | None:
    """Every caller's connections at once (each from its own namespace), against the traces."""
    try:
        predicted = {caller: node.predicted(ruleset, caller) for caller in node.callers}
    except TraceLimit as exc:
        entry.update(status="limit", what=exc.what)
        return None
    entry.update(status="traced", callers={})
    first = None
    for caller, (problem, counts, again) in measure(live, predicted, node.target).items():
        entry["callers"][caller] = {"agree": problem is None, "counts": counts, "again": again,
                                    "predicted": {k: str(v) for k, v in predicted[caller].items()}}
        if problem and first is None:
            first = f"{caller}: {problem} (and again: {again})"
    return first


def measure(live: LiveLab, predicted: dict[str, dict[str, Fraction]], target: Target) -> dict:
    """{caller: (disagreement or None, counts, counts measured again or None)}. A disagreement
    is measured again, once, with new connections: a connection a busy machine lost (2 cores,
    six callers at once) is not a disagreement; a real one repeats."""
    counts = connect_all(live, list(predicted), target)
    doubted = [c for c, want in predicted.items() if disagreement(want, counts[c])]
    again = connect_all(live, doubted, target) if doubted else {}
    return {caller: (disagreement(want, again[caller]) if caller in again else None,
                     counts[caller], again.get(caller))
            for caller, want in predicted.items()}


# -- the closing note's figures ----------------------------------------------------------------------

def summarize(path: str) -> str:
    """Figures of a KPLAB_DIFF_LOG: variants by status, agreement per caller class, the share
    the tracer did not model among the variants iptables-restore loads, and the time taken."""
    entries = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    status: dict[str, int] = {}
    callers: dict[str, list[int]] = {}
    for entry in entries:
        status[entry["status"]] = status.get(entry["status"], 0) + 1
        for caller, seen in entry.get("callers", {}).items():
            kind = caller if caller in ("client", "node") else "pod"
            agreed = callers.setdefault(kind, [0, 0, 0])  # agree, measured, agree when remeasured
            agreed[0] += seen["agree"]
            agreed[1] += 1
            agreed[2] += bool(seen.get("again")) and seen["agree"]
    loaded = sum(n for s, n in status.items() if s not in ("refused", "intake-differs"))
    unmodelled = status.get("unsupported", 0) + status.get("limit", 0)
    seconds = sum(entry["seconds"] for entry in entries)
    lines = [f"variants tried: {len(entries)} ({', '.join(f'{s} {n}' for s, n in sorted(status.items()))})",
             f"unsupported among variants iptables-restore loads: {unmodelled}/{loaded} "
             f"({100 * unmodelled / max(loaded, 1):.1f} %)",
             f"time: {seconds / 60:.1f} min ({seconds / max(len(entries), 1):.1f} s a variant)"]
    lines += [f"{kind}: {a}/{n} agree ({r} of them when measured again)"
              for kind, (a, n, r) in sorted(callers.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(summarize(sys.argv[1]))
