"""What a caller of lab 3's Service can observe of one new connection, as the tracer predicts it,
and the differential regression cases (fixtures/differential/) kept from issue 20's test.

A caller observes which pod answered and the source address that pod saw, or no answer. Both
tiers read a trace through Callers.predicted(); the live tier counts real connections by the same
words (tests/integration/test_differential_kernel.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import yaml

from lab_runner.evidence.probing import Target
from lab_runner.model import Lab
from lab_runner.ruleset.tracer import Limits, Packet, trace

NONE = "no answer"
LIMITS = Limits(max_states=5000, seconds=5, ruleset_seconds=60)
CASES = Path(__file__).resolve().parents[2] / "fixtures" / "differential"


class Callers:
    """Lab 3's caller classes (the client, every pod, the node) of its one Service port, and
    what each would observe of a traced outcome."""

    def __init__(self, model: Lab):
        node = model.nodes[0]
        service = model.services[0]
        port = service.ports[0]
        self.target = Target(str(service.cluster_ip), port.port, port.protocol.lower())
        self.bridge = str(node.bridge_address.ip)
        self.local = (str(node.ip), self.bridge, "127.0.0.1")
        self.routes = (("0.0.0.0/0", "eth0"), (str(model.node_network), "eth0"),
                       (str(node.bridge_address.network), node.bridge))
        self.callers = {"client": (str(model.clients[0].ip), "eth0")}
        self.callers |= {p.name: (str(p.ip), node.bridge) for p in model.pods}
        self.callers["node"] = (str(node.ip), None)
        self.serves = {(str(p.ip), cp.container_port, cp.protocol.lower()): p.name
                       for p in model.pods for cp in p.ports}

    def packet(self, caller: str) -> Packet:
        src, inbound = self.callers[caller]
        return Packet(src, self.target.ip, self.target.proto, 40000, self.target.port,
                      in_interface=inbound, local_addresses=self.local, routes=self.routes)

    def observable(self, caller: str, outcome) -> str:
        """What the caller sees of one traced outcome: `pod saw SRC`, or no answer. A pod DNATed
        back to itself without masquerade drops its own packet (issue 20, item 1)."""
        if outcome.verdict != "ACCEPT":
            return NONE
        ip, port = outcome.dnat or (self.target.ip, self.target.port)
        pod = self.serves.get((ip, port, self.target.proto))
        src = self.callers[caller][0]
        if pod is None or (ip == src and not outcome.masquerade):
            return NONE
        return f"{pod} saw {self.bridge if outcome.masquerade else src}"

    def predicted(self, ruleset, caller: str) -> dict[str, Fraction]:
        out: dict[str, Fraction] = {}
        for outcome in trace(ruleset, self.packet(caller), LIMITS).outcomes:
            seen = self.observable(caller, outcome)
            out[seen] = out.get(seen, Fraction(0)) + outcome.probability
        return out


@dataclass(frozen=True)
class Case:
    """A disagreement the differential test found once, kept: the variant's text, whether
    iptables-restore loads it, and what each caller observes (exact shares), as the kernel did."""

    name: str
    found: str
    edits: str
    text: str
    loads: bool
    expect: dict[str, dict[str, Fraction]]
    xfail: str | None = None


def cases() -> list[Case]:
    out = []
    for entry in yaml.safe_load((CASES / "cases.yaml").read_text(encoding="utf-8")):
        expect = {caller: {seen: Fraction(p) for seen, p in fates.items()}
                  for caller, fates in (entry.get("expect") or {}).items()}
        out.append(Case(entry["name"], entry["found"], entry["edits"],
                         (CASES / f"{entry['name']}.rules").read_text(encoding="utf-8"),
                         entry["loads"], expect, entry.get("xfail")))
    return out
