"""Shared helpers for lab-4's checks: where new connections go, measured alike in both modes.

Live mode sends a burst of new connections from the client and reads, from the node's own
counters, which DNAT rule (in which chain) took each of them. Static mode gets the same
answer, as exact shares, from the rule tracer over the submission applied to the starting
state. Either way a check sees {(chain, destination): share}.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import pytest

from lab_runner.evidence import sampling
from lab_runner.evidence.probing import Target
from lab_runner.grading.sandbox import Undecidable
from lab_runner.probes.launch import run_agent
from lab_runner.ruleset import tracer
from lab_runner.ruleset.counters import Snapshot, delta
from lab_runner.ruleset.names import endpoint_chain
from lab_runner.ruleset.parse import parse

SERVICE = Target("10.104.5.205", 8080, "tcp")
PORT_NAME = "stateful-apps/my-app:http-svc"
SVC_CHAIN = "KUBE-SVC-Q7IJ732UBZY4AJKA"
NO_DNAT = sampling.NO_DNAT
BURST_FLOWS = 600  # a share of 1/6 is missed by all 600 with probability (5/6)^600, about 1e-48
BURST_SPORT_BASE = 45000  # apart from the spread sample's ports (20000 and up)


@dataclass(frozen=True)
class Flows:
    """Where new connections from the client went: {(chain of the DNAT rule, "ip:port"): share}.

    Connections that no DNAT rule took are under (None, NO_DNAT). `how` says how it was measured.
    """

    shares: dict[tuple[str | None, str], float]
    how: str

    def to(self, destination: str) -> float:
        return sum(s for (_, d), s in self.shares.items() if d == destination)

    def chains_to(self, destination: str) -> set[str]:
        return {c for (c, d), s in self.shares.items() if d == destination and s > 0 and c}

    def destinations(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (_, d), s in self.shares.items():
            out[d] = out.get(d, 0.0) + s
        return out

    def describe(self) -> str:
        parts = [f"{d} {s * 100:.1f} %" for d, s in sorted(self.destinations().items()) if s > 0]
        return ", ".join(parts) or "nothing"


_flows_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_spread_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def spread(sandbox):
    """sandbox.spread() of the client's connections, sampled once per graded submission.

    Its observed shares are keyed by destination ("ip:port", or NO_DNAT), including any that
    the reference does not expect, so checks other than the spread's own may read them too.
    """
    if sandbox not in _spread_cache:
        _spread_cache[sandbox] = sandbox.spread("client", SERVICE)
    return _spread_cache[sandbox]


def flows(sandbox) -> Flows:
    """Where the client's new connections go (measured once per graded submission)."""
    if sandbox not in _flows_cache:
        _flows_cache[sandbox] = _live_flows(sandbox) if sandbox.mode == "live" \
            else _static_flows(sandbox)
    return _flows_cache[sandbox]


def _live_flows(sandbox) -> Flows:
    lab = sandbox.lab
    caller = sandbox.caller_ip("client")
    sampling.forget_unfinished_flows(lab, caller, SERVICE)
    before = Snapshot.parse(lab.save())
    sent = run_agent(lab.runner, lab.place("client"), "burst", dst=SERVICE.ip, dport=SERVICE.port,
                     flows=BURST_FLOWS, proto=SERVICE.proto, sport_base=BURST_SPORT_BASE,
                     wait=120)
    after = Snapshot.parse(lab.save())
    sampling.forget_unfinished_flows(lab, caller, SERVICE)
    counts: dict[tuple[str | None, str], int] = {}
    rules = {(r.table, r.chain, r.text): r for r in after.ruleset.rules()}
    for change in delta(before, after).rules:
        rule = rules.get((change.table, change.chain, change.text))
        if change.table != "nat" or rule is None or rule.target != "DNAT" or \
                not change.change.packets:
            continue
        # Where the rule sends, read by the parser (semantics.dnat_destination), keyed as the
        # tracer keys it: "ip:port", a DNAT without a port keeping the Service's.
        dest = sampling.destination_key(rule, SERVICE.port)
        counts[(change.chain, dest)] = counts.get((change.chain, dest), 0) + change.change.packets
    total = int(sent["sent"])
    missing = total - sum(counts.values())
    if missing > 0:
        counts[(None, NO_DNAT)] = missing
    return Flows({k: v / total for k, v in counts.items()},
                 f"{total} new connections from the client, counted by the node's DNAT rules")


def _static_flows(sandbox) -> Flows:
    node = sandbox.model.nodes[0]
    packet = tracer.Packet(src=sandbox.caller_ip("client"), dst=SERVICE.ip,
                           protocol=SERVICE.proto, sport=40000, dport=SERVICE.port,
                           in_interface=sandbox.inbound("client"),
                           local_addresses=(str(node.ip), str(node.bridge_address.ip),
                                            "127.0.0.1"))
    try:
        trace = tracer.trace(sandbox.submission.ruleset, packet)
    except tracer.UnsupportedRule as exc:
        raise Undecidable(f"the rule tracer does not model this rule: {exc}") from exc
    shares: dict[tuple[str | None, str], float] = {}
    for outcome in trace.outcomes:
        if not outcome.probability:
            continue
        if outcome.dnat:
            dest = f"{outcome.dnat[0]}:{outcome.dnat[1]}"
            chain = next((s.chain for s in reversed(outcome.path)
                          if s.table == "nat" and s.rule is not None and s.rule.target == "DNAT"),
                         None)
        else:
            dest, chain = NO_DNAT, None
        shares[(chain, dest)] = shares.get((chain, dest), 0.0) + float(outcome.probability)
    return Flows(shares, "exact shares from the rule tracer over your rules")


def nat_chains(sandbox) -> set[str]:
    """The nat table's chains: the node's own (live) or the submission on the start (static)."""
    if sandbox.mode == "live":
        return set(parse(sandbox.lab.save(table="nat"), "<node>").table("nat").chains)
    return set(sandbox.submission.ruleset.table("nat").chains)


def sep_chain(address: str) -> str:
    """kube-proxy's KUBE-SEP chain for one endpoint "ip:port" of my-app's http-svc port."""
    return endpoint_chain(PORT_NAME, "tcp", address)


def answered_connections(sandbox, source: str = "client") -> list:
    """Connections from `source` that a pod answered (live: connect() already tries until every
    endpoint has answered)."""
    return [o for o in sandbox.connect(source, SERVICE) if o.answered]


def node_address(sandbox) -> str:
    return str(sandbox.model.nodes[0].bridge_address.ip)


def assert_outside_caller_masqueraded(sandbox) -> None:
    """The client's answered connections arrive at the pod from the node's address."""
    answered = answered_connections(sandbox)
    node = node_address(sandbox)
    wrong = [o for o in answered if o.saw_src != node]
    assert answered and not wrong, (
        ("No connection from the client was answered" if not answered else
         "The client's connection arrived at "
         + ", ".join(f"{o.pod} as {o.saw_src}" for o in wrong))
        + f". Expected: the pod sees the node's address {node} (masqueraded), because the "
        "service chain's first rule marks callers from outside the cluster CIDR.")


def assert_spread_even(sandbox) -> None:
    """New connections are shared among the endpoints as kube-proxy's probabilities share them."""
    seen = spread(sandbox)
    shares = ", ".join(f"{k} {v * 100:.1f} %" for k, v in sorted(seen.observed.items()))
    expected = ", ".join(f"{k} {v * 100:.1f} %" for k, v in sorted(seen.expected.items()))
    assert seen.passed, f"Observed shares: {shares} ({seen.detail}). Expected: {expected}."


@pytest.fixture
def service():
    return SERVICE
