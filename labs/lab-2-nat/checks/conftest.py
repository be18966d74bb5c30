"""Shared words for lab 2's checks: the virtual IP, and what happened to a connection to it.

Lab 2 has no Service, so the kit's generic sandbox questions that compare with kube-proxy's
reference rules (spread, endpoints) do not apply. These helpers ask both modes the same
questions and get answers of the same shape:

- live (`sandbox.lab` is the LiveLab): real probes from real namespaces; the pod's own answer
  says who it saw, node-a's conntrack says where the connection was sent.
- static (`sandbox.submission.ruleset` is the submission on top of the starting state): the rule
  tracer follows the first packet through node-a's rules, and a small routing model of the two
  nodes says which way the pod's reply goes. It is exact for this lab's topology:

    * the caller's first packet enters node-a (client: on eth0; a pod of node-a: on cni0;
      node-a itself: its OUTPUT hook, from 192.168.49.2, the address of its default route);
    * after NAT the packet leaves node-a by cni0 if its destination is in node-a's pod subnet,
      else by eth0 (node-b's pods are routed via 192.168.49.3); MASQUERADE takes the address of
      that interface (10.244.0.1 or 192.168.49.2), SNAT the one it names;
    * the pod answers the source it saw. A pod on node-a answers through node-a. A pod on
      node-b sends its answer through node-a only if that source is node-a's (one of its
      addresses or its pod subnet): anything else on the node network (the client) it reaches
      directly, so node-a's conntrack never sees the answer and cannot undo the DNAT;
    * an answer that bypasses node-a arrives from the pod's own address: a SYN probe shows
      it, and the caller's TCP never completes its connection (it resets it).
"""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction

import pytest

from lab_runner.evidence import probing, sampling
from lab_runner.evidence.probing import Target
from lab_runner.grading.outcomes import round_robin_rules
from lab_runner.grading.sandbox import Undecidable
from lab_runner.probes import stats
from lab_runner.ruleset import tracer
from lab_runner.ruleset.parse import parse

VIP = Target("10.96.0.200", 80, "tcp")  # the exercises' virtual IP (the walkthrough uses .100)
ENTRY = "node-a"  # the node the client (and every caller graded here) sends its traffic to
PROBE_TIMEOUT = 1.0
PROBE_LIMIT = 40  # connections spent looking for every pod before giving up
PROBE_ROUND = 8  # of them at once
LOST_TOLERANCE = 0.01  # live: share of sampled connections that may go uncounted
SOURCE_NAT = ("MASQUERADE", "SNAT")  # targets that rewrite a connection's source


@dataclass(frozen=True)
class Fate:
    """What happened to one new connection (live), or one way it can go (static)."""

    answered: bool  # the caller's TCP connection completed and the pod's app answered
    pod: str | None  # the pod the connection reached
    sent_to: str | None  # "ip:port" after DNAT; None when it was not DNATed
    saw_src: str | None  # the source address the pod saw
    probability: Fraction | None = None  # static only
    note: str = ""

    def describe(self) -> str:
        share = f" (probability {float(self.probability):.4f})" if self.probability is not None else ""
        where = f"DNATed to {self.sent_to}" if self.sent_to else "not DNATed"
        if self.answered:
            return f"{where}, answered by {self.pod}, which saw the caller as {self.saw_src}{share}"
        if self.pod:
            return (f"{where}, reached {self.pod} (which saw {self.saw_src}) but the caller got "
                    f"no answer{': ' + self.note if self.note else ''}{share}")
        return f"{where}, no pod answered{': ' + self.note if self.note else ''}{share}"


def seen(fates) -> str:
    return "; ".join(f.describe() for f in fates) or "nothing"


# -- the lab's topology, from the model -------------------------------------------------------
def entry_node(sandbox):
    return sandbox.model.node(ENTRY)


def node_addresses(sandbox, node) -> set[str]:
    return {str(node.ip), str(node.bridge_address.ip)}


def pod_named(sandbox, name: str):
    return sandbox.model.pod(name)


def caller(sandbox, source: str) -> tuple[str, str | None]:
    """(source address, inbound interface on node-a; None for node-a itself)."""
    node = entry_node(sandbox)
    if source == ENTRY:
        return str(node.ip), None  # its default route leaves by eth0, from 192.168.49.2
    for client in sandbox.model.clients:
        if source == client.name:
            return str(client.ip), "eth0"
    pod = pod_named(sandbox, source)
    if pod.node != ENTRY:
        raise ValueError(f"{source} is not behind {ENTRY}; the checks call from node-a's side")
    return str(pod.ip), node.bridge


def pod_at(sandbox, ip: str, port: int, proto: str):
    """(pod at ip, whether its app listens on port/proto)."""
    for pod in sandbox.model.pods:
        if str(pod.ip) == ip:
            return pod, any(cp.container_port == port and cp.protocol.lower() == proto
                            for cp in pod.ports)
    return None, False


# -- static: the tracer over node-a's rules, and the routing model ---------------------------
def _egress(sandbox, destination: str) -> str:
    node = entry_node(sandbox)
    if ipaddress.ip_address(destination) in node.pod_subnet:
        return node.bridge
    return "eth0"


def _outcomes(sandbox, source: str, target: Target) -> list[tracer.Outcome]:
    """Every outcome of the first packet, each traced with the interface it really leaves by."""
    src, inbound = caller(sandbox, source)
    node = entry_node(sandbox)
    base = tracer.Packet(src=src, dst=target.ip, protocol=target.proto, sport=40000,
                         dport=target.port, in_interface=inbound,
                         local_addresses=(str(node.ip), str(node.bridge_address.ip), "127.0.0.1"))
    kept: list[tracer.Outcome] = []
    for interface in ("eth0", node.bridge):
        try:
            trace = tracer.trace(sandbox.submission.ruleset, replace(base, out_interface=interface))
        except tracer.UnsupportedRule as exc:
            raise Undecidable(f"the rule tracer does not model this rule: {exc}") from exc
        for outcome in trace.outcomes:
            final = outcome.dnat[0] if outcome.dnat else target.ip
            if outcome.route in ("forward", "output") and _egress(sandbox, final) != interface:
                continue  # this run assumed the other interface for this outcome
            if outcome.route not in ("forward", "output") and interface != "eth0":
                continue  # not routed out at all: counted once
            if outcome.probability:
                kept.append(outcome)
    return kept


def _static_fate(sandbox, source: str, target: Target, outcome) -> tuple[Fate, tuple | None]:
    """The fate of one traced outcome, and the SYN probe's answer ("syn-ack"|"rst", "ip:port")."""
    src, _ = caller(sandbox, source)
    node = entry_node(sandbox)
    ip, port = outcome.dnat if outcome.dnat else (target.ip, target.port)
    sent_to = f"{ip}:{port}" if outcome.dnat else None
    pod, listening = pod_at(sandbox, ip, port, target.proto)
    if outcome.verdict != "ACCEPT" or pod is None:
        return Fate(False, None, sent_to, None, outcome.probability,
                    f"verdict {outcome.verdict}" if outcome.verdict != "ACCEPT"
                    else f"nothing answers at {ip}"), None
    if outcome.snat:
        saw = outcome.snat[0]
    elif outcome.masquerade:
        saw = str(node.bridge_address.ip) if _egress(sandbox, ip) == node.bridge else str(node.ip)
    else:
        saw = src
    via_entry = (pod.node == ENTRY or saw in node_addresses(sandbox, node)
                 or ipaddress.ip_address(saw) in node.pod_subnet)
    nat = outcome.dnat is not None or outcome.snat is not None or outcome.masquerade
    # The answer's source: un-NATed by node-a's conntrack if it passes node-a, else the pod's own.
    answer_from = f"{target.ip}:{target.port}" if via_entry else f"{ip}:{port}"
    syn = ("syn-ack" if listening else "rst", answer_from)
    if not listening:
        return Fate(False, None, sent_to, saw, outcome.probability,
                    f"{pod.name} does not listen on port {port}"), syn
    if not via_entry and nat:
        return Fate(False, pod.name, sent_to, saw, outcome.probability,
                    f"{pod.name}'s answer goes straight back to {saw} from {ip}:{port}, "
                    f"around {ENTRY}"), syn
    return Fate(True, pod.name, sent_to, saw, outcome.probability), syn


# -- the questions ------------------------------------------------------------------------------
def connect(sandbox, source: str, target: Target) -> list[Fate]:
    """One new connection (live) or all its possible fates (static).

    Live, the first connection a submission's checks ask for is remembered: two checks looking
    at the same connection (is it answered? what did the pod see?) judge the same probe.
    """
    if sandbox.mode == "static":
        return [_static_fate(sandbox, source, target, o)[0] for o in _outcomes(sandbox, source, target)]
    cache = sandbox.__dict__.setdefault("_lab2_connections", {})
    key = (source, str(target))
    if key not in cache:
        cache[key] = [_live_connection(sandbox, source, target)]
    return cache[key]


def _live_connection(sandbox, source: str, target: Target) -> Fate:
    report = probing.probe(sandbox.lab, source, target, "http", capture=False, counters=False,
                           timeout=PROBE_TIMEOUT)
    sent_to = _dnat_from_conntrack(report, target)
    view = report.pod_view
    if report.answered and view is not None:
        return Fate(True, view.pod, sent_to, view.src)
    return Fate(False, None, sent_to, None, note=str(report.answer.get("answer", "?")))


def every_pod(sandbox, source: str, target: Target, wanted: set[str]) -> list[Fate]:
    """Connections until every wanted pod answered (live: rounds of parallel connections, at
    most PROBE_LIMIT in all), or all the fates (static)."""
    if sandbox.mode == "static":
        return connect(sandbox, source, target)
    found: dict[str | None, Fate] = {}
    sent = 0
    with ThreadPoolExecutor(max_workers=PROBE_ROUND) as pool:
        while sent < PROBE_LIMIT:
            round_ = list(pool.map(lambda _: _live_connection(sandbox, source, target),
                                   range(PROBE_ROUND)))
            sent += len(round_)
            for fate in round_:
                found.setdefault(fate.pod if fate.answered else None, fate)
            if wanted <= {p for p in found if p}:
                break
            # No early stop when a round got no answer: where only a quarter of connections are
            # answered (a wrong spread), a silent first round of 8 happens one time in ten, and
            # stopping there failed a pod that static mode rightly finds reachable.
    return list(found.values())


def syn_answers(sandbox, source: str, target: Target) -> list[tuple[str, str | None]]:
    """What answered a crafted SYN: [("syn-ack"|"rst"|"none"|…, "ip:port" or None)]."""
    if sandbox.mode == "static":
        answers = []
        for outcome in _outcomes(sandbox, source, target):
            _, syn = _static_fate(sandbox, source, target, outcome)
            answers.append(syn or ("none", None))
        return answers
    report = probing.probe(sandbox.lab, source, target, "syn", capture=False, counters=False,
                           timeout=PROBE_TIMEOUT)
    answer = report.answer
    where = f"{answer['src']}:{answer['sport']}" if answer.get("src") and answer.get("sport") else \
        answer.get("src")
    return [(str(answer.get("answer", "none")), where)]


def not_reaching(sandbox, source: str, target: Target, pod: str) -> str | None:
    """What the caller's TCP connections to `target` met when not all were answered by `pod`;
    None when they were."""
    fates = connect(sandbox, source, target)
    if fates and all(f.answered and f.pod == pod for f in fates):
        return None
    return f"A TCP connection from the {source} to {target.ip}:{target.port}: {seen(fates)}."


def not_answered_by(sandbox, source: str, target: Target) -> str | None:
    """Who answered the caller's SYN to `target` when it was not a SYN-ACK from `target` itself
    (as the caller must see it, node-a's conntrack undoing the DNAT); None when it was."""
    answers = syn_answers(sandbox, source, target)
    want = f"{target.ip}:{target.port}"
    if answers and all(a == ("syn-ack", want) for a in answers):
        return None
    return (f"The {source}'s SYN to {want} was answered by: "
            + ", ".join(f"{kind} from {src}" if src else kind for kind, src in answers) + ".")


def masqueraded(sandbox, source: str, target: Target) -> list[str | None]:
    """For a connection's first packet, per fate: the NAT rule of node-a that rewrote its
    source (MASQUERADE or SNAT, as `chain: rule`), or None when it left with its own source.

    Live: the node's counters around one crafted SYN. (Its conntrack entry cannot tell: when the
    pod answers around node-a, the caller's reset closes the entry at once.) Static: the trace.
    """
    if sandbox.mode == "static":
        out = []
        for outcome in _outcomes(sandbox, source, target):
            step = next((s for s in outcome.path if s.table == "nat" and s.rule is not None
                         and s.rule.target in SOURCE_NAT), None)
            out.append(f"{step.chain}: {step.text}" if step else None)
        return out
    report = probing.probe(sandbox.lab, source, target, "syn", capture=False, counters=True,
                           timeout=PROBE_TIMEOUT)
    nat = parse(sandbox.lab.save(table="nat"), "<node-a's nat table>", check=False)
    for (_, chain, _, text), rule in probing.with_rules(probing.moved_rules(report), nat):
        if rule.target in SOURCE_NAT:
            return [f"{chain}: {text}"]
    return [None]


@dataclass(frozen=True)
class Shares:
    observed: dict[str, float]  # "ip:port" (or "(no DNAT)") -> share of new connections
    passed: bool  # consistent with the wanted shares
    lost: float  # share of connections left without DNAT
    detail: str


def shares(sandbox, source: str, target: Target, wanted: dict[str, Fraction]) -> Shares:
    """The share of new connections each destination gets, judged by the kit's one rule for
    random selection: every share within the exercise's tolerance of the wanted one.

    Live: as many new flows as that rule needs (stats.flows_for_tolerance), counted by node-a's
    DNAT rules. Static: the exact shares from the tracer. Asked once per submission, whatever
    number of checks use it.
    """
    cache = sandbox.__dict__.setdefault("_lab2_shares", {})  # one sample per submission
    key = (source, str(target), tuple(sorted(wanted.items())))
    if key in cache:
        return cache[key]
    tolerance = sandbox.exercise.tolerance
    if sandbox.mode == "static":
        got: dict[str, Fraction] = {}
        for outcome in _outcomes(sandbox, source, target):
            dest = f"{outcome.dnat[0]}:{outcome.dnat[1]}" if outcome.dnat else sampling.NO_DNAT
            got[dest] = got.get(dest, Fraction(0)) + outcome.probability
        observed, n, how = {k: float(v) for k, v in got.items()}, None, "exact shares from the rules"
    else:
        flows = stats.flows_for_tolerance(wanted, tolerance)
        report = sampling.sample(sandbox.lab, target, flows, source=source, expected=wanted,
                                 sport_base=1024)
        n = sum(report.observed.values()) or 1
        observed, how = {k: v / n for k, v in report.observed.items()}, f"{report.flows} new flows"
    verdict = stats.within_tolerance(observed, wanted, tolerance, n=n)
    outside = "; ".join(f"{k} got {share * 100:.2f} %, where its share is {float(w) * 100:.2f} %"
                        for k, share, w in verdict.outside)
    result = Shares(observed, verdict.passed, observed.get(sampling.NO_DNAT, 0.0),
                    f"{how}; {outside or 'every share'} (tolerance ± {tolerance * 100:g} "
                    "percentage points)")
    counting = round_robin_rules(sandbox.submission.ruleset)
    if counting and sandbox.exercise.round_robin == "refuse":
        result = replace(result, passed=False, detail=(
            f"{how}; {counting[0].chain} chooses by counting (`--mode nth`: round robin), "
            "where this exercise asks for a random choice"))
    sandbox.evidence.setdefault("spreads", []).append(
        {"source": source, "target": str(target), "observed": result.observed,
         "expected": {k: float(v) for k, v in wanted.items()}, "passed": result.passed,
         "detail": result.detail})
    cache[key] = result
    return result


def pod_caller_problem(sandbox, source: str, target: Target, pod: str) -> str | None:
    """What `source`, a pod on node-a, met when `pod` never answered it with `source`'s own
    address through `target` (a pod caller enters node-a by cni0, not eth0); None when it did."""
    fates = every_pod(sandbox, source, target, {pod})
    own = sandbox.caller_ip(source)
    if any(f.answered and f.pod == pod and f.saw_src == own for f in fates):
        return None
    return f"{source} ({own}), a pod on {ENTRY}, connected to {target.ip}:{target.port}: {seen(fates)}."


def marks_kept(sandbox, source: str, target: Target, bits: int) -> frozenset[bool]:
    """Whether connections whose packets came with mark `bits` leave node-a's rules with them
    (live: set and counted by the kit's own mangle rules; static: the tracer)."""
    from lab_runner.grading.outcomes import PacketClass

    return sandbox.outcome(PacketClass(source, target, bits)).bits_kept


def _dnat_from_conntrack(report, target: Target) -> str | None:
    for entry in report.conntrack:
        if entry.reply.src != target.ip or entry.reply.sport != target.port:
            return entry.dnat_to
    return None


def percent(values: dict) -> str:
    return ", ".join(f"{k} {v * 100:.1f} %" for k, v in sorted(values.items(), key=lambda kv: str(kv[0])))


@pytest.fixture
def vip():
    return VIP


__all__ = ["VIP", "ENTRY", "Fate", "LOST_TOLERANCE", "connect", "every_pod", "masqueraded",
           "percent", "seen", "shares", "syn_answers"]
