"""What each match and target the tracer supports does to a new connection's first packet."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Callable, NamedTuple, Protocol

from lab_runner.errors import LabError
from lab_runner.ruleset.compare import kernel_probability
from lab_runner.ruleset.parse import Rule

ONE = Fraction(1)
TWO_31 = 1 << 31
NO_OP_TARGETS = frozenset({"LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "CONNMARK"})


class TraceError(LabError):
    """The packet cannot be followed (a jump loop, or a rule needs a fact the packet lacks)."""


class UnsupportedRule(TraceError):
    """A rule uses a match or target the tracer does not model; names table, chain and line."""

    def __init__(self, rule: Rule, what: str):
        self.rule = rule
        self.what = what
        super().__init__(f"{rule.table} {rule.chain} (line {rule.line_no}): the tracer does not "
                         f"model {what}\n    {rule.text}")


class Step(NamedTuple):
    """A rule the packet matched: [table, chain, 1-based rule number, rule text]."""

    table: str
    chain: str
    number: int
    text: str


@dataclass(frozen=True)
class State:
    """Where one branch of the packet stands: its addresses after NAT so far, mark and path."""

    src: str
    dst: str
    sport: int
    dport: int
    mark: int
    hook: str = ""
    dnat: tuple[str, int] | None = None
    snat: tuple[str, int | None] | None = None
    masquerade: bool = False
    path: tuple[Step, ...] = field(default=())

    def step(self, rule: Rule, number: int) -> "State":
        return replace(self, path=self.path + (Step(rule.table, rule.chain, number, rule.text),))


class Branch(NamedTuple):
    """One way a chain or hook can end for a state, with its probability."""

    probability: Fraction
    state: State
    verdict: str | None  # None: fell off / returned; else ACCEPT, DROP, REJECT, RETURN


class Context(Protocol):
    """What a match needs to know beyond the packet's state: its protocol and the node's addresses."""

    proto: str

    def is_local(self, address: str) -> bool: ...


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
    if opts.get("--mode", ("",))[0] != "random":
        raise UnsupportedRule(rule, "-m statistic other than --mode random")
    stored = min(kernel_probability(opts["--probability"][0]), TWO_31)
    chance = Fraction(stored, TWO_31)
    return ONE - chance if any(inv for _, inv, _ in _options(args)) else chance


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


def _addrtype(t: Context, rule: Rule, args, state: State):
    for name, inv, values in _options(args):
        types = set(",".join(values).upper().split(","))
        if name not in ("--src-type", "--dst-type") or types != {"LOCAL"}:
            raise UnsupportedRule(rule, f"-m addrtype {name} {','.join(values)}")
        hit = t.is_local(state.src if name == "--src-type" else state.dst)
        if hit == inv:
            return False
    return True


def _recent(t: Context, rule: Rule, args, state: State):
    for name, inv, _ in _options(args):
        if name == "--set":
            return True
        if name in ("--rcheck", "--update", "--remove"):
            return inv  # a new connection's source is in no list yet
    return True


MATCHERS: dict[str, Callable] = {
    "tcp": lambda t, *a: t.proto == "tcp" and _ports(t, *a),
    "udp": lambda t, *a: t.proto == "udp" and _ports(t, *a),
    "multiport": _ports, "comment": lambda *a: True, "statistic": _statistic, "mark": _mark,
    "conntrack": _conntrack, "state": _conntrack, "addrtype": _addrtype, "recent": _recent,
}


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


def _dnat(rule: Rule, state: State) -> Branch:
    address, port = _address_port(rule, _target_option(rule, "--to-destination", "--to"), state.dport)
    assert port is not None
    return Branch(ONE, replace(state, dst=address, dport=port, dnat=(address, port)), "ACCEPT")


def _snat(rule: Rule, state: State) -> Branch:
    address, port = _address_port(rule, _target_option(rule, "--to-source", "--to"), None)
    return Branch(ONE, replace(state, snat=(address, port)), "ACCEPT")


def _masquerade(rule: Rule, state: State) -> Branch:
    return Branch(ONE, replace(state, masquerade=True), "ACCEPT")


TARGETS: dict[str, Callable[[Rule, State], Branch]] = {
    "MARK": _mark_target, "DNAT": _dnat, "SNAT": _snat, "MASQUERADE": _masquerade,
}
