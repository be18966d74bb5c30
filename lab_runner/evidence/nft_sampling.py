"""Random selection measured in nftables mode: new connections counted by the pod that answered,
tested against the exact shares nft_tracer computes from the table.

kube-proxy's nftables rules carry no counters, so unlike sampling.py (which counts each DNAT
rule's packets) the observation is each connection's answer: the app names its pod and the
address:port it was reached at, which is the DNAT destination the tracer names.
"""

from __future__ import annotations

import re
import time
from fractions import Fraction

from lab_runner.errors import LabError
from lab_runner.evidence.probing import Target, connections
from lab_runner.evidence.sampling import (NO_DNAT, SampleReport, forget_unfinished_flows, host_ip,
                                          node_facts)
from lab_runner.model import Lab
from lab_runner.probes import stats
from lab_runner.probes.launch import run_agent
from lab_runner.ruleset import nft_apply
from lab_runner.ruleset import nft_tracer
from lab_runner.ruleset.nft_model import NftRuleset
from lab_runner.ruleset.nft_parse import parse_nft

SECONDS_PER_FLOW = 0.2  # the agent's budget: a connection to a pod takes a few ms


def expected_distribution(ruleset: NftRuleset, lab: Lab, source_ip: str, target: Target, *,
                          sport: int = 20000, in_interface: str | None = "eth0"
                          ) -> tuple[dict[str, Fraction], dict[str, str]]:
    """The exact probability of each DNAT destination ("ip:port") for a new flow, and the
    endpoint chain whose `dnat to` sends it there."""
    packet = nft_tracer.Packet(src=source_ip, dst=target.ip, protocol=target.proto, sport=sport,
                               dport=target.port, in_interface=in_interface, **node_facts(lab))
    shares: dict[str, Fraction] = {}
    chains: dict[str, str] = {}
    for outcome in nft_tracer.trace(ruleset, packet).outcomes:
        key = f"{outcome.dnat[0]}:{outcome.dnat[1]}" if outcome.dnat else NO_DNAT
        shares[key] = shares.get(key, Fraction(0)) + outcome.probability
        chain = next((s.chain for s in reversed(outcome.path) if "dnat to" in s.text), "")
        chains.setdefault(key, chain)
    return shares, chains


def expected(lab, source: str, target: Target, *, against: str = "kube-proxy"
             ) -> tuple[dict[str, Fraction], dict[str, str]]:
    """What kube-proxy's table for this lab says (against="kube-proxy"), or the node's table
    as `nft list` shows it now (against="node")."""
    text = lab.rendered_rules() if against == "kube-proxy" else lab.save()
    inbound = "eth0" if lab.resolve(source)[0] == "client" else lab.model.nodes[0].bridge
    return expected_distribution(parse_nft(text), lab.model, host_ip(lab, source), target,
                                 in_interface=inbound)


def sample(lab, target: Target, flows: int, *, source: str = "client",
           alpha: float = 1e-6, against: str = "kube-proxy") -> SampleReport:
    """`flows` new connections from `source`, counted by the destination that answered, and the
    chi-square test of that spread against the tracer's exact shares."""
    if target.proto != "tcp":
        raise LabError("sampling an nftables lab counts the pods' answers to TCP connections: "
                       "a UDP target is not supported yet")
    shares, chains = expected(lab, source, target, against=against)
    started = time.monotonic()
    reports, _ = connections(lab, source, target, count=flows, kind="http", counters=False,
                             budget=max(10.0, flows * SECONDS_PER_FLOW))
    seconds = time.monotonic() - started
    counts: dict[str, int] = {}
    for report in reports:
        view = report.pod_view
        key = f"{view.dst}:{view.dport}" if view else NO_DNAT
        counts[key] = counts.get(key, 0) + 1
    if len(reports) < flows:
        raise LabError(f"only {len(reports)} of {flows} connections were made in the agent's "
                       "time budget: try fewer --flows")
    result = stats.gof(counts, shares, alpha=alpha)
    return SampleReport(target, source, len(reports), counts, shares, chains, result, seconds)


# -- many flows: crafted SYNs counted by the kit's own counters ----------------------------------

COUNT_TABLE = "kplab-count"  # the kit's table (its prefix): never kube-proxy's, deleted after
ELSEWHERE = "forwarded elsewhere"  # a DNAT destination none of the counted ones names


def burst(lab, target: Target, flows: int, destinations, *, source: str = "client",
          sport_base: int = 20000) -> dict[str, int]:
    """`flows` crafted first packets (the burst agent: thousands a second) from `source`, counted
    by where the node forwards them: {"ip:port": n} for each of `destinations`, ELSEWHERE for
    any other, NO_DNAT for those never forwarded (dropped, refused or not DNATed at all).

    The answer of a pod cannot be read here (a crafted SYN's SYN-ACK comes back from the
    ClusterIP), and kube-proxy's rules have no counters: the kit adds `table ip kplab-count`
    with one counting rule per destination at the forward hook, just before kube-proxy's own
    filter chains (priority -5; DNAT happened in prerouting), and deletes it afterwards.
    """
    caller = host_ip(lab, source)
    keys = sorted(set(destinations) - {NO_DNAT})
    new_from = f"add rule ip {COUNT_TABLE} forward ct state new ip saddr {caller}"
    rules = [f"{new_from} ip daddr {key.split(':')[0]} th dport {key.split(':')[1]} counter accept "
             f"comment \"{key}\"" for key in keys]
    document = "\n".join([f"add table ip {COUNT_TABLE}",
                          f"add chain ip {COUNT_TABLE} forward {{ type filter hook forward "
                          "priority -5 ; }",
                          *rules,
                          f"{new_from} counter comment \"{ELSEWHERE}\""]) + "\n"
    place = lab.place("node")
    forget_unfinished_flows(lab, caller, target)
    nft_apply.apply(lab.runner, place, document)
    try:
        sent = run_agent(lab.runner, lab.place(source), "burst", dst=target.ip,
                         dport=target.port, flows=flows, proto=target.proto,
                         sport_base=sport_base, wait=120)
        listing = nft_apply.save(lab.runner, place, table=COUNT_TABLE)
    finally:
        lab.exec("node", ["nft", "delete", "table", "ip", COUNT_TABLE])
        forget_unfinished_flows(lab, caller, target)  # half-open flows would linger for minutes
    counts = {key: int(n) for n, key in _COUNTED.findall(listing)}
    counts[NO_DNAT] = int(sent["sent"]) - sum(counts.values())
    return {key: n for key, n in counts.items() if n or key in destinations}


_COUNTED = re.compile(r'counter packets (\d+) bytes \d+ (?:accept )?comment "([^"]+)"')
