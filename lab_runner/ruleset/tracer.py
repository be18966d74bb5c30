"""Follow a new connection's first packet through a ruleset, with exact outcome probabilities.

The packet is a distribution over states, not a tree of paths: at each rule, every way of
reaching it that left the packet the same (addresses, mark, NAT done) is one state with the sum
of their probabilities. Time and memory so grow with the rules and the distinct states, not with
2^(random rules): twenty `-m statistic --probability 0.5 -j LOG` rules keep one state.
Each trace is bounded (Limits: packet states at one rule, seconds) and says which limit it hit.
"""

from __future__ import annotations

import ipaddress
import time
import weakref
from dataclasses import dataclass, replace
from fractions import Fraction

from lab_runner.ruleset.parse import Rule, Ruleset
from lab_runner.ruleset.semantics import (MATCHERS, NO_OP_TARGETS, ONE, TARGETS, State, Step,
                                          TraceError, TraceLimit, UnsupportedRule, nth_rule,
                                          recent_update, redirect)

__all__ = ["Limits", "Outcome", "Packet", "Step", "Trace", "TraceError", "TraceLimit",
           "UnsupportedRule", "trace"]

MAX_DEPTH = 64
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
ZERO_NET = ipaddress.ip_network("0.0.0.0/8")
LIMITED_BROADCAST = ipaddress.ip_address("255.255.255.255")
NAT_TARGETS = frozenset({"DNAT", "SNAT", "MASQUERADE", "REDIRECT"})
FATE_FIELDS = ("verdict", "dnat", "masquerade", "snat", "route")


@dataclass(frozen=True)
class Limits:
    """How far tracing may go. Distinct packet states at one rule bound a trace's memory (each
    state is small, and their paths share their steps); `seconds` bound one trace, and
    `ruleset_seconds` all traces over one ruleset object, which is one submission's grade (a
    grade traces some 20-30 packets). Hitting any raises TraceLimit naming it."""

    max_states: int = 20_000
    seconds: float = 5.0
    ruleset_seconds: float = 15.0


# Seconds traced so far over each live Ruleset object (by id; an entry goes with its ruleset).
_SPENT: dict[int, float] = {}


def _spent(ruleset: Ruleset) -> float:
    key = id(ruleset)
    if key not in _SPENT:
        _SPENT[key] = 0.0
        weakref.finalize(ruleset, _SPENT.pop, key, None)
    return _SPENT[key]


DEFAULT_LIMITS = Limits()


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
    # The node's routes, (network, interface), for `-o` when out_interface is not given: the
    # longest prefix for the address after DNAT wins, as the kernel's routing decides.
    routes: tuple[tuple[str, str], ...] = ()
    # The node's bridges with br_netfilter on (the pod bridge): a packet that came in by one and
    # is DNATed to an address behind it again is bridged, not routed (see _Tracer.in_interface).
    bridges: tuple[str, ...] = ()

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
    # Every rule matched on some way to this outcome, in the order a packet meets them (ways
    # that end alike are one outcome: see the module docstring).
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

    def fates(self, fields: tuple[str, ...] = FATE_FIELDS) -> tuple[Outcome, ...]:
        """The outcomes merged wherever they agree on `fields` (by default what a caller and a
        pod can see: verdict, DNAT, masquerade, SNAT, route; not the mark), probabilities
        summed and paths joined: one line of feedback per fate, however many ways lead there."""
        merged: dict[tuple, Outcome] = {}
        for o in self.outcomes:
            key = tuple(getattr(o, name) for name in fields)
            if key in merged:
                had = merged[key]
                path = tuple(dict.fromkeys(had.path + o.path))  # each step once, first first
                o = replace(had, probability=had.probability + o.probability, path=path)
            merged[key] = o
        return tuple(merged.values())


def trace(ruleset: Ruleset, packet: Packet, limits: Limits = DEFAULT_LIMITS) -> Trace:
    """Every outcome of `packet` through `ruleset`, with probabilities summing to exactly 1.

    The packet crosses the hooks in the kernel's order (raw, mangle, nat, filter, security at
    each hook that has them), splitting at every `-m statistic` rule. A rule with
    `--probability p` matches with exactly lround(p * 2^31) / 2^31: libxt_statistic stores that
    u32 and xt_statistic matches when a 31-bit random number is below it; `--mode nth --every N`
    with 1/N (see semantics). The packet is the first of a NEW connection to a fresh node:
    `--ctstate NEW` matches and `-m recent --rcheck` finds no entry. Raises UnsupportedRule
    ("cannot model … at line N") for a rule it does not model, rather than guess, and TraceLimit
    when `limits` are reached.
    """
    start = State(packet.src, packet.dst, packet.sport, packet.dport, packet.mark)
    began = time.monotonic()
    try:
        return Trace(packet, tuple(_Tracer(ruleset, packet, limits).run(start)))
    finally:
        _SPENT[id(ruleset)] = _spent(ruleset) + time.monotonic() - began


class _Ways:
    """A distribution over states: each state's probability and the steps that led to it.

    The steps are a shared graph, so that adding one or merging two ways costs the same however
    long the paths are: None (no step), ("step", before, key, Step) or ("join", one, other).
    A step's key is where the packet met it (hook number, rule index in each calling chain…),
    so sorting the union of merged ways' steps gives the order of traversal (_path)."""

    __slots__ = ("mass",)

    def __init__(self):
        self.mass: dict = {}  # key -> [probability, steps]

    def add(self, key, p: Fraction, steps) -> None:
        found = self.mass.get(key)
        if found is None:
            self.mass[key] = [p, steps]
        else:
            found[0] += p
            if steps is not found[1]:
                found[1] = ("join", found[1], steps)

    def merge(self, other: "_Ways") -> None:
        for key, (p, steps) in other.mass.items():
            self.add(key, p, steps)

    def __len__(self) -> int:
        return len(self.mass)


def _path(steps) -> tuple[Step, ...]:
    """The steps of a (merged) way in the order a packet meets them, each once."""
    found: dict = {}
    seen: set[int] = set()
    todo = [steps]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node[0] == "step":
            found[node[2]] = node[3]
            todo.append(node[1])
        else:
            todo += node[1:]
    return tuple(found[key] for key in sorted(found))


class _Tracer:
    """Walks the hooks and chains for one packet; implements semantics.Context for the matches."""

    def __init__(self, ruleset: Ruleset, packet: Packet, limits: Limits):
        self.ruleset = ruleset
        self.packet = packet
        self.proto = packet.protocol.lower()
        self.local_nets = [ipaddress.ip_network(a) for a in packet.local_addresses] + [LOOPBACK]
        self.broadcasts = {LOOPBACK.broadcast_address} | _subnet_broadcasts(packet)
        self.limits = limits
        left = limits.ruleset_seconds - _spent(ruleset)
        self.deadline = time.monotonic() + min(limits.seconds, left)
        self.deadline_is_the_grades = left < limits.seconds

    # -- hooks -------------------------------------------------------------------------------
    def is_local(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in net for net in self.local_nets)

    def address_type(self, address: str) -> str:
        """The type the kernel's local routing table gives the address (inet_addr_type): the
        zero network and 255.255.255.255 are BROADCAST, 224/4 MULTICAST, the node's own
        addresses (127/8 too) LOCAL, the broadcast address of each of its subnets shorter than
        /31 (known from Packet.routes) BROADCAST, and every other address UNICAST."""
        ip = ipaddress.ip_address(address)
        if ip in ZERO_NET or ip == LIMITED_BROADCAST or ip in self.broadcasts:
            return "BROADCAST"
        if ip.is_multicast:
            return "MULTICAST"
        return "LOCAL" if self.is_local(address) else "UNICAST"

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
        ways = _Ways()
        ways.add((start, "ACCEPT"), ONE, None)
        ways = self.hooks(ways, self.first_hooks(), 0)
        outcomes: list[Outcome] = []
        by_route: dict[str, tuple[list, _Ways]] = {}
        for (state, verdict), (p, steps) in ways.mass.items():
            if verdict != "ACCEPT":
                outcomes.append(self.outcome(p, state, verdict, "dropped", steps))
                continue
            route, rest = self.routed_hooks(state)
            by_route.setdefault(route, (rest, _Ways()))[1].add((state, verdict), p, steps)
        for route, (rest, group) in by_route.items():
            for (state, verdict), (p, steps) in self.hooks(group, rest, 100).mass.items():
                outcomes.append(self.outcome(p, state, verdict, route, steps))
        return outcomes

    def hooks(self, ways: _Ways, hooks: list[tuple[str, str]], first: int) -> _Ways:
        """Carry (state, verdict) ways through the hooks; only ACCEPTed ones go on."""
        for number, (table, chain) in enumerate(hooks, start=first):
            if table not in self.ruleset.tables:
                continue
            going, nxt = _Ways(), _Ways()
            for (state, verdict), (p, steps) in ways.mass.items():
                if verdict == "ACCEPT":
                    going.add(replace(state, hook=chain), p, steps)
                else:
                    nxt.add((state, verdict), p, steps)
            nxt.merge(self.builtin(going, table, chain, number))
            ways = nxt
        return ways

    def builtin(self, ways: _Ways, table: str, chain: str, number: int) -> _Ways:
        policy = self.ruleset.chain(table, chain).policy or "ACCEPT"
        fell, ended = self.chain(ways, table, chain, 0, (number,))
        for state, (p, steps) in fell.mass.items():
            if policy != "ACCEPT":
                steps = ("step", steps, (number, 1 << 30), Step(table, chain, 0, f"policy {policy}"))
            ended.add((state, policy), p, steps)
        return ended

    def redirect(self, rule: Rule, state: State):
        """REDIRECT's address: 127.0.0.1 for the node's own packets, else the node's first
        address (Packet.local_addresses order) in a subnet routed by the incoming interface."""
        if self.packet.local:
            return redirect(rule, state, "127.0.0.1")
        inbound = self.packet.in_interface
        for net, iface in self.packet.routes:
            network = ipaddress.ip_network(net, strict=False)
            if iface == inbound and network.prefixlen:
                for address in self.packet.local_addresses:
                    if ipaddress.ip_address(address) in network:
                        return redirect(rule, state, address)
        if not self.packet.routes:
            raise UnsupportedRule(rule, "target REDIRECT")  # as unsupported(routes=False) says
        return redirect(rule, state, None)

    def outcome(self, p: Fraction, st: State, verdict: str, route: str, steps) -> Outcome:
        return Outcome(p, verdict, st.dnat, st.masquerade, st.snat, st.mark, route, _path(steps))

    # -- chains and rules --------------------------------------------------------------------
    def chain(self, ways: _Ways, table: str, name: str, depth: int,
              where: tuple[int, ...]) -> tuple[_Ways, _Ways]:
        """All `ways` (states) through one chain, rule by rule: (those that fall off its end or
        RETURN, {(state, verdict): …} of those a verdict ended). `where` orders steps."""
        if depth > MAX_DEPTH:
            raise TraceError(f"{table} {name}: more than {MAX_DEPTH} nested jumps (a jump loop?)")
        rules = self.ruleset.chain(table, name).rules
        returned, ended = _Ways(), _Ways()
        for i, rule in enumerate(rules):
            if not ways.mass:
                break
            self.check_limits(rule, ways)
            key = (*where, i)
            step = Step(rule.table, rule.chain, i + 1, rule.text, rule)
            going, nxt = _Ways(), _Ways()
            for state, (p, steps) in ways.mass.items():
                chance, after, missed = self.matches(rule, state)
                if chance != ONE:
                    nxt.add(missed, p * (ONE - chance), steps)
                if chance:
                    going.add(after, p * chance, ("step", steps, key, step))
            if going.mass:
                self.target(rule, going, depth, key, nxt, returned, ended)
            ways = nxt
        returned.merge(ways)
        return returned, ended

    def check_limits(self, rule: Rule, ways: _Ways) -> None:
        if len(ways) > self.limits.max_states:
            raise TraceLimit(rule, f"more than {self.limits.max_states} distinct packet states "
                                   "at one rule (the tracer's state limit, Limits.max_states)")
        if time.monotonic() > self.deadline:
            if self.deadline_is_the_grades:
                raise TraceLimit(rule, f"tracing these rules took more than "
                                       f"{self.limits.ruleset_seconds:g} s in all (the time "
                                       "limit of one grade, Limits.ruleset_seconds)")
            raise TraceLimit(rule, f"the trace took more than {self.limits.seconds:g} s (the "
                                   "tracer's time limit, Limits.seconds)")

    def matches(self, rule: Rule, state: State) -> tuple[Fraction, State, State]:
        """(the chance the rule matches, the state if it matches, the state if not): only
        statistic matches are uncertain; a recent match changes its list whether the rule
        goes on to match or not; an nth rule remembers that this packet drew at it."""
        for key, inv, value in rule.basic:
            if not self.basic(rule, key, inv, value, state):
                return Fraction(0), state, state
        chance = ONE
        for match in rule.matches:
            result = MATCHERS.get(match.module)
            if result is None:
                raise UnsupportedRule(rule, f"-m {match.module}")
            value = result(self, rule, match.args, state)
            if match.module == "recent":
                if chance != ONE:
                    raise UnsupportedRule(rule, "-m recent after -m statistic in one rule")
                state = recent_update(match.args, state)
            if value is False:
                return Fraction(0), state, state
            if isinstance(value, Fraction):
                chance *= value
        matched = state
        if chance != ONE and nth_rule(rule):
            drawn = (rule.table, rule.chain, rule.line_no, rule.text)
            if drawn in state.nth_seen:
                raise UnsupportedRule(rule, "-m statistic --mode nth reached twice by one packet")
            state = matched = replace(state, nth_seen=state.nth_seen | {drawn})
        return chance, matched, state

    def basic(self, rule: Rule, key: str, inverted: bool, value: str, state: State) -> bool:
        if key in ("s", "d"):
            address = ipaddress.ip_address(state.src if key == "s" else state.dst)
            hit = any(address in ipaddress.ip_network(part, strict=False)
                      for part in value.split(","))  # -s a,b: iptables adds a rule per address
        elif key == "p":
            wanted = {"6": "tcp", "17": "udp", "1": "icmp"}.get(value, value.lower())
            hit = wanted in ("all", "0") or wanted == self.proto
        elif key == "i":
            hit = _iface(value, self.in_interface(rule, state))
        elif key == "o":
            hit = _iface(value, self.out_interface(rule, state))
        else:  # -f: only second and later fragments; a first packet is never one
            hit = False
        return hit != inverted

    def in_interface(self, rule: Rule, state: State) -> str:
        """The input device a rule sees. None in OUTPUT and for the node's own packets. In
        POSTROUTING, ip_output() passes the device the packet came in by (skb->dev), except for
        a packet br_netfilter bridges: one that came in by a bridge and whose DNATed address is
        routed out of that bridge again (br_nf_pre_routing_finish's bridged DNAT), whose
        POSTROUTING hook br_nf_post_routing() calls with no input device."""
        inbound = self.packet.in_interface
        if self.packet.local or inbound is None:
            return ""
        if state.hook == "POSTROUTING" and inbound in self.packet.bridges and \
                state.dst != self.packet.dst and self.out_interface(rule, state) == inbound:
            return ""
        return inbound

    def out_interface(self, rule: Rule, state: State) -> str:
        if state.hook in ("PREROUTING", "INPUT"):
            return ""
        if self.packet.out_interface is not None:
            return self.packet.out_interface
        if self.is_local(state.dst):
            return "lo"
        address = ipaddress.ip_address(state.dst)
        routes = [(ipaddress.ip_network(net, strict=False), iface)
                  for net, iface in self.packet.routes]
        matching = [(net.prefixlen, iface) for net, iface in routes if address in net]
        if not matching:
            raise TraceError(f"{rule.table} {rule.chain} (line {rule.line_no}) matches on the output "
                             "interface: give the packet an out_interface or the node's routes"
                             f"\n    {rule.text}")
        return max(matching)[1]

    def target(self, rule: Rule, going: _Ways, depth: int, key: tuple[int, ...], nxt: _Ways,
               returned: _Ways, ended: _Ways) -> None:
        """Apply the rule's target to the states that matched it: those that go on join `nxt`,
        those that leave the chain `returned`, those a verdict ends `ended`."""
        name = rule.target
        if name is None or name in NO_OP_TARGETS:
            if name == "CONNMARK" and "--restore-mark" in rule.target_args:
                raise UnsupportedRule(rule, "CONNMARK --restore-mark")
            nxt.merge(going)
            return
        if self.ruleset.has_chain(rule.table, name) and name not in ("ACCEPT", "DROP", "RETURN"):
            fell, verdicts = self.chain(going, rule.table, name, depth + 1, key)
            (returned if rule.goto else nxt).merge(fell)  # a goto'd chain returns to our caller
            ended.merge(verdicts)
            return
        if name == "RETURN":
            returned.merge(going)
            return
        if name in ("ACCEPT", "DROP", "REJECT"):
            for state, (p, steps) in going.mass.items():
                ended.add((state, name), p, steps)
            return
        handler = TARGETS.get(name)
        if name == "REDIRECT":
            handler = self.redirect
        if handler is None:
            raise UnsupportedRule(rule, f"target {name}")
        step = Step(rule.table, rule.chain, key[-1] + 1, rule.text, rule)
        for state, (p, steps) in going.mass.items():
            _, after, verdict = handler(rule, state)
            if name in NAT_TARGETS:
                after = replace(after, nat_steps=after.nat_steps + (step,))
            if verdict is None:
                nxt.add(after, p, steps)
            else:
                ended.add((after, verdict), p, steps)


def _subnet_broadcasts(packet: Packet) -> set:
    """The broadcast address of each subnet (shorter than /31) the node has an address in."""
    found = set()
    for net, _ in packet.routes:
        network = ipaddress.ip_network(net, strict=False)
        if 0 < network.prefixlen < 31 and any(ipaddress.ip_address(a) in network
                                              for a in packet.local_addresses):
            found.add(network.broadcast_address)
    return found


def _iface(pattern: str, name: str) -> bool:
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern
