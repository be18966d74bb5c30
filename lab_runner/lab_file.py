"""Load and validate lab.yaml into the model; every problem is reported with its line and YAML path."""

from __future__ import annotations

import difflib
import ipaddress
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import yaml

from lab_runner.endpoints import label_index, selects
from lab_runner.errors import LabFileError
from lab_runner.model import (Client, ContainerPort, Lab, Node, Pod, Service, ServicePort,
                              SliceEndpoint)

LABS_DIR = Path(__file__).resolve().parent.parent / "labs"

# Allowed keys per object: key -> required?
TOP_KEYS = {"id": True, "title": True, "teaches": False, "profile": False, "clusterCIDR": True,
            "serviceCIDR": False, "nodeNetwork": False, "nodePortRange": False, "kubeProxy": False,
            "nodes": True, "pods": False, "services": False, "clients": False}
KUBE_PROXY_KEYS = {"mode": False, "masqueradeAll": False, "nfacct": False}
# kube-proxy's --proxy-mode values the kit renders; nftables mode is GA from Kubernetes v1.33.
PROXY_MODES = ("iptables", "nftables")
NFTABLES_PROFILES = ("v1.34",)
NODE_KEYS = {"name": True, "bridge": True, "ip": False}
BRIDGE_KEYS = {"name": True, "address": True}
POD_KEYS = {"name": True, "namespace": False, "node": False, "labels": False, "ip": False,
            "ports": False, "app": False, "ready": False, "containers": False,
            "terminating": False, "nodeName": False, "hostNetwork": False}
CONTAINER_PORT_KEYS = {"name": False, "containerPort": True, "protocol": False}
SERVICE_KEYS = {"namespace": False, "name": True, "labels": False, "selector": False,
                "clusterIP": True, "ports": True, "sessionAffinity": False,
                "sessionAffinityTimeout": False, "type": False, "externalIPs": False,
                "loadBalancerIPs": False, "loadBalancerSourceRanges": False,
                "externalTrafficPolicy": False, "internalTrafficPolicy": False,
                "healthCheckNodePort": False, "endpoints": False}
# An endpoint of a Service without selector, as an EndpointSlice writes it (conditions, nodeName).
ENDPOINT_KEYS = {"address": True, "port": False, "ports": False, "ready": False, "serving": False,
                 "terminating": False, "nodeName": False}
SERVICE_PORT_KEYS = {"name": False, "port": True, "targetPort": False, "protocol": False,
                     "nodePort": False}
CLIENT_KEYS = {"name": True, "ip": True, "node": False}

PROTOCOLS = ("TCP", "UDP")
PROFILES = ("v1.23", "v1.30", "v1.34")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
TRAFFIC_POLICIES = ("Cluster", "Local")
DEFAULT_NODE_PORT_RANGE = "30000-32767"  # kube-apiserver's --service-node-port-range
APP_KINDS = ("http", "echo")
AFFINITIES = ("None", "ClientIP")
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_NETWORK = "192.168.49.0/24"  # minikube's docker network
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def lab_path(lab: str) -> Path:
    """Resolve `lab-3`, `lab-3-clusterip`, a lab directory or a lab.yaml path to the lab file."""
    candidate = Path(lab)
    if candidate.is_file():
        return candidate
    if (candidate / "lab.yaml").is_file():
        return candidate / "lab.yaml"
    ids = available_labs()
    matches = [i for i in ids if i == lab or i.startswith(lab + "-")]
    if len(matches) == 1:
        return LABS_DIR / matches[0] / "lab.yaml"
    choices = ", ".join(ids) or "(none)"
    guess = closest_lab(lab, ids)
    hint = f"did you mean {guess}? " if guess else ""
    raise LabFileError(lab, [f"no lab called {lab!r}; {hint}the labs are: {choices}"])


def closest_lab(lab: str, ids: list[str]) -> str | None:
    """The lab id a mistyped name most likely meant (`lab-33` → lab-3-clusterip), or None.

    Compared with each id and its short form (`lab-3`), as both are accepted; no guess when two
    labs are as close (`lab-99` is as near lab-1 as lab-4).
    """
    forms = {i: i for i in ids}
    forms.update({"-".join(i.split("-")[:2]): i for i in ids})
    best: dict[str, float] = {}
    for form, lab_id in forms.items():
        ratio = difflib.SequenceMatcher(None, lab, form).ratio()
        best[lab_id] = max(best.get(lab_id, 0.0), ratio)
    ranked = sorted(best.items(), key=lambda item: -item[1])
    if not ranked or ranked[0][1] < 0.6 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return None
    return ranked[0][0]


def available_labs() -> list[str]:
    return sorted(p.parent.name for p in LABS_DIR.glob("*/lab.yaml"))


def load(lab: str | Path) -> Lab:
    """Read a lab file and return the validated model, or raise LabFileError listing every problem."""
    path = lab_path(str(lab))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabFileError(str(path), [f"cannot read: {exc}"]) from exc
    return parse(text, str(path))


def parse(text: str, source: str = "<lab.yaml>") -> Lab:
    # One parse (libyaml's when PyYAML has it): the node tree gives the lines, the data is
    # constructed from it. Parsing twice in pure Python took 13 of 14 s for 5,000 pods.
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise LabFileError(source, [f"{where}not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    finally:
        loader.dispose()
    checker = _Checker(_line_index(root))
    lab = checker.build(data, source)
    if checker.problems:
        raise LabFileError(source, checker.problems)
    return lab


def _line_index(node, path: str = "", index: dict[str, int] | None = None) -> dict[str, int]:
    """Map each YAML path (`pods[2].ip`) to its 1-based line, for error messages."""
    index = {} if index is None else index
    if node is None:
        return index
    index.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            index[child] = key.start_mark.line + 1
            _line_index(value, child, index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, f"{path}[{i}]", index)
    return index


class _Checker:
    """Collects every problem instead of stopping at the first, so a lab author fixes them in one go."""

    def __init__(self, lines: dict[str, int]):
        self.lines = lines
        self.problems: list[str] = []

    # -- reporting -------------------------------------------------------------------------
    def problem(self, path: str, message: str) -> None:
        probe = path
        while probe and probe not in self.lines:
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        line = self.lines.get(probe)
        where = f"line {line}: " if line else ""
        self.problems.append(f"{where}{path or '(top level)'}: {message}")

    # -- shape -----------------------------------------------------------------------------
    def mapping(self, value: Any, path: str, keys: dict[str, bool]) -> dict | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping with keys {', '.join(keys)}")
            return None
        for key in value:
            if key not in keys:
                self.problem(f"{path}.{key}" if path else str(key),
                             f"unknown field {key!r}; valid fields are: {', '.join(keys)}")
        for key, required in keys.items():
            if required and key not in value:
                self.problem(path, f"missing required field {key!r}")
        return value

    def items(self, value: Any, path: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, "must be a list")
            return []
        return value

    def entries(self, value: Any, path: str, keys: dict[str, bool]):
        """(path, mapping) of each well-shaped item of a list field; the others are reported."""
        for i, item in enumerate(self.items(value, path)):
            entry = self.mapping(item, f"{path}[{i}]", keys)
            if entry is not None:
                yield f"{path}[{i}]", entry

    def string(self, value: Any, path: str, default: str | None = None) -> str | None:
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            self.problem(path, f"must be a non-empty string, got {value!r}")
            return default
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if value not in choices:
            self.problem(path, f"{value!r} is not valid; choose one of: {', '.join(choices)}")
            return default
        return value

    def port(self, value: Any, path: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.problem(path, f"must be a port number from 1 to 65535, got {value!r}")
            return None
        return value

    def count(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
            self.problem(path, f"must be a whole number from 1 to 20, got {value!r}")
            return 1
        return value

    def flag(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.problem(path, f"must be true or false, got {value!r}")
            return False
        return value

    def port_range(self, value: Any) -> range:
        """nodePortRange "LOW-HIGH", as kube-apiserver's --service-node-port-range."""
        low, _, high = str(value).partition("-")
        if low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high) <= 65535:
            return range(int(low), int(high) + 1)
        self.problem("nodePortRange", f"{value!r} is not a port range like {DEFAULT_NODE_PORT_RANGE}")
        return range(30000, 32768)

    def labels(self, value: Any, path: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping of label names to values")
            return {}
        return {str(k): str(v) for k, v in value.items()}

    def parsed(self, value: Any, path: str, kind: str, parse: Callable[[str], Any]):
        if value is None:
            return None
        try:
            return parse(str(value))
        except ValueError:
            self.problem(path, f"{value!r} is not a valid {kind}")
            return None

    def address(self, value, path):
        return self.parsed(value, path, "IPv4 address", ipaddress.IPv4Address)

    def network(self, value, path):
        return self.parsed(value, path, "IPv4 network (like 10.244.0.0/16)", ipaddress.IPv4Network)

    def interface(self, value, path):
        result = self.parsed(value, path, "IPv4 address with prefix (like 172.17.0.1/16)",
                             ipaddress.IPv4Interface)
        if result is not None and "/" not in str(value):
            self.problem(path, f"{value!r} needs a prefix length, like {value}/16")
            return None
        return result

    # -- the lab ---------------------------------------------------------------------------
    def build(self, data: Any, source: str) -> Lab | None:
        top = self.mapping(data, "", TOP_KEYS)
        if top is None:
            return None
        cluster_cidr = self.network(top.get("clusterCIDR"), "clusterCIDR")
        service_cidr = self.network(top.get("serviceCIDR", DEFAULT_SERVICE_CIDR), "serviceCIDR")
        node_network = self.network(top.get("nodeNetwork", DEFAULT_NODE_NETWORK), "nodeNetwork")
        nodes = self.nodes(top.get("nodes"), node_network)
        self.nodes_by_ip = {n.ip: n.name for n in nodes}
        node_names = [n.name for n in nodes]
        pods = self.pods(top.get("pods"), nodes)
        self.node_ports = self.port_range(top.get("nodePortRange", DEFAULT_NODE_PORT_RANGE))
        services = self.services(top.get("services"), pods, cluster_cidr, service_cidr, nodes)
        clients = self.clients(top.get("clients"), node_names, node_network, cluster_cidr, nodes)
        self.unique_addresses(nodes, pods, services, clients)
        profile = self.choice(top.get("profile"), "profile", PROFILES, "v1.23")
        self.needs_newer_profile(profile, top.get("services"), services)
        kube_proxy = self.mapping(top.get("kubeProxy", {}), "kubeProxy", KUBE_PROXY_KEYS) or {}
        masquerade_all = self.flag(kube_proxy.get("masqueradeAll", False), "kubeProxy.masqueradeAll")
        nfacct = self.flag(kube_proxy.get("nfacct", False), "kubeProxy.nfacct")
        proxy_mode = self.choice(kube_proxy.get("mode"), "kubeProxy.mode", PROXY_MODES, "iptables")
        if proxy_mode == "nftables" and profile not in NFTABLES_PROFILES:
            self.problem("kubeProxy.mode", f"nftables mode needs profile {' or '.join(NFTABLES_PROFILES)}"
                         f" (GA from Kubernetes v1.33); this lab has profile {profile}")
        if self.problems:
            return None
        return Lab(
            id=self.string(top.get("id"), "id") or "",
            title=self.string(top.get("title"), "title") or "",
            teaches=str(top.get("teaches") or "").strip(),
            profile=profile, masquerade_all=masquerade_all, nfacct=nfacct, proxy_mode=proxy_mode,
            cluster_cidr=cluster_cidr, service_cidr=service_cidr, node_network=node_network,
            nodes=tuple(nodes), pods=tuple(pods), services=tuple(services),
            clients=tuple(clients), source=source,
        )

    def nodes(self, value, node_network) -> list[Node]:
        nodes: list[Node] = []
        raw = self.items(value, "nodes")
        if value is not None and not raw:
            self.problem("nodes", "a lab needs at least one node")
        for i, item in enumerate(raw):
            path = f"nodes[{i}]"
            entry = self.mapping(item, path, NODE_KEYS)
            if entry is None:
                continue
            name = self.string(entry.get("name"), f"{path}.name")
            bridge = self.mapping(entry.get("bridge"), f"{path}.bridge", BRIDGE_KEYS) or {}
            bridge_name = self.string(bridge.get("name"), f"{path}.bridge.name")
            if bridge_name and len(bridge_name) > 15:
                self.problem(f"{path}.bridge.name", "interface names are at most 15 characters")
            bridge_address = self.interface(bridge.get("address"), f"{path}.bridge.address")
            default_ip = (node_network.network_address + 2 + i) if node_network else None
            ip = self.address(entry.get("ip", default_ip), f"{path}.ip")
            if ip and node_network and ip not in node_network:
                self.problem(f"{path}.ip", f"{ip} is outside the node network {node_network}")
            if name in [n.name for n in nodes]:
                self.problem(f"{path}.name", f"node {name!r} is defined twice")
            for other in nodes:
                if bridge_address and bridge_address.network.overlaps(other.pod_subnet):
                    self.problem(f"{path}.bridge.address", f"pod subnet {bridge_address.network} "
                                 f"overlaps node {other.name}'s {other.pod_subnet}")
            if bridge_address and node_network and bridge_address.network.overlaps(node_network):
                self.problem(f"{path}.bridge.address", f"pod subnet {bridge_address.network} "
                             f"overlaps the node network {node_network}")
            if name and bridge_name and bridge_address and ip:
                nodes.append(Node(name, bridge_name, bridge_address, ip))
        return nodes

    def pods(self, value, nodes: list[Node]) -> list[Pod]:
        pods: list[Pod] = []
        seen: set[tuple[str, str]] = set()  # (namespace, name): a set, as labs have 5,000 pods
        node_names = [n.name for n in nodes]
        for i, item in enumerate(self.items(value, "pods")):
            path = f"pods[{i}]"
            entry = self.mapping(item, path, POD_KEYS)
            if entry is None:
                continue
            name = self.string(entry.get("name"), f"{path}.name")
            namespace = self.string(entry.get("namespace"), f"{path}.namespace", "default")
            node_name = entry.get("node", node_names[0] if len(node_names) == 1 else None)
            if node_name not in node_names:
                self.problem(f"{path}.node", f"node {node_name!r} is not in this lab; "
                             f"the nodes are: {', '.join(node_names) or '(none)'}")
                node_name = None
            node = next((n for n in nodes if n.name == node_name), None)
            host_network = self.flag(entry.get("hostNetwork", False), f"{path}.hostNetwork")
            if host_network:
                ip = self.host_address(entry.get("ip"), f"{path}.ip", node)
            else:
                if "ip" not in entry:
                    self.problem(path, "missing required field 'ip' (only a hostNetwork pod "
                                 "takes its node's address)")
                ip = self.address(entry.get("ip"), f"{path}.ip")
            if ip and node and not host_network:
                if ip not in node.pod_subnet:
                    hint = ("; a pod on its node's address has hostNetwork: true (and no ip)"
                            if ip in self.nodes_by_ip else "")
                    self.problem(f"{path}.ip", f"{ip} is outside node {node.name}'s pod subnet "
                                 f"{node.pod_subnet} (bridge {node.bridge}){hint}")
                elif ip in (node.pod_subnet.network_address, node.pod_subnet.broadcast_address,
                            node.bridge_address.ip):
                    self.problem(f"{path}.ip", f"{ip} is the network, broadcast or bridge address "
                                 f"of {node.pod_subnet}")
            ports = self.container_ports(entry.get("ports"), f"{path}.ports")
            ready = self.flag(entry.get("ready", True), f"{path}.ready")
            terminating = self.flag(entry.get("terminating", False), f"{path}.terminating")
            endpoint_node = entry.get("nodeName")
            if endpoint_node is not None and not isinstance(endpoint_node, str):
                self.problem(f"{path}.nodeName", f"must be a node name (or \"\" for none), got "
                             f"{endpoint_node!r}")
                endpoint_node = None
            if (namespace, name) in seen:
                self.problem(f"{path}.name", f"pod {namespace}/{name} is defined twice")
            seen.add((namespace, name))
            if name and len(name) > 63:
                self.problem(f"{path}.name", "pod names are at most 63 characters (a hostname)")
            if name and node_name and ip:
                pods.append(Pod(name=name, namespace=namespace, node=node_name, ip=ip,
                                labels=self.labels(entry.get("labels"), f"{path}.labels"),
                                ports=tuple(ports),
                                app=self.choice(entry.get("app"), f"{path}.app", APP_KINDS, "http"),
                                # `ready` in the file is the readiness probe; EndpointSlice's
                                # Ready is serving and not terminating.
                                ready=ready and not terminating, serving=ready,
                                terminating=terminating, endpoint_node=endpoint_node,
                                host_network=host_network,
                                containers=self.count(entry.get("containers", 1),
                                                      f"{path}.containers")))
        return pods

    def host_address(self, value, path: str, node: Node | None):
        """A hostNetwork pod's address is its node's: `ip` may be left out or must say so."""
        if node is None:
            return None
        if value is not None and self.address(value, path) not in (None, node.ip):
            self.problem(path, f"a hostNetwork pod has its node's address: {node.ip} (node "
                         f"{node.name}), not {value}")
        return node.ip

    def container_ports(self, value, path) -> list[ContainerPort]:
        ports = []
        for ppath, entry in self.entries(value, path, CONTAINER_PORT_KEYS):
            number = self.port(entry.get("containerPort"), f"{ppath}.containerPort")
            protocol = self.choice(entry.get("protocol"), f"{ppath}.protocol", PROTOCOLS, "TCP")
            name = self.string(entry.get("name"), f"{ppath}.name")
            if name and any(p.name == name for p in ports):
                self.problem(f"{ppath}.name", f"port name {name!r} is used twice in this pod")
            if number:
                ports.append(ContainerPort(number, protocol, name))
        return ports

    def services(self, value, pods, cluster_cidr, service_cidr, nodes) -> list[Service]:
        services: list[Service] = []
        seen: set[tuple[str, str]] = set()
        self.node_port_owner: dict[tuple[int, str], str] = {}
        self.pods_by_label = label_index(pods)
        pods_by_ip: dict[ipaddress.IPv4Address, list[Pod]] = {}
        for pod in pods:
            pods_by_ip.setdefault(pod.ip, []).append(pod)
        for i, item in enumerate(self.items(value, "services")):
            path = f"services[{i}]"
            entry = self.mapping(item, path, SERVICE_KEYS)
            if entry is None:
                continue
            namespace = self.string(entry.get("namespace"), f"{path}.namespace", "default")
            name = self.string(entry.get("name"), f"{path}.name")
            cluster_ip = self.address(entry.get("clusterIP"), f"{path}.clusterIP")
            if cluster_ip:
                if cluster_cidr and cluster_ip in cluster_cidr:
                    self.problem(f"{path}.clusterIP", f"{cluster_ip} is inside the pod range "
                                 f"(clusterCIDR {cluster_cidr}); a clusterIP must not be a pod address")
                for node in nodes:
                    if cluster_ip in node.pod_subnet:
                        self.problem(f"{path}.clusterIP", f"{cluster_ip} is inside node {node.name}'s"
                                     f" pod subnet {node.pod_subnet}")
                if service_cidr and cluster_ip not in service_cidr:
                    self.problem(f"{path}.clusterIP", f"{cluster_ip} is outside serviceCIDR "
                                 f"{service_cidr}")
            affinity = self.choice(entry.get("sessionAffinity"), f"{path}.sessionAffinity",
                                   AFFINITIES, "None")
            timeout = entry.get("sessionAffinityTimeout", 10800)
            if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 86400:
                self.problem(f"{path}.sessionAffinityTimeout", "must be seconds from 1 to 86400")
                timeout = 10800
            selector = self.labels(entry.get("selector"), f"{path}.selector")
            ports = self.service_ports(entry.get("ports"), f"{path}.ports")
            if (namespace, name) in seen:
                self.problem(f"{path}.name", f"service {namespace}/{name} is defined twice")
            seen.add((namespace, name))
            beside = self.external(entry, path, ports, f"{namespace}/{name}")
            if selector and "endpoints" in entry:
                self.problem(f"{path}.endpoints", "a Service with a selector gets its endpoints "
                             "from it; hand-made endpoints are for a Service without selector")
            endpoints = self.slice_endpoints(entry.get("endpoints"), f"{path}.endpoints", ports,
                                             pods_by_ip)
            if not (name and cluster_ip and ports):
                continue
            service = Service(namespace=namespace, name=name, cluster_ip=cluster_ip,
                              ports=tuple(ports), selector=selector,
                              labels=self.labels(entry.get("labels"), f"{path}.labels"),
                              session_affinity=affinity, affinity_timeout=timeout,
                              endpoints=tuple(endpoints), **beside)
            self.named_targets(service, pods, path)
            services.append(service)
        return services

    def external(self, entry: dict, path: str, ports: list[ServicePort],
                 owner: str) -> dict[str, Any]:
        """type, node ports, external and load balancer addresses, traffic policies: what
        kube-apiserver's validation allows beside a clusterIP."""
        kind = self.choice(entry.get("type"), f"{path}.type", SERVICE_TYPES, "ClusterIP")
        external_ips = self.addresses(entry.get("externalIPs"), f"{path}.externalIPs")
        lb_ips = self.addresses(entry.get("loadBalancerIPs"), f"{path}.loadBalancerIPs")
        ranges = [self.network(str(r).strip(), f"{path}.loadBalancerSourceRanges[{i}]")
                  for i, r in enumerate(self.items(entry.get("loadBalancerSourceRanges"),
                                                   f"{path}.loadBalancerSourceRanges"))]
        etp = self.choice(entry.get("externalTrafficPolicy"), f"{path}.externalTrafficPolicy",
                          TRAFFIC_POLICIES, "Cluster")
        itp = self.choice(entry.get("internalTrafficPolicy"), f"{path}.internalTrafficPolicy",
                          TRAFFIC_POLICIES, "Cluster")
        health = entry.get("healthCheckNodePort")
        if kind != "LoadBalancer":
            for key in ("loadBalancerIPs", "loadBalancerSourceRanges"):
                if entry.get(key):
                    self.problem(f"{path}.{key}", f"only a Service of type LoadBalancer has "
                                 f"{key}; this one is {kind}")
        if "externalTrafficPolicy" in entry and kind == "ClusterIP" and not external_ips:
            self.problem(f"{path}.externalTrafficPolicy", "may only be set on a NodePort or "
                         "LoadBalancer Service, or one with externalIPs (kube-apiserver refuses "
                         "it on a plain ClusterIP Service)")
        if health is not None:
            if kind != "LoadBalancer" or etp != "Local":
                self.problem(f"{path}.healthCheckNodePort", "only a LoadBalancer Service with "
                             "externalTrafficPolicy: Local has a health check node port")
            health = self.node_port(health, f"{path}.healthCheckNodePort")
        for j, port in enumerate(ports):
            if port.node_port is None:
                continue
            ppath = f"{path}.ports[{j}].nodePort"
            if kind == "ClusterIP":
                self.problem(ppath, "a ClusterIP Service has no node ports; set type: NodePort "
                             "or LoadBalancer")
            self.node_port(port.node_port, ppath)
            other = self.node_port_owner.setdefault((port.node_port, port.protocol), owner)
            if other != owner:
                self.problem(ppath, f"{port.node_port}/{port.protocol} is already the node "
                             f"port of {other}")
        return dict(type=kind, external_ips=tuple(external_ips), load_balancer_ips=tuple(lb_ips),
                    source_ranges=tuple(r for r in ranges if r is not None),
                    external_traffic_policy=etp, internal_traffic_policy=itp,
                    health_check_node_port=health)

    def addresses(self, value, path) -> list[ipaddress.IPv4Address]:
        found = [self.address(v, f"{path}[{i}]") for i, v in enumerate(self.items(value, path))]
        return [a for a in found if a is not None]

    def node_port(self, value: Any, path: str) -> int | None:
        number = self.port(value, path)
        if number is not None and number not in self.node_ports:
            self.problem(path, f"{number} is outside the node port range "
                         f"{self.node_ports.start}-{self.node_ports.stop - 1} (nodePortRange)")
            return None
        return number

    def needs_newer_profile(self, profile: str, raw: Any, services: list[Service]) -> None:
        """The v1.23 profile renders ClusterIP Services only: name the first field beyond that."""
        if profile != "v1.23" or not isinstance(raw, list):
            return
        fields = ("type", "externalIPs", "externalTrafficPolicy", "internalTrafficPolicy")
        for i, entry in enumerate(raw):
            service = next((s for s in services if isinstance(entry, dict)
                            and (s.namespace, s.name) == (entry.get("namespace", "default"),
                                                          entry.get("name"))), None)
            if service is None or not service.beyond_cluster_ip:
                continue
            key = next(k for k in fields if k in entry and entry[k] not in ("ClusterIP", "Cluster"))
            self.problem(f"services[{i}].{key}", f"{key}: {entry[key]} needs profile v1.30 or "
                         "later; the v1.23 profile renders ClusterIP Services only "
                         f"(profiles: {', '.join(PROFILES)})")

    def service_ports(self, value, path) -> list[ServicePort]:
        ports: list[ServicePort] = []
        raw = self.items(value, path)
        for j, item in enumerate(raw):
            ppath = f"{path}[{j}]"
            entry = self.mapping(item, ppath, SERVICE_PORT_KEYS)
            if entry is None:
                continue
            number = self.port(entry.get("port"), f"{ppath}.port")
            protocol = self.choice(entry.get("protocol"), f"{ppath}.protocol", PROTOCOLS, "TCP")
            name = self.string(entry.get("name"), f"{ppath}.name")
            target = entry.get("targetPort")
            if isinstance(target, int) and not isinstance(target, bool):
                target = self.port(target, f"{ppath}.targetPort")
            elif target is not None and not isinstance(target, str):
                self.problem(f"{ppath}.targetPort", f"must be a port number or a container port "
                             f"name, got {target!r}")
                target = None
            if len(raw) > 1 and not name:
                self.problem(f"{ppath}.name", "a service with several ports must name each one")
            if name and any(p.name == name for p in ports):
                self.problem(f"{ppath}.name", f"port name {name!r} is used twice")
            if number and any((p.port, p.protocol) == (number, protocol) for p in ports):
                self.problem(f"{ppath}.port", f"{number}/{protocol} is listed twice")
            node_port = entry.get("nodePort")
            if node_port is not None and self.port(node_port, f"{ppath}.nodePort") is None:
                node_port = None
            if number:
                ports.append(ServicePort(number, protocol, name, target, node_port))
        return ports

    def named_targets(self, service: Service, pods: list[Pod], path: str) -> None:
        """A named targetPort must be defined by at least one selected pod (else: no endpoints)."""
        if not service.selector or not any(isinstance(p.target, str) for p in service.ports):
            return
        # Only the pods carrying one of the selector's labels, from the index: linear in pods.
        first = next(iter(service.selector.items()))
        selected = [p for p in self.pods_by_label.get((service.namespace, *first), ())
                    if selects(service, p)]
        for j, port in enumerate(service.ports):
            if not isinstance(port.target, str) or not selected:
                continue
            if not any(p.port_named(port.target, port.protocol) for p in selected):
                names = sorted({f"{cp.name}/{cp.protocol}" for p in selected for cp in p.ports
                                if cp.name})
                self.problem(f"{path}.ports[{j}].targetPort",
                             f"no pod selected by {service.namespace}/{service.name} defines a "
                             f"{port.protocol} port named {port.target!r}; the selected pods "
                             f"define: {', '.join(names) or '(no named ports)'}")

    def slice_endpoints(self, value, path: str, ports: list[ServicePort],
                        pods_by_ip: dict) -> list[SliceEndpoint]:
        """A selector-less Service's endpoints, as its EndpointSlice lists them: each at a lab
        pod's address (a hostNetwork pod's is its node's), with a port for each service port."""
        found: list[SliceEndpoint] = []
        listed: set[tuple[str, Any, int]] = set()
        for epath, entry in self.entries(value, path, ENDPOINT_KEYS):
            ip = self.address(entry.get("address"), f"{epath}.address")
            numbers = self.endpoint_ports(entry, epath, ports)
            pod = self.answering_pod(ip, numbers, ports, f"{epath}.address", pods_by_ip)
            ready = self.flag(entry.get("ready", True), f"{epath}.ready")
            serving = self.flag(entry.get("serving", ready), f"{epath}.serving")
            terminating = self.flag(entry.get("terminating", False), f"{epath}.terminating")
            if ready and (terminating or not serving):
                self.problem(f"{epath}.ready", "an EndpointSlice's ready is serving and not "
                             "terminating: set ready: false for a terminating or unserving one")
            node_name = entry.get("nodeName")
            if node_name is not None and not isinstance(node_name, str):
                self.problem(f"{epath}.nodeName", f"must be a node name, got {node_name!r}")
                node_name = None
            for name, number in numbers:
                if (name, ip, number) in listed:
                    self.problem(epath, f"{ip}:{number} is listed twice for port "
                                 f"{name or '(unnamed)'}")
                listed.add((name, ip, number))
            if pod is not None and numbers:
                seen_as = replace(pod, ready=ready, serving=serving, terminating=terminating,
                                  endpoint_node=node_name if node_name is not None
                                  else pod.endpoint_node)
                found.append(SliceEndpoint(seen_as, tuple(numbers)))
        return found

    def endpoint_ports(self, entry: dict, path: str,
                       ports: list[ServicePort]) -> list[tuple[str, int]]:
        """(service port name, number): `ports` by name, one `port` for a one-port Service, or
        else each service port's numeric targetPort."""
        names = [p.name or "" for p in ports]
        if "ports" in entry:
            if "port" in entry:
                self.problem(f"{path}.port", "give either port or ports, not both")
            raw = entry["ports"]
            if not isinstance(raw, dict) or not raw:
                self.problem(f"{path}.ports", "must map service port names to port numbers, "
                             f"like {{{(names or ['http'])[0] or 'http'}: 8080}}")
                return []
            found = []
            for name, number in raw.items():
                if str(name) not in names:
                    listed = ", ".join(n or "(unnamed)" for n in names)
                    self.problem(f"{path}.ports.{name}", f"{name!r} is not a port of this "
                                 f"Service; its ports are: {listed}")
                elif self.port(number, f"{path}.ports.{name}") is not None:
                    found.append((str(name), number))
            return found
        if "port" in entry:
            number = self.port(entry["port"], f"{path}.port")
            if len(ports) > 1:
                self.problem(f"{path}.port", "a Service with several ports needs ports: by name")
                return []
            return [(names[0], number)] if number is not None and ports else []
        found = []
        for port, name in zip(ports, names):
            if isinstance(port.target, str):
                self.problem(path, f"service port {name or '(unnamed)'} has targetPort "
                             f"{port.target!r}, a name: give this endpoint's port number in ports")
            else:
                found.append((name, port.target))
        return found

    def answering_pod(self, ip, numbers, ports, path: str, pods_by_ip: dict) -> Pod | None:
        """The lab pod at an endpoint's address; of several hostNetwork pods at one node's
        address, the one listening on the endpoint's port."""
        if ip is None:
            return None
        candidates = pods_by_ip.get(ip, [])
        if not candidates:
            node = self.nodes_by_ip.get(ip)
            hint = (f"it is node {node}'s address, and no pod on {node} has hostNetwork: true"
                    if node else "an endpoint must be a pod of the lab, or a node's address "
                    "with a hostNetwork pod on it")
            self.problem(path, f"{ip} is no pod's address: {hint}")
            return None
        protocols = {p.name or "": p.protocol for p in ports}
        wanted = {(number, protocols[name]) for name, number in numbers}
        listening = [p for p in candidates
                     if {(cp.container_port, cp.protocol) for cp in p.ports} & wanted]
        if len(candidates) > 1 and len(listening) != 1:
            self.problem(path, f"{ip} is the address of several hostNetwork pods "
                         f"({', '.join(p.name for p in candidates)}); exactly one must list the "
                         "endpoint's port in its ports")
            return None
        return listening[0] if len(candidates) > 1 else candidates[0]

    def clients(self, value, node_names, node_network, cluster_cidr, nodes) -> list[Client]:
        clients: list[Client] = []
        for i, item in enumerate(self.items(value, "clients")):
            path = f"clients[{i}]"
            entry = self.mapping(item, path, CLIENT_KEYS)
            if entry is None:
                continue
            name = self.string(entry.get("name"), f"{path}.name")
            ip = self.address(entry.get("ip"), f"{path}.ip")
            node = entry.get("node", node_names[0] if node_names else None)
            if node not in node_names:
                self.problem(f"{path}.node", f"node {node!r} is not in this lab; the nodes are: "
                             f"{', '.join(node_names) or '(none)'}")
            if ip:
                if cluster_cidr and ip in cluster_cidr:
                    self.problem(f"{path}.ip", f"{ip} is inside clusterCIDR {cluster_cidr}; an "
                                 "external client must be outside the cluster")
                if node_network and ip not in node_network:
                    self.problem(f"{path}.ip", f"{ip} is outside the node network {node_network}, "
                                 "where clients are attached")
                elif node_network and ip in (node_network.network_address,
                                             node_network.broadcast_address):
                    self.problem(f"{path}.ip", f"{ip} is the network or broadcast address")
            if name in [c.name for c in clients]:
                self.problem(f"{path}.name", f"client {name!r} is defined twice")
            if name and ip and node in node_names:
                clients.append(Client(name, ip, node))
        return clients

    def unique_addresses(self, nodes, pods, services, clients) -> None:
        """One owner per address; hostNetwork pods share their node's and differ by port."""
        seen: dict[str, str] = {}
        listening: dict[tuple[str, int, str], str] = {}
        for p in pods:
            for cp in p.ports if p.host_network else ():
                other = listening.setdefault((p.node, cp.container_port, cp.protocol), p.name)
                if other != p.name:
                    self.problem("", f"hostNetwork pods {other} and {p.name} both listen on "
                                 f"{cp.container_port}/{cp.protocol} of node {p.node}")
        owners = ([(f"node {n.name} bridge", n.bridge_address.ip) for n in nodes]
                  + [(f"node {n.name}", n.ip) for n in nodes]
                  + [(f"pod {p.namespace}/{p.name}", p.ip) for p in pods if not p.host_network]
                  + [(f"service {s.namespace}/{s.name}", s.cluster_ip) for s in services]
                  + [(f"client {c.name}", c.ip) for c in clients])
        for owner, ip in owners:
            if str(ip) in seen:
                self.problem("", f"address {ip} is used by both {seen[str(ip)]} and {owner}")
            else:
                seen[str(ip)] = owner
