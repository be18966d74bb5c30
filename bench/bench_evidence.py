"""Benchmark: lab-3's evidence on a live lab: sampling flows/s, one probe, one trace, and the
sampling check's false-failure rate and power.

    python bench/bench_evidence.py [RUNS_FOR_RATES]     (default 50 runs each; the slow test uses 200)

lab-3 is brought up once (netns backend, nft) and torn down at the end.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

# Runnable from a checkout as `python bench/bench_evidence.py`, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab_runner.evidence import kernel_trace, probing, sampling  # noqa: E402
from lab_runner.evidence.probing import Target  # noqa: E402
from lab_runner.lab import LiveLab  # noqa: E402
from lab_runner.probes import stats  # noqa: E402
from lab_runner.probes.launch import run_agent  # noqa: E402
from lab_runner.ruleset.parse import parse  # noqa: E402

SERVICE = Target("10.104.5.205", 8080, "tcp")
SVC_CHAIN = "KUBE-SVC-Q7IJ732UBZY4AJKA"
CLIENT_IP = "192.168.49.1"
SAMPLE_SIZES = (1_000, 10_000)
SAMPLES = 5  # per size
PROBES = 9
TRACES = 7
RATE_RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 50


def row(name: str, value: str, note: str = "") -> None:
    print(f"  {name:<58} {value:>18}  {note}", flush=True)


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def spread(values: list[float], unit: float = 1000, suffix: str = "ms") -> str:
    return f"median of {len(values)} (min {min(values) * unit:.0f}, max {max(values) * unit:.0f} {suffix})"


def timed(call):
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def trace_once(lab) -> tuple[kernel_trace.Trace, dict]:
    """One kernel trace of a client SYN, exactly as the `trace` command makes it."""
    path, answer, _ = kernel_trace.trace_probe(lab, "client", SERVICE)
    return path, answer


def all_quarter_document(lab) -> str:
    document = lab.rendered_rules(base_jumps=False)
    pick = re.compile(rf"^(-A {SVC_CHAIN} .*--probability )\S+( -j KUBE-SEP-\w+)$", re.M)
    wrong, changed = pick.subn(r"\g<1>0.2500000000\g<2>", document)
    assert changed == 3, changed
    return wrong


def sampling_rates(lab) -> None:
    for flows in SAMPLE_SIZES:
        walls, sends, agents = [], [], []
        for _ in range(SAMPLES):
            wall, report = timed(lambda: sampling.sample(lab, SERVICE, flows))
            assert report.flows == flows and sampling.NO_DNAT not in report.observed, report.observed
            walls.append(wall)
            sends.append(report.seconds)
        for i in range(SAMPLES):  # the agent process alone: start-up, scapy, the burst, JSON
            lab.exec("node", ["conntrack", "-F"])
            wall, _ = timed(lambda: run_agent(lab.runner, lab.place("client"), "burst", dst=SERVICE.ip,
                                              dport=SERVICE.port, flows=flows, sport_base=20000))
            agents.append(wall)
        lab.exec("node", ["conntrack", "-F"])
        send, agent, whole = (statistics.median(v) for v in (sends, agents, walls))
        row(f"sample {flows:>6,} flows: burst send loop", f"{flows / send:,.0f} flows/s",
            f"{send * 1000:.1f} ms; median of {SAMPLES}")
        row(f"sample {flows:>6,} flows: burst agent process", f"{flows / agent:,.0f} flows/s",
            f"{agent * 1000:.0f} ms incl. python + scapy start-up; median of {SAMPLES}")
        row(f"sample {flows:>6,} flows: whole sample() call", f"{flows / whole:,.0f} flows/s",
            f"{whole * 1000:.0f} ms; {spread(walls)}")


def probe_times(lab) -> None:
    for kind, note in (("syn", "with a capture on every pod's eth0"), ("http", "pod view from the app")):
        walls, rtts = [], []
        for _ in range(PROBES):
            wall, report = timed(lambda: probing.probe(lab, "client", SERVICE, kind))
            assert report.answered and report.pod_view is not None, report.answer
            walls.append(wall)
            rtts.append(report.answer["rtt_ms"])
        row(f"{kind} probe (probing.probe, {note})", median_ms(walls), spread(walls))
        row(f"{kind} probe: on the wire (rtt_ms)", f"{statistics.median(rtts):.3f} ms")
    walls, hops = [], []
    for _ in range(TRACES):
        wall, (path, answer) = timed(lambda: trace_once(lab))
        assert answer["answer"] == "syn-ack" and path.hops, (answer, path.raw_text)
        walls.append(wall)
        hops.append(len(path.hops))
    row("trace (Tracer: TRACE rule + xtables-monitor)", median_ms(walls),
        f"{spread(walls)}; {statistics.median(hops):.0f} hops")


def error_rates(lab) -> None:
    n = sampling.flows_needed(4)
    promised = sampling.expected_distribution(parse(lab.rendered_rules()), lab.model, CLIENT_IP, SERVICE)
    even = {str(i): Fraction(1, 4) for i in range(4)}
    predicted = stats.power(n, even, sampling.wrong_alternative(4))
    walls, false_failures = [], 0
    for _ in range(RATE_RUNS):
        wall, report = timed(lambda: sampling.sample(lab, SERVICE, n))
        walls.append(wall)
        false_failures += not report.passed
    row(f"false failures, kube-proxy rules, N={n}", f"{false_failures} of {RATE_RUNS}",
        f"alpha {sampling.DEFAULT_ALPHA:g}: expected {RATE_RUNS * sampling.DEFAULT_ALPHA:.0e}; "
        f"{sum(walls):.1f} s in all")
    lab.restore(all_quarter_document(lab))
    try:
        caught, kit_caught, walls = 0, 0, []
        for _ in range(RATE_RUNS):
            wall, report = timed(lambda: sampling.sample(lab, SERVICE, n))
            walls.append(wall)
            caught += not stats.gof(report.observed, promised, alpha=sampling.DEFAULT_ALPHA).passed
            kit_caught += not report.passed
    finally:
        lab.restore(lab.rendered_rules(base_jumps=False))
    row(f"power vs all-0.25 rules (vs kube-proxy's 1/4), N={n}", f"{caught} of {RATE_RUNS} caught",
        f"predicted power {predicted:.6f}; {sum(walls):.1f} s in all")
    row("  ... sample()'s own verdict (vs the live rules)", f"{kit_caught} of {RATE_RUNS} caught",
        "expectation comes from the rules under test, so the mistake is invisible to it")


def main() -> int:
    if os.geteuid() != 0:
        print("bench_evidence: needs root (it builds network namespaces); run `sudo make bench`")
        return 3
    started = time.perf_counter()
    print(f"evidence on lab-3 ({os.cpu_count()} CPUs, python {sys.version.split()[0]})", flush=True)
    with LiveLab.up("lab-3") as lab:
        up = time.perf_counter() - started
        sampling_rates(lab)
        probe_times(lab)
        error_rates(lab)
    row("whole bench (incl. up and down)", f"{time.perf_counter() - started:.1f} s", f"up took {up:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
