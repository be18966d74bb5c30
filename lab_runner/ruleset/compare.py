"""Compare two rulesets by meaning, normalising what iptables rewrites when it stores rules."""

from __future__ import annotations

import difflib
import ipaddress
import socket
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable

from lab_runner.ruleset.parse import Chain, Match, Rule, Ruleset, parse

U32 = 0xFFFFFFFF
PROTOCOL_NUMBERS = {"6": "tcp", "17": "udp", "1": "icmp", "132": "sctp"}
REJECT_ALIASES = {"net-unreach": "icmp-net-unreachable", "host-unreach": "icmp-host-unreachable",
                  "proto-unreach": "icmp-proto-unreachable", "port-unreach": "icmp-port-unreachable",
                  "net-prohib": "icmp-net-prohibited", "host-prohib": "icmp-host-prohibited",
                  "admin-prohib": "icmp-admin-prohibited", "tcp-rst": "tcp-reset"}
TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")


def kernel_probability(value: str | float) -> int:
    """The u32 xt_statistic stores for `--probability value`: libxt_statistic's lround(p * 2^31)."""
    scaled = Fraction(float(value)) * 0x80000000  # exact: a double times a power of two
    return int(scaled + Fraction(1, 2)) if scaled >= 0 else -int(-scaled + Fraction(1, 2))


# -- normalising one rule --------------------------------------------------------------------

def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def _basic(rule: Rule) -> frozenset:
    out = set()
    for key, inverted, value in rule.basic:
        if key in ("s", "d"):
            value = _address(value)
        elif key == "p":
            value = PROTOCOL_NUMBERS.get(value, value.lower())
            if value in ("all", "0") and not inverted:
                continue
        out.add((key, inverted, value))
    return frozenset(out)


def _options(args: tuple[str, ...]) -> list[tuple[str, bool, tuple[str, ...]]]:
    """Group a match's tokens into (option, inverted, values)."""
    grouped: list[tuple[str, bool, tuple[str, ...]]] = []
    invert = False
    for tok in args:
        if tok == "!":
            invert = True
        elif tok.startswith("--"):
            grouped.append((tok, invert, ()))
            invert = False
        elif grouped:
            name, inv, values = grouped[-1]
            grouped[-1] = (name, inv, values + (tok,))
        else:
            grouped.append(("", False, (tok,)))
    return grouped


def _port(value: str, proto: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return socket.getservbyname(value, proto)
    except OSError:
        return -1


def _port_range(value: str, proto: str) -> str:
    low, sep, high = value.partition(":")
    lo = _port(low, proto) if low else 0
    hi = (_port(high, proto) if high else 65535) if sep else lo
    return str(lo) if lo == hi else f"{lo}:{hi}"


def _flags(text: str) -> tuple[str, ...]:
    names = {"ALL": TCP_FLAGS, "NONE": ()}
    found: set[str] = set()
    for part in text.upper().split(","):
        found.update(names.get(part, (part,)))
    return tuple(sorted(found))


def _ports_match(module: str, args: tuple[str, ...]) -> tuple:
    aliases = {"--destination-port": "--dport", "--source-port": "--sport"}
    out = []
    for name, inv, values in _options(args):
        name = aliases.get(name, name)
        if name in ("--dport", "--sport"):
            values = (_port_range(values[0], module),)
        elif name == "--syn":
            name, values = "--tcp-flags", (_flags("FIN,SYN,RST,ACK"), _flags("SYN"))
        elif name == "--tcp-flags":
            values = (_flags(values[0]), _flags(values[1]))
        out.append((name, inv, values))
    return tuple(sorted(out, key=repr))


def _multiport(args: tuple[str, ...]) -> tuple:
    aliases = {"--destination-ports": "--dports", "--source-ports": "--sports"}
    return tuple(sorted((aliases.get(name, name), inv,
                         tuple(_port_range(p, "tcp") for p in ",".join(values).split(",")))
                        for name, inv, values in _options(args)))


def _statistic(args: tuple[str, ...]) -> tuple:
    opts = {name: values for name, _, values in _options(args)}
    inverted = any(inv for _, inv, _ in _options(args))
    if opts.get("--mode", ("",))[0] == "random":
        return ("random", kernel_probability(opts.get("--probability", ("0",))[0]), inverted)
    return ("nth", int(opts.get("--every", ("0",))[0]), int(opts.get("--packet", ("0",))[0]), inverted)


def _mark_value(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return int(value, 0), int(mask, 0) if mask else U32


def _recent(args: tuple[str, ...]) -> tuple:
    state = {"name": "DEFAULT", "mask": "255.255.255.255", "side": "--rsource"}
    action, flags = "", []
    for name, inv, values in _options(args):
        if name in ("--set", "--rcheck", "--update", "--remove"):
            action = ("!" if inv else "") + name
        elif name in ("--rsource", "--rdest"):
            state["side"] = name
        elif name in ("--name", "--mask"):
            state[name[2:]] = values[0]
        else:
            flags.append((name, values))
    return (action, tuple(sorted(state.items())), tuple(sorted(flags)))


def _conntrack(args: tuple[str, ...]) -> tuple:
    out = []
    for name, inv, values in _options(args):
        if name in ("--ctstate", "--state", "--ctstatus"):
            values = tuple(sorted(",".join(values).upper().split(",")))
        out.append((name if name != "--state" else "--ctstate", inv, values))
    return tuple(sorted(out))


def _addrtype(args: tuple[str, ...]) -> tuple:
    return tuple(sorted((name, inv, tuple(sorted(",".join(values).upper().split(","))) if values else ())
                        for name, inv, values in _options(args)))


def _match(match: Match, proto: str) -> tuple:
    module = match.module.lower()
    if module in ("tcp", "udp"):
        return (module, _ports_match(module, match.args))
    if module == "comment":
        return ("comment", " ".join(match.args[1:]) if match.args[:1] == ("--comment",) else match.args)
    handlers = {"multiport": _multiport, "statistic": _statistic, "recent": _recent,
                "conntrack": _conntrack, "state": _conntrack, "addrtype": _addrtype}
    if module == "mark":
        return ("mark", tuple((inv, _mark_value(values[0])) for _, inv, values in _options(match.args)))
    if module in handlers:
        return ("conntrack" if module == "state" else module, handlers[module](match.args))
    return (module, match.args)


def _matches(rule: Rule, comments: bool) -> tuple:
    proto = next((v for k, inv, v in rule.basic if k == "p" and not inv), "")
    proto = PROTOCOL_NUMBERS.get(proto, proto.lower())
    out = []
    for match in rule.matches:
        if match.module == "comment" and not comments:
            continue
        normal = _match(match, proto)
        if normal == (proto, ()) and proto in ("tcp", "udp"):
            continue  # `-m tcp` with nothing to match adds nothing to `-p tcp`
        out.append(normal)
    return tuple(sorted(out, key=repr))


def _mark_target(args: tuple[str, ...]) -> tuple:
    for name, _, values in _options(args):
        if name == "--set-xmark":
            return _mark_value(values[0])
        if name == "--set-mark":
            value, mask = _mark_value(values[0])
            return value, (mask | value) & U32
        if name in ("--or-mark", "--and-mark", "--xor-mark"):
            bits = int(values[0], 0)
            return {"--or-mark": (bits, bits), "--and-mark": (0, ~bits & U32),
                    "--xor-mark": (bits, 0)}[name]
    return tuple(args)


def _target(rule: Rule) -> tuple:
    name = rule.target or ""
    args = rule.target_args
    kind = "goto" if rule.goto else "jump"
    if name == "MARK":
        return (kind, name, _mark_target(args))
    if name == "REJECT":
        opts = {n: v for n, _, v in _options(args)}
        how = opts.get("--reject-with", ("icmp-port-unreachable",))[0]
        return (kind, name, REJECT_ALIASES.get(how, how))
    if name in ("DNAT", "SNAT", "MASQUERADE"):
        aliases = {"--to": "--to-destination" if name == "DNAT" else "--to-source"}
        return (kind, name, tuple(sorted((aliases.get(n, n), v) for n, _, v in _options(args))))
    return (kind, name, args)


def normalize(rule: Rule, *, comments: bool = True) -> tuple:
    """A hashable form of the rule's meaning: equal for rules iptables stores identically."""
    return (_basic(rule), _matches(rule, comments), _target(rule))


# -- comparing rulesets ------------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """One way the rulesets differ; str() is the line a report shows."""

    table: str
    chain: str
    kind: str  # "missing chain", "extra chain", "changed rule", "missing rule", "extra rule"
    number: int | None = None
    expected: str | None = None
    got: str | None = None
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.table} {self.chain}"
        hint = f" ({self.hint})" if self.hint else ""
        if self.kind == "missing chain":
            return f"{where}: missing chain (expected {self.expected})"
        if self.kind == "extra chain":
            return f"{where}: unexpected chain ({self.got})"
        if self.kind == "missing rule":
            return f"{where} rule {self.number}: missing: {self.expected}"
        if self.kind == "extra rule":
            return f"{where} rule {self.number}: unexpected: {self.got}"
        return f"{where} rule {self.number}: expected {self.expected} got {self.got}{hint}"


@dataclass(frozen=True)
class Comparison:
    """The differences found; true (and `.equal`) when there are none. `.text` is the report."""

    differences: tuple[Difference, ...]

    @property
    def equal(self) -> bool:
        return not self.differences

    def __bool__(self) -> bool:
        return self.equal

    @property
    def text(self) -> str:
        if self.equal:
            return "the rulesets are the same"
        return "\n".join(str(d) for d in self.differences)


def _as_ruleset(value: Ruleset | str, source: str) -> Ruleset:
    return value if isinstance(value, Ruleset) else parse(value, source)


def _in_scope(rule: Rule, prefix: str) -> bool:
    return bool(rule.target and rule.target.startswith(prefix))


def _scoped_rules(chain: Chain | None, prefix: str, whole: bool) -> list[Rule]:
    if chain is None:
        return []
    if chain.builtin and not whole:
        return [r for r in chain.rules if _in_scope(r, prefix)]
    return list(chain.rules)


def _chain_names(expected: Ruleset, got: Ruleset, table: str, chains: set[str] | None,
                 prefix: str) -> list[str]:
    names: list[str] = []
    for ruleset in (expected, got):
        for chain in (ruleset.tables[table].chains.values() if table in ruleset.tables else ()):
            wanted = chain.name in chains if chains is not None else \
                (chain.builtin or chain.name.startswith(prefix))
            if wanted and chain.name not in names:
                names.append(chain.name)
    return names


def _describe(rule: Rule) -> str:
    return rule.spec or "(no options)"


def _hint(a: Rule, b: Rule, comments: bool) -> str:
    left, right = normalize(a, comments=comments), normalize(b, comments=comments)
    parts = []
    if left[0] != right[0]:
        parts.append("addresses/protocol/interfaces")
    modules = {m[0] for m in set(left[1]) ^ set(right[1])}
    parts += [f"-m {m}" for m in sorted(modules)]
    if left[2] != right[2]:
        parts.append("target")
    return "differs in " + ", ".join(parts) if parts else ""


def _chain_differences(table: str, name: str, want: list[Rule], have: list[Rule],
                       comments: bool) -> list[Difference]:
    keys_want = [normalize(r, comments=comments) for r in want]
    keys_have = [normalize(r, comments=comments) for r in have]
    out = []
    matcher = difflib.SequenceMatcher(a=keys_want, b=keys_have, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            continue
        pairs = min(a1 - a0, b1 - b0) if op == "replace" else 0
        for k in range(pairs):
            e, g = want[a0 + k], have[b0 + k]
            out.append(Difference(table, name, "changed rule", b0 + k + 1, _describe(e),
                                  _describe(g), _hint(e, g, comments)))
        for k in range(a0 + pairs, a1):
            out.append(Difference(table, name, "missing rule", k + 1, expected=_describe(want[k])))
        for k in range(b0 + pairs, b1):
            out.append(Difference(table, name, "extra rule", k + 1, got=_describe(have[k])))
    return out


def compare(expected: Ruleset | str, got: Ruleset | str, *, chains: Iterable[str] | None = None,
            tables: Iterable[str] | None = None, comments: bool = True,
            prefix: str = "KUBE-") -> Comparison:
    """Differences between two rulesets, chain by chain and rule by rule, in order.

    By default it compares every chain named `prefix…` and, in built-in chains, the rules that
    jump to such chains (other software's rules there are ignored). `chains` restricts it to
    those chains (built-ins listed there are compared whole); `comments=False` ignores comments.
    """
    want, have = _as_ruleset(expected, "<expected>"), _as_ruleset(got, "<got>")
    only = set(chains) if chains is not None else None
    table_names = list(dict.fromkeys([*want.tables, *have.tables]))
    if tables is not None:
        table_names = [t for t in table_names if t in set(tables)]
    diffs: list[Difference] = []
    for table in table_names:
        for name in _chain_names(want, have, table, only, prefix):
            w = want.tables[table].chains.get(name) if table in want.tables else None
            h = have.tables[table].chains.get(name) if table in have.tables else None
            if w is None and h is not None and not h.builtin:
                diffs.append(Difference(table, name, "extra chain", got=f"{len(h.rules)} rule(s)"))
                continue
            if h is None and w is not None and not w.builtin:
                diffs.append(Difference(table, name, "missing chain",
                                        expected=f"{len(w.rules)} rule(s)"))
                continue
            whole = only is not None
            diffs += _chain_differences(table, name, _scoped_rules(w, prefix, whole),
                                        _scoped_rules(h, prefix, whole), comments)
    return Comparison(tuple(diffs))
