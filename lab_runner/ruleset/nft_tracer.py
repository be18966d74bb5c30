"""Follow a new connection's first packet through an nftables ruleset, with exact probabilities.

The nftables counterpart of tracer.py, with its Packet, Outcome and Trace: the packet crosses
the base chains of every ip/inet table at each hook in priority order (prerouting, then input or
forward by the route of its address after DNAT, postrouting; a node's own packet: output,
postrouting, and back in through prerouting and input when it stays on the node). A `numgen
random mod N vmap` splits the packet into N ways of exactly 1/N each; verdict maps and sets are
looked up by value. A first packet is `ct state new`; dynamic sets (affinity) hold what the
ruleset lists: nothing in a render, a live node's entries in its `nft list ruleset`. A
statement the tracer does not model raises NftUnsupported naming its line, rather than guessing.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import NamedTuple

from lab_runner.ruleset.nft_model import (Chain, Element, Lookup, MarkSet, Match, Nat, NftRuleset,
                                          NoOp, Rule, SetUpdate, Table, Unmodelled, Verdict)
from lab_runner.ruleset.semantics import TraceError, TraceLimit, UnsupportedRule
from lab_runner.ruleset.tracer import DEFAULT_LIMITS, Limits, Outcome, Packet, Trace

__all__ = ["NftStep", "NftUnsupported", "Outcome", "Packet", "Trace", "trace"]

MAX_DEPTH = 64
ONE = Fraction(1)
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132}
_NEEDS_PROTO = ("tcp ", "udp ", "sctp ")
# How a key part is spelled when it equals the packet's value as the tracer writes it (by the
# selector's last word); anything else (prefixes, ranges, 6 for tcp, 0x10) is compared by value.
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_ADDRESS = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_NAMES = re.compile("|".join(PROTOCOLS))
_PLAIN = {"saddr": _ADDRESS, "daddr": _ADDRESS, "l4proto": _NAMES, "protocol": _NAMES,
          "dport": _DECIMAL, "sport": _DECIMAL, "mark": _DECIMAL}
_SAME = re.compile(r"[^/\-]*")  # ct state, fib types, interface names: compared as text
NAT_MANIP = {"prerouting": "dst", "output": "dst", "postrouting": "src", "input": "src"}


class NftUnsupported(UnsupportedRule):
    """A rule holds something the tracer does not model: "cannot model … at line N (table
    chain)", an UnsupportedRule so that whatever handles the iptables tracer's refusals (static
    grading's Undecidable) handles these alike."""


class NftStep(NamedTuple):
    """A rule the packet matched (or a base chain's policy): table, chain, its 1-based number
    in the chain, its text, and the line of the ruleset text it came from."""

    table: str
    chain: str
    number: int
    text: str
    line: int


@dataclass(frozen=True)
class _State:
    src: str
    dst: str
    dport: int
    mark: int
    dnat: tuple[str, int] | None = None
    snat: tuple[str, int | None] | None = None
    masquerade: bool = False


class _Ways:
    """A distribution over (state, verdict): probabilities summed, the steps of every way there
    kept in order of first meeting."""

    def __init__(self):
        self.mass: dict = {}

    def add(self, key, p: Fraction, path: tuple) -> None:
        if key in self.mass:
            had, old = self.mass[key]
            self.mass[key] = (had + p, old if old == path else tuple(dict.fromkeys(old + path)))
        else:
            self.mass[key] = (p, path)

    def merge(self, other: "_Ways") -> None:
        for key, (p, path) in other.mass.items():
            self.add(key, p, path)

    def items(self):
        return [(key, p, path) for key, (p, path) in self.mass.items()]


def trace(ruleset: NftRuleset, packet: Packet, limits: Limits = DEFAULT_LIMITS) -> Trace:
    """Every outcome of `packet` through `ruleset`, with probabilities summing to exactly 1.
    Raises TraceLimit at tracer.py's limits (distinct states at one rule, seconds a trace)."""
    start = _State(packet.src, packet.dst, packet.dport, packet.mark)
    return Trace(packet, tuple(_Tracer(ruleset, packet, limits).run(start)))


class _Tracer:
    def __init__(self, ruleset: NftRuleset, packet: Packet, limits: Limits):
        self.ruleset = ruleset
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.packet = packet
        self.proto = packet.protocol.lower()
        self.local_nets = [ipaddress.ip_network(a) for a in packet.local_addresses] + [LOOPBACK]
        self.indexes: dict = {}  # (id(elements), selectors) -> _index(…)

    def is_local(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in net for net in self.local_nets)

    # -- hooks ------------------------------------------------------------------------------
    def run(self, start: _State) -> list[Outcome]:
        ways = _Ways()
        ways.add((start, "accept"), ONE, ())
        first = ["output", "postrouting"] if self.packet.local else ["prerouting"]
        ways = self.hooks(ways, first)
        outcomes, by_route = [], {}
        for (state, verdict), p, path in ways.items():
            if verdict != "accept":
                outcomes.append(self.outcome(p, state, verdict, "dropped", path))
                continue
            local = self.is_local(state.dst)
            if self.packet.local:
                # A packet for the node itself loops back in through lo: prerouting and input
                # see it again, their NAT chains do not (its NAT was decided on the way out).
                route, rest = ("local", ["prerouting", "input"]) if local else ("output", [])
            else:
                route, rest = ("local", ["input"]) if local else ("forward",
                                                                   ["forward", "postrouting"])
            by_route.setdefault(route, (rest, _Ways()))[1].add((state, verdict), p, path)
        for route, (rest, group) in by_route.items():
            for (state, verdict), p, path in self.hooks(group, rest, looped=self.packet.local).items():
                outcomes.append(self.outcome(p, state, verdict, route, path))
        return outcomes

    def outcome(self, p: Fraction, state: _State, verdict: str, route: str, path) -> Outcome:
        # As tracer.py: a packet dropped after routing keeps its route ("forward", "local").
        return Outcome(p, verdict.upper(), state.dnat, state.masquerade, state.snat, state.mark,
                       route, path)

    def hooks(self, ways: _Ways, hooks: list[str], looped: bool = False) -> _Ways:
        for hook in hooks:
            for table, chain in self.ruleset.base_chains(hook):
                if chain.type == "nat" and looped:
                    continue
                going, nxt = _Ways(), _Ways()
                for (state, verdict), p, path in ways.items():
                    skip = verdict != "accept" or (chain.type == "nat" and self.nat_done(
                        state, hook))
                    (nxt if skip else going).add((state, verdict), p, path)
                nxt.merge(self.base_chain(going, table, chain))
                ways = nxt
        return ways

    @staticmethod
    def nat_done(state: _State, hook: str) -> bool:
        """Once a NAT chain has mapped the connection, later NAT chains of the hook do not run
        (nf_nat_inet_fn stops at the first that sets the mapping)."""
        if NAT_MANIP[hook] == "dst":
            return state.dnat is not None
        return state.masquerade or state.snat is not None

    def base_chain(self, ways: _Ways, table: Table, chain: Chain) -> _Ways:
        """Through one base chain: accept lets the packet on to the next, drop and reject end
        it; falling off the end takes the chain's policy."""
        entering = _Ways()
        for (state, _), p, path in ways.items():
            entering.add(state, p, path)
        fell, ended = self.chain(entering, table, chain, 0)
        for state, p, path in fell.items():
            if chain.policy != "accept":
                path += (NftStep(table.name, chain.name, 0, f"policy {chain.policy}",
                                 chain.line_no),)
            ended.add((state, chain.policy), p, path)
        return ended

    # -- chains and rules -------------------------------------------------------------------
    def chain(self, ways: _Ways, table: Table, chain: Chain, depth: int) -> tuple[_Ways, _Ways]:
        """(ways that fall off the end or return, {(state, verdict): …} of those a verdict
        ended: accept, drop, reject)."""
        if depth > MAX_DEPTH:
            raise TraceError(f"table {table.name} chain {chain.name}: more than {MAX_DEPTH} "
                             "nested jumps (a jump loop?)")
        returned, ended = _Ways(), _Ways()
        for number, rule in enumerate(chain.rules, start=1):
            if not ways.mass:
                break
            if len(ways.mass) > self.limits.max_states:
                raise TraceLimit(rule, f"more than {self.limits.max_states} distinct packet "
                                       "states at one rule (Limits.max_states)")
            if time.monotonic() > self.deadline:
                raise TraceLimit(rule, f"the trace took more than {self.limits.seconds:g} s "
                                       "(Limits.seconds)")
            nxt = _Ways()
            for state, p, path in ways.items():
                self.rule(rule, number, table, state, p, path, depth, nxt, returned, ended)
            ways = nxt
        returned.merge(ways)
        return returned, ended

    def rule(self, rule: Rule, number: int, table: Table, state: _State, p: Fraction, path,
             depth: int, nxt: _Ways, returned: _Ways, ended: _Ways) -> None:
        """One way through one rule, statement by statement; a lookup may split it."""
        step = NftStep(table.name, rule.chain, number, rule.text, rule.line_no)
        todo = [(0, state, p, path)]
        while todo:
            at, state, p, path = todo.pop()
            if at == len(rule.statements):  # every statement passed, no verdict: next rule
                nxt.add(state, p, path if step in path else path + (step,))
                continue
            statement = rule.statements[at]
            if isinstance(statement, Lookup):
                missed = ONE
                for verdict, chance in self.lookup(rule, table, statement, state).items():
                    missed -= chance
                    self.verdict(rule, table, verdict, state, p * chance, path + (step,),
                                 depth, nxt, returned, ended, rest=(at + 1, todo))
                if missed:  # no element for the key: the rule stops here, the packet goes on
                    nxt.add(state, p * missed, path)
            elif isinstance(statement, Match):
                if self.match(rule, table, statement, state):
                    todo.append((at + 1, state, p, path))
                else:
                    nxt.add(state, p, path)
            elif isinstance(statement, Verdict):
                self.verdict(rule, table, statement, state, p, path + (step,), depth, nxt,
                             returned, ended, rest=(at + 1, todo))
            elif isinstance(statement, MarkSet):
                todo.append((at + 1, replace(state, mark=_mark(statement, state.mark)), p, path))
            elif isinstance(statement, Nat):
                # NAT statements end the chain with accept (nft_nat_eval's verdict).
                ended.add((self.nat(rule, statement, state), "accept"), p, path + (step,))
            elif isinstance(statement, (NoOp, SetUpdate)):
                todo.append((at + 1, state, p, path))
            else:
                text = statement.text if isinstance(statement, Unmodelled) else str(statement)
                raise NftUnsupported(rule, f"`{text}`")

    def verdict(self, rule: Rule, table: Table, verdict: Verdict, state: _State, p: Fraction,
                path: tuple, depth: int, nxt: _Ways, returned: _Ways, ended: _Ways,
                rest: tuple) -> None:
        """Apply a verdict to one way; a jump's returning ways go on with the rule's next
        statement (`rest`: its index and the rule's work list)."""
        kind = verdict.kind
        if kind in ("accept", "drop", "reject"):
            ended.add((state, kind), p, path)
        elif kind == "return":
            returned.add(state, p, path)
        elif kind == "continue":
            nxt.add(state, p, path)
        else:
            target = table.chains.get(verdict.target)
            if target is None or target.base:
                raise NftUnsupported(rule, f"{kind} to {verdict.target!r}, which is not a "
                                           "regular chain of this table")
            start = _Ways()
            start.add(state, p, path)
            fell, finished = self.chain(start, table, target, depth + 1)
            ended.merge(finished)
            if kind == "goto":  # the goto'd chain returns to our caller, not to us
                returned.merge(fell)
            else:
                at, todo = rest
                todo += [(at, s, q, way) for s, q, way in fell.items()]

    def nat(self, rule: Rule, nat: Nat, state: _State) -> _State:
        if nat.kind == "dnat":
            port = nat.port if nat.port is not None else state.dport
            return replace(state, dst=nat.address, dport=port, dnat=(nat.address, port))
        if nat.kind == "snat":
            return replace(state, src=nat.address, snat=(nat.address, nat.port))
        return replace(state, masquerade=True)

    # -- lookups ----------------------------------------------------------------------------
    def elements_of(self, rule: Rule, table: Table, name: str) -> list[Element]:
        named = table.sets.get(name)
        if named is None:
            raise NftUnsupported(rule, f"@{name}, which is not a set or map of table "
                                       f"{table.name}")
        return named.elements

    def lookup(self, rule: Rule, table: Table, lookup: Lookup,
               state: _State) -> dict[Verdict, Fraction]:
        """The chance of each verdict the map gives (no entry: the rest of the mass)."""
        elements = (self.elements_of(rule, table, lookup.map_ref) if lookup.map_ref
                    else lookup.elements)
        found: dict[Verdict, Fraction] = {}
        if lookup.numgen:
            mod, offset = lookup.numgen
            for drawn in range(offset, offset + mod):
                for element in elements:
                    if _in_item(rule, "numgen", str(drawn), element.key[0]):
                        found[element.value] = found.get(element.value, 0) + Fraction(1, mod)
                        break
            return found
        element = self.find(rule, lookup.selectors, elements, state)
        if element is None:
            return found
        if not isinstance(element.value, Verdict):
            raise NftUnsupported(rule, f"a map of {element.value!r} used as a vmap")
        return {element.value: ONE}

    def find(self, rule: Rule, selectors: tuple[str, ...], elements, state: _State):
        """The element whose key holds the packet's values, or None. Keys written as the packet's
        own values are found by hashing (a 10,000-Service map is one lookup), the rest
        (prefixes, ranges, protocol numbers) one by one."""
        values = [self.value(rule, selector, state) for selector in selectors]
        if any(s.startswith(_NEEDS_PROTO) and s.split()[0] != self.proto for s in selectors):
            return None  # `tcp dport` also means "is TCP" (nft adds that dependency)
        index = self.indexes.get((id(elements), selectors))
        if index is None:
            index = self.indexes[(id(elements), selectors)] = _index(rule, selectors, elements)
        exact, others = index
        hit = exact.get(tuple(values))
        if hit is not None:
            return hit
        for element in others:
            if self.key_matches(rule, selectors, values, element.key):
                return element
        return None

    def key_matches(self, rule: Rule, selectors, values, key: tuple[str, ...]) -> bool:
        if len(key) != len(selectors):
            raise NftUnsupported(rule, f"an element {' . '.join(key)} of {len(key)} parts for "
                                       f"a key of {len(selectors)}")
        return all(_in_item(rule, sel, value, item)
                   for sel, value, item in zip(selectors, values, key))

    def match(self, rule: Rule, table: Table, match: Match, state: _State) -> bool:
        selectors = match.selectors
        if any(s.startswith(_NEEDS_PROTO) and s.split()[0] != self.proto for s in selectors):
            return False  # not even `!=`: the rule's implied protocol test fails first
        if match.mask is not None:
            masked = int(self.value(rule, selectors[0], state)) & match.mask
            hit = any(_in_item(rule, selectors[0], str(masked), item) for item in match.values)
        elif match.set_ref:
            elements = self.elements_of(rule, table, match.set_ref)
            hit = self.find(rule, selectors, elements, state) is not None
        else:
            values = [self.value(rule, selector, state) for selector in selectors]
            hit = any(self.key_matches(rule, selectors, values, tuple(item.split(" . ")))
                      for item in match.values)
        return hit != match.negate

    def value(self, rule: Rule, selector: str, state: _State) -> str:
        """What the packet holds for `selector` at this point."""
        if selector == "ip saddr":
            return state.src
        if selector == "ip daddr":
            return state.dst
        if selector in ("meta l4proto", "ip protocol"):
            return self.proto
        if selector.endswith(" dport"):
            return str(state.dport)
        if selector.endswith(" sport"):
            return str(self.packet.sport)
        if selector == "meta mark":
            return str(state.mark)
        if selector == "ct state":
            return "new"
        if selector.startswith("fib "):
            address = state.dst if selector.split()[1] == "daddr" else state.src
            return self.address_type(address)
        if selector == "meta iifname" and not self.packet.local:
            return self.packet.in_interface or ""
        if selector == "meta iifname":
            return ""
        if selector == "meta oifname" and self.packet.out_interface is not None:
            return self.packet.out_interface
        raise NftUnsupported(rule, f"`{selector}` (give the packet an out_interface)"
                             if selector == "meta oifname" else f"`{selector}`")

    def address_type(self, address: str) -> str:
        ip = ipaddress.ip_address(address)
        if ip.is_multicast:
            return "multicast"
        if ip == ipaddress.ip_address("255.255.255.255"):
            return "broadcast"
        return "local" if self.is_local(address) else "unicast"


def _index(rule: Rule, selectors: tuple[str, ...], elements) -> tuple[dict, list]:
    """({key: element} of keys spelled as a packet's values, [the other elements])."""
    exact, others = {}, []
    for element in elements:
        if len(element.key) == len(selectors) and all(
                _PLAIN.get(s.split()[-1], _SAME).fullmatch(item)
                for s, item in zip(selectors, element.key)):
            exact.setdefault(element.key, element)
        else:
            others.append(element)
    return exact, others


def _mark(op: MarkSet, mark: int) -> int:
    if op.op == "set":
        return op.value
    if op.op == "or":
        return mark | op.value
    if op.op == "xor":
        return mark ^ op.value
    return mark & op.value


def _in_item(rule: Rule, selector: str, value: str, item: str) -> bool:
    """Does the packet's `value` for `selector` fall in one set item: a value, a prefix
    (a.b.c.d/n) or a range (lo-hi)?"""
    if selector in ("ip saddr", "ip daddr"):
        address = ipaddress.ip_address(value)
        try:
            if "-" in item:
                low, high = (ipaddress.ip_address(a) for a in item.split("-"))
                return low <= address <= high
            return address in ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise NftUnsupported(rule, f"the address {item!r}") from exc
    if selector in ("meta l4proto", "ip protocol"):
        wanted = PROTOCOLS.get(item, None)
        if wanted is None and not item.isdigit():
            raise NftUnsupported(rule, f"the protocol {item!r}")
        return (wanted if wanted is not None else int(item)) == PROTOCOLS.get(value, -1)
    if selector.endswith(("port", "mark")) or selector == "numgen":
        try:
            low, _, high = item.partition("-")
            number = int(value)
            return int(low, 0) <= number <= int(high or low, 0)
        except ValueError as exc:
            raise NftUnsupported(rule, f"the {selector} value {item!r} (a number or a range "
                                       "of numbers is modelled)") from exc
    return value == item  # ct state, fib types, interface names
