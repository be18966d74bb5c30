"""Render a lab's services as the `table ip kube-proxy` document kube-proxy's nftables proxier
writes (pkg/proxy/nftables/proxier.go), one `nft -f` file applied atomically.

The document holds the state after a full sync as `add` commands, in an order `nft -f` accepts
on an empty node (table, sets, maps, chains, rules, elements): a chain or set is declared before a
rule or map element names it. Kube-proxy's own unit tests compare this state (knftables.Fake's
Dump) after sorting; tests/unit/test_nft_render.py sorts both sides the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from lab_runner.model import Lab, Service, ServicePort
from lab_runner.ruleset import nft_names as n
# MASQ_MARK: %#08x of 1<<14, as in iptables mode; the endpoints and their categorisation are
# the two modes' shared part (proxy.CategorizeEndpoints), computed by the iptables renderer.
from lab_runner.ruleset.render import MASQ_MARK, categorize
from lab_runner.ruleset.render import ports_of as iptables_ports_of

if TYPE_CHECKING:
    from lab_runner.ruleset.render import _Split as Split

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
    """One service port, its endpoints split by traffic policy, and the names its objects get."""

    service: Service
    port: ServicePort
    protocol: str  # lower case, as in the rules
    ident: tuple[str, str, str, str | None]  # (namespace, service, protocol, port name)
    split: Split  # render.categorize: which endpoints serve Cluster and Local policy
    _chains: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.service.port_name(self.port)

    @property
    def chain(self) -> str:
        return n.service_chain(*self.ident)

    def chain_of(self, prefix: str) -> str:
        """local-/external-/firewall-…: the same base name as the service- chain."""
        return prefix + n.service_port_base(*self.ident)

    def key(self, ip: object) -> str:
        return f"{ip} . {self.protocol} . {self.port.port}"

    def endpoint_chain(self, address: str) -> str:
        # Named up to three times per endpoint (declared, picked, filled): hashed once.
        chain = self._chains.get(address)
        if chain is None:
            chain = self._chains[address] = n.endpoint_chain(*self.ident, address)
        return chain

    def affinity_set(self, address: str) -> str:
        return n.affinity_set(*self.ident, address)


def ports_of(lab: Lab, node: str) -> list[_Port]:
    """Every service port with its endpoints in kube-proxy's order (the "ip:port" string sort),
    categorised for `node` as the iptables renderer does (ready first, then serving-terminating;
    local ones for Local policy): the two modes share proxy.CategorizeEndpoints."""
    found = []
    for shared in iptables_ports_of(lab, node):
        ident = (shared.service.namespace, shared.service.name, shared.protocol, shared.port.name)
        found.append(_Port(shared.service, shared.port, shared.protocol, ident,
                           categorize(shared)))
    return found


NODEPORT_ADDRESSES = ("primary", "all")


def render(lab: Lab, profile: str | None = None, *, node: str | None = None,
           replace: bool = False, nodeport_addresses: str = "primary") -> str:
    """kube-proxy's nftables document for the lab's services, as one node's kube-proxy writes it.

    node: whose kube-proxy (default the lab's first node): it decides which endpoints are local,
    and its IP is the one `nodeport-ips` holds, as nftables mode's default
    `--nodeport-addresses primary` gives; "all" (a match-all setting such as 0.0.0.0/0) drops
    the set and accepts node ports on every local address but 127.0.0.0/8 (`fib daddr type
    local`). replace=True makes the file replace an existing table instead of adding to it.
    """
    chosen = profile or DEFAULT_PROFILE
    if chosen not in _PROFILES:
        raise ValueError(f"unknown nftables profile {chosen!r}; the profiles are: "
                         f"{', '.join(PROFILES)}")
    if nodeport_addresses not in NODEPORT_ADDRESSES:
        raise ValueError(f"unknown nodeport_addresses {nodeport_addresses!r}; the choices are: "
                         f"{', '.join(NODEPORT_ADDRESSES)}")
    here = lab.node(node) if node else lab.nodes[0]
    doc = _Document()
    _setup(doc, _PROFILES[chosen], lab, str(here.ip) if nodeport_addresses == "primary" else None)
    sync = _Sync(doc, _PROFILES[chosen], lab, here.ip)
    for port in ports_of(lab, here.name):
        sync.service_port(port)
    return doc.text(replace)


def _setup(doc: _Document, prof: _Profile, lab: Lab, node_ip: str | None) -> None:
    """setupNFTables: base chains, jumps, masquerading, the sets and maps, dispatch; node_ip
    None for a match-all --nodeport-addresses."""
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
    # kube-proxy adds and deletes the set for a match-all setting: after the sync there is none.
    if node_ip is not None:
        doc.sets.append(f'add set ip {n.TABLE} {n.NODEPORT_IPS} '
                        f'{{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}')
        doc.element(n.NODEPORT_IPS, node_ip)
        nodeport_ips = f"ip daddr @{n.NODEPORT_IPS}"
    else:
        nodeport_ips = "ip daddr != 127.0.0.0/8"  # localhost node ports: iptables mode only

    for name, kind, comment in _MAPS:
        doc.maps.append(f'add map ip {n.TABLE} {name} {{ type {kind} ; comment "{comment}" ; }}')
    doc.chain(n.REJECT_CHAIN, ' { comment "helper for @no-endpoint-services / '
                              '@no-endpoint-nodeports" ; }')
    doc.rule(n.REJECT_CHAIN, "reject")
    doc.rule(n.SERVICE_ENDPOINTS_CHECK, f"{_DISPATCH} vmap @{n.NO_ENDPOINT_SERVICES}")
    # filter-input only: the destination is already one of the node's addresses.
    doc.rule(n.NODEPORT_ENDPOINTS_CHECK, f"{nodeport_ips} meta l4proto . th dport "
                                         f"vmap @{n.NO_ENDPOINT_NODEPORTS}")
    doc.chain(n.FIREWALL_CHECK)
    doc.rule(n.FIREWALL_CHECK, f"{_DISPATCH} vmap @{n.FIREWALL_IPS}")
    doc.rule(n.SERVICES, f"{_DISPATCH} vmap @{n.SERVICE_IPS}")
    local = "" if node_ip is not None else "fib daddr type local "
    doc.rule(n.SERVICES, f"{local}{nodeport_ips} meta l4proto . th dport "
                         f"vmap @{n.SERVICE_NODEPORTS}")


@dataclass
class _Sync:
    """syncProxyRules' loop body for one service port: the map elements that capture its
    clusterIP, external IPs, load balancer IPs and node port (or drop / reject them in the
    filter hooks), then its chains: service- (Cluster policy), local- (Local policy), external-,
    firewall-, endpoint- and the affinity sets."""

    doc: _Document
    prof: _Profile
    lab: Lab  # its cluster CIDR (the local detector) and kube-proxy's --masquerade-all
    node_ip: IPv4Address  # this node's, for source ranges that admit it

    def service_port(self, port: _Port) -> None:
        svc, split, doc = port.service, port.split, self.doc
        cluster_chain, local_chain = port.chain, port.chain_of(n.LOCAL_PREFIX)
        ext_chain, fw_chain = port.chain_of(n.EXTERNAL_PREFIX), port.chain_of(n.FIREWALL_PREFIX)
        for ep in split.reachable:
            doc.chain(port.endpoint_chain(ep.address))
        if split.cluster:
            doc.chain(cluster_chain)
        if split.local:
            doc.chain(local_chain)
        has_any = split.any
        internal_chain = local_chain if svc.internal_policy_local else cluster_chain
        has_internal = has_any and (bool(split.local) or not svc.internal_policy_local)
        external_policy_chain = local_chain if svc.external_policy_local else cluster_chain
        has_external = has_any and (bool(split.local) or not svc.external_policy_local)
        uses_ext = has_any and svc.externally_accessible
        if uses_ext:
            doc.chain(ext_chain)
        # No endpoints at all: reject; endpoints, but none here for a Local policy: drop.
        refused = "drop" if has_any else f"goto {n.REJECT_CHAIN}"
        # Unlike iptables mode, the firewall chain does not wait for endpoints.
        uses_fw = bool(svc.load_balancer_ips) and bool(svc.source_ranges)
        if uses_fw:
            doc.chain(fw_chain)
        self._capture(port, has_any, has_internal, internal_chain, has_external, refused,
                      ext_chain, fw_chain, uses_fw)
        if has_internal:
            self._masquerade_rule(port, internal_chain)
        if uses_ext:
            self._external_chain(port, ext_chain, cluster_chain, external_policy_chain,
                                 has_external)
        if uses_fw:
            self._firewall_chain(port, fw_chain)
        if port.service.session_affinity == "ClientIP":
            for ep in split.reachable:
                doc.sets.append(f"add set ip {n.TABLE} {port.affinity_set(ep.address)} "
                                f"{{ type ipv4_addr ; flags dynamic,timeout ; "
                                f"timeout {svc.affinity_timeout}s ; }}")
        for chain, endpoints in ((cluster_chain, split.cluster), (local_chain, split.local)):
            if endpoints:
                self._service_chain(port, chain, [ep.address for ep in endpoints])
        for ep in split.reachable:
            self._endpoint_chain(port, ep.address, ep.ip)

    def _capture(self, port: _Port, has_any: bool, has_internal: bool, internal_chain: str,
                 has_external: bool, refused: str, ext_chain: str, fw_chain: str,
                 uses_fw: bool) -> None:
        """The port's map elements: where each of its addresses goes, or how it is refused."""
        svc, doc, name = port.service, self.doc, port.name
        doc.element(n.CLUSTER_IPS, str(svc.cluster_ip))
        if has_internal:
            doc.element(n.SERVICE_IPS, port.key(svc.cluster_ip), f"goto {internal_chain}")
        else:
            doc.element(n.NO_ENDPOINT_SERVICES, port.key(svc.cluster_ip), refused, name)
        for ip in svc.external_ips:
            if has_any:
                doc.element(n.SERVICE_IPS, port.key(ip), f"goto {ext_chain}")
            if not has_external:
                doc.element(n.NO_ENDPOINT_SERVICES, port.key(ip), refused, name)
        for ip in svc.load_balancer_ips:
            if has_any:
                doc.element(n.SERVICE_IPS, port.key(ip), f"goto {ext_chain}")
            if uses_fw:
                doc.element(n.FIREWALL_IPS, port.key(ip), f"goto {fw_chain}")
        if not has_external:
            for ip in svc.load_balancer_ips:
                doc.element(n.NO_ENDPOINT_SERVICES, port.key(ip), refused, name)
        node_port = port.port.node_port
        if node_port:
            # Node ports are not subject to loadBalancerSourceRanges (as in iptables mode).
            if has_any:
                doc.element(n.SERVICE_NODEPORTS, f"{port.protocol} . {node_port}",
                            f"goto {ext_chain}")
            if not has_external:
                doc.element(n.NO_ENDPOINT_NODEPORTS, f"{port.protocol} . {node_port}", refused,
                            name)
        # No health check node port rule: nftables mode's filter chains accept by default, so
        # the load balancer's probe needs no hole (iptables mode writes one in KUBE-NODEPORTS).

    def _masquerade_rule(self, port: _Port, chain: str) -> None:
        """Traffic to the clusterIP from outside the pod network (the local detector's
        IfNotLocalNFT), or all of it with --masquerade-all."""
        dport = f" {port.protocol} dport {port.port.port}" if self.prof.masq_matches_port else ""
        outsiders = "" if self.lab.masquerade_all else f" ip saddr != {self.lab.cluster_cidr}"
        self.doc.rule(chain, f"ip daddr {port.service.cluster_ip}{dport}{outsiders} "
                             f"jump {n.MARK_MASQ}")

    def _external_chain(self, port: _Port, ext_chain: str, cluster_chain: str,
                        policy_chain: str, has_external: bool) -> None:
        """external-…: masquerade everything (Cluster policy: it may leave the node), or keep
        the source and send only pods' and the node's own traffic to the Cluster chain (Local)."""
        rule = self.doc.rule
        if not port.service.external_policy_local:
            rule(ext_chain, f"jump {n.MARK_MASQ}")
        else:
            rule(ext_chain, f"ip saddr {self.lab.cluster_cidr} goto {cluster_chain}",
                 "short-circuit pod traffic")
            # The node's own traffic leaves with a local address as source: masquerade it.
            rule(ext_chain, f"fib saddr type local jump {n.MARK_MASQ}",
                 "masquerade local traffic")
            rule(ext_chain, f"fib saddr type local goto {cluster_chain}",
                 "short-circuit local traffic")
        if has_external:
            rule(ext_chain, f"goto {policy_chain}")

    def _firewall_chain(self, port: _Port, fw_chain: str) -> None:
        """firewall-…: drop sources outside loadBalancerSourceRanges (before DNAT)."""
        svc = port.service
        sources = [str(cidr) for cidr in svc.source_ranges]
        # A request from the node to its own load balancer IP comes back with that IP as source.
        if any(self.node_ip in c for c in svc.source_ranges):
            sources += [str(ip) for ip in svc.load_balancer_ips]
        self.doc.rule(fw_chain, f"ip saddr != {{ {' , '.join(sources)} }} drop")

    def _service_chain(self, port: _Port, chain: str, addresses: list[str]) -> None:
        """writeServiceToEndpointRules: affinity lookups first, then one numgen pick."""
        if port.service.session_affinity == "ClientIP":
            for address in addresses:
                self.doc.rule(chain, f"ip saddr @{port.affinity_set(address)} "
                                     f"goto {port.endpoint_chain(address)}")
        picks = " , ".join(f"{i} : goto {port.endpoint_chain(a)}"
                           for i, a in enumerate(addresses))
        self.doc.rule(chain, f"numgen random mod {len(addresses)} vmap {{ {picks} }}")

    def _endpoint_chain(self, port: _Port, address: str, ip: str) -> None:
        chain = port.endpoint_chain(address)
        self.doc.rule(chain, f"ip saddr {ip} jump {n.MARK_MASQ}")  # a pod reaching itself
        if port.service.session_affinity == "ClientIP":
            self.doc.rule(chain, f"update @{port.affinity_set(address)} {{ ip saddr }}")
        self.doc.rule(chain, f"meta l4proto {port.protocol} dnat to {address}")
