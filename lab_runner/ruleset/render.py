"""Render a lab's services as the iptables-restore document kube-proxy's iptables proxier writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from lab_runner.endpoints import PodIndex
from lab_runner.model import Lab, Service, ServicePort
from lab_runner.ruleset import names as n

PROFILES = ("v1.23", "v1.30")

# kube-proxy: fmt.Sprintf("%#08x", 1<<masqueradeBit) with the default bit 14. Go zero-pads the
# digits to 8 and then adds "0x", so this is what kube-proxy writes (its logs say the same);
# iptables-save shows it back as 0x4000.
MASQ_MARK = "0x00004000"
# Above this many endpoints kube-proxy drops the per-endpoint comments ("large cluster mode").
LARGE_CLUSTER_ENDPOINTS = 1000
CT_NEW = ("-m", "conntrack", "--ctstate", "NEW")


@dataclass(frozen=True)
class _Profile:
    """What differs between the two kube-proxy generations the kit reproduces."""

    name: str
    arrow_comments: bool  # v1.30: "ns/svc:port -> ip:port" on the KUBE-SVC endpoint rules
    service_chain_first: bool  # v1.30 writes KUBE-SVC before KUBE-SEP; v1.23 the other way
    firewall_chains: bool  # v1.30: KUBE-PROXY-FIREWALL, and KUBE-FIREWALL's localnet guard
    ensures_mark_drop: bool  # v1.23 ensures an (empty) KUBE-MARK-DROP in nat


_PROFILES = {
    "v1.23": _Profile("v1.23", False, False, False, True),
    "v1.30": _Profile("v1.30", True, True, True, False),
}


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
_JUMPS = {"v1.23": _JUMPS_V123 + _JUMPS_NAT, "v1.30": _JUMPS_V130}
_BUILTIN_ORDER = {"filter": ("INPUT", "FORWARD", "OUTPUT"),
                  "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}


class _Endpoint(NamedTuple):  # a tuple: there is one per endpoint, 100,000s in a big cluster
    address: str  # "ip:port", the string kube-proxy hashes and sorts by
    ip: str
    chain: str


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





def ports_of(lab: Lab) -> list[_Port]:
    """Every service port, in the lab file's order (kube-proxy iterates a Go map: no set order)."""
    index = PodIndex(lab)
    found = []
    # dict keys, as endpoints.all_endpoints: an exact duplicate (service, port) renders once.
    for service, port in dict.fromkeys((s, p) for s in lab.services for p in s.ports):
        name = service.port_name(port)
        proto = port.protocol.lower()
        # n.service_chain(name, proto), n.endpoint_chain(name, proto, address), and the ip as
        # str(e.ip) writes it (IPv4: the address up to its colon).
        seed = name + proto
        eps = tuple(_Endpoint(address, address.rpartition(":")[0],
                              n.ENDPOINT_PREFIX + n.hash16(seed + address))
                    for address in index.addresses(service, port))
        found.append(_Port(service, port, name, proto, n.SERVICE_PREFIX + n.hash16(seed), eps))
    return found


def render(lab: Lab, profile: str | None = None, *, base_jumps: bool = True) -> str:
    """kube-proxy's iptables-restore document for the lab's services.

    base_jumps=True also writes what kube-proxy sets up outside its restore document on a fresh
    node (jumps from the built-in chains, KUBE-PROXY-CANARY in mangle/nat/filter, v1.23's empty
    KUBE-MARK-DROP), for restoring into an empty node namespace. base_jumps=False is exactly the
    per-sync document, safe to re-apply with `iptables-restore --noflush`.
    """
    chosen = profile or lab.profile
    if chosen not in _PROFILES:
        raise ValueError(f"unknown profile {chosen!r}; the profiles are: {', '.join(PROFILES)}")
    prof = _PROFILES[chosen]
    ports = ports_of(lab)
    comments = sum(len(p.endpoints) for p in ports) <= LARGE_CLUSTER_ENDPOINTS
    doc = _Document()
    if base_jumps:
        _base_setup(doc, prof)
    _top_level(doc, prof)
    for port in ports:
        _service_port(doc, prof, port, str(lab.cluster_cidr), comments)
    _nodeports_tail(doc)
    _forward_rules(doc)
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
                  comments: bool) -> None:
    if not port.endpoints:
        doc.filter_rules.append(line(
            "-A", n.KUBE_SERVICES, "-m", "comment", "--comment", f'"{port.name} has no endpoints"',
            *port.match_vip(), "-j", "REJECT"))
        return
    capture = _capture_rules(port, cluster_cidr)
    if prof.service_chain_first:  # v1.30
        doc.nat_rules.extend(capture)
        doc.nat_chains.append(chain_line(port.chain))
        doc.nat_rules.extend(_service_chain_rules(prof, port, comments))
        _endpoint_chains(doc, port, comments)
    else:  # v1.23: endpoint chains first, then the service chain
        _endpoint_chains(doc, port, comments)
        doc.nat_chains.append(chain_line(port.chain))
        doc.nat_rules.extend(reversed(capture))
        doc.nat_rules.extend(_service_chain_rules(prof, port, comments))


def _capture_rules(port: _Port, cluster_cidr: str) -> list[str]:
    """The KUBE-SERVICES jump for the clusterIP and the KUBE-SVC masquerade rule for outsiders."""
    cluster_ip = ["-m", "comment", "--comment", f'"{port.name} cluster IP"', *port.match_vip()]
    return [line("-A", n.KUBE_SERVICES, *cluster_ip, "-j", port.chain),
            line("-A", port.chain, *cluster_ip, "!", "-s", cluster_cidr, "-j", n.KUBE_MARK_MASQ)]


# The per-endpoint rules below are written with f-strings: the same words line() would join,
# without a list per rule (they are most of a big document).
def _service_chain_rules(prof: _Profile, port: _Port, comments: bool) -> list[str]:
    """writeServiceToEndpointRules: affinity checks first, then 1/(n-i) random picks."""
    head = f"-A {port.chain} "
    if not comments:
        comment = [""] * len(port.endpoints)
    elif prof.arrow_comments:
        comment = [f'-m comment --comment "{port.name} -> {ep.address}" ' for ep in port.endpoints]
    else:
        comment = [f"-m comment --comment {port.name} "] * len(port.endpoints)
    rules = []
    if port.affinity:
        seconds = port.service.affinity_timeout
        rules += [f"{head}{text}-m recent --name {ep.chain} --rcheck --seconds {seconds} --reap "
                  f"-j {ep.chain}" for ep, text in zip(port.endpoints, comment)]
    last = len(port.endpoints) - 1
    for i, (ep, text) in enumerate(zip(port.endpoints, comment)):
        pick = f"-m statistic --mode random --probability {probability(last + 1 - i)} " \
            if i < last else ""
        rules.append(f"{head}{text}{pick}-j {ep.chain}")
    return rules


def _endpoint_chains(doc: _Document, port: _Port, comments: bool) -> None:
    """KUBE-SEP-…: masquerade hairpin traffic, then DNAT (recording affinity when asked)."""
    comment = f"-m comment --comment {port.name} " if comments else ""
    dnat = f"-m {port.protocol} -p {port.protocol} -j DNAT --to-destination "
    chains, rules = doc.nat_chains, doc.nat_rules
    for ep in port.endpoints:
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


def _forward_rules(doc: _Document) -> None:
    doc.filter_rules += [
        line("-A", n.KUBE_FORWARD, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"),
        line("-A", n.KUBE_FORWARD, "-m", "comment", "--comment", '"kubernetes forwarding rules"',
             "-m", "mark", "--mark", f"{MASQ_MARK}/{MASQ_MARK}", "-j", "ACCEPT"),
        line("-A", n.KUBE_FORWARD, "-m", "comment", "--comment",
             '"kubernetes forwarding conntrack rule"', "-m", "conntrack", "--ctstate",
             "RELATED,ESTABLISHED", "-j", "ACCEPT"),
    ]
