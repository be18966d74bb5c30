"""Node port questions both grading modes answer alike: what new connections to the graded node's
own address and a node port meet (the graded node is the lab's first, as in sandbox.py).

Sandbox.connect() and outcome() find a Service's pods by its ClusterIP; a node port is reached at
a node's address, so here the pods a connection may reach are those of the Service that owns the
node port. Static mode traces the submission (outcomes.traced); live mode makes new connections
until each of those pods answered, or as many as reach each of them but for MISS_RATE, so a pod
the answer must never reach (another node's, under externalTrafficPolicy: Local) is looked for
as hard as one it must reach.
"""

from __future__ import annotations

from dataclasses import replace

from lab_runner.endpoints import endpoints_for
from lab_runner.evidence import probing
from lab_runner.evidence.probing import Target
from lab_runner.grading import outcomes
from lab_runner.grading.sandbox import (FIRST_PACKET_TIMEOUT, NO_ANSWER_TIMEOUT, Undecidable,
                                        probe_limit)
from lab_runner.grading.sandbox import _trace as trace_of
from lab_runner.ruleset import tracer

NO_ANSWER_TRIES = 3  # where the reference answers nothing, one answer is enough to differ


def node_port(sandbox, port: int) -> Target:
    """The graded node's own address at `port` (TCP), as an outside caller dials it."""
    return Target(str(sandbox.model.nodes[0].ip), port, "tcp")


def service_pods(sandbox, target: Target) -> set[str]:
    """Every pod, on any node, of the Service port whose node port `target` names."""
    for service in sandbox.model.services:
        for port in service.ports:
            if port.node_port == target.port and port.protocol.lower() == target.proto:
                return {e.pod for e in endpoints_for(sandbox.model, service, port) if e.pod}
    return set()


def reference(sandbox, caller: str, target: Target) -> outcomes.Outcome:
    """What kube-proxy's rules for the lab make of the caller's new connections (exact)."""
    return _plain(outcomes.traced(sandbox, sandbox.reference, outcomes.PacketClass(caller, target)))


def outcome(sandbox, caller: str, target: Target) -> outcomes.Outcome:
    """What the submission makes of them: traced (static) or measured (live); asked once."""
    cache = sandbox.__dict__.setdefault("_node_port_outcomes", {})
    key = (caller, str(target))
    if key not in cache:
        cache[key] = _traced(sandbox, caller, target) if sandbox.mode == "static" \
            else _measured(sandbox, caller, target)
    return cache[key]


def problem(sandbox, caller: str, target: Target) -> str | None:
    """The first way the submission's outcome differs from the reference's, in words."""
    cls = outcomes.PacketClass(caller, target)
    return outcomes.difference(sandbox, cls, reference(sandbox, caller, target),
                               outcome(sandbox, caller, target))


def refused_or_dropped(sandbox, caller: str, target: Target) -> str:
    """How a connection nobody answers ends: "dropped" by a rule (the caller hears nothing),
    "refused" by the node (nothing listens: it answers with a reset), or "answered"."""
    if sandbox.mode == "static":
        fates = set()
        for o in _trace(sandbox, sandbox.rules, caller, target).outcomes:
            if o.probability:
                fate = outcomes.fate(sandbox, outcomes.PacketClass(caller, target), o)
                fates.add("answered" if fate.answered else
                          "dropped" if o.verdict == "DROP" or o.dnat else "refused")
    else:
        reports, _ = probing.connections(sandbox.lab, caller, target, count=NO_ANSWER_TRIES,
                                         counters=False, timeout=NO_ANSWER_TIMEOUT)
        fates = {"answered" if r.answered else
                 "refused" if r.answer.get("answer") == "refused" else "dropped"
                 for r in reports}
    for worst in ("answered", "refused"):
        if worst in fates:
            return worst
    return "dropped"


def _traced(sandbox, caller, target) -> outcomes.Outcome:
    try:
        return _plain(outcomes.traced(sandbox, sandbox.rules, outcomes.PacketClass(caller, target)))
    except tracer.UnsupportedRule as exc:
        raise Undecidable(f"the rule tracer does not model this rule: {exc}") from exc


def _trace(sandbox, ruleset, caller, target) -> tracer.Trace:
    try:
        return trace_of(sandbox, ruleset, caller, target)
    except tracer.UnsupportedRule as exc:
        raise Undecidable(f"the rule tracer does not model this rule: {exc}") from exc


def _measured(sandbox, caller, target) -> outcomes.Outcome:
    pods = service_pods(sandbox, target)
    answers = any(f.answered for f in reference(sandbox, caller, target).fates)
    reports, _ = probing.connections(
        sandbox.lab, caller, target, counters=False, until_pods=pods,
        count=probe_limit(len(pods)) if answers else NO_ANSWER_TRIES,
        timeout=FIRST_PACKET_TIMEOUT if answers else NO_ANSWER_TIMEOUT)
    fates = set()
    for report in reports:
        view = report.pod_view
        fates.add(outcomes.Fate(True, view.pod, view.src) if report.answered and view
                  else outcomes.NO_ANSWER)
    return outcomes.Outcome(frozenset(fates))


def _plain(outcome: outcomes.Outcome) -> outcomes.Outcome:
    """Fates without the hairpin mark (live reads it from counters only for ClusterIP classes)."""
    return replace(outcome, fates=frozenset(replace(f, hairpin_marked=None) for f in outcome.fates))
