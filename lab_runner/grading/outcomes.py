"""Packet classes and their outcomes: what a new connection of each class meets, and the words for it.

A packet class is a caller (the outside client, a pod, the node's own processes), a destination
and the mark bits its packets carry when they reach the node's rules. Its outcome is the set of
fates a new connection can meet (which pod answers, with which source address it sees the
caller, whether a pod reaching itself was marked for masquerading in its endpoint's chain) and,
for a class that came with other mark bits, whether they are still there when it leaves.
Static mode computes outcomes exactly with the rule tracer; live mode measures them (sandbox.py).
A submission passes a class when its outcome equals the reference rules' outcome.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, replace
from fractions import Fraction

from lab_runner.errors import LabError
from lab_runner.evidence import sampling
from lab_runner.evidence.probing import Target
from lab_runner.ruleset import tracer
from lab_runner.ruleset.compare import normalize
from lab_runner.ruleset.parse import Rule, Ruleset, parse

MASQ_BIT = 0x4000  # kube-proxy's masquerade mark
OTHER_BIT = 0x1  # a bit some other component set: marking for masquerading must keep it
PREMARK = MASQ_BIT | OTHER_BIT  # both: an xor of 0x4000 would clear the first, a set the second
CLUSTER_CALLER = "cluster-caller"  # inside the cluster CIDR, arriving by eth0: a pod on another node


@dataclass(frozen=True)
class PacketClass:
    """New connections from `caller` ("client", a pod's name or "node") to `target`."""

    caller: str
    target: Target
    premark: int = 0


@dataclass(frozen=True, order=True)
class Fate:
    """One way a new connection can end: answered by `pod`, which saw the caller as `saw_src`."""

    answered: bool
    pod: str = ""
    saw_src: str = ""
    hairpin_marked: bool | None = None  # a pod reaching itself: marked in its endpoint's chain


@dataclass(frozen=True)
class Outcome:
    """What a packet class meets: its possible fates, and (premarked) whether its bits stay."""

    fates: frozenset[Fate]
    bits_kept: frozenset[bool] = frozenset()  # premarked classes: the other bits left, per fate
    # premarked classes: whether it left with bits it neither came with nor is 0x4000, per fate
    # (`--set-mark 0xffffffff` keeps every bit it came with, and adds all the others)
    bits_added: frozenset[bool] = frozenset()


NO_ANSWER = Fate(False)


def caller_classes(model, target: Target) -> list[PacketClass]:
    """Every caller the lab has: its outside clients, each pod (which may reach itself), a caller
    inside the cluster CIDR where the pods are not, the node's own processes; then the client
    again with packets that already carry mark bits."""
    inside = [CLUSTER_CALLER] if cluster_caller_ip(model) else []
    callers = [c.name for c in model.clients[:1]] + [p.name for p in model.pods] + inside + ["node"]
    classes = [PacketClass(c, target) for c in callers]
    return classes + [PacketClass(c, target, PREMARK) for c in callers[:1]]


def cluster_caller_ip(model) -> str | None:
    """An address inside the cluster CIDR that no pod or bridge of the lab holds, for a caller
    that arrives from the node network (as a pod on another node does); None where the lab's
    own pods are inside the cluster CIDR (they are such callers already)."""
    cidr = model.cluster_cidr
    if not model.clients or any(ipaddress.ip_address(str(p.ip)) in cidr for p in model.pods) or \
            any(cidr.overlaps(n.bridge_address.network) for n in model.nodes):
        return None
    return str(cidr.network_address + 250)


# -- static: from the rule tracer -------------------------------------------------------------

def traced(sandbox, ruleset: Ruleset, cls: PacketClass) -> Outcome:
    """The exact outcome of `cls` through `ruleset` (the fates that have a probability > 0), by
    the sandbox's own tracer (sandbox.trace_packet: iptables rules or nftables ones)."""
    packet = tracer.Packet(src=sandbox.caller_ip(cls.caller), dst=cls.target.ip,
                           protocol=cls.target.proto, sport=40000, dport=cls.target.port,
                           in_interface=sandbox.inbound(cls.caller), mark=cls.premark,
                           **sampling.node_facts(sandbox.model))
    fates, kept, added = set(), set(), set()
    for o in sandbox.trace_packet(ruleset, packet).outcomes:
        if o.probability == 0:
            continue
        fates.add(fate(sandbox, cls, o))
        if cls.premark and o.verdict == "ACCEPT":
            kept.add(o.mark & cls.premark & ~MASQ_BIT == cls.premark & ~MASQ_BIT)
            added.add(bool(o.mark & ~(cls.premark | MASQ_BIT) & 0xFFFFFFFF))
    return Outcome(frozenset(fates), frozenset(kept), frozenset(added))


def fate(sandbox, cls: PacketClass, o: tracer.Outcome) -> Fate:
    """What the caller of `cls` meets on one traced outcome, as the kernel makes it: a pod DNATed
    back to itself with its own address as source drops the packet (never answered)."""
    if o.verdict != "ACCEPT":
        return NO_ANSWER
    ip, port = o.dnat or (cls.target.ip, cls.target.port)
    pod = sandbox.pod_serves(ip, port, cls.target.proto)
    caller = sandbox.caller_ip(cls.caller)
    saw = masquerade_address(sandbox.model, ip) if o.masquerade else \
        (o.snat[0] if o.snat else caller)
    if pod is None or unmasqueraded_hairpin(sandbox, cls.caller, pod, saw) or \
            answers_around_the_node(sandbox.model, ip, saw):
        return NO_ANSWER
    return Fate(True, pod, saw, _marked_in_endpoint_chain(o) if pod == cls.caller else None)


def masquerade_address(model, destination: str) -> str:
    """The source MASQUERADE gives a packet the graded node (the lab's first) sends towards
    `destination`: the address of the interface its route leaves by, the pod bridge's for a pod
    of this node, the node's own on the node network (a pod on another node)."""
    node = model.nodes[0]
    return str(node.bridge_address.ip) if _leaves_by(model, destination) == node.bridge \
        else str(node.ip)


def answers_around_the_node(model, pod_ip: str, saw_src: str) -> bool:
    """A pod on another node answers `saw_src` by its own node's routes: unless that address is
    the graded node's own or behind its bridge, the answer goes straight to it, never passes the
    graded node's conntrack, is not un-DNATed, and the caller drops it (lab 2, step 7)."""
    node = model.nodes[0]
    if _leaves_by(model, pod_ip) == node.bridge:
        return False
    own = {str(node.ip), str(node.bridge_address.ip)}
    return saw_src not in own and \
        ipaddress.ip_address(saw_src) not in node.bridge_address.network


def _leaves_by(model, destination: str) -> str:
    """The graded node's interface towards `destination`: the longest matching route."""
    address = ipaddress.ip_address(destination)
    best = max(((ipaddress.ip_network(net), dev) for net, dev in sampling.node_routes(model)
                if address in ipaddress.ip_network(net)), key=lambda r: r[0].prefixlen)
    return best[1]


def unmasqueraded_hairpin(sandbox, caller: str, pod: str | None, saw_src: str | None) -> bool:
    """A pod that gets its own connection back with its own address as source: it drops the
    packet (a martian, its own address arriving from outside), so the connection times out."""
    return pod is not None and pod == caller and saw_src == sandbox.caller_ip(caller)


def _marked_in_endpoint_chain(o: tracer.Outcome) -> bool:
    """Whether, in the chain whose rule DNATed the connection, a rule before it marked it."""
    steps = [s for s in o.path if s.table == "nat" and s.rule is not None]
    dnat = next((i for i, s in enumerate(steps) if s.rule.target == "DNAT"), None)
    if dnat is None:
        return False
    return any(s.chain == steps[dnat].chain and marks(s.rule) for s in steps[:dnat])


def marks(rule: Rule) -> bool:
    """A rule that marks for masquerading: a jump to KUBE-MARK-MASQ, or a MARK that sets the bit
    0x4000 however it is spelled (--or-mark 0x4000, --set-xmark 16384/16384, --set-mark …)."""
    return rule.target == "KUBE-MARK-MASQ" or mark_bits(rule) is not None and \
        bool(mark_bits(rule)[0] & MASQ_BIT)


def mark_bits(rule: Rule) -> tuple[int, int] | None:
    """(value, mask) a MARK rule leaves (the mark becomes mark & ~mask ^ value), read by the
    parser as compare.normalize reads it; None for any other rule, or one it cannot read."""
    if rule.target != "MARK":
        return None
    bits = normalize(rule, comments=False)[2][2]
    return bits if len(bits) == 2 and all(isinstance(b, int) for b in bits) else None


# -- round robin ----------------------------------------------------------------------------------

def round_robin_rules(ruleset: Ruleset) -> list[Rule]:
    """Rules that choose by counting (`-m statistic --mode nth`), not at random."""
    return [r for r in ruleset.rules() if r.match("statistic") is not None
            and "nth" in r.match("statistic").args]


def as_random(ruleset: Ruleset) -> Ruleset:
    """`ruleset` with each `--mode nth --every n` rule read as `--mode random --probability 1/n`:
    over many connections a counter that takes every n-th of those reaching it takes 1/n of them,
    which is what the tracer can follow."""
    if not round_robin_rules(ruleset):
        return ruleset
    lines = []
    for table in ruleset.tables.values():
        lines.append(f"*{table.name}")
        lines += [f":{c.name} {c.policy or '-'} [0:0]" for c in table.chains.values()]
        for chain in table.chains.values():
            lines += [f"-A {chain.name} {shlex.join(_random_spec(r))}" for r in chain.rules]
        lines.append("COMMIT")
    return parse("\n".join(lines) + "\n", ruleset.source, check=False)


def spec_words(rule: Rule) -> list[str]:
    """The rule's words after its command and chain (and -I's position): what it matches and
    does, whether it was written -A, --append, -I CHAIN N or read back from the node."""
    words = list(rule.tokens[2:])
    if rule.tokens[0] in ("-I", "--insert") and words and words[0].isdigit():
        words = words[1:]
    return words


def _random_spec(rule: Rule) -> list[str]:
    words = spec_words(rule)
    if "nth" not in words:
        return words
    out, i = [], 0
    while i < len(words):
        word = words[i]
        if word == "nth":
            out.append("random")
        elif word == "--every":
            out += ["--probability", f"{float(Fraction(1, int(words[i + 1]))):.10f}"]
            i += 1
        elif word == "--packet":
            i += 1
        else:
            out.append(word)
        i += 1
    return out


# -- collateral --------------------------------------------------------------------------------

def lost_rules(start: Ruleset, now: Ruleset, concerned) -> list[tuple[str, int, Rule]]:
    """(chain, number in the starting state, rule) of each starting rule the task did not concern
    that is gone from its chain or out of order there; extra rules in between are fine.
    concerned: rule lines (as exercise.concerned has them), compared by meaning, not text."""
    skip = _meanings(concerned, start)
    lost = []
    for table in start.tables.values():
        for chain in table.chains.values():
            have = ([normalize(r, comments=False) for r in now.chain(table.name, chain.name).rules]
                    if now.has_chain(table.name, chain.name) else [])
            at = 0
            for number, rule in enumerate(chain.rules, 1):
                key = normalize(rule, comments=False)
                if (table.name, chain.name, key) in skip:
                    continue
                found = next((i for i in range(at, len(have)) if have[i] == key), None)
                if found is None:
                    lost.append((chain.name, number, rule))
                else:
                    at = found + 1
    return lost


def _meanings(lines, like: Ruleset) -> set[tuple[str, str, tuple]]:
    """(table, chain, compare.normalize) of each rule line, read among the chains of `like`
    (a line that is no rule of any of its tables is left out)."""
    out = set()
    rules = [line for line in lines if line.lstrip().startswith("-")]
    for table in like.tables.values():
        declared = "".join(f":{c.name} {c.policy or '-'} [0:0]\n" for c in table.chains.values())
        for line in rules:
            try:
                read = parse(f"*{table.name}\n{declared}{line}\nCOMMIT\n", "<concerned>")
            except LabError:
                continue
            out |= {(table.name, r.chain, normalize(r, comments=False)) for r in read.rules()}
    return out


# -- words ---------------------------------------------------------------------------------------

def caller_words(sandbox, cls: PacketClass) -> str:
    ip = sandbox.caller_ip(cls.caller)
    if cls.caller == CLUSTER_CALLER:
        who = f"a caller inside the cluster CIDR {sandbox.model.cluster_cidr} ({ip}, as a pod on another node)"
    elif cls.caller == "node":
        who = f"the node's own processes ({ip})"
    elif sandbox.pod_at(ip) == cls.caller:
        who = f"pod {cls.caller} ({ip})"
    else:
        who = f"the {cls.caller} ({ip})" if cls.caller == "client" else f"{cls.caller} ({ip})"
    if cls.premark:
        who += f", whose packets already carried the mark {cls.premark:#x},"
    return who


def _saw(sandbox, cls: PacketClass, fate: Fate) -> str:
    if fate.saw_src == sandbox.caller_ip(cls.caller):
        return "its own address" if fate.pod == cls.caller else "the caller's own address"
    if fate.saw_src in _node_addresses(sandbox):
        return f"the node's address {fate.saw_src}"
    return fate.saw_src


def _node_addresses(sandbox) -> set[str]:
    node = sandbox.model.nodes[0]
    return {str(node.bridge_address.ip), str(node.ip)}


def _should_reach_none(sandbox, cls: PacketClass, who: str, via: str, got: Fate) -> str:
    """Where kube-proxy's rules let no pod answer (a port the Service does not serve, a node
    without a local endpoint), but one did."""
    reached = "itself" if got.pod == cls.caller else "a pod"
    return (f"A connection from {who} to {via} reached {reached}, which saw "
            f"{_saw(sandbox, cls, got)} as source. It should reach no pod: kube-proxy's rules "
            "refuse or drop it there.")


def _should(sandbox, cls: PacketClass, fate: Fate) -> str:
    if fate.saw_src in _node_addresses(sandbox) and fate.saw_src != sandbox.caller_ip(cls.caller):
        return f"it should arrive masqueraded (with the node's address {fate.saw_src} as source)"
    return f"it should arrive with {_saw(sandbox, cls, fate)} as source"


def judged(cls: PacketClass, outcome: Outcome) -> Outcome:
    """The outcome as compared: which pod answered counts only where it is the caller itself
    (a pod reaching itself). Which pods get how many connections is the spread checks' work; a
    live grader sees a rarely chosen pod no sooner than the spread check would."""
    return replace(outcome, fates=frozenset(f if f.pod == cls.caller else replace(f, pod="")
                                            for f in outcome.fates))


def difference(sandbox, cls: PacketClass, want: Outcome, got: Outcome) -> str | None:
    """The first way `got` differs from `want`, in the student's terms; None when it does not."""
    want, got = judged(cls, want), judged(cls, got)
    via = f"{cls.target.ip}:{cls.target.port}"
    who = caller_words(sandbox, cls)
    missing, extra = sorted(want.fates - got.fates), sorted(got.fates - want.fates)
    for w in missing:
        reached = next((g for g in extra if g.answered), None)
        if not w.answered and reached is not None and not any(f.answered for f in want.fates):
            return _should_reach_none(sandbox, cls, who, via, reached)
        itself = w.pod == cls.caller
        to = f"A connection from {who} to itself through {via}" if itself else \
            f"A connection from {who} through {via}"
        same = next((g for g in extra if g.pod == w.pod and g.answered), None)
        if same is not None and same.saw_src == w.saw_src:
            return (f"{to} arrived masqueraded, but was never marked for masquerading on its way "
                    "back to its sender: with a cluster CIDR that covers the pods it would arrive "
                    "with its own address as source and get no answer. It should be marked.")
        if same is not None:
            reached = "reached it" if itself else "reached a pod"
            return f"{to} {reached} with {_saw(sandbox, cls, same)} as source; {_should(sandbox, cls, w)}."
        if NO_ANSWER in extra:
            return f"{to} got no answer; {_should(sandbox, cls, w)}."
        if itself:
            return (f"No connection from {who} through {via} reached itself; the Service should "
                    f"send some back to it, and {_should(sandbox, cls, w)}.")
        return f"No connection from {who} through {via} reached a pod; {_should(sandbox, cls, w)}."
    for g in extra:
        if not g.answered:
            return (f"A connection from {who} to {via} got no answer. It should be answered by "
                    "one of the Service's pods.")
        if g.pod == cls.caller:
            return (f"A connection from {who} through {via} reached itself, which saw "
                    f"{_saw(sandbox, cls, g)} as source. It should never get there: {g.pod} is "
                    "not one of the Service's endpoints.")
        should = [f"it should see {_saw(sandbox, cls, w)}" for w in want.fates
                  if w.answered and w.pod != cls.caller]
        if not should:  # kube-proxy's rules let no pod answer here (refused or dropped)
            return _should_reach_none(sandbox, cls, who, via, g)
        return (f"A connection from {who} through {via} reached a pod that saw "
                f"{_saw(sandbox, cls, g)} as source. That should not happen: "
                + "; ".join(should) + ".")
    if got.bits_kept != want.bits_kept:
        bits = cls.premark & ~MASQ_BIT
        return (f"A connection from {who} to {via} left the node's rules without the mark bit "
                f"{bits:#x} it came with. Marking a packet for masquerading should keep its other "
                "mark bits.")
    if got.bits_added != want.bits_added:
        return (f"A connection from {who} to {via} left the node's rules with mark bits it did "
                f"not come with (other than {MASQ_BIT:#x}). Marking a packet for masquerading "
                f"should add the bit {MASQ_BIT:#x} alone and keep the others as they were.")
    return None
