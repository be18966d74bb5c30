"""The live side of issue 20's differential test: real connections from every caller of a live
lab, counted by what each caller observed, and judged against the tracer's exact prediction.
Used by tests/integration/test_differential_kernel.py (lab 3 and the kept cases) and
test_differential_labs.py (labs 2 and 4); needs root.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, Phase, settings

from lab_runner.errors import RestoreFailed, SubmissionError
from lab_runner.evidence import probing
from lab_runner.evidence.probing import Target
from lab_runner.grading import exercise as exercises
from lab_runner.grading.submission import as_iptables_restore
from lab_runner.lab import LiveLab
from lab_runner.ruleset.semantics import unsupported
from lab_runner.ruleset.tracer import TraceLimit
from tests.strategies.observable import NONE, Callers

CONNECTIONS = int(os.environ.get("KPLAB_DIFF_CONNECTIONS", "16"))
LOG = os.environ.get("KPLAB_DIFF_LOG")
EXAMPLES = int(os.environ.get("KPLAB_DIFF_EXAMPLES", "25"))
MINUTES = float(os.environ.get("KPLAB_DIFF_MINUTES", "0") or 0)
SEED = int(os.environ.get("KPLAB_DIFF_SEED", "20261204"))
COLLECT = os.environ.get("KPLAB_DIFF_COLLECT") == "1"
STARTED = time.monotonic()
_TRIED: set[str] = set()
# The generated tiers' Hypothesis settings: a survey (COLLECT) neither fails nor shrinks.
SURVEY = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                  phases=[Phase.explicit, Phase.generate] + ([] if COLLECT else [Phase.shrink]),
                  suppress_health_check=list(HealthCheck))
ALPHA = 1e-6
TIMEOUT = 0.5  # before the SYN's first retransmission (1 s): the first packet's fate
LATE = "connected, then no answer in time"  # the SYN was answered: some answered fate


class Labs:
    """Live labs by (lab, exercise), each built when first asked for (an exercise may bring its
    own pods, as lab 4's do) and all taken down together at close()."""

    def __init__(self):
        self._stack = ExitStack()
        self._up: dict[tuple[str, str | None], LiveLab] = {}

    def get(self, lab: str, exercise: str | None = None) -> LiveLab:
        key = (lab, exercise)
        if key not in self._up:
            spec = exercises.find(lab, exercise).lab if exercise else lab
            self._up[key] = self._stack.enter_context(LiveLab.up(spec))
        return self._up[key]

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="module")
def labs():
    """The module's live labs (Labs), taken down when its tests are done."""
    up = Labs()
    yield up
    up.close()


def skipped(text: str) -> bool:
    """Whether a generated variant is passed untried: past KPLAB_DIFF_MINUTES, or (a survey)
    text already tried, since Hypothesis generates near neighbours."""
    if MINUTES and time.monotonic() - STARTED > MINUTES * 60:
        return True
    if COLLECT and text in _TRIED:
        return True
    _TRIED.add(text)
    return False


def observed(report) -> str:
    if report.answered and report.pod_view is not None:
        return f"{report.pod_view.pod} saw {report.pod_view.src}"
    if report.answer.get("answer") == "timeout" and report.answer.get("connect_ms") is not None:
        return LATE  # the app was slow (2 cores, six callers at once), not the rules
    return NONE if not report.answered else f"answered by no pod ({report.answer.get('answer')})"


# Empties every `-m recent` list of the node (sessionAffinity's KUBE-SEP-… lists): the lists are
# per network namespace, and "/" clears one (xt_recent).
FORGET = "for f in /proc/net/xt_recent/*; do [ -e \"$f\" ] && echo / > \"$f\"; done; true"


def connect(live: LiveLab, caller: str, target: Target, count: int,
            forget: bool = False) -> dict[str, int]:
    """`count` new connections from the caller (the agent stops after 6 silent first ones;
    then it is asked again), counted by what the caller observed. With `forget`, one at a time,
    the node's recent lists emptied before each: every connection is new to sessionAffinity
    too, so the counts are first-packet shares (else the first one pins the caller's source)."""
    counts: dict[str, int] = {}
    made = 0
    while made < count:
        if forget:
            live.exec("node", ["sh", "-c", FORGET])
        reports, _ = probing.connections(live, caller, target,
                                         count=1 if forget else count - made, counters=False,
                                         timeout=TIMEOUT, budget=60)
        for report in reports:
            key = observed(report)
            counts[key] = counts.get(key, 0) + 1
        made += len(reports)
    return counts


def connect_all(live: LiveLab, callers: list[str], target: Target,
                forget: bool = False) -> dict[str, dict[str, int]]:
    """connect() from every caller at once (each from its own namespace), conntrack emptied
    first so that every connection is new to the nat table."""
    live.exec("node", ["conntrack", "-F"])
    with ThreadPoolExecutor(max_workers=len(callers)) as pool:
        return dict(zip(callers, pool.map(
            lambda caller: connect(live, caller, target, CONNECTIONS, forget), callers)))


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


def measure(live: LiveLab, predicted: dict[str, dict[str, Fraction]], target: Target,
            forget: bool = False) -> dict:
    """{caller: (disagreement or None, counts, counts measured again or None)}. A disagreement
    is measured again, once, with new connections: a connection a busy machine lost (2 cores,
    six callers at once) is not a disagreement; a real one repeats. `forget`: see connect()."""
    counts = connect_all(live, list(predicted), target, forget)
    doubted = [c for c, want in predicted.items() if disagreement(want, counts[c])]
    again = connect_all(live, doubted, target, forget) if doubted else {}
    return {caller: (disagreement(want, again[caller]) if caller in again else None,
                     counts[caller], again.get(caller))
            for caller, want in predicted.items()}


def compare(live: LiveLab, callers: Callers, ruleset, entry: dict) -> str | None:
    """Every caller's connections at once (each from its own namespace), against the traces;
    the first disagreement, or None. `entry` (the log line) gets the figures."""
    try:
        predicted = {caller: callers.predicted(ruleset, caller) for caller in callers.callers}
    except TraceLimit as exc:
        entry.update(status="limit", what=exc.what)
        return None
    entry.update(status="traced", callers={})
    first = None
    for caller, (problem, counts, again) in measure(live, predicted, callers.target).items():
        entry["callers"][caller] = {"agree": problem is None, "counts": counts, "again": again,
                                    "predicted": {k: str(v) for k, v in predicted[caller].items()}}
        if problem and first is None:
            first = f"{caller}: {problem} (and again: {again})"
    return first


def judge(live: LiveLab, callers: Callers, text: str, entry: dict) -> str | None:
    """One variant, whole nat table `text`, on the live node: iptables-restore and the intake
    must accept or refuse it alike; if the intake takes it and the tracer models it (as the
    intake asks: with the node's routes), every caller's connections must show the traces.
    The first disagreement, or None; `entry` gets the status and figures."""
    kernel = kernel_refuses(live, text)
    try:
        ruleset, kit = as_iptables_restore(text, "variant.rules"), None
    except SubmissionError as exc:
        ruleset, kit = None, str(exc)
    if (kernel is None) != (kit is None):
        entry.update(status="intake-differs", kernel=kernel, kit=kit)
        return f"iptables-restore: {kernel or 'loads it'}; the intake: {kit or 'takes it'}"
    if kernel is not None:
        entry.update(status="refused")
        return None
    if (unmodelled := unsupported(ruleset, routes=True, redirect=True)) is not None:
        entry.update(status="unsupported", what=unmodelled.what)
        return None
    return compare(live, callers, ruleset, entry)


def kernel_refuses(live: LiveLab, text: str) -> str | None:
    """iptables-restore's refusal of the whole nat table `text` on the node, or None (loaded:
    without --noflush, so each variant replaces the one before)."""
    try:
        live.restore(text, noflush=False)
    except RestoreFailed as exc:
        return (exc.stderr or str(exc)).strip()[:300]
    return None


def log(entry: dict) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


def summarize(path: str) -> str:
    """Figures of a KPLAB_DIFF_LOG: variants by status, agreement per caller class, the share
    the tracer did not model among the variants iptables-restore loads, and the time taken
    (per lab where the log holds several)."""
    entries = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    by_lab: dict[str, list[dict]] = {}
    for entry in entries:
        by_lab.setdefault(entry.get("lab", "lab-3"), []).append(entry)
    return "\n".join(f"== {lab}\n{_figures(found)}" for lab, found in sorted(by_lab.items()))


def _figures(entries: list[dict]) -> str:
    status: dict[str, int] = {}
    callers: dict[str, list[int]] = {}
    unmodelled_what: dict[str, int] = {}
    for entry in entries:
        status[entry["status"]] = status.get(entry["status"], 0) + 1
        if entry["status"] in ("unsupported", "limit"):
            what = entry["what"].split(" (")[0]
            unmodelled_what[what] = unmodelled_what.get(what, 0) + 1
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
             f"({100 * unmodelled / max(loaded, 1):.1f} %): "
             + ", ".join(f"{w} {n}" for w, n in sorted(unmodelled_what.items(), key=lambda x: -x[1])),
             f"time: {seconds / 60:.1f} min ({seconds / max(len(entries), 1):.1f} s a variant)"]
    lines += [f"{kind}: {a}/{n} agree ({r} of them when measured again)"
              for kind, (a, n, r) in sorted(callers.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(summarize(sys.argv[1]))
