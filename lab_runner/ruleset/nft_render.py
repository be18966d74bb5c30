"""Render a lab's services as the `table ip kube-proxy` document kube-proxy's nftables proxier
writes (pkg/proxy/nftables/proxier.go), one `nft -f` file applied atomically.

The document holds the state after a full sync as `add` commands, in an order `nft -f` accepts
on an empty node (table, sets, maps, chains, rules, elements): a chain or set is declared before a
rule or map element names it. Kube-proxy's own unit tests compare this state (knftables.Fake's
Dump) after sorting; tests/unit/test_nft_render.py sorts both sides the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab_runner.endpoints import PodIndex
from lab_runner.model import Lab, Service, ServicePort
from lab_runner.ruleset import nft_names as n
from lab_runner.ruleset.render import MASQ_MARK  # %#08x of 1<<14, as in iptables mode

# Which chain layout: kube-proxy v1.34 (PR #132456) renamed the filter chains that must see
# pre-DNAT addresses to *-pre-dnat and moved the others to the filter priority (0).
PROFILES = ("v1.33", "v1.34")
DEFAULT_PROFILE = "v1.34"


@dataclass(frozen=True)
class _BaseChain:
    name: str
    kind: str  # filter | nat
    hook: str
    priority: int  # knftables writes dstnat-10 etc. as numbers for the ip family


@dataclass(frozen=True)
class _Profile:
    """The base chains and the jumps from them (nftablesBaseChains / nftablesJumpChains)."""

    name: str
    base_chains: tuple[_BaseChain, ...]
    jumps: tuple[tuple[str, str, str], ...]  # (to, from, match) in kube-proxy's order
    masq_matches_port: bool  # v1.33 repeats `tcp dport P` in the service chain's masquerade rule


_NAT_CHAINS = (
    _BaseChain("nat-prerouting", "nat", "prerouting", -100),
    _BaseChain("nat-output", "nat", "output", -100),
    _BaseChain("nat-postrouting", "nat", "postrouting", 100),
)
NEW = "ct state new"


def _profile(name: str, filters: tuple[tuple[str, str, int], ...], firewall_from: tuple[str, ...],
             cluster_ips_from: tuple[str, ...], masq_matches_port: bool) -> _Profile:
    """A layout: its filter chains (name, hook, priority) and where the two checks hang."""
    jumps = ((n.NODEPORT_ENDPOINTS_CHECK, "filter-input", NEW),)
    jumps += tuple((n.SERVICE_ENDPOINTS_CHECK, f"filter-{hook}", NEW)
                   for hook in ("input", "forward", "output"))
    jumps += tuple((n.FIREWALL_CHECK, chain, NEW) for chain in firewall_from)
    jumps += ((n.SERVICES, "nat-output", ""), (n.SERVICES, "nat-prerouting", ""),
              (n.MASQUERADING, "nat-postrouting", ""))
    jumps += tuple((n.CLUSTER_IPS_CHECK, chain, NEW) for chain in cluster_ips_from)
    chains = tuple(_BaseChain(chain, "filter", hook, priority) for chain, hook, priority in filters)
    return _Profile(name, chains + _NAT_CHAINS, jumps, masq_matches_port)


_PROFILES = {
    # v1.31-v1.33 (proxier.go at b0f823e6): every filter chain runs before DNAT (dstnat-10),
    # except the ClusterIP port check, which must see the DNATed packet (dstnat+10).
    "v1.33": _profile("v1.33", (
        ("filter-prerouting", "prerouting", -110), ("filter-input", "input", -110),
        ("filter-forward", "forward", -110), ("filter-output", "output", -110),
        ("filter-output-post-dnat", "output", -90),
    ), ("filter-prerouting", "filter-output"), ("filter-forward", "filter-output-post-dnat"),
        masq_matches_port=True),
    # v1.34 and later: only the LoadBalancerSourceRanges check runs before DNAT.
    "v1.34": _profile("v1.34", (
        ("filter-prerouting-pre-dnat", "prerouting", -110),
        ("filter-output-pre-dnat", "output", -110),
        ("filter-input", "input", 0), ("filter-forward", "forward", 0),
        ("filter-output", "output", 0),
    ), ("filter-prerouting-pre-dnat", "filter-output-pre-dnat"),
        ("filter-forward", "filter-output"), masq_matches_port=False),
}

_TUPLE = "ipv4_addr . inet_proto . inet_service : verdict"
_DISPATCH = "ip daddr . meta l4proto . th dport"
# (name, type, comment) of the maps every sync ensures.
_MAPS = (
    (n.NO_ENDPOINT_SERVICES, _TUPLE,
     "vmap to drop or reject packets to services with no endpoints"),
    (n.NO_ENDPOINT_NODEPORTS, "inet_proto . inet_service : verdict",
     "vmap to drop or reject packets to service nodeports with no endpoints"),
    (n.FIREWALL_IPS, _TUPLE, "destinations that are subject to LoadBalancerSourceRanges"),
    (n.SERVICE_IPS, _TUPLE, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    (n.SERVICE_NODEPORTS, "inet_proto . inet_service : verdict", "NodePort traffic"),
)


@dataclass
class _Document:
    """The objects of one table, each kind in the order kube-proxy adds them."""

    sets: list[str] = field(default_factory=list)
    maps: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    _declared: set[str] = field(default_factory=set)

    def chain(self, name: str, spec: str = "") -> None:
        """ensureChain: a chain is declared once, however many rules jump to it."""
        if name not in self._declared:
            self._declared.add(name)
            self.chains.append(f"add chain ip {n.TABLE} {name}{spec}")

    def rule(self, chain: str, text: str, comment: str | None = None) -> None:
        tail = f' comment "{comment}"' if comment else ""
        self.rules.append(f"add rule ip {n.TABLE} {chain} {text}{tail}")

    def element(self, container: str, key: str, verdict: str | None = None,
                comment: str | None = None) -> None:
        text = key + (f' comment "{comment}"' if comment else "")
        if verdict:
            text += f" : {verdict}"
        self.elements.append(f"add element ip {n.TABLE} {container} {{ {text} }}")

    def text(self, replace: bool) -> str:
        # "add + delete table" first makes the file a full replacement: a way to re-apply that
        # is the kit's, not kube-proxy's (which flushes its chains and maps and re-adds).
        head = [f"add table ip {n.TABLE}", f"delete table ip {n.TABLE}"] if replace else []
        head.append(f'add table ip {n.TABLE} {{ comment "rules for kube-proxy" ; }}')
        body = head + self.sets + self.maps + self.chains + self.rules + self.elements
        return "\n".join(body) + "\n"


@dataclass(frozen=True)
class _Port:
    """One service port and the names its objects get."""

    service: Service
    port: ServicePort
    protocol: str  # lower case, as in the rules
    chain: str
    endpoints: tuple[tuple[str, str, str, str], ...]  # (ip:port, ip, chain, affinity set)

    @property
    def key(self) -> str:
        return f"{self.service.cluster_ip} . {self.protocol} . {self.port.port}"


def ports_of(lab: Lab) -> list[_Port]:
    """Every service port with its endpoints in kube-proxy's order (the "ip:port" string sort)."""
    index = PodIndex(lab)
    found = []
    for service, port in dict.fromkeys((s, p) for s in lab.services for p in s.ports):
        proto = port.protocol.lower()
        ident = (service.namespace, service.name, proto, port.name)
        eps = tuple((address, address.rpartition(":")[0], n.endpoint_chain(*ident, address),
                     n.affinity_set(*ident, address))
                    for address in index.addresses(service, port))
        found.append(_Port(service, port, proto, n.service_chain(*ident), eps))
    return found


def render(lab: Lab, profile: str | None = None, *, node: str | None = None,
           replace: bool = False) -> str:
    """kube-proxy's nftables document for the lab's services, as one node's kube-proxy writes it.

    node: whose kube-proxy (default the lab's first node): its IP is the one `nodeport-ips`
    holds, as nftables mode's default `--nodeport-addresses primary` gives. replace=True makes
    the file replace an existing table instead of adding to it.
    """
    chosen = profile or DEFAULT_PROFILE
    if chosen not in _PROFILES:
        raise ValueError(f"unknown nftables profile {chosen!r}; the profiles are: "
                         f"{', '.join(PROFILES)}")
    here = lab.node(node) if node else lab.nodes[0]
    doc = _Document()
    _setup(doc, _PROFILES[chosen], lab, str(here.ip))
    for port in ports_of(lab):
        _service_port(doc, _PROFILES[chosen], port, str(lab.cluster_cidr))
    return doc.text(replace)


def _setup(doc: _Document, prof: _Profile, lab: Lab, node_ip: str) -> None:
    """setupNFTables: base chains, jumps, masquerading, the sets and maps, dispatch."""
    for chain in prof.base_chains:
        doc.chain(chain.name, f" {{ type {chain.kind} hook {chain.hook} "
                              f"priority {chain.priority} ; }}")
    for target, source, match in prof.jumps:
        doc.chain(target)
        doc.rule(source, f"{match} jump {target}".strip())
    for chain in (n.SERVICES, n.CLUSTER_IPS_CHECK, n.MASQUERADING, n.MARK_MASQ):
        doc.chain(chain)
    doc.rule(n.MARK_MASQ, f"mark set mark or {MASQ_MARK}")
    doc.rule(n.MASQUERADING, f"mark and {MASQ_MARK} == 0 return")
    doc.rule(n.MASQUERADING, f"mark set mark xor {MASQ_MARK}")
    doc.rule(n.MASQUERADING, "masquerade fully-random")

    doc.sets.append(f'add set ip {n.TABLE} {n.CLUSTER_IPS} '
                    f'{{ type ipv4_addr ; comment "Active ClusterIPs" ; }}')
    doc.rule(n.CLUSTER_IPS_CHECK, f"ip daddr @{n.CLUSTER_IPS} reject",
             "Reject traffic to invalid ports of ClusterIPs")
    # kube-proxy learns the service CIDRs from ServiceCIDR objects; the lab has one.
    doc.rule(n.CLUSTER_IPS_CHECK, f"ip daddr {{ {lab.service_cidr} }} drop",
             "Drop traffic to unallocated ClusterIPs")

    # --nodeport-addresses (default in nftables mode: the node's primary IP) fills nodeport-ips;
    # a match-all setting would drop the set for `fib daddr type local`; labs do not use one.
    doc.sets.append(f'add set ip {n.TABLE} {n.NODEPORT_IPS} '
                    f'{{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}')
    doc.element(n.NODEPORT_IPS, node_ip)

    for name, kind, comment in _MAPS:
        doc.maps.append(f'add map ip {n.TABLE} {name} {{ type {kind} ; comment "{comment}" ; }}')
    doc.chain(n.REJECT_CHAIN, ' { comment "helper for @no-endpoint-services / '
                              '@no-endpoint-nodeports" ; }')
    doc.rule(n.REJECT_CHAIN, "reject")
    doc.rule(n.SERVICE_ENDPOINTS_CHECK, f"{_DISPATCH} vmap @{n.NO_ENDPOINT_SERVICES}")
    doc.rule(n.NODEPORT_ENDPOINTS_CHECK, f"ip daddr @{n.NODEPORT_IPS} meta l4proto . th dport "
                                         f"vmap @{n.NO_ENDPOINT_NODEPORTS}")
    doc.chain(n.FIREWALL_CHECK)
    doc.rule(n.FIREWALL_CHECK, f"{_DISPATCH} vmap @{n.FIREWALL_IPS}")
    doc.rule(n.SERVICES, f"{_DISPATCH} vmap @{n.SERVICE_IPS}")
    doc.rule(n.SERVICES, f"ip daddr @{n.NODEPORT_IPS} meta l4proto . th dport "
                         f"vmap @{n.SERVICE_NODEPORTS}")


def _service_port(doc: _Document, prof: _Profile, port: _Port, cluster_cidr: str) -> None:
    """One ClusterIP port: its map elements, service chain, affinity sets, endpoint chains."""
    for _, _, chain, _ in port.endpoints:
        doc.chain(chain)
    doc.element(n.CLUSTER_IPS, str(port.service.cluster_ip))
    if not port.endpoints:  # no chains at all: the filter hooks reject it via the map
        doc.element(n.NO_ENDPOINT_SERVICES, port.key, f"goto {n.REJECT_CHAIN}",
                    port.service.port_name(port.port))
        return
    doc.chain(port.chain)
    doc.element(n.SERVICE_IPS, port.key, f"goto {port.chain}")
    # Masquerade callers outside the cluster CIDR (the local detector's IfNotLocalNFT).
    dport = f" {port.protocol} dport {port.port.port}" if prof.masq_matches_port else ""
    doc.rule(port.chain, f"ip daddr {port.service.cluster_ip}{dport} ip saddr != {cluster_cidr} "
                         f"jump {n.MARK_MASQ}")
    affinity = port.service.session_affinity == "ClientIP"
    if affinity:
        for _, _, _, sticky in port.endpoints:
            doc.sets.append(f"add set ip {n.TABLE} {sticky} {{ type ipv4_addr ; flags "
                            f"dynamic,timeout ; timeout {port.service.affinity_timeout}s ; }}")
        for _, _, chain, sticky in port.endpoints:
            doc.rule(port.chain, f"ip saddr @{sticky} goto {chain}")
    picks = " , ".join(f"{i} : goto {chain}" for i, (_, _, chain, _) in enumerate(port.endpoints))
    doc.rule(port.chain, f"numgen random mod {len(port.endpoints)} vmap {{ {picks} }}")
    for address, ip, chain, sticky in port.endpoints:
        doc.rule(chain, f"ip saddr {ip} jump {n.MARK_MASQ}")  # a pod reaching itself
        if affinity:
            doc.rule(chain, f"update @{sticky} {{ ip saddr }}")
        doc.rule(chain, f"meta l4proto {port.protocol} dnat to {address}")
