"""Render a lab's services as the iptables-restore document kube-proxy's iptables proxier writes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from ipaddress import IPv4Address
from operator import itemgetter
from socket import inet_ntoa  # str(IPv4Address), twice as fast: it runs once per endpoint
from typing import NamedTuple

from lab_runner.endpoints import PodIndex, resolve_target_port, selects, sliced
from lab_runner.model import Lab, Pod, Service, ServicePort
from lab_runner.ruleset import names as n

PROFILES = ("v1.23", "v1.30", "v1.34")

# kube-proxy: fmt.Sprintf("%#08x", 1<<masqueradeBit) with the default bit 14. Go zero-pads the
# digits to 8 and then adds "0x", so this is what kube-proxy writes (its logs say the same);
# iptables-save shows it back as 0x4000.
MASQ_MARK = "0x00004000"
# Above this many endpoints kube-proxy drops the per-endpoint comments ("large cluster mode").
LARGE_CLUSTER_ENDPOINTS = 1000
CT_NEW = ("-m", "conntrack", "--ctstate", "NEW")


@dataclass(frozen=True)
class _Profile:
    """What differs between the kube-proxy generations the kit reproduces."""

    name: str
    arrow_comments: bool  # v1.30: "ns/svc:port -> ip:port" on the KUBE-SVC endpoint rules
    service_chain_first: bool  # v1.30 writes KUBE-SVC before KUBE-SEP; v1.23 the other way
    firewall_chains: bool  # v1.30: KUBE-PROXY-FIREWALL, and KUBE-FIREWALL's localnet guard
    ensures_mark_drop: bool  # v1.23 ensures an (empty) KUBE-MARK-DROP in nat
    # v1.30+ (kubernetes PR 122812): `-m nfacct --nfacct-name ct_state_invalid_dropped_pkts` on
    # the INVALID drop, when the kernel's nfacct accounting works (Lab.nfacct).
    invalid_nfacct: bool = False
    # v1.31+ (PR 125015): localhost node ports counted by a `-d 127.0.0.0/8 ... -m nfacct` rule.
    localhost_nfacct: bool = False


_PROFILES = {
    "v1.23": _Profile("v1.23", False, False, False, True),
    "v1.30": _Profile("v1.30", True, True, True, False, invalid_nfacct=True),
    "v1.34": _Profile("v1.34", True, True, True, False, invalid_nfacct=True,
                      localhost_nfacct=True),
}
# nfacct counter names (pkg/proxy/metrics): what `nfacct list` shows on a node.
INVALID_COUNTER = "ct_state_invalid_dropped_pkts"
LOCALHOST_NODEPORT_COUNTER = "localhost_nps_accepted_pkts"


@dataclass(frozen=True)
class _Jump:
    """A rule kube-proxy prepends to a built-in chain (iptablesJumpChains in proxier.go)."""

    table: str
    target: str
    chain: str
    comment: str
    extra: tuple[str, ...] = ()


_EXTERNAL = "kubernetes externally-visible service portals"
_JUMPS_V123 = (
    _Jump("filter", n.KUBE_EXTERNAL_SERVICES, "INPUT", _EXTERNAL, CT_NEW),
    _Jump("filter", n.KUBE_EXTERNAL_SERVICES, "FORWARD", _EXTERNAL, CT_NEW),
    _Jump("filter", n.KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports"),
    _Jump("filter", n.KUBE_SERVICES, "FORWARD", "kubernetes service portals", CT_NEW),
    _Jump("filter", n.KUBE_SERVICES, "OUTPUT", "kubernetes service portals", CT_NEW),
    _Jump("filter", n.KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules"),
)
_JUMPS_NAT = (
    _Jump("nat", n.KUBE_SERVICES, "OUTPUT", "kubernetes service portals"),
    _Jump("nat", n.KUBE_SERVICES, "PREROUTING", "kubernetes service portals"),
    _Jump("nat", n.KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules"),
)
_JUMPS_V130 = _JUMPS_V123 + (
    _Jump("filter", n.KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", CT_NEW),
    _Jump("filter", n.KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", CT_NEW),
    _Jump("filter", n.KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", CT_NEW),
) + _JUMPS_NAT + (
    # iptablesKubeletJumpChains: no comment, ensured after the others.
    _Jump("filter", n.KUBE_FIREWALL, "INPUT", ""),
    _Jump("filter", n.KUBE_FIREWALL, "OUTPUT", ""),
)
_JUMPS = {"v1.23": _JUMPS_V123 + _JUMPS_NAT, "v1.30": _JUMPS_V130, "v1.34": _JUMPS_V130}
_BUILTIN_ORDER = {"filter": ("INPUT", "FORWARD", "OUTPUT"),
                  "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}


class _Endpoint(NamedTuple):  # a tuple: there is one per endpoint, 100,000s in a big cluster
    address: str  # "ip:port", the string kube-proxy hashes and sorts by
    ip: str
    chain: str
    ready: bool = True
    serving_terminating: bool = False  # kube-proxy's fallback when nothing is ready
    local: bool = False  # on the node whose rules these are


@dataclass(frozen=True)
class _Port:
    """One service port with everything its rules need, computed once."""

    service: Service
    port: ServicePort
    name: str  # servicePortName: ns/svc:port, or ns/svc when unnamed
    protocol: str  # lower case, as in the rules
    chain: str
    endpoints: tuple[_Endpoint, ...]

    @property
    def affinity(self) -> bool:
        return self.service.session_affinity == "ClientIP"

    @property
    def hash(self) -> str:
        return self.chain[len(n.SERVICE_PREFIX):]

    def chain_of(self, prefix: str) -> str:
        """The KUBE-SVL/EXT/FW chain of this port: the same hash as its KUBE-SVC chain."""
        return prefix + self.hash

    def ready(self) -> tuple[_Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.ready)

    def match_vip(self) -> list[str]:
        return ["-m", self.protocol, "-p", self.protocol, "-d", str(self.service.cluster_ip),
                "--dport", str(self.port.port)]


@dataclass
class _Document:
    """kube-proxy's four line buffers (filter/nat x chains/rules) plus the base set-up."""

    filter_chains: list[str] = field(default_factory=list)
    filter_rules: list[str] = field(default_factory=list)
    nat_chains: list[str] = field(default_factory=list)
    nat_rules: list[str] = field(default_factory=list)
    mangle_chains: list[str] = field(default_factory=list)

    def text(self) -> str:
        out: list[str] = []
        if self.mangle_chains:
            out += ["*mangle", *self.mangle_chains, "COMMIT"]
        out += ["*filter", *self.filter_chains, *self.filter_rules, "COMMIT"]
        out += ["*nat", *self.nat_chains, *self.nat_rules, "COMMIT"]
        return "\n".join(out) + "\n"


def chain_line(name: str) -> str:
    return f":{name} - [0:0]"


def quoted(text: str) -> str:
    """kube-proxy quotes only the comments it formats with spaces (`"%s cluster IP"`)."""
    return f'"{text}"' if " " in text else text


def line(*words: str) -> str:
    return " ".join(words)


@lru_cache(maxsize=4096)  # the same few values, once per endpoint of every service
def probability(n_left: int) -> str:
    """computeProbability: Go's %0.10f of 1/n."""
    return "%0.10f" % (1.0 / n_left)


def ports_of(lab: Lab, node: str | None = None) -> list[_Port]:
    """Every service port, in the lab file's order (kube-proxy iterates a Go map: no set order).

    Endpoints are those of the EndpointSlice: ready ones, and serving-terminating ones for
    kube-proxy's fallback; `node` (default: the lab's first) decides which are local.
    """
    index = PodIndex(lab)
    here = node if node is not None else (lab.nodes[0].name if lab.nodes else "")
    found = []
    # dict keys, as endpoints.all_endpoints: an exact duplicate (service, port) renders once.
    for service, port in dict.fromkeys((s, p) for s in lab.services for p in s.ports):
        name = service.port_name(port)
        proto = port.protocol.lower()
        # n.service_chain(name, proto), n.endpoint_chain(name, proto, address), and the ip as
        # str(e.ip) writes it (IPv4: the address up to its colon).
        seed = name + proto
        eps = tuple(_Endpoint(address, address.rpartition(":")[0],
                              n.ENDPOINT_PREFIX + n.hash16(seed + address), pod.ready,
                              pod.terminating and pod.serving, pod.slice_node == here)
                    for address, pod in _in_slice(index, service, port))
        found.append(_Port(service, port, name, proto, n.SERVICE_PREFIX + n.hash16(seed), eps))
    return found


def _in_slice(index: PodIndex, service: Service, port: ServicePort) -> list[tuple[str, Pod]]:
    """("ip:port", pod) of the pods in the service port's EndpointSlice, in "ip:port" order:
    ready pods and terminating ones still serving (endpoints.PodIndex keeps the ready ones)."""
    if not service.selector:
        return [(address, pod) for address, pod, _ in sliced(service, port)
                if pod.ready or (pod.terminating and pod.serving)]
    first = next(iter(service.selector.items()))
    found = []
    for pod in index.by_label.get((service.namespace, *first), ()):
        if (pod.ready or (pod.terminating and pod.serving)) and selects(service, pod):
            number = resolve_target_port(port, pod)
            if number is not None:
                found.append((f"{inet_ntoa(pod.ip.packed)}:{number}", pod))
    found.sort(key=itemgetter(0))
    return found


class _Split(NamedTuple):
    """proxy.CategorizeEndpoints without topology hints: who serves which traffic."""

    cluster: tuple[_Endpoint, ...]  # for Cluster policy
    local: tuple[_Endpoint, ...]  # for Local policy
    reachable: tuple[_Endpoint, ...]  # every endpoint that gets a KUBE-SEP chain
    any: bool  # usable endpoints anywhere in the cluster


def categorize(port: _Port) -> _Split:
    """Ready endpoints first; only when there are none, serving-terminating ones (separately for
    Cluster and for Local policy)."""
    svc = port.service
    eps = port.endpoints
    # kube-proxy's UsesClusterEndpoints: a port that takes outside traffic at all needs the
    # Cluster endpoints, even with both policies Local (the external chain's short-circuits for
    # pods and the node go to the Cluster chain). ExternallyAccessible is per port.
    accessible = bool(port.port.node_port or svc.load_balancer_ips or svc.external_ips)
    uses_cluster = not svc.internal_policy_local or accessible
    uses_local = svc.internal_policy_local or svc.external_policy_local
    cluster: tuple[_Endpoint, ...] = ()
    if uses_cluster:
        cluster = tuple(e for e in eps if e.ready) or tuple(e for e in eps if e.serving_terminating)
    if not uses_local:
        return _Split(cluster, (), cluster, bool(cluster))
    local = (tuple(e for e in eps if e.local and e.ready)
             or tuple(e for e in eps if e.local and e.serving_terminating))
    anywhere = bool(cluster) or any(e.ready or e.serving_terminating for e in eps)
    if not uses_cluster:
        return _Split((), local, local, anywhere)
    # kube-proxy merges the two through a map (no order); the "ip:port" order here.
    merged = {e.address: e for e in cluster + local}
    return _Split(cluster, local, tuple(merged[a] for a in sorted(merged)), anywhere)


def render(lab: Lab, profile: str | None = None, *, base_jumps: bool = True,
           node: str | None = None) -> str:
    """kube-proxy's iptables-restore document for the lab's services, on `node` (default: the
    lab's first node; it decides which endpoints are local and the node IP of source ranges).

    base_jumps=True also writes what kube-proxy sets up outside its restore document on a fresh
    node (jumps from the built-in chains, KUBE-PROXY-CANARY in mangle/nat/filter, v1.23's empty
    KUBE-MARK-DROP), for restoring into an empty node namespace. base_jumps=False is exactly the
    per-sync document, safe to re-apply with `iptables-restore --noflush`.
    """
    chosen = profile or lab.profile
    if chosen not in _PROFILES:
        raise ValueError(f"unknown profile {chosen!r}; the profiles are: {', '.join(PROFILES)}")
    prof = _PROFILES[chosen]
    here = next((x for x in lab.nodes if x.name == node), lab.nodes[0] if lab.nodes else None)
    if node is not None and (here is None or here.name != node):
        raise ValueError(f"no node {node!r}; the nodes are: {', '.join(x.name for x in lab.nodes)}")
    ports = ports_of(lab, here.name if here else "")
    comments = sum(len(p.endpoints) for p in ports) <= LARGE_CLUSTER_ENDPOINTS
    doc = _Document()
    if base_jumps:
        _base_setup(doc, prof)
    _top_level(doc, prof)
    if prof.service_chain_first:
        sync = _Sync(doc, prof, str(lab.cluster_cidr), comments, lab.masquerade_all,
                     lab.nfacct, here.ip if here else None)
        for port in ports:
            sync.service_port(port)
    else:
        for port in ports:
            if port.service.beyond_cluster_ip:
                raise ValueError(f"{port.service.namespace}/{port.service.name} needs profile "
                                 "v1.30 or later: the v1.23 profile renders ClusterIP Services only")
            _service_port(doc, prof, port, str(lab.cluster_cidr), comments, lab.masquerade_all)
    _nodeports_tail(doc)
    _forward_rules(doc, prof.invalid_nfacct and lab.nfacct)
    return doc.text()


def _base_setup(doc: _Document, prof: _Profile) -> None:
    """What kube-proxy creates with single iptables calls before its first restore."""
    doc.mangle_chains.append(chain_line(n.KUBE_PROXY_CANARY))
    doc.filter_chains.append(chain_line(n.KUBE_PROXY_CANARY))
    doc.nat_chains.append(chain_line(n.KUBE_PROXY_CANARY))
    if prof.ensures_mark_drop:
        doc.nat_chains.append(chain_line(n.KUBE_MARK_DROP))
    for table in ("filter", "nat"):
        rules = doc.filter_rules if table == "filter" else doc.nat_rules
        rules.extend(builtin_jumps(prof.name, table))


def builtin_jumps(profile: str, table: str) -> list[str]:
    """The jump rules of the built-in chains, in the order EnsureRule(Prepend, …) leaves them."""
    out = []
    for builtin in _BUILTIN_ORDER[table]:
        jumps = [j for j in _JUMPS[profile] if j.table == table and j.chain == builtin]
        for jump in reversed(jumps):  # each one is inserted at the top
            comment = ["-m", "comment", "--comment", quoted(jump.comment)] if jump.comment else []
            out.append(line("-A", builtin, *jump.extra, *comment, "-j", jump.target))
    return out


def _top_level(doc: _Document, prof: _Profile) -> None:
    """The fixed chains and the postrouting / mark-masq / localnet rules."""
    filter_chains = [n.KUBE_SERVICES, n.KUBE_EXTERNAL_SERVICES, n.KUBE_FORWARD, n.KUBE_NODEPORTS]
    if prof.firewall_chains:
        filter_chains.append(n.KUBE_PROXY_FIREWALL)
    doc.filter_chains.extend(chain_line(c) for c in filter_chains)
    doc.nat_chains.extend(chain_line(c) for c in
                          (n.KUBE_SERVICES, n.KUBE_NODEPORTS, n.KUBE_POSTROUTING, n.KUBE_MARK_MASQ))
    doc.nat_rules += [
        line("-A", n.KUBE_POSTROUTING, "-m", "mark", "!", "--mark", f"{MASQ_MARK}/{MASQ_MARK}",
             "-j", "RETURN"),
        line("-A", n.KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", MASQ_MARK),
        line("-A", n.KUBE_POSTROUTING, "-m", "comment", "--comment",
             '"kubernetes service traffic requiring SNAT"', "-j", "MASQUERADE", "--random-fully"),
        line("-A", n.KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", MASQ_MARK),
    ]
    if prof.firewall_chains:  # localhostNodePorts is on by default for IPv4
        doc.filter_chains.append(chain_line(n.KUBE_FIREWALL))
        doc.filter_rules.append(line(
            "-A", n.KUBE_FIREWALL, "-m", "comment", "--comment", '"block incoming localnet connections"',
            "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8",
            "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"))


def _service_port(doc: _Document, prof: _Profile, port: _Port, cluster_cidr: str,
                  comments: bool, masquerade_all: bool) -> None:
    """The v1.23 generation's rules for a ClusterIP service port (ready endpoints only: its
    terminating-endpoint fallback was an alpha feature, off by default)."""
    port = replace(port, endpoints=port.ready())
    if not port.endpoints:
        doc.filter_rules.append(line(
            "-A", n.KUBE_SERVICES, "-m", "comment", "--comment", f'"{port.name} has no endpoints"',
            *port.match_vip(), "-j", "REJECT"))
        return
    # Endpoint chains first, then the service chain with its masquerade rule before the jump.
    _endpoint_chains(doc, port, port.endpoints, comments)
    doc.nat_chains.append(chain_line(port.chain))
    doc.nat_rules.append(_masquerade_rule(port, port.chain, cluster_cidr, masquerade_all))
    doc.nat_rules.append(_cluster_ip_jump(port, port.chain))
    doc.nat_rules.extend(_service_chain_rules(prof, port, port.chain, port.endpoints, comments))


def _cluster_ip_args(port: _Port) -> list[str]:
    return ["-m", "comment", "--comment", f'"{port.name} cluster IP"', *port.match_vip()]


def _cluster_ip_jump(port: _Port, target: str) -> str:
    return line("-A", n.KUBE_SERVICES, *_cluster_ip_args(port), "-j", target)


def _masquerade_rule(port: _Port, chain: str, cluster_cidr: str, masquerade_all: bool) -> str:
    """Traffic to the clusterIP from outside the pod network (or all of it, --masquerade-all)."""
    outsiders = [] if masquerade_all else ["!", "-s", cluster_cidr]
    return line("-A", chain, *_cluster_ip_args(port), *outsiders, "-j", n.KUBE_MARK_MASQ)


# The per-endpoint rules below are written with f-strings: the same words line() would join,
# without a list per rule (they are most of a big document).
def _service_chain_rules(prof: _Profile, port: _Port, chain: str,
                         endpoints: tuple[_Endpoint, ...], comments: bool) -> list[str]:
    """writeServiceToEndpointRules: affinity checks first, then 1/(n-i) random picks."""
    head = f"-A {chain} "
    if not comments:
        comment = [""] * len(endpoints)
    elif prof.arrow_comments:
        comment = [f'-m comment --comment "{port.name} -> {ep.address}" ' for ep in endpoints]
    else:
        comment = [f"-m comment --comment {port.name} "] * len(endpoints)
    rules = []
    if port.affinity:
        seconds = port.service.affinity_timeout
        rules += [f"{head}{text}-m recent --name {ep.chain} --rcheck --seconds {seconds} --reap "
                  f"-j {ep.chain}" for ep, text in zip(endpoints, comment)]
    last = len(endpoints) - 1
    for i, (ep, text) in enumerate(zip(endpoints, comment)):
        pick = f"-m statistic --mode random --probability {probability(last + 1 - i)} " \
            if i < last else ""
        rules.append(f"{head}{text}{pick}-j {ep.chain}")
    return rules


def _endpoint_chains(doc: _Document, port: _Port, endpoints: tuple[_Endpoint, ...],
                     comments: bool) -> None:
    """KUBE-SEP-…: masquerade hairpin traffic, then DNAT (recording affinity when asked)."""
    comment = f"-m comment --comment {port.name} " if comments else ""
    dnat = f"-m {port.protocol} -p {port.protocol} -j DNAT --to-destination "
    chains, rules = doc.nat_chains, doc.nat_rules
    for ep in endpoints:
        chains.append(f":{ep.chain} - [0:0]")
        rules.append(f"-A {ep.chain} {comment}-s {ep.ip} -j {n.KUBE_MARK_MASQ}")
        affinity = f"-m recent --name {ep.chain} --set " if port.affinity else ""
        rules.append(f"-A {ep.chain} {comment}{affinity}{dnat}{ep.address}")


def _nodeports_tail(doc: _Document) -> None:
    """The last KUBE-SERVICES rule (default nodePortAddresses, localhost node ports allowed)."""
    doc.nat_rules.append(line(
        "-A", n.KUBE_SERVICES, "-m", "comment", "--comment",
        '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"',
        "-m", "addrtype", "--dst-type", "LOCAL", "-j", n.KUBE_NODEPORTS))


def _forward_rules(doc: _Document, nfacct: bool) -> None:
    counted = ["-m", "nfacct", "--nfacct-name", INVALID_COUNTER] if nfacct else []
    doc.filter_rules += [
        line("-A", n.KUBE_FORWARD, "-m", "conntrack", "--ctstate", "INVALID", *counted, "-j", "DROP"),
        line("-A", n.KUBE_FORWARD, "-m", "comment", "--comment", '"kubernetes forwarding rules"',
             "-m", "mark", "--mark", f"{MASQ_MARK}/{MASQ_MARK}", "-j", "ACCEPT"),
        line("-A", n.KUBE_FORWARD, "-m", "comment", "--comment",
             '"kubernetes forwarding conntrack rule"', "-m", "conntrack", "--ctstate",
             "RELATED,ESTABLISHED", "-j", "ACCEPT"),
    ]


@dataclass
class _Sync:
    """syncProxyRules of the v1.28+ generation for one service port at a time: clusterIP,
    external IPs, load balancer IPs and node ports, each traffic policy's chain (KUBE-SVC for
    Cluster, KUBE-SVL for Local), KUBE-EXT for external traffic and KUBE-FW for source ranges."""

    doc: _Document
    prof: _Profile
    cluster_cidr: str
    comments: bool
    masquerade_all: bool
    nfacct: bool
    node_ip: IPv4Address | None  # this node's, for source ranges that admit it

    def service_port(self, port: _Port) -> None:
        svc, split = port.service, categorize(port)
        cluster_chain, local_chain = port.chain, port.chain_of(n.LOCAL_SERVICE_PREFIX)
        ext_chain, fw_chain = port.chain_of(n.EXTERNAL_PREFIX), port.chain_of(n.FIREWALL_PREFIX)
        has_any = split.any
        internal_chain = local_chain if svc.internal_policy_local else cluster_chain
        has_internal = has_any and (bool(split.local) or not svc.internal_policy_local)
        external_chain = local_chain if svc.external_policy_local else cluster_chain
        has_external = has_any and (bool(split.local) or not svc.external_policy_local)
        uses_fw = has_any and bool(svc.load_balancer_ips) and bool(svc.source_ranges)
        lb_chain = fw_chain if uses_fw else ext_chain
        if not has_any:
            internal_drop = external_drop = ("REJECT", f'"{port.name} has no endpoints"')
        else:
            internal_drop = external_drop = ("DROP", f'"{port.name} has no local endpoints"')
        self._capture(port, has_any, has_internal, internal_chain, internal_drop,
                      has_external, external_drop, lb_chain, ext_chain, uses_fw)
        nat = self.doc.nat_rules
        if has_internal:
            nat.append(_masquerade_rule(port, internal_chain, self.cluster_cidr,
                                        self.masquerade_all))
        if has_any and svc.externally_accessible:
            self._external_chain(port, ext_chain, cluster_chain, external_chain, has_external)
        if uses_fw:
            self._firewall_chain(port, fw_chain, ext_chain)
        for chain, endpoints in ((cluster_chain, split.cluster), (local_chain, split.local)):
            if endpoints:
                self.doc.nat_chains.append(chain_line(chain))
                nat.extend(_service_chain_rules(self.prof, port, chain, endpoints, self.comments))
        _endpoint_chains(self.doc, port, split.reachable, self.comments)

    def _capture(self, port: _Port, has_any: bool, has_internal: bool, internal_chain: str,
                 internal_drop: tuple[str, str], has_external: bool,
                 external_drop: tuple[str, str], lb_chain: str, ext_chain: str,
                 uses_fw: bool) -> None:
        """What sends each of the port's addresses to its chains, or drops / rejects it in
        filter: clusterIP, external IPs, load balancer IPs, node port, health check port."""
        svc, nat, filt = port.service, self.doc.nat_rules, self.doc.filter_rules
        proto = ["-m", port.protocol, "-p", port.protocol]
        dport = ["--dport", str(port.port.port)]
        if has_internal:
            nat.append(_cluster_ip_jump(port, internal_chain))
        else:
            filt.append(line("-A", n.KUBE_SERVICES, "-m", "comment", "--comment", internal_drop[1],
                             *port.match_vip(), "-j", internal_drop[0]))
        refused = ["-m", "comment", "--comment", external_drop[1]]
        for ip in svc.external_ips:
            if has_any:
                nat.append(line("-A", n.KUBE_SERVICES, "-m", "comment", "--comment",
                                f'"{port.name} external IP"', *proto, "-d", str(ip), *dport,
                                "-j", ext_chain))
            if not has_external:
                filt.append(line("-A", n.KUBE_EXTERNAL_SERVICES, *refused, *proto, "-d", str(ip),
                                 *dport, "-j", external_drop[0]))
        for ip in svc.load_balancer_ips:
            if has_any:
                nat.append(line("-A", n.KUBE_SERVICES, "-m", "comment", "--comment",
                                f'"{port.name} loadbalancer IP"', *proto, "-d", str(ip), *dport,
                                "-j", lb_chain))
            if uses_fw:
                filt.append(line("-A", n.KUBE_PROXY_FIREWALL, "-m", "comment", "--comment",
                                 f'"{port.name} traffic not accepted by '
                                 f'{port.chain_of(n.FIREWALL_PREFIX)}"', *proto, "-d", str(ip),
                                 *dport, "-j", "DROP"))
        if not has_external:
            filt.extend(line("-A", n.KUBE_EXTERNAL_SERVICES, *refused, *proto, "-d", str(ip),
                             *dport, "-j", external_drop[0]) for ip in svc.load_balancer_ips)
        node_port = port.port.node_port
        if node_port:
            by_port = ["-m", "comment", "--comment", port.name, *proto]
            if has_any:
                if self.prof.localhost_nfacct and self.nfacct:  # localhostNodePorts, IPv4
                    nat.append(line("-A", n.KUBE_NODEPORTS, *by_port, "-d", "127.0.0.0/8",
                                    "--dport", str(node_port), "-m", "nfacct", "--nfacct-name",
                                    LOCALHOST_NODEPORT_COUNTER, "-j", ext_chain))
                nat.append(line("-A", n.KUBE_NODEPORTS, *by_port, "--dport", str(node_port),
                                "-j", ext_chain))
            if not has_external:
                filt.append(line("-A", n.KUBE_EXTERNAL_SERVICES, *refused, "-m", "addrtype",
                                 "--dst-type", "LOCAL", *proto, "--dport", str(node_port),
                                 "-j", external_drop[0]))
        if svc.health_check_node_port:
            # Accepted whether or not this node has local endpoints: the load balancer asks.
            filt.append(line("-A", n.KUBE_NODEPORTS, "-m", "comment", "--comment",
                             f'"{port.name} health check node port"', "-m", "tcp", "-p", "tcp",
                             "--dport", str(svc.health_check_node_port), "-j", "ACCEPT"))

    def _external_chain(self, port: _Port, ext_chain: str, cluster_chain: str,
                        external_chain: str, has_external: bool) -> None:
        """KUBE-EXT-…: masquerade everything (Cluster policy, it may leave the node), or keep the
        source and send only the node's own and pods' traffic to the Cluster chain (Local)."""
        self.doc.nat_chains.append(chain_line(ext_chain))
        nat, name = self.doc.nat_rules, port.name
        if not port.service.external_policy_local:
            nat.append(line("-A", ext_chain, "-m", "comment", "--comment",
                            f'"masquerade traffic for {name} external destinations"',
                            "-j", n.KUBE_MARK_MASQ))
        else:
            nat += [
                line("-A", ext_chain, "-m", "comment", "--comment",
                     f'"pod traffic for {name} external destinations"', "-s", self.cluster_cidr,
                     "-j", cluster_chain),
                line("-A", ext_chain, "-m", "comment", "--comment",
                     f'"masquerade LOCAL traffic for {name} external destinations"',
                     "-m", "addrtype", "--src-type", "LOCAL", "-j", n.KUBE_MARK_MASQ),
                line("-A", ext_chain, "-m", "comment", "--comment",
                     f'"route LOCAL traffic for {name} external destinations"',
                     "-m", "addrtype", "--src-type", "LOCAL", "-j", cluster_chain),
            ]
        if has_external:
            nat.append(line("-A", ext_chain, "-j", external_chain))

    def _firewall_chain(self, port: _Port, fw_chain: str, ext_chain: str) -> None:
        """KUBE-FW-…: allowed source ranges go on to KUBE-EXT; the rest falls through to the
        KUBE-PROXY-FIREWALL drop in filter."""
        svc = port.service
        self.doc.nat_chains.append(chain_line(fw_chain))
        head = ["-A", fw_chain, "-m", "comment", "--comment", f'"{port.name} loadbalancer IP"']
        nat = self.doc.nat_rules
        nat.extend(line(*head, "-s", str(cidr), "-j", ext_chain) for cidr in svc.source_ranges)
        # A request from the node to its own load balancer IP comes back with that IP as source.
        if self.node_ip is not None and any(self.node_ip in c for c in svc.source_ranges):
            nat.extend(line(*head, "-s", str(ip), "-j", ext_chain) for ip in svc.load_balancer_ips)
        nat.append(line("-A", fw_chain, "-m", "comment", "--comment",
                        f'"other traffic to {port.name} will be dropped by KUBE-PROXY-FIREWALL"'))
