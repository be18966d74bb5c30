"""Kernel trace of one probe: a TRACE rule for its 5-tuple, `xtables-monitor --trace`, a structured path."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

from lab_runner.errors import EnvironmentProblem

EVENT = re.compile(r"^\s*TRACE: \d+ (\w+) (\w+):([^:]+):(rule|policy|return):?(0x[0-9a-f]+)?:?"
                   r"([A-Z]+)?:?(\S+)?\s*(.*)$")
PACKET = re.compile(r"^PACKET: \d+ (\w+) (.*)$")
FIELD = re.compile(r"\b(IN|OUT|SRC|DST|SPORT|DPORT|MARK)=(\S*)")


# nf_tables verdict codes, which xtables-monitor sometimes prints as 32-bit numbers.
NFT_VERDICTS = {"0x0": "DROP", "0x1": "ACCEPT", "0xffffffff": "CONTINUE", "0xfffffffe": "BREAK",
                "0xfffffffd": "JUMP", "0xfffffffc": "GOTO", "0xfffffffb": "RETURN"}


@dataclass(frozen=True)
class Hop:
    """One step of the path: a rule that matched (or a chain's policy/return) and its verdict."""

    table: str
    chain: str
    kind: str  # rule | policy | return
    verdict: str  # JUMP, CONTINUE, ACCEPT, RETURN, DROP, …
    target: str
    rule: str
    packet: dict[str, str]  # the packet as it was at this hook (addresses before/after NAT)

    def describe(self) -> str:
        where = f"{self.table}:{self.chain}"
        what = f"{self.verdict}" + (f" → {self.target}" if self.target else "")
        return f"{where:<40} {what:<34} {self.rule}"


@dataclass
class Trace:
    """The path of one packet through the node's tables, in order."""

    hops: list[Hop] = field(default_factory=list)
    raw_text: str = ""

    def chains(self) -> list[str]:
        """The chains visited, in order, without repeats next to each other."""
        out: list[str] = []
        for hop in self.hops:
            if not out or out[-1] != hop.chain:
                out.append(hop.chain)
        return out

    def targets(self) -> list[str]:
        return [hop.rule.split(" -j ", 1)[1].split()[0] for hop in self.hops if " -j " in hop.rule]

    def before_nat(self) -> dict[str, str]:
        return self.hops[0].packet if self.hops else {}

    def after_nat(self) -> dict[str, str]:
        return self.hops[-1].packet if self.hops else {}


def parse(text: str) -> Trace:
    """The first packet's path: from its raw:PREROUTING (or OUTPUT) until the next packet starts."""
    trace = Trace(raw_text=text)
    packet: dict[str, str] = {}
    trace_id = None
    for line in text.splitlines():
        pm = PACKET.match(line)
        if pm:
            packet = dict(FIELD.findall(pm.group(2)))
            continue
        em = EVENT.match(line)
        if not em:
            continue
        tid, table, chain, kind, _handle, verdict, target, rule = em.groups()
        if trace_id is None:
            trace_id = tid
        elif table == "raw" and chain in ("PREROUTING", "OUTPUT") and trace.hops and \
                any(h.table != "raw" for h in trace.hops):
            break  # the next packet of the connection: its path is conntrack's, not the rules'
        if table == "raw":
            continue  # our own TRACE rule: not part of the lesson
        if target and target.startswith("0x") and target in NFT_VERDICTS:
            verdict, target = NFT_VERDICTS[target], ""  # a verdict printed as its number
        trace.hops.append(Hop(table, chain, kind, verdict or kind.upper(), target or "",
                              _strip_rule(rule), dict(packet)))
    return trace


def _strip_rule(rule: str) -> str:
    return re.sub(r"^-4 -t \w+ ", "", rule.strip())


def trace_rule(proto: str, src: str, sport: int, dst: str, dport: int, *, local: bool) -> list[str]:
    """The rule spec (after -A/-D CHAIN) that marks exactly this probe's first packet for tracing."""
    spec = ["-p", proto, "-s", src, "-d", dst, "--sport", str(sport), "--dport", str(dport)]
    if proto == "tcp":
        spec += ["--tcp-flags", "SYN,ACK,RST,FIN", "SYN"]
    return spec + ["-m", "comment", "--comment", "kplab trace", "-j", "TRACE"]


class Tracer:
    """Runs xtables-monitor in the node namespace around one probe; always removes its TRACE rule."""

    def __init__(self, node_prefix: list[str], run_in_node: Callable[[list[str]], object],
                 variant: str):
        if variant != "nft":
            raise EnvironmentProblem("kernel tracing needs the nft variant of iptables "
                                     "(xtables-monitor reads nftables trace events); bring the lab "
                                     "up without `--iptables legacy` to trace")
        self.prefix = node_prefix
        self.run_in_node = run_in_node

    def trace(self, rule: list[str], send: Callable[[], object], *, local: bool,
              settle: float = 0.3) -> tuple[Trace, object]:
        chain = "OUTPUT" if local else "PREROUTING"
        output, answer = monitor_around(
            self.prefix + ["xtables-monitor", "--trace"],
            lambda: self.run_in_node(["iptables", "-t", "raw", "-I", chain, "1", *rule]),
            lambda: self.run_in_node(["iptables", "-t", "raw", "-D", chain, *rule]),
            send, settle)
        return parse(output), answer


def monitor_around(monitor_argv: list[str], arm: Callable[[], object],
                   disarm: Callable[[], object], send: Callable[[], object],
                   settle: float) -> tuple[str, object]:
    """Start a trace monitor, arm the trace, send, read until quiet; always disarm and stop.

    Returns (everything the monitor printed, what send returned)."""
    monitor = subprocess.Popen(monitor_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        arm()
        try:
            time.sleep(0.15)  # the monitor subscribes to trace events asynchronously
            answer = send()
            output = _read_until_quiet(monitor, settle)
        finally:
            disarm()
    finally:
        monitor.terminate()
        try:
            rest, _ = monitor.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            monitor.kill()
            rest, _ = monitor.communicate()
    return output + (rest or ""), answer


def _read_until_quiet(proc: subprocess.Popen, quiet: float) -> str:
    """Collect monitor output until nothing new arrived for `quiet` seconds."""
    chunks = []
    fd = proc.stdout.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], quiet)
        if not ready:
            break
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data.decode(errors="replace"))
    return "".join(chunks)


TRACE_PORTS = (61000, 64999)  # above the kernel's ephemeral range: no earlier connection shares it


def node_tracer(lab, node: str = "node") -> Tracer:
    """A Tracer running xtables-monitor in one node of the lab (`node`: the first)."""
    return Tracer(lab.place(node).prefix() + lab.command_in(node, []),
                  lambda argv: lab.exec(node, argv, check=True), lab.run.iptables)


def caller_node(lab, source: str, target=None) -> str:
    """The node whose rules NAT a caller's packet: the node addressed (a NodePort on that node's
    address), else a node itself, a pod's own node, the node a client sends service traffic to;
    the first node for anything else."""
    if target is not None:
        addressed = [n.name for n in lab.model.nodes if str(n.ip) == target.ip]
        if addressed:
            return addressed[0]
    kind, name = lab.resolve(source)
    if kind == "node":
        return name
    hosts = {p.name: p.node for p in lab.model.pods} | {c.name: c.node for c in lab.model.clients}
    return hosts.get(name) or lab.model.nodes[0].name


def trace_probe(lab, source: str, target, *, sport: int | None = None,
                node: str | None = None) -> tuple[Trace, dict, list[str]]:
    """Trace one crafted first packet from `source` to `target` on a live lab, in `node` (by
    default the caller's own: caller_node).

    Returns (the path, the probe's answer, the TRACE rule spec that was added and removed).
    """
    import random

    from lab_runner.evidence.sampling import host_ip
    from lab_runner.probes.launch import run_agent

    sport = sport or random.randint(*TRACE_PORTS)
    node = node or caller_node(lab, source, target)
    local = lab.resolve(source) == lab.resolve(node)  # the node's own packet: OUTPUT, not PREROUTING
    rule = trace_rule(target.proto, host_ip(lab, source), sport, target.ip, target.port, local=local)
    tracer = node_tracer(lab, node)
    probe_kind = "udp" if target.proto == "udp" else "syn"
    path, answer = tracer.trace(rule, lambda: run_agent(
        lab.runner, lab.place(source), probe_kind, dst=target.ip, dport=target.port, sport=sport,
        timeout=1), local=local)
    return path, answer, rule
