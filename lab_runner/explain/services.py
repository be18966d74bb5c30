"""Every Service port a node's kube-proxy rules describe: addresses, endpoints and their shares.

Read from kube-proxy's own comments (`ns/name:port cluster IP`, `… external IP`, `… loadbalancer
IP`, `… has no endpoints`, and the plain `ns/name:port` on KUBE-NODEPORTS) and from the rules
those comments sit on (-d, --dport, -p, the chain jumped to). An endpoint's share is what its
KUBE-SVC (or KUBE-SVL) rule gives a new connection whose caller has no affinity entry yet: the
`--probability` of each rule as the kernel stores it (lround(p * 2^31) / 2^31, as the tracer
reads it), the rules tried in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from lab_runner.ruleset.compare import kernel_probability
from lab_runner.ruleset.counters import Counters
from lab_runner.ruleset.parse import Rule, Ruleset
from lab_runner.ruleset.semantics import dnat_destination

TWO_31 = 1 << 31
ENDPOINT_PREFIX = "KUBE-SEP-"
SPREAD_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-")  # chains that pick an endpoint at random
EXTERNAL_PREFIXES = ("KUBE-EXT-", "KUBE-XLB-", "KUBE-FW-")
# kube-proxy's comment on its KUBE-SERVICES rules; v1.1x wrote `ns/name: cluster IP` for an
# unnamed port (a trailing colon).
SERVICE_COMMENT = re.compile(r"^(?P<name>\S+?):? (?P<kind>cluster IP|external IP|loadbalancer IP|"
                             r"has no endpoints|has no local endpoints)$")
LOCAL_POLICY = "externalTrafficPolicy Local (outside callers reach this node's endpoints only)"
PROBABILITY = re.compile(r"--probability[ =](\S+)")
TO_DESTINATION = re.compile(r"--to-destination[ =](\S+)")
SECONDS = re.compile(r"--seconds[ =](\d+)")


@dataclass(frozen=True)
class Endpoint:
    """One endpoint a Service port can send a new connection to, and its exact share."""

    address: str  # "ip:port" as the DNAT rule writes it
    share: Fraction
    chain: str  # its KUBE-SEP-… chain
    line_no: int  # the DNAT rule's line in the file
    counters: Counters | None  # the DNAT rule's, from iptables-save -c


@dataclass
class ServicePort:
    """A Service port as the node's rules implement it."""

    name: str  # ns/name:port (ns/name for an unnamed port)
    protocol: str
    cluster_ip: str | None = None
    port: int | None = None
    line_no: int = 0  # where the rules first name it
    chain: str | None = None  # KUBE-SVC-… (KUBE-SVL-… for internalTrafficPolicy Local)
    node_ports: list[int] = field(default_factory=list)
    external_ips: list[str] = field(default_factory=list)  # "ip:port"
    load_balancer_ips: list[str] = field(default_factory=list)  # "ip:port"
    endpoints: list[Endpoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.protocol

    def matches(self, wanted: str) -> bool:
        """`--service ns/name` (every port) or `ns/name:port`."""
        return self.name == wanted or self.name.startswith(wanted + ":")


def find_services(ruleset: Ruleset) -> list[ServicePort]:
    """Every Service port in the rules, sorted by name and protocol."""
    found: dict[tuple[str, str], ServicePort] = {}
    nat = ruleset.table("nat")
    for rule in nat.chains["KUBE-SERVICES"].rules:
        _service_rule(ruleset, rule, found)
    if "KUBE-NODEPORTS" in nat.chains:
        for rule in nat.chains["KUBE-NODEPORTS"].rules:
            _node_port_rule(ruleset, rule, found)
    for chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"):
        if ruleset.has_chain("filter", chain):
            for rule in ruleset.chain("filter", chain).rules:
                _filter_rule(rule, found)
    for port in found.values():
        if port.chain is not None and not port.endpoints:
            port.endpoints, notes = spread(ruleset, port.chain)
            port.notes += notes
    return sorted(found.values(), key=lambda p: p.key)


def comment(rule: Rule) -> str | None:
    """The rule's `-m comment --comment` text, or None."""
    if "--comment" not in rule.text:  # cheap: most rules of a big node have none to read
        return None
    match = rule.match("comment")
    if match is None or len(match.args) < 2:
        return None
    return match.args[1]


def _port_of(found: dict, rule: Rule, name: str) -> ServicePort:
    protocol = protocol_of(rule)
    key = (name, protocol)
    if key not in found:
        found[key] = ServicePort(name, protocol, line_no=rule.line_no)
    return found[key]


def protocol_of(rule: Rule) -> str:
    """The rule's -p, lower case (tcp when it has none)."""
    option = rule.option("p")
    return option[1].lower() if option else "tcp"


def _dport(rule: Rule) -> int | None:
    for match in rule.matches:
        args = match.args
        for flag in ("--dport", "--destination-port"):
            if flag in args and args.index(flag) + 1 < len(args):
                value = args[args.index(flag) + 1]
                return int(value) if value.isdigit() else None
    return None


def _destination(rule: Rule) -> str | None:
    option = rule.option("d")
    if option is None or option[0]:
        return None
    return option[1].removesuffix("/32")


def _service_rule(ruleset: Ruleset, rule: Rule, found: dict) -> None:
    """A KUBE-SERVICES rule of the nat table: a cluster IP, external IP or load balancer IP."""
    text = comment(rule)
    parsed = SERVICE_COMMENT.match(text) if text else None
    if rule.target == "KUBE-MARK-MASQ":  # v1.2x's masquerade rule beside the cluster IP's
        return
    if parsed is not None:
        name, kind = parsed["name"], parsed["kind"]
    elif rule.target and rule.target.startswith(SPREAD_PREFIXES) and _destination(rule):
        name, kind = rule.target, "cluster IP"  # no comment (stripped, or another writer's)
    else:
        return
    port = _port_of(found, rule, name)
    address, dport = _destination(rule), _dport(rule)
    if kind == "cluster IP":
        port.cluster_ip, port.port = address, dport
        if rule.target and rule.target.startswith(SPREAD_PREFIXES):
            port.chain = rule.target
            if rule.target.startswith("KUBE-SVL-"):
                port.notes.append("internalTrafficPolicy Local (KUBE-SVL: this node's "
                                  "endpoints only)")
    elif kind in ("external IP", "loadbalancer IP"):
        listed = port.external_ips if kind == "external IP" else port.load_balancer_ips
        shown = f"{address}:{dport}"
        if shown not in listed:
            listed.append(shown)
        _external_chain(ruleset, port, rule.target)
    elif rule.target in ("REJECT", "DROP"):  # v1.2x wrote "has no endpoints" in nat too
        _no_endpoints(port, rule, address, dport, kind)


def _node_port_rule(ruleset: Ruleset, rule: Rule, found: dict) -> None:
    """A KUBE-NODEPORTS rule: comment `ns/name:port`, --dport the node port."""
    text = comment(rule)
    if not text or " " in text or rule.target == "KUBE-MARK-MASQ":
        return
    port = _port_of(found, rule, text.rstrip(":"))
    node_port = _dport(rule)
    if node_port is not None and node_port not in port.node_ports:
        port.node_ports.append(node_port)
    _external_chain(ruleset, port, rule.target)


def _filter_rule(rule: Rule, found: dict) -> None:
    """filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES: `has no endpoints` REJECT or DROP."""
    text = comment(rule)
    parsed = SERVICE_COMMENT.match(text) if text else None
    if parsed is None or rule.target not in ("REJECT", "DROP"):
        return
    key = (parsed["name"], protocol_of(rule))
    port = found.get(key)
    if port is None:
        port = found[key] = ServicePort(*key, line_no=rule.line_no)
    _no_endpoints(port, rule, _destination(rule), _dport(rule), parsed["kind"])


def _no_endpoints(port: ServicePort, rule: Rule, address: str | None, dport: int | None,
                  kind: str) -> None:
    if rule.chain == "KUBE-SERVICES" and address and port.cluster_ip is None and \
            kind == "has no endpoints":
        port.cluster_ip, port.port = address, dport
    elif rule.chain == "KUBE-EXTERNAL-SERVICES" and dport and address is None and \
            dport not in port.node_ports and "addrtype" in rule.text:
        port.node_ports.append(dport)
    prefix = f"{kind}: {rule.target} (line"
    at = next((i for i, note in enumerate(port.notes) if note.startswith(prefix)), None)
    if at is None:
        port.notes.append(f"{prefix} {rule.line_no})")
    else:  # one note for the rules of each address: "(lines 34, 35, 36)"
        port.notes[at] = port.notes[at][:-1].replace("(line ", "(lines ", 1) + f", {rule.line_no})"
    if kind == "has no local endpoints" and LOCAL_POLICY not in port.notes:
        port.notes.append(LOCAL_POLICY)


def _external_chain(ruleset: Ruleset, port: ServicePort, chain: str | None) -> None:
    """Notes on the chain NodePorts and external addresses go to (KUBE-EXT/XLB/FW)."""
    if not chain or not chain.startswith(EXTERNAL_PREFIXES) or not ruleset.has_chain("nat", chain):
        return
    targets = {r.target for r in ruleset.chain("nat", chain).rules}
    if chain.startswith("KUBE-FW-"):
        note = "loadBalancerSourceRanges (KUBE-FW: other sources are dropped)"
    elif chain.startswith("KUBE-XLB-"):
        note = LOCAL_POLICY
    elif any(t and t.startswith("KUBE-SVL-") for t in targets):
        local = next(t for t in targets if t and t.startswith("KUBE-SVL-"))
        endpoints, _ = spread(ruleset, local)
        reached = ", ".join(f"{e.address} ({float(e.share) * 100:.4g} %)" for e in endpoints)
        note = (f"externalTrafficPolicy Local: outside callers reach only {reached} ({local})"
                if endpoints else LOCAL_POLICY)
    else:
        return
    if note not in port.notes:
        port.notes.append(note)


def spread(ruleset: Ruleset, chain: str) -> tuple[list[Endpoint], list[str]]:
    """The endpoints a KUBE-SVC/KUBE-SVL chain sends a caller's first connection to, with exact
    shares, and notes (session affinity, rules that are not kube-proxy's spread)."""
    endpoints: list[Endpoint] = []
    notes: list[str] = []
    # Exact arithmetic in integers: after i random rules, what is left is left / 2^(31 i).
    # (Fractions would normalise at every step: seconds for a node of 100,000 endpoints.)
    left, bits = 1, 0
    for rule in ruleset.chain("nat", chain).rules:
        target = rule.target or ""
        if target == "KUBE-MARK-MASQ":
            continue
        if not target.startswith(ENDPOINT_PREFIX) or not ruleset.has_chain("nat", target):
            notes.append(f"line {rule.line_no} in {chain} is not an endpoint pick: not in the "
                         "shares")
            continue
        if "--rcheck" in rule.text:  # sessionAffinity ClientIP: no entry on a first connection
            seconds = SECONDS.search(rule.text)
            note = "sessionAffinity ClientIP" + (f" ({seconds[1]} s)" if seconds else "")
            if note not in notes:
                notes.append(note)
            continue
        chance = _chance(rule)  # out of 2^31
        share = left * chance
        left = (left << 31) - share
        bits += 31
        address, line_no, counters = _dnat(ruleset, target)
        endpoints.append(Endpoint(address, Fraction(share, 1 << bits), target, line_no, counters))
        if not left:
            break
    if left and endpoints:
        rest = Fraction(left, 1 << bits)
        notes.append(f"{float(rest) * 100:.4g} % of new connections fall through {chain} unpicked")
    return endpoints, notes


def _chance(rule: Rule) -> int:
    """The chance, out of 2^31, that the rule matches (a `-m statistic --mode random` one as
    the kernel stores it; any other matches)."""
    if "statistic" not in rule.text:
        return TWO_31
    found = PROBABILITY.search(rule.text)
    if found is None or "--mode random" not in rule.text and "--mode=random" not in rule.text:
        return TWO_31
    chance = _stored(found[1])
    return TWO_31 - chance if "! --probability" in rule.text else chance


@lru_cache(maxsize=4096)  # kube-proxy writes the same few values, once per endpoint
def _stored(value: str) -> int:
    return min(kernel_probability(value), TWO_31)


def _dnat(ruleset: Ruleset, chain: str) -> tuple[str, int, Counters | None]:
    """The address a KUBE-SEP chain DNATs to, its rule's line and counters."""
    for rule in ruleset.chain("nat", chain).rules:
        if rule.target == "DNAT":
            found = TO_DESTINATION.search(rule.text)
            if found:
                return found[1], rule.line_no, rule.counters
            address, port = dnat_destination(rule)
            return (address if port is None else f"{address}:{port}"), rule.line_no, rule.counters
    return "(no DNAT rule)", ruleset.chain("nat", chain).line_no or 0, None
