"""Kernel trace of one probe in nftables mode: `meta nftrace set 1` for its first packet, set in
a table of the kit's own, and the rules `nft monitor trace` reports, as a structured path.

kube-proxy's `table ip kube-proxy` is never touched: the trace rule lives in `table ip
kplab-trace`, whose chains run at priority -400 (before every chain of kube-proxy's, the
earliest of which is at -110) at prerouting (a packet arriving) and output (the node's own).
The table is deleted afterwards, whatever happens.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

from lab_runner.evidence.kernel_trace import TRACE_PORTS, Trace, caller_node, monitor_around
from lab_runner.ruleset.nft_names import TABLE as KUBE_PROXY_TABLE

TRACE_TABLE = "kplab-trace"
TRACE_PRIORITY = -400
# `trace id 8d5103dd ip kube-proxy services rule … (verdict goto service-…)`
EVENT = re.compile(r"^trace id (\w+) (\w+) (\S+) (\S+) (packet|rule|policy|verdict):? ?(.*?)\s*$")
VERDICT = re.compile(r"^(.*) \(verdict (\w+)(?: (\S+))?\)$")
PACKET_FIELD = re.compile(r"\b(?:ip|tcp|udp) (saddr|daddr|sport|dport) (\S+)")
FIELD_NAMES = {"saddr": "SRC", "daddr": "DST", "sport": "SPORT", "dport": "DPORT"}


@dataclass(frozen=True)
class NftHop:
    """A rule that matched (or a chain's policy) on the packet's way: where, what, the verdict."""

    table: str
    chain: str
    kind: str  # rule | policy
    rule: str
    verdict: str  # continue, jump, goto, accept, drop, return
    target: str
    packet: dict[str, str]  # SRC, DST, SPORT, DPORT as this chain saw them (kernel_trace's keys)

    def describe(self) -> str:
        what = self.verdict + (f" → {self.target}" if self.target else "")
        return f"{self.chain:<44} {what:<50} {self.rule}"


def parse(text: str, trace_id: str | None = None) -> Trace:
    """The first traced packet's path (or that of `trace_id`) through kube-proxy's table
    (kernel_trace's Trace of NftHops; one trace id: a retransmission has another)."""
    path = Trace(raw_text=text)
    first_id = trace_id
    packet: dict[str, str] = {}  # as the latest hook saw it: nft prints it entering a base chain
    for line in text.splitlines():
        match = EVENT.match(line.strip())
        if not match:
            continue
        this_id, _family, table, chain, kind, rest = match.groups()
        first_id = first_id or this_id
        if this_id != first_id:
            continue  # another packet of the connection: its path is conntrack's, not the rules'
        if kind == "packet":
            packet = _fields(rest)
            continue
        if table != KUBE_PROXY_TABLE:
            continue  # the kit's own trace table: not part of the lesson
        seen = dict(packet)
        if kind in ("policy", "verdict"):  # a base chain's policy; the end of a regular chain
            what = "policy" if kind == "policy" else "end of chain"
            path.hops.append(NftHop(table, chain, kind, what, rest.split()[0], "", seen))
            continue
        verdict = VERDICT.match(rest)
        rule, word, target = (verdict.groups() if verdict else (rest, "continue", None))
        path.hops.append(NftHop(table, chain, kind, rule, word, target or "", seen))
    return path


def parse_all(text: str) -> list[Trace]:
    """The path of every traced packet, one Trace per trace id, in the order they began."""
    ids = dict.fromkeys(m.group(1) for m in (EVENT.match(line.strip())
                                             for line in text.splitlines()) if m)
    return [parse(text, trace_id) for trace_id in ids]


def _fields(text: str) -> dict[str, str]:
    return {FIELD_NAMES[m.group(1)]: m.group(2) for m in PACKET_FIELD.finditer(text)}


def match_rule(proto: str, src: str, dst: str, dport: int, sport: int | None) -> str:
    """The nft match that picks exactly the probe's first packet (a TCP SYN alone)."""
    spec = f"ip saddr {src} ip daddr {dst} {proto} dport {dport}"
    if sport is not None:
        spec += f" {proto} sport {sport}"
    if proto == "tcp":
        spec += " tcp flags & (syn | ack | rst | fin) == syn"
    return spec + " meta nftrace set 1"


def trace_document(rule: str) -> str:
    """The kit's trace table, made fresh (add + delete + add): one nft -f, atomic."""
    head = f"add table ip {TRACE_TABLE}\ndelete table ip {TRACE_TABLE}\nadd table ip {TRACE_TABLE}\n"
    chains = ""
    for chain, hook in (("trace-prerouting", "prerouting"), ("trace-output", "output")):
        chains += (f"add chain ip {TRACE_TABLE} {chain} {{ type filter hook {hook} priority "
                   f"{TRACE_PRIORITY} ; }}\nadd rule ip {TRACE_TABLE} {chain} {rule}\n")
    return head + chains


class NftTracer:
    """Runs `nft monitor trace` in the node around one send; always deletes the trace table."""

    def __init__(self, node_prefix: list[str], run_in_node: Callable[..., object]):
        self.prefix = node_prefix
        self.run_in_node = run_in_node

    def trace(self, rule: str, send: Callable[[], object], *, settle: float = 0.3
              ) -> tuple[Trace, object]:
        output, answer = self._monitor(rule, send, settle)
        return parse(output), answer

    def trace_all(self, rule: str, send: Callable[[], object], *, settle: float = 0.3
                  ) -> tuple[list[Trace], object]:
        """trace(), keeping the path of every packet the rule marked (many connections)."""
        output, answer = self._monitor(rule, send, settle)
        return parse_all(output), answer

    def _monitor(self, rule: str, send: Callable[[], object], settle: float) -> tuple[str, object]:
        return monitor_around(
            self.prefix + ["nft", "monitor", "trace"],
            lambda: self.run_in_node(["nft", "-f", "-"], input=trace_document(rule)),
            lambda: self.run_in_node(["nft", "delete", "table", "ip", TRACE_TABLE]),
            send, settle)


def node_tracer(lab, node: str = "node") -> NftTracer:
    """An NftTracer in one node of the lab (`node`: the first)."""
    return NftTracer(lab.place(node).prefix(),
                     lambda argv, input=None: lab.exec(node, argv, check=True, input=input))


def trace_probe(lab, source: str, target, *, sport: int | None = None, node: str | None = None
                ) -> tuple[Trace, dict, str]:
    """Trace one crafted first packet from `source` to `target` on a live nftables lab, in `node`
    (by default the caller's own: kernel_trace.caller_node).

    Returns (the path through kube-proxy's chains, the probe's answer, the trace match used)."""
    from lab_runner.evidence.sampling import host_ip
    from lab_runner.probes.launch import run_agent

    sport = sport or random.randint(*TRACE_PORTS)
    rule = match_rule(target.proto, host_ip(lab, source), target.ip, target.port, sport)
    kind = "udp" if target.proto == "udp" else "syn"
    path, answer = node_tracer(lab, node or caller_node(lab, source, target)).trace(rule, lambda: run_agent(
        lab.runner, lab.place(source), kind, dst=target.ip, dport=target.port, sport=sport,
        timeout=1))
    return path, answer, rule


def trace_connections(lab, source: str, target, send: Callable[[], object]
                      ) -> tuple[list[Trace], object]:
    """The paths of the first packets of every connection `send` makes from `source` to
    `target` (any source port), and what send returned."""
    from lab_runner.evidence.sampling import host_ip

    rule = match_rule(target.proto, host_ip(lab, source), target.ip, target.port, None)
    return node_tracer(lab).trace_all(rule, send)
