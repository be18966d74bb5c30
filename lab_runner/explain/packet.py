"""One new connection through a node's rules: the kit's tracer, told plainly what it cannot model.

The tracer refuses a rule it does not model (ipsets, CONNMARK --restore-mark, …) rather than
guess. A real node has such rules from other software (CNI plugins, Docker, cloud agents), so
this adapter traces a copy of the rules without each one the packet meets, assumes it does not
match (or, for a target, has no effect), and lists it with its line. Matches on the output
interface (-o) need the node's routes, which a dump lacks: they are left out the same way unless
the caller names the interface (--out). kube-proxy's own nfacct matches only count, so they are
taken out of their rules rather than the rules out of the ruleset. Every copy shares the rules it
does not change with the dump, so a node of 100,000s of rules is not copied for one packet.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from fractions import Fraction

from lab_runner.errors import LabError
from lab_runner.explain.dump import Dump
from lab_runner.explain.services import SERVICE_COMMENT, comment, protocol_of
from lab_runner.ruleset.parse import Chain, Rule, Ruleset, Table
from lab_runner.ruleset.tracer import (Limits, Outcome, Packet, Step, TraceError, TraceLimit,
                                       UnsupportedRule, trace)

NFACCT = re.compile(r"\s+-m nfacct\s+--nfacct-name\s+\S+")
OUTSIDE = "203.0.113.10"  # TEST-NET-3: a caller outside the cluster, as a load balancer is
NODE = "192.0.2.1"  # TEST-NET-1: the node's own address when the caller does not give one
MAX_LEFT_OUT = 500  # rules left out for one packet before giving up (a loop guard)
# A real node is bigger than a lab: allow a longer trace than grading does.
LIMITS = Limits(max_states=20_000, seconds=30.0, ruleset_seconds=120.0)
HOOKS = {  # the built-in chains a packet crosses, by the route the tracer reports
    "forward": ("PREROUTING", "FORWARD", "POSTROUTING"),
    "local": ("PREROUTING", "INPUT"),
    "output": ("OUTPUT", "POSTROUTING"),
    "dropped": ("PREROUTING", "OUTPUT"),
}


class ExplainError(LabError):
    """The packet cannot be explained (a tracer limit, a jump loop); names the file."""


@dataclass(frozen=True)
class Question:
    """The packet asked about: the first packet of a new connection."""

    dst: str
    dport: int
    protocol: str = "tcp"
    src: str | None = None  # None: an outside caller (OUTSIDE), or the node for local
    in_interface: str = "eth0"
    local: bool = False  # sent by the node itself (OUTPUT), not received
    out_interface: str | None = None
    node_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeftOut:
    """A rule the answer does not model, and what the answer assumes about it."""

    rule: Rule
    what: str

    def describe(self) -> str:
        assumed = "does not match" if self.what.startswith(("-m", "-o", "a match")) \
            else "has no effect"
        return (f"line {self.rule.line_no} ({self.rule.table} {self.rule.chain}): {self.what} "
                f"is not modelled; the answer assumes it {assumed}")


def marked_by(fate: Outcome) -> tuple[Step, ...]:
    """The rules that jumped to KUBE-MARK-MASQ on the way (why it is masqueraded)."""
    return tuple(s for s in fate.path if s.rule is not None and s.rule.target == "KUBE-MARK-MASQ")


def nat_rules(fate: Outcome) -> tuple[Step, ...]:
    """The MASQUERADE / SNAT rules that rewrote the source."""
    return tuple(s for s in fate.path if s.rule is not None
                 and s.rule.target in ("MASQUERADE", "SNAT"))


def ended_by(fate: Outcome) -> Step | None:
    """The rule (or policy) that dropped or rejected the packet."""
    return fate.path[-1] if fate.verdict != "ACCEPT" and fate.path else None


@dataclass(frozen=True)
class Explanation:
    """Every fate of the packet (probabilities sum to 1), and what the answer assumed."""

    source: str
    question: Question
    packet: Packet
    fates: tuple[Outcome, ...]  # each with the file's rule numbers in its path
    left_out: tuple[LeftOut, ...]
    assumptions: tuple[str, ...]
    service: str | None  # the Service port the rules name on the way, if any
    counters: bool  # the dump carries counters (iptables-save -c)

    @property
    def common_path(self) -> tuple[Step, ...]:
        """The steps every fate shares, in the order the packet meets them."""
        if not self.fates:
            return ()
        shared = set(self.fates[0].path)
        for fate in self.fates[1:]:
            shared &= set(fate.path)
        return tuple(s for s in self.fates[0].path if s in shared)

    def dnat_shares(self) -> dict[str, Fraction]:
        """The exact share of new connections DNATed to each "ip:port" (sampling's keys)."""
        out: dict[str, Fraction] = {}
        for fate in self.fates:
            if fate.dnat is not None:
                key = f"{fate.dnat[0]}:{fate.dnat[1]}"
                out[key] = out.get(key, Fraction(0)) + fate.probability
        return out

    def split_path(self) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
        """The shared steps before the ways part, and those after (on every way again)."""
        common = self.common_path
        shared = set(common)
        first = self.fates[0].path if self.fates else ()
        parted = next((i for i, s in enumerate(first) if s not in shared), len(first))
        before = tuple(s for s in first[:parted] if s in shared)
        return before, tuple(s for s in common if s not in set(before))


def explain(dump: Dump, question: Question) -> Explanation:
    """Trace `question`'s packet through `dump`'s rules, leaving out what cannot be modelled."""
    packet, assumptions = _packet(dump.ruleset, question)
    ruleset = dump.ruleset
    left_out: list[LeftOut] = []
    out_matches: list[Rule] = []
    out_matches, counting = _unmodelled_here(ruleset, question.out_interface is None)
    if out_matches:
        ruleset = without(ruleset, *out_matches)
    ruleset = _only_this_destination(ruleset, question.dst)
    ruleset, originals = _without_nfacct(ruleset, counting)
    for _ in range(MAX_LEFT_OUT):
        try:
            result = trace(ruleset, packet, LIMITS)
            break
        except TraceLimit as exc:
            raise ExplainError(f"{dump.source}: {exc}") from exc
        except UnsupportedRule as exc:
            left_out.append(LeftOut(exc.rule, exc.what))
            ruleset = without(ruleset, exc.rule)
        except TraceError as exc:
            raise ExplainError(f"{dump.source}: {exc}") from exc
    else:
        raise ExplainError(f"{dump.source}: more than {MAX_LEFT_OUT} rules on this packet's way "
                           "are not modelled; no answer is given")
    numbers = _Numbers(dump.ruleset, originals)
    fates = tuple(_fate(o, numbers) for o in sorted(result.fates(), key=_order))
    visited = _visited(dump.ruleset, fates)
    left_out += [LeftOut(r, f"-o {r.option('o')[1]} (a match on the output interface; give "
                            "--out to model it)")
                 for r in out_matches if (r.table, r.chain) in visited]
    left_out.sort(key=lambda item: item.rule.line_no)
    return Explanation(dump.source, question, packet, fates, tuple(left_out), tuple(assumptions),
                       _service_name(fates), dump.has_counters)


def _packet(ruleset: Ruleset, q: Question) -> tuple[Packet, list[str]]:
    assumptions: list[str] = []
    node_ips = list(q.node_ips)
    if not node_ips and not q.local and _is_node_port(ruleset, q) and \
            not _is_service_address(ruleset, q.dst):
        node_ips.append(q.dst)
        assumptions.append(f"{q.dst} is taken to be the node's own address (port {q.dport} is "
                           "a NodePort; give --node-ip to say otherwise)")
    if q.local:
        src = q.src or (node_ips[0] if node_ips else NODE)
        if q.src is None and not node_ips:
            assumptions.append(f"the node's address is taken to be {NODE} (give --node-ip)")
        if src not in node_ips:
            node_ips.append(src)
    else:
        src = q.src or OUTSIDE
        if q.src is None:
            assumptions.append(f"the caller is {OUTSIDE}, outside the cluster, coming in on "
                               f"{q.in_interface} (give --from and --in to change it)")
    packet = Packet(src=src, dst=q.dst, protocol=q.protocol, sport=40000, dport=q.dport,
                    in_interface=None if q.local else q.in_interface,
                    out_interface=q.out_interface, local_addresses=tuple(node_ips))
    return packet, assumptions


def _is_node_port(ruleset: Ruleset, q: Question) -> bool:
    if not ruleset.has_chain("nat", "KUBE-NODEPORTS"):
        return False
    for rule in ruleset.chain("nat", "KUBE-NODEPORTS").rules:
        words = rule.text.split()
        at = words.index("--dport") + 1 if "--dport" in words else len(words)
        if at < len(words) and words[at] == str(q.dport) and protocol_of(rule) == q.protocol:
            return True
    return False


def _is_service_address(ruleset: Ruleset, address: str) -> bool:
    """Whether a KUBE-SERVICES rule matches -d on `address` (a cluster, external or LB IP)."""
    words = (f" {address} ", f" {address}/32 ")
    return any(any(w in f" {r.text} " for w in words)
               for r in ruleset.chain("nat", "KUBE-SERVICES").rules)


def without(ruleset: Ruleset, *rules: Rule) -> Ruleset:
    """A copy of `ruleset` without `rules`."""
    return _changed(ruleset, {id(rule): (rule, None) for rule in rules})


def _changed(ruleset: Ruleset, changes: dict[int, tuple[Rule, Rule | None]]) -> Ruleset:
    """A copy of `ruleset` with rules replaced (by id: rule -> stand-in, None: left out). Only
    the chains that change are new objects; a node's 100,000s of other rules are shared."""
    tables = dict(ruleset.tables)
    for key in {(rule.table, rule.chain) for rule, _ in changes.values()}:
        table = tables[key[0]]
        chain = table.chains[key[1]]
        rules = [changes[id(r)][1] if id(r) in changes else r for r in chain.rules]
        chains = {**table.chains, chain.name: Chain(chain.name, chain.builtin, chain.policy,
                                                    chain.counters, [r for r in rules if r],
                                                    chain.line_no)}
        tables[key[0]] = Table(table.name, chains)
    return Ruleset(tables, ruleset.source)


def _unmodelled_here(ruleset: Ruleset, out_matches: bool) -> tuple[list[Rule], list[Rule]]:
    """The rules matching on the output interface (when `out_matches`) and those with an nfacct
    match, in one pass over the node's rules (a cheap look at the text first)."""
    outs: list[Rule] = []
    counting: list[Rule] = []
    for rule in ruleset.rules():
        text = rule.text
        if out_matches and (" -o " in text or "--out-interface" in text) and \
                rule.option("o") is not None:
            outs.append(rule)
        if "nfacct" in text and rule.match("nfacct") is not None:
            counting.append(rule)
    return outs, counting


def _only_this_destination(ruleset: Ruleset, dst: str) -> Ruleset:
    """The ruleset without the nat KUBE-SERVICES rules whose `-d` is another address.

    The same answer, faster: a node's KUBE-SERVICES holds a rule per Service port (10,000s), and
    the tracer would read and test each. In nat PREROUTING and OUTPUT, where kube-proxy jumps to
    it, the packet still has its own destination (a DNAT ends the nat table's traversal), so a
    rule matching another destination cannot match; dropping it changes no outcome and no path
    (only matched rules are steps). Not done if nat INPUT or POSTROUTING can reach it.
    """
    nat = ruleset.tables.get("nat")
    if nat is None or "KUBE-SERVICES" not in nat.chains:
        return ruleset
    if any(_reaches(nat, hook, "KUBE-SERVICES", set()) for hook in ("INPUT", "POSTROUTING")):
        return ruleset
    dropped = [r for r in nat.chains["KUBE-SERVICES"].rules if not _may_match_destination(r, dst)]
    return _changed(ruleset, {id(rule): (rule, None) for rule in dropped}) if dropped else ruleset


def _reaches(table: Table, chain: str, wanted: str, seen: set[str]) -> bool:
    """Whether `chain` is `wanted` or jumps or goes there, directly or through other chains."""
    seen.add(chain)
    return chain == wanted or any(
        _reaches(table, r.target, wanted, seen) for r in table.chains[chain].rules
        if r.target in table.chains and r.target not in seen)


def _without_nfacct(ruleset: Ruleset, found: list[Rule]) -> tuple[Ruleset, dict[int, Rule]]:
    """The ruleset with every `-m nfacct` match taken out of its rule, and the file's rule for
    each stand-in. nfacct (kube-proxy v1.31+ counts dropped INVALID packets and localhost
    NodePort connections with it) only counts: it matches every packet, so the rule without it
    matches the same packets. The stand-ins are traced; the answer shows the file's rules."""
    if not found:
        return ruleset, {}
    changes = {id(rule): (rule, Rule(rule.table, rule.chain, rule.line_no,
                                      NFACCT.sub("", rule.text), None, rule.target, rule.goto,
                                      rule.counters,
                                      (rule.basic,
                                       tuple(m for m in rule.matches if m.module != "nfacct"),
                                       rule.target_args)))
               for rule in found}
    originals = {id(stand_in): rule for rule, stand_in in changes.values()}
    return _changed(ruleset, changes), originals


def _may_match_destination(rule: Rule, dst: str) -> bool:
    """False only when the rule's one plain `-d` value is an address or network without `dst`."""
    words = rule.text.split()
    at = [i for i, w in enumerate(words) if w in ("-d", "--destination", "--dst")]
    if len(at) != 1 or at[0] + 1 >= len(words) or words[at[0] - 1] == "!" or \
            words[at[0] + 1] == "!":
        return True
    value = words[at[0] + 1]
    if "/" not in value or value.endswith("/32"):  # one address, as iptables-save writes it
        return value.removesuffix("/32") == dst
    try:
        return ipaddress.ip_address(dst) in ipaddress.ip_network(value, strict=False)
    except ValueError:
        return True  # a host name or a list: let the tracer decide


class _Numbers:
    """A rule's 1-based position in its chain in the file: the traced copy lacks rules, so the
    tracer's own numbers can be smaller."""

    def __init__(self, ruleset: Ruleset, originals: dict[int, Rule]):
        self.ruleset = ruleset
        self.originals = originals  # id of a traced stand-in -> the file's rule
        self.index: dict[tuple[str, str], dict[int, int]] = {}

    def step(self, step: Step) -> Step:
        if step.rule is None or not self.ruleset.has_chain(step.table, step.chain):
            return step
        rule = self.originals.get(id(step.rule), step.rule)
        key = (step.table, step.chain)
        if key not in self.index:
            rules = self.ruleset.chain(*key).rules
            self.index[key] = {id(r): i for i, r in enumerate(rules, start=1)}
        number = self.index[key].get(id(rule), step.number)
        if number == step.number and rule is step.rule:
            return step
        return Step(step.table, step.chain, number, rule.text, rule)


def _fate(outcome: Outcome, numbers: _Numbers) -> Outcome:
    return replace(outcome, path=tuple(numbers.step(s) for s in outcome.path))


def _order(outcome: Outcome) -> tuple:
    """Accepted first, then by DNAT address (numerically), then the rest."""
    address = ipaddress.ip_address(outcome.dnat[0]) if outcome.dnat else ipaddress.ip_address(0)
    port = outcome.dnat[1] if outcome.dnat else 0
    return (outcome.verdict != "ACCEPT", outcome.dnat is None, address, port, outcome.route)


def _visited(ruleset: Ruleset, fates: tuple[Outcome, ...]) -> set[tuple[str, str]]:
    """(table, chain) of the chains the packet went through on some way: the built-in chains of
    its route and every chain a matched rule jumped to."""
    found: set[tuple[str, str]] = set()
    for fate in fates:
        for table in ruleset.tables:
            found |= {(table, hook) for hook in HOOKS.get(fate.route, ())}
        for step in fate.path:
            found.add((step.table, step.chain))
            if step.rule is not None and step.rule.target:
                found.add((step.table, step.rule.target))
    return found


def _service_name(fates: tuple[Outcome, ...]) -> str | None:
    """The Service port kube-proxy's comments name on the packet's way (cluster IP, NodePort…)."""
    for fate in fates:
        for step in fate.path:
            if step.rule is None or not step.rule.target or \
                    not step.rule.target.startswith("KUBE-"):
                continue
            text = comment(step.rule)
            if not text:
                continue
            parsed = SERVICE_COMMENT.match(text)
            if parsed:
                return parsed["name"]
            if step.chain == "KUBE-NODEPORTS" and " " not in text:
                return text.rstrip(":")
    return None


__all__ = ["Explanation", "ExplainError", "LeftOut", "Question", "ended_by", "explain",
           "marked_by", "nat_rules", "without"]
