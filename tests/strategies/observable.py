"""What a caller of a lab's Service (or virtual IP) can observe of one new connection, as the
tracer predicts it, and the differential regression cases (fixtures/differential/) kept from
issue 20's test.

A caller observes which pod answered and the source address that pod saw, or no answer. Both
tiers read a trace through Callers.predicted(); the live tier counts real connections by the same
words (tests/integration/test_differential_kernel.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import yaml

from lab_runner import lab_file
from lab_runner.evidence.probing import Target
from lab_runner.evidence.sampling import node_facts
from lab_runner.grading import exercise as exercises
from lab_runner.model import Lab
from lab_runner.ruleset.tracer import Limits, Packet, trace

NONE = "no answer"
LIMITS = Limits(max_states=5000, seconds=5, ruleset_seconds=60)
CASES = Path(__file__).resolve().parents[2] / "fixtures" / "differential"


class Callers:
    """The caller classes of one node (the client, every pod on the node's bridge, the node
    itself) to one target (by default the lab's first Service port), and what each would
    observe of a traced outcome. Pods on other nodes answer but do not call."""

    def __init__(self, model: Lab, target: Target | None = None):
        node = model.nodes[0]
        if target is None:
            service = model.services[0]
            port = service.ports[0]
            target = Target(str(service.cluster_ip), port.port, port.protocol.lower())
        self.target = target
        self.node_ip = str(node.ip)
        self.bridge = str(node.bridge_address.ip)
        self.pod_subnet = node.bridge_address.network
        self.facts = node_facts(model)
        self.local = self.facts["local_addresses"]
        self.callers = {"client": (str(model.clients[0].ip), "eth0")}
        self.callers |= {p.name: (str(p.ip), node.bridge) for p in model.pods
                         if p.node == node.name and not p.host_network}  # those are the node
        self.callers["node"] = (self.node_ip, None)
        self.serves = {(str(p.ip), cp.container_port, cp.protocol.lower()): p
                       for p in model.pods for cp in p.ports}
        self.node_name = node.name

    def packet(self, caller: str) -> Packet:
        src, inbound = self.callers[caller]
        return Packet(src, self.target.ip, self.target.proto, 40000, self.target.port,
                      in_interface=inbound, **self.facts)

    def observable(self, caller: str, outcome) -> str:
        """What the caller sees of one traced outcome: `pod saw SRC`, or no answer. A pod DNATed
        back to itself without masquerade drops its own packet (issue 20, item 1); a pod on
        another node answers a source outside this node straight by its own routes, so the
        reply never meets this node's conntrack to be un-DNATed and the caller drops it."""
        if outcome.verdict != "ACCEPT":
            return NONE
        ip, port = outcome.dnat or (self.target.ip, self.target.port)
        pod = self.serves.get((ip, port, self.target.proto))
        src = self.callers[caller][0]
        if pod is None or (ip == src and not outcome.masquerade):
            return NONE
        saw = self.masquerade_source(ip) if outcome.masquerade else \
            (outcome.snat[0] if outcome.snat else src)
        if pod.node != self.node_name and saw not in self.local and \
                ipaddress.ip_address(saw) not in self.pod_subnet:
            return NONE
        return f"{pod.name} saw {saw}"

    def masquerade_source(self, destination: str) -> str:
        """MASQUERADE's source: the address of the interface the packet leaves by."""
        inside = ipaddress.ip_address(destination) in self.pod_subnet
        return self.bridge if inside else self.node_ip

    def predicted(self, ruleset, caller: str) -> dict[str, Fraction]:
        out: dict[str, Fraction] = {}
        for outcome in trace(ruleset, self.packet(caller), LIMITS).outcomes:
            seen = self.observable(caller, outcome)
            out[seen] = out.get(seen, Fraction(0)) + outcome.probability
        return out


@dataclass(frozen=True)
class Case:
    """A variant the differential test kept (a disagreement found once, or a lab's regression
    case): its text, whether iptables-restore loads it, and what each caller observes (exact
    shares), as the kernel did. `lab` and `exercise` say which lab model it ran on (an
    exercise's own, such as lab 4's six pods), `target` where its callers connect."""

    name: str
    found: str
    edits: str
    text: str
    loads: bool
    expect: dict[str, dict[str, Fraction]]
    xfail: str | None = None
    lab: str = "lab-3"
    exercise: str | None = None
    target: Target | None = None

    def model(self) -> Lab:
        return exercises.find(self.lab, self.exercise).lab if self.exercise else \
            lab_file.load(self.lab)

    def callers(self) -> Callers:
        return Callers(self.model(), self.target)


def cases() -> list[Case]:
    """The kept cases; an entry's `rules` names a .rules file several cases share (one node's
    table, several targets), else its own name does."""
    out = []
    for entry in yaml.safe_load((CASES / "cases.yaml").read_text(encoding="utf-8")):
        rules = CASES / f"{entry.get('rules', entry['name'])}.rules"
        expect = {caller: {seen: Fraction(p) for seen, p in fates.items()}
                  for caller, fates in (entry.get("expect") or {}).items()}
        target = None
        if entry.get("target"):
            address, port, proto = entry["target"].replace("/", ":").split(":")
            target = Target(address, int(port), proto)
        out.append(Case(entry["name"], entry["found"], entry["edits"],
                        rules.read_text(encoding="utf-8"),
                        entry["loads"], expect, entry.get("xfail"), _lab(entry.get("lab", "lab-3")),
                        entry.get("exercise"), target))
    return out


def _lab(name: str) -> str:
    """A lab id, or a lab file below the repository (an imported cluster's), made absolute."""
    return str(CASES.parents[1] / name) if "/" in name else name
