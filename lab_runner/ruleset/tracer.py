"""Follow a new connection's first packet through a ruleset, with exact outcome probabilities."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from fractions import Fraction

from lab_runner.ruleset.parse import Rule, Ruleset
from lab_runner.ruleset.semantics import (MATCHERS, NO_OP_TARGETS, ONE, TARGETS, Branch, State,
                                          Step, TraceError, UnsupportedRule)

__all__ = ["Outcome", "Packet", "Step", "Trace", "TraceError", "UnsupportedRule", "trace"]

MAX_DEPTH = 64
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


@dataclass(frozen=True)
class Packet:
    """The first packet of a new connection. in_interface=None means sent by the node itself."""

    src: str
    dst: str
    protocol: str = "tcp"
    sport: int = 40000
    dport: int = 80
    in_interface: str | None = None
    out_interface: str | None = None
    local_addresses: tuple[str, ...] = ()  # the node's own addresses, for addrtype LOCAL
    mark: int = 0

    @property
    def local(self) -> bool:
        return self.in_interface is None


@dataclass(frozen=True)
class Outcome:
    """One way the packet can go, and its exact probability."""

    probability: Fraction
    verdict: str  # ACCEPT, DROP or REJECT
    dnat: tuple[str, int] | None
    masquerade: bool
    snat: tuple[str, int | None] | None
    mark: int
    route: str  # "local" (delivered to the node), "forward" or "output"
    path: tuple[Step, ...]

    def chains(self) -> list[str]:
        """The chains the packet matched rules in, in order, without repeats next to each other."""
        out: list[str] = []
        for step in self.path:
            if not out or out[-1] != step.chain:
                out.append(step.chain)
        return out


@dataclass(frozen=True)
class Trace:
    """All outcomes of one packet; their probabilities sum to exactly 1."""

    packet: Packet
    outcomes: tuple[Outcome, ...]

    def distribution(self) -> dict[tuple, Fraction]:
        """Probability of each (dnat, masquerade, verdict), summed over the paths leading there."""
        out: dict[tuple, Fraction] = {}
        for o in self.outcomes:
            key = (o.dnat, o.masquerade, o.verdict)
            out[key] = out.get(key, Fraction(0)) + o.probability
        return out

    def dnat_distribution(self) -> dict[tuple[str, int] | None, Fraction]:
        """Probability of each DNAT destination (None: not DNATed)."""
        out: dict = {}
        for o in self.outcomes:
            out[o.dnat] = out.get(o.dnat, Fraction(0)) + o.probability
        return out


def trace(ruleset: Ruleset, packet: Packet) -> Trace:
    """Every outcome of `packet` through `ruleset`, with probabilities summing to exactly 1.

    The packet crosses the hooks in the kernel's order (raw, mangle, nat, filter, security at
    each hook that has them), branching at every `-m statistic --mode random` rule. A rule with
    `--probability p` matches with exactly lround(p * 2^31) / 2^31: libxt_statistic stores that
    u32 and xt_statistic matches when a 31-bit random number is below it. The packet is the first
    of a NEW connection: `--ctstate NEW` matches and `-m recent --rcheck` finds no entry. Raises
    UnsupportedRule for a match or target it does not model, rather than guess.
    """
    start = State(packet.src, packet.dst, packet.sport, packet.dport, packet.mark)
    return Trace(packet, tuple(_Tracer(ruleset, packet).run(start)))


class _Tracer:
    """Walks the hooks and chains for one packet; implements semantics.Context for the matches."""

    def __init__(self, ruleset: Ruleset, packet: Packet):
        self.ruleset = ruleset
        self.packet = packet
        self.proto = packet.protocol.lower()
        self.local_nets = [ipaddress.ip_network(a) for a in packet.local_addresses] + [LOOPBACK]

    # -- hooks -------------------------------------------------------------------------------
    def is_local(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in net for net in self.local_nets)

    def first_hooks(self) -> list[tuple[str, str]]:
        if self.packet.local:
            return [("raw", "OUTPUT"), ("mangle", "OUTPUT"), ("nat", "OUTPUT"), ("filter", "OUTPUT"),
                    ("security", "OUTPUT"), ("mangle", "POSTROUTING"), ("nat", "POSTROUTING")]
        return [("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING")]

    def routed_hooks(self, state: State) -> tuple[str, list[tuple[str, str]]]:
        """After the first hooks: deliver locally or forward (decided on the DNATed address)."""
        if self.is_local(state.dst):
            nat_input = [] if self.packet.local else [("nat", "INPUT")]
            return "local", [("mangle", "INPUT"), ("filter", "INPUT"), ("security", "INPUT"),
                             *nat_input]
        if self.packet.local:
            return "output", []
        return "forward", [("mangle", "FORWARD"), ("filter", "FORWARD"), ("security", "FORWARD"),
                           ("mangle", "POSTROUTING"), ("nat", "POSTROUTING")]

    def run(self, start: State) -> list[Outcome]:
        outcomes = []
        for p, state, verdict in self.hooks(ONE, start, self.first_hooks()):
            if verdict != "ACCEPT":
                outcomes.append(self.outcome(p, state, verdict, "dropped"))
                continue
            route, rest = self.routed_hooks(state)
            for q, final, last in self.hooks(p, state, rest):
                outcomes.append(self.outcome(q, final, last, route))
        return outcomes

    def hooks(self, p: Fraction, state: State, hooks: list[tuple[str, str]]) -> list[Branch]:
        branches = [Branch(p, state, "ACCEPT")]
        for table, chain in hooks:
            if table not in self.ruleset.tables:
                continue
            nxt = []
            for prob, st, verdict in branches:
                if verdict != "ACCEPT":
                    nxt.append(Branch(prob, st, verdict))
                    continue
                for q, after, result in self.builtin(replace(st, hook=chain), table, chain):
                    nxt.append(Branch(prob * q, after, result))
            branches = nxt
        return branches

    def builtin(self, state: State, table: str, chain: str) -> list[Branch]:
        policy = self.ruleset.chain(table, chain).policy or "ACCEPT"
        out = []
        for p, st, verdict in self.chain(state, table, chain, 0):
            if verdict in (None, "RETURN"):
                if policy != "ACCEPT":
                    st = replace(st, path=st.path + (Step(table, chain, 0, f"policy {policy}"),))
                verdict = policy
            out.append(Branch(p, st, verdict))
        return out

    def outcome(self, p: Fraction, st: State, verdict: str, route: str) -> Outcome:
        return Outcome(p, verdict, st.dnat, st.masquerade, st.snat, st.mark, route, st.path)

    # -- chains and rules --------------------------------------------------------------------
    def chain(self, state: State, table: str, name: str, depth: int) -> list[Branch]:
        """Every way through one chain: a loop over its rules, recursing only into jumps."""
        if depth > MAX_DEPTH:
            raise TraceError(f"{table} {name}: more than {MAX_DEPTH} nested jumps (a jump loop?)")
        rules = self.ruleset.chain(table, name).rules
        done: list[Branch] = []
        todo = [(ONE, state, 0)]  # (probability, state, next rule index), depth first
        while todo:
            p, st, i = todo.pop()
            if i == len(rules):
                done.append(Branch(p, st, None))
                continue
            rule = rules[i]
            carry_on = []
            for q, matched in self.matches(rule, st):
                if not matched:
                    carry_on.append((p * q, st, i + 1))
                    continue
                for r, after, verdict in self.target(rule, st.step(rule, i + 1), depth):
                    if verdict is None:
                        carry_on.append((p * q * r, after, i + 1))
                    else:  # RETURN ends this chain like falling off its end
                        done.append(Branch(p * q * r, after, None if verdict == "RETURN" else verdict))
            todo.extend(reversed(carry_on))
        return done

    def matches(self, rule: Rule, state: State) -> list[tuple[Fraction, bool]]:
        """[(probability, matched)]: only statistic rules split; the rest are certain."""
        if not all(self.basic(rule, key, inv, value, state) for key, inv, value in rule.basic):
            return [(ONE, False)]
        chance = ONE
        for match in rule.matches:
            result = MATCHERS.get(match.module)
            if result is None:
                raise UnsupportedRule(rule, f"-m {match.module}")
            value = result(self, rule, match.args, state)
            if value is False:
                return [(ONE, False)]
            if isinstance(value, Fraction):
                chance *= value
        return [(p, m) for p, m in ((chance, True), (ONE - chance, False)) if p]

    def basic(self, rule: Rule, key: str, inverted: bool, value: str, state: State) -> bool:
        if key in ("s", "d"):
            address = state.src if key == "s" else state.dst
            hit = ipaddress.ip_address(address) in ipaddress.ip_network(value, strict=False)
        elif key == "p":
            wanted = {"6": "tcp", "17": "udp", "1": "icmp"}.get(value, value.lower())
            hit = wanted in ("all", "0") or wanted == self.proto
        elif key == "i":
            hit = _iface(value, "" if self.packet.local else self.packet.in_interface or "")
        elif key == "o":
            hit = _iface(value, self.out_interface(rule, state))
        else:  # -f: only second and later fragments; a first packet is never one
            hit = False
        return hit != inverted

    def out_interface(self, rule: Rule, state: State) -> str:
        if state.hook in ("PREROUTING", "INPUT"):
            return ""
        if self.packet.out_interface is None:
            raise TraceError(f"{rule.table} {rule.chain} (line {rule.line_no}) matches on the output "
                             f"interface: give the packet an out_interface\n    {rule.text}")
        return self.packet.out_interface

    def target(self, rule: Rule, state: State, depth: int) -> list[Branch]:
        name = rule.target
        if name is None or name in NO_OP_TARGETS:
            if name == "CONNMARK" and "--restore-mark" in rule.target_args:
                raise UnsupportedRule(rule, "CONNMARK --restore-mark")
            return [Branch(ONE, state, None)]
        if self.ruleset.has_chain(rule.table, name) and name not in ("ACCEPT", "DROP", "RETURN"):
            sub = self.chain(state, rule.table, name, depth + 1)
            back = "RETURN" if rule.goto else None  # a goto'd chain returns to our caller
            return [Branch(p, st, back if v is None else v) for p, st, v in sub]
        if name in ("ACCEPT", "DROP", "REJECT", "RETURN"):
            return [Branch(ONE, state, name)]
        handler = TARGETS.get(name)
        if handler is None:
            raise UnsupportedRule(rule, f"target {name}")
        return [handler(rule, state)]


def _iface(pattern: str, name: str) -> bool:
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern
