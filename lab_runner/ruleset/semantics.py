"""What each match and target the tracer supports does to a new connection's first packet.

Also says, without a packet, which rules the tracer cannot model (`unsupported`), so a submission
using one is refused at intake in both grading modes alike rather than mid-grade.

`-m statistic --mode nth --every N` is modelled as matching with probability exactly 1/N (1 - 1/N
with `!`): the kernel keeps one counter per rule that advances for every packet reaching the
match and matches once per N of them, so over a whole cycle of new connections (the counters back
where they started) each rule gets exactly the share this gives; `--packet` only sets which
connection of the cycle is first and does not change a share. The tracer refuses a packet that
would reach the same nth rule twice (its two draws are not independent then).
`-m recent` is modelled for the first connection from its caller to a fresh node: every list
starts empty, a `--set` earlier on the packet's own way fills it, and `--rcheck`, `--update` or
`--remove` see only that (kube-proxy's sessionAffinity: the first connection is spread, the rule
records where it went). Later connections from the same caller depend on that history.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Callable, NamedTuple, Protocol

from lab_runner.errors import LabError
from lab_runner.ruleset.compare import kernel_probability
from lab_runner.ruleset.parse import Rule

ONE = Fraction(1)
TWO_31 = 1 << 31
RECENT_NAME_KEPT = 199
NO_OP_TARGETS = frozenset({"LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "CONNMARK"})


class TraceError(LabError):
    """The packet cannot be followed (a jump loop, or a rule needs a fact the packet lacks)."""


class UnsupportedRule(TraceError):
    """A rule uses a match or target the tracer does not model; names line, table and chain."""

    def __init__(self, rule: Rule, what: str):
        self.rule = rule
        self.what = what
        super().__init__(f"cannot model {what} at line {rule.line_no} ({rule.table} "
                         f"{rule.chain})\n    {rule.text}")


class TraceLimit(UnsupportedRule):
    """The tracer stopped at a limit (packet states, seconds) while at a rule; names the limit.

    An UnsupportedRule, so that whatever treats "cannot model" (static mode's Undecidable) treats
    it alike: the file is not graded by the tracer, and the message says which limit was hit.
    """

    def __init__(self, rule: Rule, limit: str):
        self.rule = rule
        self.what = limit
        TraceError.__init__(self, f"static grading stopped at line {rule.line_no} ({rule.table} "
                                  f"{rule.chain}): {limit}\n    {rule.text}")


class _StepFields(NamedTuple):
    table: str
    chain: str
    number: int
    text: str


class Step(_StepFields):
    """A rule the packet matched: [table, chain, 1-based rule number, rule text], and `rule`,
    the parsed Rule (None for a chain's policy), to read its target and options through the
    parser (`step.rule.target == "DNAT"`) rather than from the text, which may be spelled
    `--jump DNAT`, `-j DNAT` or `--to-destination=…`. Compared and hashed as the four fields."""

    def __new__(cls, table: str, chain: str, number: int, text: str, rule: Rule | None = None):
        step = super().__new__(cls, table, chain, number, text)
        step.rule = rule
        return step

    def __getnewargs__(self):  # copy and pickle keep the rule
        return (*self, self.rule)


@dataclass(frozen=True)
class State:
    """What the packet is at one point: its addresses after NAT so far, mark, and the NAT rules
    that rewrote it. Two ways through the rules that leave it the same merge into one (the
    tracer sums their probabilities), so the path is kept beside it, not in it."""

    src: str
    dst: str
    sport: int
    dport: int
    mark: int
    hook: str = ""
    dnat: tuple[str, int] | None = None
    snat: tuple[str, int | None] | None = None
    masquerade: bool = False
    nat_steps: tuple[Step, ...] = ()  # the DNAT / SNAT / MASQUERADE rules applied, in order
    nth_seen: frozenset = field(default=frozenset())  # nth rules this packet has drawn at
    recent: tuple[tuple[str, str], ...] = ()  # -m recent hits set on the way, (list, address)


class Branch(NamedTuple):
    """One way a chain or hook can end for a state, with its probability."""

    probability: Fraction
    state: State
    verdict: str | None  # None: fell off / returned; else ACCEPT, DROP, REJECT, RETURN


class Context(Protocol):
    """What a match needs to know beyond the packet's state: its protocol and the node's addresses."""

    proto: str

    def is_local(self, address: str) -> bool: ...

    def address_type(self, address: str) -> str: ...


# -- matches: each returns True, False, or a Fraction (the chance it matches) ------------------

def _options(args: tuple[str, ...]) -> list[tuple[str, bool, tuple[str, ...]]]:
    out: list[tuple[str, bool, tuple[str, ...]]] = []
    invert = False
    for tok in args:
        if tok == "!":
            invert = True
        elif tok.startswith("--"):
            out.append((tok, invert, ()))
            invert = False
        elif out:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + (tok,))
    return out


def _in_ports(spec: str, port: int) -> bool:
    for part in spec.split(","):
        low, sep, high = part.partition(":")
        lo, hi = int(low or 0), int(high or 65535) if sep else int(low)
        if lo <= port <= hi:
            return True
    return False


def _tcp_flags(names: str) -> set[str]:
    every = {"FIN", "SYN", "RST", "PSH", "ACK", "URG"}
    found: set[str] = set()
    for part in names.upper().split(","):
        found |= every if part == "ALL" else set() if part == "NONE" else {part}
    return found


def _ports(t: Context, rule: Rule, args, state: State):
    wanted = {"--dport": state.dport, "--destination-port": state.dport, "--sport": state.sport,
              "--source-port": state.sport, "--dports": state.dport, "--sports": state.sport,
              "--destination-ports": state.dport, "--source-ports": state.sport}
    if t.proto not in ("tcp", "udp"):
        return False
    for name, inv, values in _options(args):
        if name == "--ports":
            hit = _in_ports(values[0], state.dport) or _in_ports(values[0], state.sport)
        elif name in wanted:
            hit = _in_ports(values[0], wanted[name])
        elif name == "--syn":
            hit = t.proto == "tcp"
        elif name == "--tcp-flags":  # the first packet of a TCP connection carries SYN only
            hit = t.proto == "tcp" and ({"SYN"} & _tcp_flags(values[0])) == _tcp_flags(values[1])
        else:
            raise UnsupportedRule(rule, f"{name}")
        if hit == inv:
            return False
    return True


def _statistic(t: Context, rule: Rule, args, state: State):
    opts = {name: values for name, _, values in _options(args)}
    mode = opts.get("--mode", ("",))[0]
    if mode == "random":
        chance = Fraction(min(kernel_probability(opts["--probability"][0]), TWO_31), TWO_31)
    elif mode == "nth":  # a share over a whole cycle of the rule's counter (module docstring)
        chance = Fraction(1, int(opts["--every"][0]))
    else:
        raise UnsupportedRule(rule, f"-m statistic --mode {mode or '(none)'}")
    return ONE - chance if any(inv for _, inv, _ in _options(args)) else chance


def nth_rule(rule: Rule) -> bool:
    """Whether the rule draws from an nth counter (the tracer refuses a packet drawing twice)."""
    return any(m.module == "statistic" and "nth" in m.args for m in rule.matches)


def _mark(t: Context, rule: Rule, args, state: State):
    for _, inv, values in _options(args):
        value, _, mask = values[0].partition("/")
        hit = (state.mark & (int(mask, 0) if mask else 0xFFFFFFFF)) == int(value, 0)
        if hit == inv:
            return False
    return True


def _conntrack(t: Context, rule: Rule, args, state: State):
    current = {"NEW"} | ({"DNAT"} if state.dnat else set()) | ({"SNAT"} if state.snat else set())
    for name, inv, values in _options(args):
        if name not in ("--ctstate", "--state"):
            raise UnsupportedRule(rule, f"-m conntrack {name}")
        hit = bool(current & set(",".join(values).upper().split(",")))
        if hit == inv:
            return False
    return True


# The kernel's address types (libxt_addrtype's names; matched without regard to case).
ADDRESS_TYPES = frozenset({"UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST",
                           "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE"})


def _addrtype(t: Context, rule: Rule, args, state: State):
    """The address's type as the kernel finds it in the node's local routing table (see
    Context.address_type): LOCAL, BROADCAST, MULTICAST, or UNICAST for any other address."""
    options = [(name, inv, set(",".join(values).upper().split(",")), values)
               for name, inv, values in _options(args)]
    for name, _, types, values in options:
        if name not in ("--src-type", "--dst-type") or not types <= ADDRESS_TYPES:
            raise UnsupportedRule(rule, f"-m addrtype {name} {','.join(values)}".rstrip())
    for name, inv, types, _ in options:
        hit = t.address_type(state.src if name == "--src-type" else state.dst) in types
        if hit == inv:
            return False
    return True


def _recent(t: Context, rule: Rule, args, state: State):
    """Whether the recent match matches; the list entry it sets or removes is the tracer's."""
    opts = {name: (inv, values) for name, inv, values in _options(args)}
    entry = recent_entry(args, state)
    needed = int(opts.get("--hitcount", (False, ("1",)))[1][0])
    for action in ("--set", "--rcheck", "--update", "--remove"):
        if action in opts:
            inverted = opts[action][0]
            hit = True if action == "--set" else state.recent.count(entry) >= needed
            return hit != inverted
    return True


def recent_entry(args, state: State) -> tuple[str, str]:
    """(list name, address as the list keeps it) a recent match looks up for this state."""
    opts = {name: values for name, _, values in _options(args)}
    address = state.dst if "--rdest" in opts else state.src
    mask = opts.get("--mask", ("255.255.255.255",))[0]
    kept = ipaddress.ip_network(f"{address}/{mask}", strict=False).network_address
    # iptables keeps 199 characters of a longer name (XT_RECENT_NAME_LEN), so two names alike
    # that far are one list in the kernel.
    return opts.get("--name", ("DEFAULT",))[0][:RECENT_NAME_KEPT], str(kept)


def recent_update(args, state: State) -> State:
    """The state after a recent match: `--set` and `--update` add a hit, `--remove` clears."""
    entry = recent_entry(args, state)
    if "--set" in args or ("--update" in args and entry in state.recent):
        return replace(state, recent=tuple(sorted(state.recent + (entry,))))
    if "--remove" in args:
        return replace(state, recent=tuple(e for e in state.recent if e != entry))
    return state


MATCHERS: dict[str, Callable] = {
    "tcp": lambda t, *a: t.proto == "tcp" and _ports(t, *a),
    "udp": lambda t, *a: t.proto == "udp" and _ports(t, *a),
    "multiport": _ports, "comment": lambda *a: True, "statistic": _statistic, "mark": _mark,
    "conntrack": _conntrack, "state": _conntrack, "addrtype": _addrtype, "recent": _recent,
}


# The options of each match the tracer models; any other makes the rule unsupported.
_PORTS = {"--dport", "--sport", "--destination-port", "--source-port"}
MODELLED_OPTIONS: dict[str, frozenset[str]] = {
    "tcp": frozenset(_PORTS | {"--syn", "--tcp-flags"}), "udp": frozenset(_PORTS),
    "multiport": frozenset({"--dports", "--sports", "--ports", "--destination-ports",
                            "--source-ports"}),
    "comment": frozenset({"--comment"}), "statistic": frozenset({"--mode", "--probability",
                                                                 "--every", "--packet"}),
    "mark": frozenset({"--mark"}), "conntrack": frozenset({"--ctstate"}),
    "state": frozenset({"--state"}), "addrtype": frozenset({"--src-type", "--dst-type"}),
    "recent": frozenset({"--name", "--set", "--rcheck", "--update", "--remove", "--seconds",
                         "--reap", "--hitcount", "--rttl", "--mask", "--rsource", "--rdest"}),
}


def unsupported(ruleset, *, routes: bool = False,
                redirect: bool = False) -> UnsupportedRule | None:
    """The first rule (in table and chain order) the tracer cannot model, as the error it would
    raise when a packet reached it; None when it can model every rule a built-in chain reaches
    (a rule in a chain nothing jumps to never meets a packet, in the tracer or the kernel).
    routes=True: the packets traced will carry the node's routes (Packet.routes), which `-o`
    needs for the output interface; without them it is not modelled (a trace would stop at the
    rule mid-grade). redirect=True (with routes): REDIRECT counts as modelled too: the tracer
    follows it to the incoming interface's address (127.0.0.1 from the node itself), as the
    kernel does (tests/integration/test_differential_kernel.py, with a listener on the node);
    the grading intake asks for both."""
    for table in ruleset.tables.values():
        reached = _reached(table)
        twice = None  # chains one packet may enter twice, found if an nth rule is met
        for chain in table.chains.values():
            if chain.name not in reached:
                continue
            for rule in chain.rules:
                what = _unsupported_rule(rule, ruleset, routes, routes and redirect)
                if what is None and nth_rule(rule):
                    twice = _entered_twice(table) if twice is None else twice
                    if chain.name in twice:
                        what = ("-m statistic --mode nth in a chain one packet can enter twice "
                                "(its two draws are not independent)")
                if what:
                    return UnsupportedRule(rule, what)
    return None


# The built-in chains one packet meets in turn, per route (a table has those it has).
ROUTES = (("PREROUTING", "INPUT"), ("PREROUTING", "FORWARD", "POSTROUTING"),
          ("OUTPUT", "POSTROUTING"))


def _entered_twice(table) -> set[str]:
    """Chains that one packet may enter more than once, on some route, by the jumps alone (the
    intake has refused loops): two rules jumping there, or two built-in chains on its route."""
    counts: dict[str, dict[str, int]] = {}  # built-in chain -> {chain: ways in, at most 2}

    def ways(start: str) -> dict[str, int]:
        found: dict[str, int] = {}
        todo = [start]
        while todo:  # a chain's count rises at most twice, and each rise goes on down
            name = todo.pop()
            before = found.get(name, 0)
            found[name] = min(before + 1, 2)
            if found[name] != before:
                todo += [r.target for r in table.chains[name].rules if r.target in table.chains
                         and not table.chains[r.target].builtin]
        return found

    for name, chain in table.chains.items():
        if chain.builtin:
            counts[name] = ways(name)
    twice: set[str] = set()
    for route in ROUTES:
        total: dict[str, int] = {}
        for hook in route:
            for name, n in counts.get(hook, {}).items():
                total[name] = total.get(name, 0) + n
        twice |= {name for name, n in total.items() if n > 1}
    return twice


def _reached(table) -> set[str]:
    """The chains of a table that its built-in chains reach, by jumps and gotos."""
    reached = {name for name, chain in table.chains.items() if chain.builtin}
    todo = list(reached)
    while todo:
        for rule in table.chains[todo.pop()].rules:
            if rule.target in table.chains and rule.target not in reached:
                reached.add(rule.target)
                todo.append(rule.target)
    return reached


def _unsupported_rule(rule: Rule, ruleset, routes: bool = False,
                      redirect: bool = False) -> str | None:
    if not routes and rule.option("o") is not None:  # the interface comes from the routes
        return f"-o {rule.option('o')[1]} (a match on the output interface)"
    modules = [match.module for match in rule.matches]
    if "statistic" in modules and "recent" in modules[modules.index("statistic"):]:
        return "-m recent after -m statistic in one rule"
    for match in rule.matches:
        known = MODELLED_OPTIONS.get(match.module)
        if known is None:
            return f"-m {match.module}"
        for name, _, values in _options(match.args):
            if name not in known:
                return f"-m {match.module} {name}"
            if match.module == "statistic" and name == "--mode" and values[:1] not in (
                    ("random",), ("nth",)):
                return f"-m statistic --mode {' '.join(values)}"
            if match.module == "addrtype" and \
                    not set(",".join(values).upper().split(",")) <= ADDRESS_TYPES:
                return f"-m addrtype {name} {','.join(values)}"
    name = rule.target
    if name is None or name in ("ACCEPT", "DROP", "REJECT", "RETURN"):
        return None
    if ruleset.has_chain(rule.table, name):
        return None
    if name == "CONNMARK" and "--restore-mark" in rule.target_args:
        return "CONNMARK --restore-mark"
    if name in NO_OP_TARGETS:
        return None
    if name not in TARGETS and (name != "REDIRECT" or not redirect):
        return f"target {name}"
    for option, _, values in _options(rule.target_args):
        if option in ("--to-destination", "--to-source", "--to", "--to-ports") and values \
                and "-" in values[0] and not _range_modelled(rule):
            return f"address or port ranges ({values[0]})"
    return None


def _range_modelled(rule: Rule) -> bool:
    """DNAT and REDIRECT ranges are modelled (nf_nat's choice for a new connection is fixed:
    see dnat_choice); SNAT's, and any range chosen at random (--random, --random-fully), not."""
    return rule.target in ("DNAT", "REDIRECT") and not {"--random", "--random-fully"} & set(
        rule.target_args)


# -- targets -----------------------------------------------------------------------------------

def _address_port(rule: Rule, text: str, default_port: int | None) -> tuple[str, int | None]:
    if "-" in text:
        raise UnsupportedRule(rule, f"address or port ranges ({text})")
    address, _, port = text.partition(":")
    return address, int(port) if port else default_port


def _target_option(rule: Rule, *names: str) -> str:
    for name, _, values in _options(rule.target_args):
        if name in names and values:
            return values[0]
    raise UnsupportedRule(rule, f"target {rule.target} without {names[0]}")


def _mark_target(rule: Rule, state: State) -> Branch:
    value = mask = None
    for name, _, values in _options(rule.target_args):
        bits, _, extra = values[0].partition("/")
        number, mask_bits = int(bits, 0), int(extra, 0) if extra else 0xFFFFFFFF
        value, mask = {"--set-xmark": (number, mask_bits), "--set-mark": (number, number | mask_bits),
                       "--or-mark": (number, number), "--xor-mark": (number, 0),
                       "--and-mark": (0, ~number & 0xFFFFFFFF)}.get(name, (None, None))
    if value is None or mask is None:
        raise UnsupportedRule(rule, f"MARK {' '.join(rule.target_args)}")
    return Branch(ONE, replace(state, mark=(state.mark & ~mask & 0xFFFFFFFF) ^ value), None)


def dnat_destination(rule: Rule) -> tuple[str, int | None]:
    """(address, port or None) a DNAT rule sends to, however the option is spelled."""
    return _address_port(rule, _target_option(rule, "--to-destination", "--to"), None)


def dnat_mistake(got: tuple[str, int | None], want: tuple[str, int | None]) -> str | None:
    """What is wrong with DNAT to `got` where `want` was meant, in a student's words; None if
    nothing is. A missing or other port is named as such, not as another endpoint."""
    if got == want:
        return None
    (address, port), (right_address, right_port) = got, want
    if address != right_address:
        return f"DNATs to {_endpoint(got)}, another address than its endpoint's"
    if port is None:
        return (f"DNATs to its endpoint's address {address} without a port, so the connection "
                f"keeps the port it was sent to instead of {right_port}")
    return f"DNATs to port {port} of its endpoint's address instead of port {right_port}"


def _endpoint(where: tuple[str, int | None]) -> str:
    return where[0] if where[1] is None else f"{where[0]}:{where[1]}"


def _dnat(rule: Rule, state: State) -> Branch:
    text = _target_option(rule, "--to-destination", "--to")
    if "-" in text and _range_modelled(rule):
        address, port = dnat_choice(text, state, persistent="--persistent" in rule.target_args)
    else:
        address, port = _address_port(rule, text, state.dport)
    assert port is not None
    return Branch(ONE, replace(state, dst=address, dport=port, dnat=(address, port)), "ACCEPT")


def dnat_choice(text: str, state: State, persistent: bool = False) -> tuple[str, int]:
    """Where nf_nat sends a new connection for `--to-destination A[-B][:P[-Q]]` (get_unique_tuple,
    Linux 6.x): the address is the first of the range plus reciprocal_scale(jhash2(source,
    initval = original destination, or 0 with --persistent), range size), so always the same for
    one caller and Service; the port is kept when it lies in P-Q, else P (a DNAT without
    --random starts at the range's first port, and a new 5-tuple finds it free)."""
    address, _, ports = text.partition(":")
    low, _, high = address.partition("-")
    if high:
        first, last = int(ipaddress.IPv4Address(low)), int(ipaddress.IPv4Address(high))
        size = last - first + 1
        initval = 0 if persistent else _le32(state.dst)
        # The hash runs over the whole 16-byte address union (an IPv4 address and 3 zero words).
        chosen = first + ((jhash2([_le32(state.src), 0, 0, 0], initval) * size) >> 32)
        low = str(ipaddress.IPv4Address(chosen))
    if not ports:
        return low, state.dport
    lo, _, hi = ports.partition("-")
    port_lo, port_hi = int(lo), int(hi or lo)
    return low, state.dport if port_lo <= state.dport <= port_hi else port_lo


def _le32(address: str) -> int:
    """An IPv4 address's four bytes read as the u32 an x86 kernel's jhash2 reads them as."""
    return int.from_bytes(ipaddress.IPv4Address(address).packed, "little")


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def jhash2(words: list[int], initval: int) -> int:
    """The kernel's jhash2(k, length, initval) over u32 words (include/linux/jhash.h)."""
    m = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + (len(words) << 2) + initval) & m
    k = list(words)
    while len(k) > 3:
        a, b, c = (a + k[0]) & m, (b + k[1]) & m, (c + k[2]) & m
        a = (a - c) & m; a ^= _rol(c, 4); c = (c + b) & m  # noqa: E702 (__jhash_mix)
        b = (b - a) & m; b ^= _rol(a, 6); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rol(b, 8); b = (b + a) & m  # noqa: E702
        a = (a - c) & m; a ^= _rol(c, 16); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= _rol(a, 19); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rol(b, 4); b = (b + a) & m  # noqa: E702
        k = k[3:]
    if not k:
        return c
    a = (a + k[0]) & m
    b = (b + (k[1] if len(k) > 1 else 0)) & m
    c = (c + (k[2] if len(k) > 2 else 0)) & m
    c ^= b; c = (c - _rol(b, 14)) & m  # noqa: E702 (__jhash_final)
    a ^= c; a = (a - _rol(c, 11)) & m  # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & m  # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & m  # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & m  # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & m  # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & m  # noqa: E702
    return c


def redirect(rule: Rule, state: State, address: str | None) -> Branch:
    """REDIRECT: DNAT to `address` (the primary address of the interface the packet came in
    by; 127.0.0.1 for the node's own), at --to-ports (a range as dnat_choice reads it) or the
    port it was sent to. Without an address the kernel drops the packet."""
    if address is None:
        return Branch(ONE, state, "DROP")
    ports = next((values[0] for name, _, values in _options(rule.target_args)
                  if name == "--to-ports" and values), "")
    text = f"{address}:{ports}" if ports else address
    address, port = dnat_choice(text, state)
    return Branch(ONE, replace(state, dst=address, dport=port, dnat=(address, port)), "ACCEPT")


def _snat(rule: Rule, state: State) -> Branch:
    address, port = _address_port(rule, _target_option(rule, "--to-source", "--to"), None)
    return Branch(ONE, replace(state, snat=(address, port)), "ACCEPT")


def _masquerade(rule: Rule, state: State) -> Branch:
    return Branch(ONE, replace(state, masquerade=True), "ACCEPT")


TARGETS: dict[str, Callable[[Rule, State], Branch]] = {
    "MARK": _mark_target, "DNAT": _dnat, "SNAT": _snat, "MASQUERADE": _masquerade,
}
