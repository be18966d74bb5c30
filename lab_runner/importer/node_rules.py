"""What a node's iptables-save says about its kube-proxy: cluster CIDR, rule generation, nfacct."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab_runner.explain.dump import Dump
from lab_runner.explain.services import SPREAD_PREFIXES, comment

# kube-proxy v1.31+ counts localhost NodePort packets with this nfacct object (PR 125015): the
# kit's v1.34 profile; ct_state_invalid_dropped_pkts alone (PR 122812) came with v1.30.
LOCALHOST_NFACCT = "localhost_nps_accepted_pkts"


@dataclass(frozen=True)
class NodeFacts:
    """kube-proxy's settings as its rules show them, and the evidence for each (for comments)."""

    cluster_cidr: ipaddress.IPv4Network | None
    cidr_line: int | None  # the rule it was read from
    profile: str
    profile_reason: str
    nfacct: bool
    masquerade_all: bool  # --masquerade-all: every caller of a cluster IP is marked


def read_facts(dump: Dump) -> NodeFacts:
    cidr, cidr_line = _cluster_cidr(dump)
    profile, reason = _profile(dump)
    nfacct = any("-m nfacct" in rule.text for rule in dump.ruleset.rules("filter"))
    return NodeFacts(cidr, cidr_line, profile, reason, nfacct, _masquerade_all(dump))


def _masquerade_all(dump: Dump) -> bool:
    """A cluster IP's masquerade rule without `! -s CIDR`: kube-proxy's --masquerade-all."""
    for rule in dump.ruleset.rules("nat"):
        if rule.target == "KUBE-MARK-MASQ" and (comment(rule) or "").endswith(" cluster IP"):
            return rule.option("s") is None
    return False


def _cluster_cidr(dump: Dump) -> tuple[ipaddress.IPv4Network | None, int | None]:
    """kube-proxy's --cluster-cidr: the `! -s CIDR … -j KUBE-MARK-MASQ` beside each cluster IP
    (in KUBE-SVC-… from v1.22, in KUBE-SERVICES before), or v1.28+'s `-s CIDR` "pod traffic for
    … external destinations" rule in KUBE-EXT-…."""
    for rule in dump.ruleset.rules("nat"):
        if rule.target not in ("KUBE-MARK-MASQ", "RETURN") or " -s " not in f" {rule.text} ":
            continue
        source = rule.option("s")
        if source is None:
            continue
        inverted, value = source
        outsiders = inverted and rule.target == "KUBE-MARK-MASQ"
        pods_out = not inverted and "pod traffic for" in (comment(rule) or "")
        if outsiders or pods_out:
            try:
                return ipaddress.IPv4Network(value), rule.line_no
            except ValueError:
                continue
    return None, None


def _profile(dump: Dump) -> tuple[str, str]:
    if any(LOCALHOST_NFACCT in rule.text for rule in dump.ruleset.rules("nat")):
        return "v1.34", f"its NodePort rules count {LOCALHOST_NFACCT} (kube-proxy v1.31+)"
    for rule in dump.ruleset.rules("nat"):
        if rule.chain.startswith(SPREAD_PREFIXES) and rule.target.startswith("KUBE-SEP-"):
            if " -> " in (comment(rule) or ""):
                return "v1.30", (f"line {rule.line_no}: `ns/svc:port -> ip:port` comments "
                                 "(kube-proxy v1.25+)")
            return "v1.23", (f"line {rule.line_no}: plain `ns/svc:port` comments on the "
                             "endpoint rules (kube-proxy v1.24 or older)")
    if dump.ruleset.has_chain("filter", "KUBE-PROXY-FIREWALL"):
        return "v1.30", "no endpoint rules, but a KUBE-PROXY-FIREWALL chain (kube-proxy v1.25+)"
    return "v1.23", ("no endpoint rules, and no KUBE-PROXY-FIREWALL chain (kube-proxy v1.24 or "
                     "older)")
