"""Static mode's side of issue 20's differential test, without root: generated student-like edits
(tests/strategies/edits.py) of lab 3's nat table and of each exercise's reference answer (labs 2-4)
go through the one intake and the tracer, and these must hold:

- the intake refuses (SubmissionError) or unsupported() names a rule, or every packet class
  traces; nothing else escapes but TraceLimit (a limit said plainly);
- every trace's probabilities (and its fates') sum to exactly 1, each > 0, and each outcome is
  one of the allowed fates (verdict, route, DNAT address and port, mark);
- the tracer is deterministic: the same text traces to the same outcomes, in the same order;
- the merged-states tracer equals a brute-force enumeration of every path (below, written apart:
  it walks chains, jumps, gotos, RETURN and hooks itself and merges nothing; it shares only the
  per-rule match and target semantics, which the live tier checks against the kernel);
- meaning-preserving respellings (long options, netmasks, `-p 6`, `--to-destination=`, MARK
  spellings of the same bits) trace to the same outcomes.

Reproducible: the `ci` profile (the default) is derandomized; HYPOTHESIS_PROFILE=slow runs more.
"""

from __future__ import annotations

import ipaddress
import os
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab_runner.errors import SubmissionError
from lab_runner.evidence.sampling import node_facts
from lab_runner.grading.submission import as_iptables_restore, from_bytes
from lab_runner.ruleset.parse import parse
from lab_runner.ruleset.semantics import NO_OP_TARGETS, TARGETS, unsupported
from lab_runner.ruleset.tracer import (Limits, Packet, TraceLimit, _Tracer, trace)
from tests.strategies.edits import (RESPELLINGS, edit_lists, edited, lab3_nat_document,
                                    solutions)

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("slow", max_examples=2000, deadline=None, database=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

LIMITS = Limits(max_states=5000, seconds=2, ruleset_seconds=10)
VERDICTS = {"ACCEPT", "DROP", "REJECT"}
ROUTES = {"local", "forward", "output", "dropped"}
LAB3 = lab3_nat_document()
NODE_ADDRESSES = ("192.168.49.2", "172.17.0.1", "127.0.0.1")
ROUTES_OF_NODE = (("0.0.0.0/0", "eth0"), ("192.168.49.0/24", "eth0"), ("172.17.0.0/16", "docker0"))
PODS = ("172.17.0.2", "172.17.0.5", "172.17.0.6", "172.17.0.7")


def lab3_packets() -> list[Packet]:
    """Lab 3's caller classes to its Service: the client, each pod (its hairpin included), the
    node; and the client to another port."""
    common = dict(protocol="tcp", sport=40000, local_addresses=NODE_ADDRESSES,
                  routes=ROUTES_OF_NODE, bridges=("docker0",))
    out = [Packet("192.168.49.1", "10.104.5.205", dport=8080, in_interface="eth0", **common)]
    out += [Packet(pod, "10.104.5.205", dport=8080, in_interface="docker0", **common)
            for pod in PODS]
    out.append(Packet("192.168.49.2", "10.104.5.205", dport=8080, **common))
    out.append(Packet("192.168.49.1", "10.104.5.205", dport=80, in_interface="eth0", **common))
    return out


def exercise_packets(ex) -> list[Packet]:
    model = ex.lab
    node = model.nodes[0]
    facts = node_facts(model)  # as static grading's packets
    callers = [(str(c.ip), "eth0") for c in model.clients]
    callers += [(str(p.ip), node.bridge) for p in model.pods if p.node == node.name]
    callers.append((str(node.ip), None))
    out = []
    for service in model.services:
        for port in service.ports:
            for src, inbound in callers:
                out.append(Packet(src, str(service.cluster_ip), port.protocol.lower(), 40000,
                                  port.port, in_interface=inbound, **facts))
    return out


# -- the properties ------------------------------------------------------------------------------

def check_trace(result) -> None:
    assert sum(o.probability for o in result.outcomes) == 1
    assert sum(f.probability for f in result.fates()) == 1
    for o in result.outcomes:
        assert 0 < o.probability <= 1, o
        assert o.verdict in VERDICTS and o.route in ROUTES, o
        assert (o.route == "dropped") == (o.verdict != "ACCEPT"), o
        assert 0 <= o.mark < 2 ** 32 and isinstance(o.masquerade, bool)
        if o.dnat is not None:
            address, port = o.dnat
            ipaddress.IPv4Address(address)
            assert isinstance(port, int) and 0 <= port <= 65535, o


def traced_or_refused(ruleset, packets) -> list | None:
    """The traces of every packet, or None when the file is refused (unsupported) or a limit
    stops a trace; any other exception fails the test."""
    if unsupported(ruleset, routes=True, redirect=True) is not None:  # as the intake asks
        return None
    results = []
    for packet in packets:
        try:
            results.append(trace(ruleset, packet, LIMITS))
        except TraceLimit:
            return None
    return results


def key(outcome) -> tuple:
    return (outcome.verdict, outcome.dnat, outcome.masquerade, outcome.snat, outcome.mark,
            outcome.route)


def aggregated(outcomes) -> dict[tuple, Fraction]:
    out: dict[tuple, Fraction] = {}
    for k, p in outcomes:
        out[k] = out.get(k, Fraction(0)) + p
    return {k: p for k, p in out.items() if p}


# -- a brute-force reference: every path, nothing merged --------------------------------------

class TooMany(Exception):
    """More paths than a brute-force enumeration should walk."""


class Enumerator:
    """Every path of one packet, one at a time, by recursion over rules."""

    MAX_PATHS = 4000

    def __init__(self, ruleset, packet):
        self.ruleset, self.packet = ruleset, packet
        self.t = _Tracer(ruleset, packet, Limits(max_states=10 ** 9, seconds=60,
                                                  ruleset_seconds=60))
        self.paths = 0

    def chain(self, table: str, name: str, state, start: int = 0):
        """[(p, state, verdict or None)] of the rules from `start` on (None: fell off or RETURN)."""
        rules = self.ruleset.chain(table, name).rules
        for i in range(start, len(rules)):
            rule = rules[i]
            chance, after, missed = self.t.matches(rule, state)
            if not chance:
                state = missed
                continue
            out = []
            if chance != 1:
                self.paths += 1
                if self.paths > self.MAX_PATHS:
                    raise TooMany
                out += [(p * (1 - chance), s, v) for p, s, v in self.chain(table, name, missed, i + 1)]
            out += [(p * chance, s, v) for p, s, v in self.target(table, name, i, rule, after)]
            return out
        return [(Fraction(1), state, None)]

    def target(self, table, name, i, rule, state):
        target = rule.target
        if target is None or target in NO_OP_TARGETS:
            return self.chain(table, name, state, i + 1)
        if target == "RETURN":
            return [(Fraction(1), state, None)]
        if target in VERDICTS:
            return [(Fraction(1), state, target)]
        if self.ruleset.has_chain(table, target):
            out = []
            for p, s, v in self.chain(table, target, state):
                if v is not None or rule.goto:
                    out.append((p, s, v))
                else:
                    out += [(p * q, s2, v2) for q, s2, v2 in self.chain(table, name, s, i + 1)]
            return out
        handler = self.t.redirect if target == "REDIRECT" else TARGETS[target]
        _, after, verdict = handler(rule, state)
        if verdict is None:
            return self.chain(table, name, after, i + 1)
        return [(Fraction(1), after, verdict)]

    def hooks(self, hooks, state):
        """[(p, state, verdict)] through built-in chains in turn; a verdict other than ACCEPT
        ends the packet."""
        ways = [(Fraction(1), state, "ACCEPT")]
        for table, chain in hooks:
            if table not in self.ruleset.tables:
                continue
            nxt = []
            for p, s, v in ways:
                if v != "ACCEPT":
                    nxt.append((p, s, v))
                    continue
                policy = self.ruleset.chain(table, chain).policy or "ACCEPT"
                for q, s2, v2 in self.chain(table, chain, s.__class__(**{**s.__dict__, "hook": chain})):
                    nxt.append((p * q, s2, v2 or policy))
            ways = nxt
        return ways

    def run(self):
        from lab_runner.ruleset.semantics import State

        packet = self.packet
        start = State(packet.src, packet.dst, packet.sport, packet.dport, packet.mark)
        local = packet.in_interface is None
        if local:
            first = [("raw", "OUTPUT"), ("mangle", "OUTPUT"), ("nat", "OUTPUT"),
                     ("filter", "OUTPUT"), ("security", "OUTPUT"), ("mangle", "POSTROUTING"),
                     ("nat", "POSTROUTING")]
        else:
            first = [("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING")]
        out = []
        for p, s, v in self.hooks(first, start):
            if v != "ACCEPT":
                out.append((p, s, v, "dropped"))
                continue
            if self.t.is_local(s.dst):
                route = "local"
                rest = [("mangle", "INPUT"), ("filter", "INPUT"), ("security", "INPUT")]
                rest += [] if local else [("nat", "INPUT")]
            elif local:
                route, rest = "output", []
            else:
                route = "forward"
                rest = [("mangle", "FORWARD"), ("filter", "FORWARD"), ("security", "FORWARD"),
                        ("mangle", "POSTROUTING"), ("nat", "POSTROUTING")]
            for q, s2, v2 in self.hooks(rest, s):
                out.append((p * q, s2, v2, route if v2 == "ACCEPT" else "dropped"))
        return [((v, s.dnat, s.masquerade, s.snat, s.mark, route), p) for p, s, v, route in out]


# -- the tests -------------------------------------------------------------------------------------

def _lab3_variant(edits):
    text = edited(LAB3, edits).text
    try:
        ruleset = as_iptables_restore(text, "variant.rules")
    except SubmissionError:
        return text, None
    return text, ruleset


@settings(settings.get_profile(PROFILE))
@given(edit_lists())
def test_lab3_variants_are_refused_or_traced_to_whole_allowed_distributions(edits):
    text, ruleset = _lab3_variant(edits)
    if ruleset is None:
        return
    results = traced_or_refused(ruleset, lab3_packets())
    if results is None:
        return
    for result in results:
        check_trace(result)
    # Deterministic: the same text, read again, traces to the same outcomes in the same order.
    again = traced_or_refused(as_iptables_restore(text, "variant.rules"), lab3_packets())
    assert again is not None
    assert [[(key(o), o.probability) for o in r.outcomes] for r in again] == \
        [[(key(o), o.probability) for o in r.outcomes] for r in results]


@settings(settings.get_profile(PROFILE))
@given(edit_lists(max_edits=3))
def test_merged_states_equal_brute_force_paths(edits):
    text, ruleset = _lab3_variant(edits)
    if ruleset is None or traced_or_refused(ruleset, lab3_packets()[:1]) is None:
        return
    for packet in lab3_packets():
        try:
            brute = aggregated(Enumerator(ruleset, packet).run())
        except TooMany:
            continue
        got = aggregated((key(o), o.probability) for o in trace(ruleset, packet, LIMITS).outcomes)
        assert got == brute, f"{packet}\n{text}"


@settings(settings.get_profile(PROFILE))
@given(edit_lists(max_edits=3), edit_lists(max_edits=4, edits=RESPELLINGS))
def test_respellings_trace_alike(edits, respellings):
    text, ruleset = _lab3_variant(edits)
    if ruleset is None:
        return
    respelled = edited(edited(LAB3, edits), respellings).text
    try:
        other = as_iptables_restore(respelled, "respelled.rules")
    except SubmissionError as exc:
        pytest.fail(f"a respelling is refused where the original is not: {exc}")
    results, others = traced_or_refused(ruleset, lab3_packets()), traced_or_refused(other, lab3_packets())
    assert (results is None) == (others is None), respelled
    if results is None:
        return
    for one, two in zip(results, others):
        assert aggregated((key(o), o.probability) for o in one.outcomes) == \
            aggregated((key(o), o.probability) for o in two.outcomes), respelled


SOLUTIONS = solutions()


def test_every_rules_exercise_of_labs_2_to_4_has_its_reference_answer_here():
    labs = {ex.directory.parent.parent.name for ex, _ in SOLUTIONS}
    assert labs == {"lab-2-nat", "lab-3-clusterip", "lab-4-endpoints"}, labs
    assert len(SOLUTIONS) >= 12


@settings(settings.get_profile(PROFILE))
@given(st.sampled_from(range(len(SOLUTIONS))), edit_lists())
def test_edited_reference_answers_are_refused_or_traced_whole(which, edits):
    ex, answer = SOLUTIONS[which]
    text = edited(answer, edits).text
    try:
        submission = from_bytes(text.encode(), "answer.rules", ex)
    except SubmissionError:
        return
    results = traced_or_refused(submission.ruleset, exercise_packets(ex))
    for result in results or ():
        check_trace(result)


def test_unedited_reference_answers_pass_the_intake_and_trace():
    for ex, answer in SOLUTIONS:
        submission = from_bytes(answer.text.encode(), "answer.rules", ex)
        results = traced_or_refused(submission.ruleset, exercise_packets(ex))
        assert results is not None, ex.directory
        for result in results:
            check_trace(result)


def test_the_enumerator_agrees_on_lab3_as_rendered():
    ruleset = parse(LAB3.text)
    for packet in lab3_packets():
        assert aggregated(Enumerator(ruleset, packet).run()) == \
            aggregated((key(o), o.probability) for o in trace(ruleset, packet).outcomes)
