"""The sweep's lab as data: N Services x E endpoints, one endpoint moved, kube-proxy's syncs.

Pure: no I/O. The pods are not namespaces: the sweep's pods namespace answers on every address of
the cluster CIDR (a `local` route), so an endpoint is only an address and 10,000 x 10 costs nothing.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

from lab_runner.model import ContainerPort, Lab, Node, Pod, Service, ServicePort
from lab_runner.ruleset import nft_names

NAMESPACE = "scale"
CLUSTER_CIDR = ipaddress.IPv4Network("10.0.0.0/8")
SERVICE_CIDR = ipaddress.IPv4Network("172.16.0.0/12")
FIRST_POD = ipaddress.IPv4Address("10.0.0.2")
FIRST_VIP = SERVICE_CIDR.network_address + 10
SERVICE_PORT, TARGET_PORT = 80, 8080
# kube-proxy's per-Service iptables chains (KUBE-SVC/SVL/EXT/FW) and per-endpoint ones (KUBE-SEP)
_SERVICE_CHAIN = re.compile(r"KUBE-(?:SVC|SVL|EXT|FW|SEP)-[A-Z0-9]{16}")


def service_name(index: int) -> str:
    return f"svc-{index}"


def vip(index: int) -> ipaddress.IPv4Address:
    return FIRST_VIP + index


def build(services: int, endpoints: int) -> Lab:
    """`services` ClusterIP Services on port 80, each selecting its own `endpoints` ready pods."""
    if services < 1 or endpoints < 1:
        raise ValueError(f"a sweep needs at least one service and one endpoint "
                         f"(got {services} x {endpoints})")
    if (services * endpoints + 2 >= CLUSTER_CIDR.num_addresses
            or services + 10 >= SERVICE_CIDR.num_addresses):
        raise ValueError(f"{services} x {endpoints} does not fit {CLUSTER_CIDR} / {SERVICE_CIDR}")
    web, pods, svcs = (ContainerPort(TARGET_PORT, "TCP", "web"),), [], []
    for s in range(services):
        labels = {"app": service_name(s)}
        pods += [Pod(f"{service_name(s)}-{e}", NAMESPACE, "scale", FIRST_POD + s * endpoints + e,
                     labels, web) for e in range(endpoints)]
        svcs.append(Service(NAMESPACE, service_name(s), vip(s),
                            (ServicePort(SERVICE_PORT, "TCP", "http", "web"),), selector=labels))
    node = Node("scale", "cbr0", ipaddress.IPv4Interface(f"{CLUSTER_CIDR.network_address + 1}/8"),
                ipaddress.IPv4Address("192.168.49.2"))
    return Lab(id="lab-8-scale-sweep", title="scale sweep", cluster_cidr=CLUSTER_CIDR,
               service_cidr=SERVICE_CIDR, node_network=ipaddress.IPv4Network("192.168.49.0/24"),
               pods=tuple(pods), nodes=(node,), services=tuple(svcs))


def move_endpoint(lab: Lab, service: int = 0) -> Lab:
    """The lab with the last endpoint of one Service replaced by a pod at a new address (a pod
    rescheduled): what one endpoint change looks like to kube-proxy."""
    wanted = {"app": service_name(service)}
    mine = [i for i, pod in enumerate(lab.pods) if pod.labels == wanted]
    if not mine:
        raise ValueError(f"the lab has no service {service_name(service)}")
    fresh = max(pod.ip for pod in lab.pods) + 1
    pods = list(lab.pods)
    pods[mine[-1]] = replace(pods[mine[-1]], ip=fresh, name=f"{pods[mine[-1]].name}-moved")
    return replace(lab, pods=tuple(pods))


def iptables_chains_of(document: str, service: int) -> set[str]:
    """The per-Service and per-endpoint chains of one Service in an iptables-restore document:
    what KUBE-SERVICES sends its ClusterIP to, and every such chain reached from there. (Found by
    the jumps, not by comments: past 1,000 endpoints kube-proxy leaves most comments out.)"""
    address = re.escape(str(vip(service)))
    entry = re.compile(rf"^-A KUBE-SERVICES .*-d {address}(?:/32)? .*-j (\S+)")
    jumps: dict[str, list[str]] = {}
    owned: list[str] = []
    for line in document.splitlines():
        if not line.startswith("-A "):
            continue
        words = line.split()
        target = words[words.index("-j") + 1] if "-j" in words else ""
        if _SERVICE_CHAIN.fullmatch(target):
            jumps.setdefault(words[1], []).append(target)
        hit = entry.match(line)
        if hit and _SERVICE_CHAIN.fullmatch(hit.group(1)):
            owned.append(hit.group(1))
    seen: set[str] = set()
    while owned:
        chain = owned.pop()
        if chain not in seen:
            seen.add(chain)
            owned += jumps.get(chain, [])
    return seen


def iptables_partial(new: str, old: str, service: int) -> str:
    """kube-proxy's partial sync (iptables-restore --noflush) after one Service changed.

    As its proxier does: the top-level chains (KUBE-SERVICES, KUBE-POSTROUTING, the filter
    chains, …) are written whole every time, each changed Service's own chains are written, the
    other Services' KUBE-SVC/KUBE-SEP chains are left out (they stay as they are in the kernel),
    and a chain no longer used is declared and deleted (`-X`)."""
    return _iptables_sync(new, old, service, iptables_chains_of(new, service))


def iptables_full(new: str, old: str, service: int) -> str:
    """A full iptables sync: every chain written (`--noflush`, as kube-proxy restores), the
    stale ones deleted."""
    return _iptables_sync(new, old, service, None)


def _iptables_sync(new: str, old: str, service: int, keep: set[str] | None) -> str:
    """The new document with only `keep`'s per-Service chains (None: all), stale chains deleted."""
    stale = sorted(iptables_chains_of(old, service) - iptables_chains_of(new, service))
    out: list[str] = []
    table = ""
    for line in new.splitlines():
        words = line.split()
        if line.startswith("*"):
            table = line[1:]
        elif line == "COMMIT" and table == "nat":
            out += [f":{chain} - [0:0]" for chain in stale] + [f"-X {chain}" for chain in stale]
        elif keep is not None and words and _skipped(words, keep):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _skipped(words: list[str], keep: set[str]) -> bool:
    chain = words[0][1:] if words[0].startswith(":") else words[1] if words[0] == "-A" else ""
    return bool(_SERVICE_CHAIN.fullmatch(chain)) and chain not in keep


def _nft_owner(service: int) -> str:
    # chain names: "service-<hash>-ns/name/tcp/http", "endpoint-<hash>-ns/name/tcp/http__ip/port"
    return f"-{NAMESPACE}/{service_name(service)}/"


def nft_chains_of(document: str, service: int) -> list[str]:
    owner, prefix = _nft_owner(service), f"add chain ip {nft_names.TABLE} "
    return [line[len(prefix):].split()[0] for line in document.splitlines()
            if line.startswith(prefix) and owner in line.split()[4]]


def nft_partial(new: str, old: str, service: int) -> str:
    """kube-proxy's nftables sync after one Service changed: one transaction that adds and
    flushes that Service's chains, writes their rules again, and flushes the chains no longer
    used (kube-proxy deletes them on a later sync, once no map refers to them). Unchanged
    Services and the map elements (the same ClusterIP still goes to the same service chain)
    are not touched."""
    table, owner = nft_names.TABLE, _nft_owner(service)
    chains = nft_chains_of(new, service)
    stale = [c for c in nft_chains_of(old, service) if c not in chains]
    out = [f"add chain ip {table} {c}\nflush chain ip {table} {c}" for c in chains]
    out += [f"flush chain ip {table} {c}" for c in stale]
    out += [line for line in new.splitlines()
            if line.startswith(f"add rule ip {table} ") and owner in line.split()[4]]
    return "\n".join(out) + "\n"


def nft_full(new: str, old: str, service: int) -> str:
    """A full nftables sync: the whole table written again in one transaction (kube-proxy
    flushes its chains and maps and adds everything back), the stale chains flushed."""
    stale = [c for c in nft_chains_of(old, service) if c not in nft_chains_of(new, service)]
    return (f"flush table ip {nft_names.TABLE}\n" + new
            + "".join(f"flush chain ip {nft_names.TABLE} {c}\n" for c in stale))

