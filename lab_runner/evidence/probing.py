"""One probe on a live lab with all its evidence: the answer, what the pod saw, counters, conntrack."""

from __future__ import annotations

import ipaddress
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from lab_runner.evidence import conntrack
from lab_runner.probes.capture import correlate
from lab_runner.probes.launch import Capture, run_agent
from lab_runner.ruleset.counters import Delta, Snapshot, delta

TARGET = re.compile(r"^(?P<ip>[\d.]+):(?P<port>\d+)(?:/(?P<proto>tcp|udp))?$")


@dataclass(frozen=True)
class Target:
    """Where a probe goes: `10.104.5.205:8080/tcp`."""

    ip: str
    port: int
    proto: str = "tcp"

    @classmethod
    def parse(cls, text: str) -> "Target":
        m = TARGET.match(text.strip())
        if not m:
            raise ValueError(f"{text!r} is not IP:PORT[/tcp|/udp], e.g. 10.104.5.205:8080/tcp")
        return cls(m["ip"], int(m["port"]), m["proto"] or "tcp")

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}/{self.proto}"


@dataclass
class PodView:
    """What the pod that got the connection saw: from its app's answer or from a capture."""

    pod: str
    src: str
    sport: int
    dst: str
    dport: int
    via: str  # "app answer" or "capture"

    def describe(self) -> str:
        return f"{self.pod} saw {self.src}:{self.sport} -> {self.dst}:{self.dport}"


@dataclass
class ProbeReport:
    """Everything one probe showed."""

    source: str
    target: Target
    kind: str
    answer: dict[str, Any]
    pod_view: PodView | None = None
    counters: Delta | None = None
    conntrack: list[conntrack.Entry] = field(default_factory=list)
    # nftables mode: kube-proxy's rules carry no counters; the rules the probe's first packet
    # met, from `nft monitor trace` (nft_trace), stand in for the counters that moved.
    path: Any = None

    @property
    def answered(self) -> bool:
        return self.answer.get("answer") in ("syn-ack", "reply")

    @property
    def pod(self) -> str | None:
        return self.pod_view.pod if self.pod_view else None


def probe(lab, source: str, target: Target, kind: str = "syn", *, sport: int | None = None,
          capture: bool | None = None, counters: bool = True, timeout: float = 1.0,
          conntrack_entry: bool | None = None) -> ProbeReport:
    """Send one probe from `source` (a host of the lab) and gather what it left in the kernel.

    kind: syn (crafted with scapy), http, tcp or udp. For a syn probe the pods capture on their
    eth0 (a crafted SYN reaches no app), so the pod's view comes from its own interface.
    """
    capture = (kind == "syn") if capture is None else capture
    traced = counters and _nftables(lab)
    before = Snapshot.parse(lab.save()) if counters and not traced else None
    options = dict(dst=target.ip, dport=target.port, sport=sport, timeout=timeout)
    path = None
    with ExitStack() as stack:
        captures = _start_captures(lab, target.proto, stack) if capture else {}

        def send() -> dict[str, Any]:
            return run_agent(lab.runner, lab.place(source), kind, **options)

        if traced:
            from lab_runner.evidence import nft_trace
            from lab_runner.evidence.sampling import host_ip

            rule = nft_trace.match_rule(target.proto, host_ip(lab, source), target.ip,
                                        target.port, sport)
            path, answer = nft_trace.node_tracer(lab).trace(rule, send)
        else:
            answer = send()
        seen = {name: cap.stop() for name, cap in captures.items()}
    report = ProbeReport(source, target, kind, answer, path=path)
    report.pod_view = _pod_view(answer, seen)
    if before is not None:
        report.counters = delta(before, Snapshot.parse(lab.save()))
    probe_info = answer.get("probe", {})
    if probe_info.get("sport") and (counters if conntrack_entry is None else conntrack_entry):
        result = lab.exec("node", conntrack.list_command(target.proto, target.ip,
                                                        int(probe_info["sport"])))
        report.conntrack = conntrack.from_result(result)
    return report


def _nftables(lab) -> bool:
    """kube-proxy in nftables mode on this lab (a lab object without the notion: iptables)."""
    return bool(getattr(lab, "nftables", False))


def _start_captures(lab, proto: str, stack: ExitStack) -> dict[str, Capture]:
    """A capture on every pod's eth0, started in parallel (each waits for its own `ready`)."""
    pods = [p.name for p in lab.model.pods if p.name in lab.run.pod_pids]
    captures = {name: Capture(lab.runner, lab.place(name), "eth0", proto, timeout=30)
                for name in pods}
    for cap in captures.values():
        stack.push(cap.__exit__)  # stopped whatever happens, even if another fails to start
    with ThreadPoolExecutor(max_workers=max(1, len(captures))) as pool:
        for future in [pool.submit(cap.__enter__) for cap in captures.values()]:
            future.result()
    return captures


def _pod_view(answer: dict[str, Any], seen: dict[str, list]) -> PodView | None:
    body = answer.get("body")
    if isinstance(body, dict) and "pod" in body:
        return PodView(body["pod"], body["saw_src"], body["saw_sport"], body["saw_dst"],
                       body["saw_dport"], "app answer")
    probe_info = answer.get("probe")
    if not probe_info:
        return None
    for pod, packets in seen.items():
        # Only what arrived: a pod that sent the probe also captured its own outgoing SYN.
        packet = correlate(probe_info, [p for p in packets if p.get("direction") != "out"])
        if packet:
            return PodView(pod, packet["src"], packet["sport"], packet["dst"], packet["dport"],
                           "capture")
    return None


def moved_rules(report: ProbeReport, table: str = "nat") -> list[tuple[int, str, int, str]]:
    """(packets, chain, rule number, rule text) of every rule whose counter grew, in table order."""
    return moved(report.counters, table)


def moved(counters: Delta | None, table: str = "nat") -> list[tuple[int, str, int, str]]:
    """moved_rules() of a counters change: in the order a packet met them (in_packet_order)."""
    if counters is None:
        return []
    return in_packet_order([(r.change.packets, r.chain, r.number, r.text) for r in counters.rules
                            if r.table == table and r.change.packets])


# The nat table's built-in chains in the order a packet meets them: one arriving (PREROUTING) or
# sent by the node itself (OUTPUT), then delivered locally (INPUT) or sent on (POSTROUTING).
NAT_HOOKS = ("PREROUTING", "OUTPUT", "INPUT", "POSTROUTING")
JUMP = re.compile(r"\s-[jg]\s+(\S+)")  # in iptables-save's own text, always -j or -g


def in_packet_order(moved: list[tuple[int, str, int, str]]) -> list[tuple[int, str, int, str]]:
    """The rules whose counters moved (packets, chain, number, text), in the order one packet
    met them: each hook's rules in order, a jump followed into its chain before the next rule.
    Rules no moved jump leads to (another packet's) come last, as given."""
    by_chain: dict[str, list] = {}
    for entry in moved:
        by_chain.setdefault(entry[1], []).append(entry)
    ordered: list = []
    entered: set[str] = set()

    def enter(chain: str) -> None:
        if chain in entered:
            return  # a chain met twice (KUBE-MARK-MASQ) is listed where it was first met
        entered.add(chain)
        for entry in sorted(by_chain.get(chain, ()), key=lambda e: e[2]):
            ordered.append(entry)
            jump = JUMP.search(" " + entry[3])
            if jump:
                enter(jump.group(1))

    for hook in NAT_HOOKS:
        enter(hook)
    return ordered + [e for e in moved if e not in ordered]


def pod_caller_outside(model, kind: str, caller_ip: str) -> bool:
    """A pod caller outside the cluster CIDR: KUBE-SVC's `! -s CIDR` rule marks it whichever
    pod it reaches, so every pod sees the node's address (not because of a hairpin)."""
    return kind == "pod" and ipaddress.ip_address(caller_ip) not in model.cluster_cidr


def masquerade_note(view, caller_ip: str, outside: bool) -> str:
    """Why a pod saw this source: the cluster CIDR (every pod caller), a hairpin, or nothing."""
    if view.src == caller_ip:
        return ""
    if outside:
        return "   (masqueraded: the caller is outside the cluster CIDR" + (
            ", and reached itself)" if view.dst == caller_ip else ")")
    if view.dst == caller_ip:
        return "   (hairpin: the caller reached itself, so it was masqueraded)"
    return ""


def pod_caller_reason(model, caller_ip: str, run_id: str) -> str:
    """Why every pod saw the node's address when a pod outside the cluster CIDR called, and how
    to make the pods insiders."""
    cidr, subnet = model.cluster_cidr, model.nodes[0].pod_subnet
    return (f"every pod caller is masqueraded: {caller_ip} is outside the cluster CIDR {cidr}, "
            f"which KUBE-SVC's `! -s {cidr}` rule marks; `lab-runner rules {run_id} "
            f"--cluster-cidr {subnet} --apply` makes the pods insiders")




def with_rules(moved: list[tuple[int, str, int, str]], ruleset) -> list[tuple[tuple, object]]:
    """Each moved counter (packets, chain, number, text) with its rule as the parser read it from
    `ruleset` (the node's table as iptables-save printed it), so that what a rule does is read
    from its parts (target, target_args), never from its text."""
    by_text = {(r.chain, r.text): r for r in ruleset.rules()}
    return [(entry, by_text[(entry[1], entry[3])]) for entry in moved
            if (entry[1], entry[3]) in by_text]


def connections(lab, source: str, target: Target, *, count: int, until_pods=(),
                kind: str | None = None, counters: bool = True, budget: float | None = None,
                timeout: float = 1.0) -> tuple[list[ProbeReport], Delta | None]:
    """Up to `count` new connections from `source` made by one agent (agent.repeated: it stops
    once every pod of `until_pods` answered), and how the counters grew over all of them: enough
    to see every branch of a Service's random choice. kind: http (udp for a UDP target) unless
    given; a crafted syn says who answered, but not which pod (so until_pods does not apply).
    In nftables mode kube-proxy's rules carry no counters: the Delta is then None."""
    kind = kind or ("udp" if target.proto == "udp" else "http")
    before = Snapshot.parse(lab.save()) if counters and not _nftables(lab) else None
    answers = run_agent(lab.runner, lab.place(source), kind, dst=target.ip, dport=target.port,
                        timeout=timeout, count=count, budget=budget,
                        until_pods=",".join(sorted(until_pods)) or None)
    reports = []
    for answer in answers:
        report = ProbeReport(source, target, kind, answer)
        report.pod_view = _pod_view(answer, {})
        reports.append(report)
    return reports, (delta(before, Snapshot.parse(lab.save())) if before is not None else None)
