"""The imported lab's addresses and kube-proxy settings: cluster and service CIDRs, the nodes'
pod bridges and network, the rule profile; each choice noted with where it came from.

AddressPlan is a part of build._Builder: it reads the builder's objects, options and the node's
facts, and reports through its note() and warn().
"""

from __future__ import annotations

import ipaddress
from typing import Any

from lab_runner.importer.objects import ImportProblem, name_of

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network
DEFAULT_SERVICE_CIDR = Net("10.96.0.0/12")
SPARE_NODE_NETWORKS = ("192.168.49.0/24", "172.31.254.0/24", "10.255.254.0/24")
BRIDGE_PREFIXES = (24, 20, 16, 12, 8)


class AddressPlan:
    """Chooses each address range of the lab (uses self.objects, options, facts, note, warn)."""

    def cluster_cidr(self) -> Net:
        if self.options.cluster_cidr:
            self.note(f"clusterCIDR {self.options.cluster_cidr}: from --cluster-cidr")
            return self.options.cluster_cidr
        if self.facts and self.facts.cluster_cidr:
            self.note(f"clusterCIDR {self.facts.cluster_cidr}: kube-proxy's --cluster-cidr, read "
                      f"from the rules (line {self.facts.cidr_line})")
            return self.facts.cluster_cidr
        pod_cidrs = [Net(c) for n in self.objects.nodes for c in _pod_cidrs(n) if v4_net(c)]
        if pod_cidrs:
            cidr = supernet(pod_cidrs)
            self.warn("clusterCIDR", f"{cidr}: guessed as the smallest network holding the "
                      "nodes' podCIDRs (kube-proxy's --cluster-cidr is not in the objects); give "
                      "--cluster-cidr or --rules to be exact")
            return cidr
        if self.facts:
            raise ImportProblem("no cluster CIDR: the node's rules have no `! -s CIDR -j "
                                "KUBE-MARK-MASQ` (its kube-proxy runs without --cluster-cidr, as "
                                "on EKS), and the kit always renders one: give --cluster-cidr "
                                "CIDR (the range pods have, e.g. the VPC's)")
        raise ImportProblem("no cluster CIDR: give --cluster-cidr CIDR (kube-proxy's "
                            "--cluster-cidr), or --rules NODE.rules, or Node objects with "
                            "spec.podCIDR")

    def service_cidr(self, cluster_ips: list[IPv4]) -> Net:
        chosen = self.options.service_cidr
        if chosen:
            outside = [str(ip) for ip in cluster_ips if ip not in chosen]
            if outside:
                raise ImportProblem(f"--service-cidr {chosen} does not hold the cluster IPs "
                                    f"{', '.join(outside[:5])}")
            return chosen
        if all(ip in DEFAULT_SERVICE_CIDR for ip in cluster_ips):
            self.note(f"serviceCIDR {DEFAULT_SERVICE_CIDR}: kubeadm's default, which holds every "
                      "cluster IP (it appears in no kube-proxy rule)")
            return DEFAULT_SERVICE_CIDR
        cidr = supernet([Net(f"{ip}/32") for ip in cluster_ips])
        self.note(f"serviceCIDR {cidr}: the smallest network holding every cluster IP (it "
                  "appears in no kube-proxy rule; --service-cidr to set it)")
        return cidr

    def bridges(self, kit: str, pods: list[dict],
                avoid: list[IPv4]) -> dict[str, ipaddress.IPv4Interface]:
        """Each lab node's pod bridge, the kit node first. Every endpoint runs on its own node
        when each fits its node's podCIDR (a pod then loses its nodeName: it is where kube-proxy
        sees it); else all run on the kit node, which keeps the slices' node names."""
        per_node = self.own_nodes(kit, pods, avoid)
        if per_node is not None:
            for pod in pods:
                if pod.get("nodeName"):
                    pod["node"] = pod.pop("nodeName")
            self.note(f"pod bridges: each node's podCIDR ({', '.join(per_node)}); every "
                      "endpoint is a pod on its own node")
            return per_node
        return {kit: self.bridge(kit, [IPv4(p["ip"]) for p in pods], avoid)}

    def own_nodes(self, kit: str, pods: list[dict], avoid: list[IPv4]) -> dict | None:
        """{node: bridge} when every pod is inside its slice node's podCIDR, these podCIDRs do not
        overlap and hold no cluster IP, and pods live on more than the kit node; else None."""
        cidrs = {name_of(n): [Net(c) for c in _pod_cidrs(n) if v4_net(c)]
                 for n in self.objects.nodes}
        homes: dict[str, list[IPv4]] = {kit: []}
        for pod in pods:
            home = pod.get("nodeName", kit)
            if not any(IPv4(pod["ip"]) in c for c in cidrs.get(home, [])):
                return None
            homes.setdefault(home, []).append(IPv4(pod["ip"]))
        if len(homes) == 1 or not cidrs.get(kit):
            return None
        found: dict[str, ipaddress.IPv4Interface] = {}
        for home in [kit] + sorted(set(homes) - {kit}):
            ips = homes[home]
            network = next((c for c in cidrs[home] if all(ip in c for ip in ips)), None)
            taken = set(ips)
            if (network is None or any(ip in network for ip in avoid)
                    or {network.network_address, network.broadcast_address} & taken
                    or any(network.overlaps(b.network) for b in found.values())):
                return None
            free = next((h for h in network.hosts() if h not in taken), None)
            if free is None:
                return None
            found[home] = ipaddress.IPv4Interface(f"{free}/{network.prefixlen}")
        return found

    def bridge(self, node: str, pod_ips: list[IPv4], avoid: list[IPv4]) -> ipaddress.IPv4Interface:
        """The kit node's pod bridge: its podCIDR when it holds every pod, else the smallest
        round network that does; the address is the first one no pod has (cni0's .1)."""
        spec = next(((n.get("spec") or {}) for n in self.objects.nodes if name_of(n) == node), {})
        candidates = [Net(c) for c in _pod_cidrs({"spec": spec}) if v4_net(c)]
        start = supernet([Net(f"{ip}/32") for ip in pod_ips]).prefixlen if pod_ips else 24
        candidates += [Net(f"{pod_ips[0] if pod_ips else '10.244.0.0'}/{p}", strict=False)
                       for p in BRIDGE_PREFIXES + tuple(range(min(start, 30), 7, -1))
                       if p <= start]
        taken = set(pod_ips)
        for index, network in enumerate(candidates):
            ends = {network.network_address, network.broadcast_address}
            if (not all(ip in network for ip in pod_ips) or any(ip in network for ip in avoid)
                    or ends & taken):
                continue
            free = next((h for h in network.hosts() if h not in taken), None)
            if free is not None:
                where = ("its podCIDR" if index == 0 and spec.get("podCIDR")
                         else "the smallest round network holding every endpoint")
                self.note(f"pod bridge cni0 {free}/{network.prefixlen}: {where}; the endpoints of "
                          "every node run as pods on this one node")
                return ipaddress.IPv4Interface(f"{free}/{network.prefixlen}")
        raise ImportProblem(f"no pod subnet holds the pods {', '.join(map(str, pod_ips[:5]))} "
                            "without a cluster IP: the lab cannot put them on one bridge")

    def node_addresses(self, bridges: dict, cluster_cidr: Net) -> tuple[dict[str, IPv4], Net]:
        """The nodes' InternalIPs and their /24, unless that overlaps the pods (cloud CNIs give
        pods and nodes one VPC subnet) or the nodes are in several: then a spare network, as
        node addresses appear in no ClusterIP rule."""
        real = {name: next((ip for ip, owner in self.node_ips.items() if owner == name), None)
                for name in bridges}
        networks = {Net(f"{ip}/24", strict=False) for ip in real.values() if ip is not None}
        clear = [b.network for b in bridges.values()] + [cluster_cidr]
        if None not in real.values() and len(networks) == 1:
            [network] = networks
            if not any(network.overlaps(c) for c in clear):
                return real, network
        for spare in map(Net, SPARE_NODE_NETWORKS):
            if not any(spare.overlaps(c) for c in clear):
                placed = {name: spare.network_address + 2 + i for i, name in enumerate(bridges)}
                if any(ip is not None for ip in real.values()):
                    self.note(f"node addresses: {spare} (the nodes' own "
                              f"{', '.join(str(ip) for ip in real.values() if ip)} overlap the "
                              "pods or the cluster CIDR, or are not in one /24; no ClusterIP "
                              "rule names a node address)")
                return placed, spare
        raise ImportProblem("no node network beside the pod subnets "
                            f"{', '.join(str(b.network) for b in bridges.values())}")

    def profile(self) -> tuple[str, bool]:
        nfacct = bool(self.facts and self.facts.nfacct)
        if self.options.profile:
            self.note(f"profile {self.options.profile}: from --profile")
            return self.options.profile, nfacct
        if self.facts:
            self.note(f"profile {self.facts.profile}: {self.facts.profile_reason}")
            if nfacct:
                self.note("kubeProxy.nfacct: the node's rules use -m nfacct; `up` needs the "
                          "kernel's nfacct accounting (set it false where that is missing: the "
                          "matches only count)")
            return self.facts.profile, nfacct
        versions = [((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
                    for n in self.objects.nodes]
        minor = max((_minor(v) for v in versions if _minor(v)), default=None)
        if minor is None:
            self.note("profile v1.30: the current kube-proxy generation (no --rules, --profile "
                      "or kubeletVersion to tell)")
            return "v1.30", False
        profile = "v1.23" if minor < 25 else "v1.30"
        self.note(f"profile {profile}: the nodes' kubelet is v1.{minor} (--rules tells exactly)")
        return profile, False


def v4(value: Any) -> bool:
    return _parses(value, IPv4)


def v4_net(value: Any) -> bool:
    return _parses(value, Net)


def _parses(value: Any, kind: type) -> bool:
    try:
        kind(str(value))
    except ValueError:
        return False
    return True


def supernet(networks: list[Net]) -> Net:
    """The smallest network holding all of them."""
    result = networks[0]
    while not all(n.subnet_of(result) for n in networks):
        result = result.supernet()
    return result


def _minor(version: str) -> int | None:
    parts = version.lstrip("v").split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _pod_cidrs(node: dict) -> list:
    spec = node.get("spec") or {}
    return spec.get("podCIDRs") or [spec.get("podCIDR")]
