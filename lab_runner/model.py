"""The lab as data: frozen dataclasses with no side effects, built by lab_file.load()."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Literal

Protocol = Literal["TCP", "UDP"]
AppKind = Literal["http", "echo"]
Profile = Literal["v1.23", "v1.30", "v1.34"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
TrafficPolicy = Literal["Cluster", "Local"]


@dataclass(frozen=True)
class ContainerPort:
    """A port a pod's app listens on; `name` is what a Service's targetPort may refer to."""

    container_port: int
    protocol: Protocol = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class Pod:
    """A namespaced container on a node's pod bridge, running a small app server."""

    name: str
    namespace: str
    node: str
    ip: ipaddress.IPv4Address
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[ContainerPort, ...] = ()
    app: AppKind = "http"
    ready: bool = True  # the endpoint's Ready condition: serving and not terminating
    containers: int = 1  # only shown in kubectl's READY column (the seed's pods have a sidecar: 2/2)
    # A pod being deleted stays in its EndpointSlice as terminating; `serving` says whether its
    # readiness probe still passes (kube-proxy v1.26+ falls back to serving-terminating pods).
    terminating: bool = False
    serving: bool = True
    # The EndpointSlice's nodeName when it differs from the node the kit runs the pod on ("" for
    # none): kube-proxy's own tests keep endpoints of other nodes in one subnet.
    endpoint_node: str | None = None
    # hostNetwork: true: the pod has no namespace of its own; it is at its node's address and its
    # app listens in the node's namespace (kube-apiserver, node-local agents).
    host_network: bool = False

    @property
    def slice_node(self) -> str:
        """The node name kube-proxy compares with its own to call the endpoint local."""
        return self.node if self.endpoint_node is None else self.endpoint_node

    def port_named(self, name: str, protocol: Protocol) -> ContainerPort | None:
        return next((p for p in self.ports if p.name == name and p.protocol == protocol), None)


@dataclass(frozen=True)
class Node:
    """A Kubernetes node: a namespace holding the pod bridge and kube-proxy's chains."""

    name: str
    bridge: str
    bridge_address: ipaddress.IPv4Interface
    ip: ipaddress.IPv4Address

    @property
    def pod_subnet(self) -> ipaddress.IPv4Network:
        return self.bridge_address.network


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service; targetPort is a number or the name of a container port."""

    port: int
    protocol: Protocol = "TCP"
    name: str | None = None
    target_port: int | str | None = None  # None means: the same number as `port`
    node_port: int | None = None  # NodePort and LoadBalancer Services only

    @property
    def target(self) -> int | str:
        return self.port if self.target_port is None else self.target_port


@dataclass(frozen=True)
class SliceEndpoint:
    """An endpoint of a hand-made EndpointSlice, for a Service without selector.

    `pod` is the lab pod answering at the address (a host-network pod: at its node's address),
    seen with the slice's conditions (ready, serving, terminating) and nodeName; `ports` pairs a
    service port's name ("" when unnamed) with the endpoint's port number for it.
    """

    pod: Pod
    ports: tuple[tuple[str, int], ...]

    def number_for(self, port: ServicePort) -> int | None:
        """The endpoint's port for a service port, by name as kube-proxy matches slice ports."""
        return next((number for name, number in self.ports if name == (port.name or "")), None)


@dataclass(frozen=True)
class Service:
    """A Service: ClusterIP, or NodePort / LoadBalancer with the external addresses beside it."""

    namespace: str
    name: str
    cluster_ip: ipaddress.IPv4Address
    ports: tuple[ServicePort, ...]
    selector: dict[str, str] = field(default_factory=dict, hash=False)
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    session_affinity: Literal["None", "ClientIP"] = "None"
    affinity_timeout: int = 10800
    type: ServiceType = "ClusterIP"
    external_ips: tuple[ipaddress.IPv4Address, ...] = ()
    load_balancer_ips: tuple[ipaddress.IPv4Address, ...] = ()  # status.loadBalancer.ingress
    source_ranges: tuple[ipaddress.IPv4Network, ...] = ()  # loadBalancerSourceRanges
    external_traffic_policy: TrafficPolicy = "Cluster"
    internal_traffic_policy: TrafficPolicy = "Cluster"
    health_check_node_port: int | None = None  # LoadBalancer with externalTrafficPolicy Local
    # A Service without selector: its EndpointSlice's endpoints, as written by hand in lab.yaml.
    endpoints: tuple[SliceEndpoint, ...] = field(default=(), hash=False)

    @property
    def externally_accessible(self) -> bool:
        """kube-proxy's ExternallyAccessible: a node port, a load balancer IP or an external IP."""
        return (any(p.node_port for p in self.ports) or bool(self.load_balancer_ips)
                or bool(self.external_ips))

    @property
    def external_policy_local(self) -> bool:
        return self.externally_accessible and self.external_traffic_policy == "Local"

    @property
    def internal_policy_local(self) -> bool:
        return self.internal_traffic_policy == "Local"

    @property
    def beyond_cluster_ip(self) -> bool:
        """True when the Service uses anything the v1.23 profile does not render."""
        return (self.type != "ClusterIP" or bool(self.external_ips) or self.internal_policy_local
                or self.external_traffic_policy == "Local")

    def port_name(self, port: ServicePort) -> str:
        """kube-proxy's servicePortName: `ns/name:portName`, or `ns/name` for an unnamed port."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{port.name}" if port.name else base


@dataclass(frozen=True)
class Client:
    """A caller outside the cluster (a load balancer, a laptop), on the node network."""

    name: str
    ip: ipaddress.IPv4Address
    node: str  # the node it sends service traffic to


@dataclass(frozen=True)
class Endpoint:
    """One ready pod behind one service port, as the endpoints controller computes it."""

    pod: str
    ip: ipaddress.IPv4Address
    port: int
    node: str

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Lab:
    """A whole lab: topology, services and the rule format profile it renders with."""

    id: str
    title: str
    cluster_cidr: ipaddress.IPv4Network
    service_cidr: ipaddress.IPv4Network
    node_network: ipaddress.IPv4Network
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...] = ()
    services: tuple[Service, ...] = ()
    clients: tuple[Client, ...] = ()
    profile: Profile = "v1.23"
    masquerade_all: bool = False  # kube-proxy's --masquerade-all
    # Whether the node's kernel has nfacct accounting: kube-proxy v1.30+ then counts the INVALID
    # drops (v1.31+ also localhost node ports) with `-m nfacct`; without it the match is left out.
    nfacct: bool = False
    # kube-proxy's --proxy-mode: "iptables" (the labs so far) or "nftables" (table ip kube-proxy).
    proxy_mode: str = "iptables"
    teaches: str = ""
    source: str = ""  # the file it was loaded from, for messages

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def pod(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name)

    def service(self, namespace: str, name: str) -> Service:
        return next(s for s in self.services if (s.namespace, s.name) == (namespace, name))

    def caller_address(self, host: str) -> ipaddress.IPv4Address | None:
        """The address a check's caller has: a client by name ("client": any), or a pod by its
        name or the end of it ("6dkwl" for my-app-7f569f66d9-6dkwl); None when there is none."""
        for client in self.clients:
            if host in (client.name, "client"):
                return client.ip
        for pod in self.pods:
            if host == pod.name or pod.name.endswith("-" + host):
                return pod.ip
        return None

    def with_changes(self, **changes) -> "Lab":
        """A copy with some fields replaced (e.g. another cluster CIDR); the original is unchanged."""
        return replace(self, **changes)
