"""A cluster's objects as a lab: plain data in lab.yaml's shape, and a warning per dropped item.

The lab has one kit node, the node whose rules are rebuilt (--node). Every endpoint becomes a pod
on that node's bridge; an endpoint of another node keeps that node's name as its EndpointSlice
`nodeName`, as kube-proxy's own tests do, so Local traffic policies render as on the real node.
Endpoints come from selectors in lab.yaml, so a pod carries its real labels (or, without Pod
objects, the labels its Services select) and each Service its real selector; a Service whose
selection in the lab would differ from its EndpointSlices is named in a warning.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from lab_runner.importer.objects import ImportProblem, Objects, name_of
from lab_runner.importer.node_rules import NodeFacts

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network
DEFAULT_SERVICE_CIDR = Net("10.96.0.0/12")
SPARE_NODE_NETWORKS = ("192.168.49.0/24", "172.31.254.0/24", "10.255.254.0/24")
BRIDGE_PREFIXES = (24, 20, 16, 12, 8)
DEFAULT_NODE_PORTS = range(30000, 32768)
MAX_NAME = 63  # a pod's name is its hostname in the lab
MAX_PODS = 100  # one app server process per pod: beyond this `up` takes minutes
PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True)
class Warning:
    """Something of the cluster the lab leaves out or changes, and why."""

    subject: str  # "Service kube-system/kube-dns", "EndpointSlice default/x-abc12", …
    reason: str
    source: str = ""  # the file the object came from

    def __str__(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"{self.subject}{where}: {self.reason}"


@dataclass(frozen=True)
class Options:
    cluster_cidr: Net | None = None
    service_cidr: Net | None = None
    node: str | None = None
    profile: str | None = None
    max_pods: int = MAX_PODS
    lab_id: str = "imported"


@dataclass
class Result:
    """lab.yaml's content as plain data, the header notes (where each fact came from), warnings."""

    lab: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[Warning] = field(default_factory=list)


@dataclass
class _Endpoint:
    address: IPv4
    ports: dict[tuple[str, str], int]  # (slice port name, protocol) -> number
    ready: bool
    serving: bool
    terminating: bool
    node_name: str | None
    pod: tuple[str, str] | None  # (namespace, name) of its targetRef Pod


def build(objects: Objects, options: Options, facts: NodeFacts | None = None) -> Result:
    return _Builder(objects, options, facts).run()


class _Builder:
    def __init__(self, objects: Objects, options: Options, facts: NodeFacts | None):
        self.objects = objects
        self.options = options
        self.facts = facts
        self.result = Result(lab={})
        self.sources: dict[str, str] = {}
        self.pod_objects = {(p["metadata"].get("namespace", "default"), p["metadata"].get("name")): p
                            for p in objects.pods}
        self.pods_by_ip = {ip: p for p in objects.pods for ip in _pod_ips(p)}
        self.endpoint_ips: dict[tuple[str, str], set[IPv4]] = {}
        self.node_ips = {ip: name_of(n) for n in objects.nodes for ip in _node_ips(n)}

    def warn(self, subject: str, reason: str) -> None:
        self.result.warnings.append(Warning(subject, reason, self.sources.get(subject, "")))

    def subject(self, item: dict) -> str:
        """`Kind ns/name`, remembered with the file the object came from (for warnings)."""
        text = f"{item.get('kind')} {name_of(item)}"
        self.sources[text] = self.objects.source_of(item)
        return text

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    # -- the whole lab -----------------------------------------------------------------------
    def run(self) -> Result:
        for ignored in self.objects.ignored:
            self.warn("ignored", ignored)
        node = self.kit_node()
        slices = self.slices_by_service()
        services, pods = [], {}
        for item in self.objects.services:
            service = self.service(item, slices.pop(_key(item), []), pods, node)
            if service is not None:
                services.append(service)
        for (namespace, name), orphans in slices.items():
            for item in orphans:
                self.warn(self.subject(item), f"its Service {namespace}/{name} is "
                          "not in the objects (kubernetes.io/service-name label)")
        services, pods = self.within_pod_limit(services, pods)
        services = [s for s in services if self.named_targets_defined(s, pods)]
        if not services:
            listing = "".join(f"\n  - {w}" for w in self.result.warnings)
            raise ImportProblem("nothing to build: no Service in the objects can be rebuilt as a "
                                f"lab (take them with `kubectl get svc,endpointslices,pods,nodes "
                                f"-A -o yaml`){listing}")
        self.check_selection(services, pods)
        self.assemble(node, services, list(pods.values()))
        return self.result

    def kit_node(self) -> str:
        names = sorted(name_of(n) for n in self.objects.nodes)
        wanted = self.options.node
        if wanted:
            if names and wanted not in names:
                raise ImportProblem(f"--node {wanted}: no such Node in the objects; the nodes "
                                    f"are: {', '.join(names)}")
            return wanted
        if len(names) == 1:
            return names[0]
        if names:
            self.warn("Nodes", f"{len(names)} nodes ({', '.join(names[:6])}"
                      f"{', …' if len(names) > 6 else ''}): the lab rebuilds node {names[0]}'s "
                      "rules; choose another with --node")
            return names[0]
        seen = sorted({e.get("nodeName") for s in self.objects.slices
                       for e in s.get("endpoints") or [] if e.get("nodeName")})
        if seen:
            self.warn("Nodes", f"no Node objects; the lab rebuilds node {seen[0]} (from the "
                      "EndpointSlices' nodeName); choose another with --node")
            return seen[0]
        self.note("no Node objects and no nodeName in the EndpointSlices: the node is `node`")
        return "node"

    def slices_by_service(self) -> dict[tuple[str, str], list[dict]]:
        found: dict[tuple[str, str], list[dict]] = {}
        for item in self.objects.slices:
            meta = item["metadata"]
            owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
            if not owner:
                self.warn(self.subject(item), "no kubernetes.io/service-name label: "
                          "it belongs to no Service, kube-proxy ignores it")
                continue
            if item.get("addressType", "IPv4") != "IPv4":
                self.warn(self.subject(item), f"addressType "
                          f"{item.get('addressType')}: the kit builds IPv4 labs only")
                continue
            found.setdefault((meta.get("namespace", "default"), owner), []).append(item)
        return found

    # -- one Service -------------------------------------------------------------------------
    def service(self, item: dict, slices: list[dict], pods: dict, node: str) -> dict | None:
        subject = self.subject(item)
        spec = item.get("spec") or {}
        kind = spec.get("type", "ClusterIP")
        if kind == "ExternalName":
            return self.warn(subject, "type ExternalName: a DNS name, kube-proxy writes no rules")
        if kind not in ("ClusterIP", "NodePort", "LoadBalancer"):
            return self.warn(subject, f"type {kind!r} is not a Service type the kit knows")
        cluster_ip = self.cluster_ip(spec, subject)
        if cluster_ip is None:
            return None
        ports = self.ports(spec.get("ports") or [], subject)
        if not ports:
            return self.warn(subject, "no ports the kit can build (a Service without ports, or "
                             "only SCTP ones): kube-proxy writes no rules for it")
        selector = spec.get("selector") or {}
        if not selector:
            return self.warn(subject, "no selector: its EndpointSlices are made by hand or by a "
                             "controller, and lab.yaml derives endpoints from selectors")
        endpoints = self.endpoints(slices, subject)
        kept = [e for e in endpoints if self.buildable(e, subject)]
        if endpoints and not kept:
            return self.warn(subject, "none of its endpoints can be a pod of the lab "
                             "(reasons above); without them it would render as having none")
        service = {"namespace": item["metadata"].get("namespace", "default"),
                   "name": item["metadata"].get("name"), "selector": dict(selector),
                   "clusterIP": str(cluster_ip), "ports": ports}
        if item["metadata"].get("labels"):
            service["labels"] = dict(item["metadata"]["labels"])
        self.external(service, spec, kind, subject, item)
        self.endpoint_ips[(service["namespace"], service["name"])] = {e.address for e in kept}
        for endpoint in kept:
            self.pod_for(endpoint, service, pods, node, subject)
        return service

    def cluster_ip(self, spec: dict, subject: str) -> IPv4 | None:
        addresses = spec.get("clusterIPs") or [spec.get("clusterIP")]
        if not addresses or addresses[0] in (None, "", "None"):
            return self.warn(subject, "headless (clusterIP: None): kube-proxy writes no rules")
        v4 = [a for a in addresses if _v4(a)]
        if not v4:
            return self.warn(subject, f"IPv6 only ({', '.join(map(str, addresses))}): the kit "
                             "builds IPv4 labs only (ip6tables rules are another table)")
        if len(v4) < len(addresses):
            self.warn(subject, "dual-stack: its IPv6 cluster IP is left out (the kit builds "
                      "IPv4 only)")
        return IPv4(v4[0])

    def ports(self, raw: list[dict], subject: str) -> list[dict]:
        ports = []
        for port in raw:
            protocol = port.get("protocol", "TCP")
            if protocol not in PROTOCOLS:
                self.warn(subject, f"port {port.get('name') or port.get('port')}/{protocol}: "
                          "the kit builds TCP and UDP ports only")
                continue
            entry = {"port": port.get("port"), "protocol": protocol}
            if port.get("name"):
                entry["name"] = port["name"]
            target = port.get("targetPort")
            if target is not None and target != port.get("port"):
                entry["targetPort"] = target
            if port.get("nodePort"):
                entry["nodePort"] = port["nodePort"]
            ports.append(entry)
        return ports

    def external(self, service: dict, spec: dict, kind: str, subject: str, item: dict) -> None:
        """type, node ports, external and load balancer addresses, policies, affinity."""
        if spec.get("sessionAffinity") == "ClientIP":
            service["sessionAffinity"] = "ClientIP"
            timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
                "timeoutSeconds")
            if timeout and timeout != 10800:
                service["sessionAffinityTimeout"] = timeout
        external_ips = [a for a in spec.get("externalIPs") or [] if _v4(a)]
        ingress = ((item.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb_ips = [i["ip"] for i in ingress if _v4(i.get("ip"))]
        if any(i.get("hostname") and not i.get("ip") for i in ingress):
            self.warn(subject, "a load balancer known by hostname only: kube-proxy writes no "
                      "rule for it, nor does the lab")
        if kind != "ClusterIP":
            service["type"] = kind
        if external_ips:
            service["externalIPs"] = external_ips
        if kind == "LoadBalancer" and lb_ips:
            service["loadBalancerIPs"] = lb_ips
        if kind == "LoadBalancer" and spec.get("loadBalancerSourceRanges"):
            service["loadBalancerSourceRanges"] = list(spec["loadBalancerSourceRanges"])
        external = kind != "ClusterIP" or external_ips
        if external and spec.get("externalTrafficPolicy") == "Local":
            service["externalTrafficPolicy"] = "Local"
            if kind == "LoadBalancer" and spec.get("healthCheckNodePort"):
                service["healthCheckNodePort"] = spec["healthCheckNodePort"]
        if spec.get("internalTrafficPolicy") == "Local":
            service["internalTrafficPolicy"] = "Local"

    # -- endpoints and pods ------------------------------------------------------------------
    def endpoints(self, slices: list[dict], subject: str) -> list[_Endpoint]:
        found: dict[IPv4, _Endpoint] = {}
        for item in slices:
            ports = {(p.get("name") or "", p.get("protocol", "TCP")): p.get("port")
                     for p in item.get("ports") or [] if p.get("port")}
            for raw in item.get("endpoints") or []:
                addresses = raw.get("addresses") or []
                if not addresses or not _v4(addresses[0]):
                    self.warn(self.subject(item), f"endpoint {addresses}: not an "
                              "IPv4 address")
                    continue
                conditions = raw.get("conditions") or {}
                ready = conditions.get("ready") is not False  # unset means ready
                serving = conditions.get("serving", ready) is not False
                ref = raw.get("targetRef") or {}
                pod = ((ref.get("namespace") or item["metadata"].get("namespace", "default"),
                        ref["name"]) if ref.get("kind") == "Pod" and ref.get("name") else None)
                address = IPv4(addresses[0])
                if address in found:  # the same address in two slices: kube-proxy merges them
                    found[address].ports.update(ports)
                    continue
                found[address] = _Endpoint(address, dict(ports), ready, serving,
                                           conditions.get("terminating") is True,
                                           raw.get("nodeName"), pod)
        return list(found.values())

    def buildable(self, endpoint: _Endpoint, subject: str) -> bool:
        pod = self.pod_object(endpoint)
        if endpoint.address in self.node_ips or (pod and (pod.get("spec") or {}).get("hostNetwork")):
            owner = self.node_ips.get(endpoint.address, "its node")
            self.warn(subject, f"endpoint {endpoint.address} is host-network (the address of "
                      f"{owner}): a lab pod has its own address, so it is left out and the "
                      "Service renders without it")
            return False
        if endpoint.pod is None and pod is None:
            self.warn(subject, f"endpoint {endpoint.address} is no pod's (no targetRef): left "
                      "out, the Service renders without it")
            return False
        return True

    def pod_object(self, endpoint: _Endpoint) -> dict | None:
        if endpoint.pod and endpoint.pod in self.pod_objects:
            return self.pod_objects[endpoint.pod]
        return self.pods_by_ip.get(endpoint.address)

    def pod_for(self, endpoint: _Endpoint, service: dict, pods: dict, node: str,
                subject: str) -> None:
        """The lab pod at the endpoint's address: made once, then given this Service's labels
        and named target ports too."""
        obj = self.pod_object(endpoint)
        namespace, name = endpoint.pod or (obj["metadata"].get("namespace", "default"),
                                           obj["metadata"]["name"])
        pod = pods.get(endpoint.address)
        if pod is None:
            pod = {"name": name, "namespace": namespace, "node": node, "ip": str(endpoint.address),
                   "labels": dict((obj or {}).get("metadata", {}).get("labels") or {}),
                   "ports": _container_ports(obj)}
            if len(name) > MAX_NAME:
                self.warn(subject, f"pod {namespace}/{name}: a lab pod's name is its hostname, "
                          f"at most {MAX_NAME} characters; cut to {name[:MAX_NAME]}")
                pod["name"] = name[:MAX_NAME]
            if not endpoint.serving:
                pod["ready"] = False
            if endpoint.terminating:
                pod["terminating"] = True
            if endpoint.node_name != node:
                pod["nodeName"] = endpoint.node_name or ""
            containers = len(((obj or {}).get("spec") or {}).get("containers") or [None])
            if 1 < containers <= 20:
                pod["containers"] = containers
            pods[endpoint.address] = pod
        elif (pod["namespace"], pod["name"]) != (namespace, name):
            self.warn(subject, f"endpoint {endpoint.address} is pod {namespace}/{name}, but "
                      f"another Service names pod {pod['namespace']}/{pod['name']} at that "
                      "address: one lab pod serves both")
        self.selected_by(service, pod, subject)
        for port in service["ports"]:
            self.target_port(port, endpoint, pod, subject)

    def selected_by(self, service: dict, pod: dict, subject: str) -> None:
        """Give the pod the labels the Service selects when it lacks them (no Pod objects, or
        one address that two Services name with different pods); a clash is a warning."""
        for key, value in service["selector"].items():
            have = pod["labels"].setdefault(key, value)
            if have != value:
                self.warn(subject, f"pod {pod['namespace']}/{pod['name']} would need label "
                          f"{key}={value} beside {key}={have}: the lab leaves it out of this "
                          "Service's endpoints")

    def target_port(self, port: dict, endpoint: _Endpoint, pod: dict, subject: str) -> None:
        """A named targetPort needs a container port of that name on the pod, with the number the
        EndpointSlice gives; a numbered one must agree with the slice."""
        number = endpoint.ports.get((port.get("name", ""), port["protocol"]))
        target = port.get("targetPort", port["port"])
        if number is None:
            return
        if isinstance(target, str):
            named = [p for p in pod["ports"] if p.get("name") == target
                     and p.get("protocol", "TCP") == port["protocol"]]
            clash = [p for p in pod["ports"] if p.get("name") == target and not named]
            if clash:
                self.warn(subject, f"pod {pod['namespace']}/{pod['name']} names a "
                          f"{clash[0].get('protocol', 'TCP')} port {target!r}, the Service a "
                          f"{port['protocol']} one: the lab leaves it out of that port")
            elif not named:
                pod["ports"].append({"name": target, "containerPort": number,
                                     "protocol": port["protocol"]})
            elif named[0]["containerPort"] != number:
                self.warn(subject, f"pod {pod['namespace']}/{pod['name']} port {target!r} is "
                          f"{named[0]['containerPort']} but the EndpointSlice says {number}; the "
                          "lab uses the pod's")
        elif target != number:
            self.warn(subject, f"port {port.get('name') or port['port']}: targetPort {target} but "
                      f"the EndpointSlice gives {endpoint.address}:{number}; the lab uses {target}")

    def within_pod_limit(self, services: list[dict], pods: dict) -> tuple[list[dict], dict]:
        if len(pods) <= self.options.max_pods:
            return services, pods
        kept, kept_pods = [], {}
        for service in services:
            mine = {ip: pods[ip] for ip in self.endpoint_ips[(service["namespace"],
                                                              service["name"])]}
            if len(kept_pods | mine) > self.options.max_pods:
                self.warn(f"Service {service['namespace']}/{service['name']}", f"left out: the lab "
                          f"would have more than {self.options.max_pods} pods (--max-pods)")
                continue
            kept.append(service)
            kept_pods |= mine
        return kept, kept_pods

    def named_targets_defined(self, service: dict, pods: dict) -> bool:
        """lab.yaml refuses a named targetPort that no selected pod defines (kube-proxy renders
        such a port as having no endpoints): leave the port out; False when none is left."""
        selected = [p for p in pods.values() if _selects(service, p)]
        subject = f"Service {service['namespace']}/{service['name']}"
        kept = []
        for port in service["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str) and selected and not any(
                    c.get("name") == target and c.get("protocol", "TCP") == port["protocol"]
                    for p in selected for c in p["ports"]):
                self.warn(subject, f"port {port.get('name') or port['port']}: no pod of the lab "
                          f"defines a {port['protocol']} port named {target!r}, which lab.yaml "
                          "requires; the port is left out")
            else:
                kept.append(port)
        service["ports"] = kept
        return bool(kept)

    def check_selection(self, services: list[dict], pods: dict) -> None:
        """Name each Service whose selector picks other pods in the lab than its slices list
        (a slice left out of the objects; labels that clash)."""
        for service in services:
            key = (service["namespace"], service["name"])
            picked = {ip for ip, pod in pods.items() if _selects(service, pod)}
            listed = self.endpoint_ips[key] & pods.keys()
            extra = sorted(f"{pods[ip]['namespace']}/{pods[ip]['name']}" for ip in picked - listed)
            if extra:
                self.warn(f"Service {key[0]}/{key[1]}", f"its selector also picks pod(s) "
                          f"{', '.join(extra[:5])} of the lab, which its EndpointSlices do not "
                          "list: the lab gives it those endpoints too")

    # -- addresses ---------------------------------------------------------------------------
    def assemble(self, node: str, services: list[dict], pods: list[dict]) -> None:
        pod_ips = [IPv4(p["ip"]) for p in pods]
        cluster_ips = [IPv4(s["clusterIP"]) for s in services]
        cluster_cidr = self.cluster_cidr(pod_ips)
        inside = [str(ip) for ip in cluster_ips if ip in cluster_cidr]
        if inside:
            raise ImportProblem(f"cluster CIDR {cluster_cidr} holds the cluster IP(s) "
                                f"{', '.join(inside[:5])}: pods and Services need apart ranges "
                                "(is it the Service range? give the pods' with --cluster-cidr)")
        service_cidr = self.service_cidr(cluster_ips)
        bridge = self.bridge(node, pod_ips, cluster_ips)
        node_ip, node_network = self.node_address(node, bridge.network, cluster_cidr)
        profile, nfacct = self.profile()
        masquerade_all = bool(self.facts and self.facts.masquerade_all)
        if profile == "v1.23":
            for service in services:
                self.clusterip_only(service)
        lab: dict[str, Any] = {
            "id": self.options.lab_id,
            "title": f"Imported: {len(services)} Service(s) of node {node}",
            "profile": profile, "clusterCIDR": str(cluster_cidr),
            "serviceCIDR": str(service_cidr), "nodeNetwork": str(node_network)}
        node_ports = [p["nodePort"] for s in services for p in s["ports"] if "nodePort" in p]
        node_ports += [s["healthCheckNodePort"] for s in services if "healthCheckNodePort" in s]
        if any(n not in DEFAULT_NODE_PORTS for n in node_ports):
            lab["nodePortRange"] = f"{min(node_ports + [30000])}-{max(node_ports + [32767])}"
        kube_proxy = {"masqueradeAll": True} if masquerade_all else {}
        if masquerade_all:
            self.note("kubeProxy.masqueradeAll: the rules mark every caller of a cluster IP "
                      "(kube-proxy's --masquerade-all)")
        if nfacct:
            kube_proxy["nfacct"] = True
        if kube_proxy:
            lab["kubeProxy"] = kube_proxy
        lab["nodes"] = [{"name": node, "ip": str(node_ip),
                         "bridge": {"name": "cni0", "address": str(bridge)}}]
        for pod in pods:
            if not pod["ports"]:
                del pod["ports"]
        lab["pods"] = sorted(pods, key=lambda p: (p["namespace"], p["name"]))
        lab["services"] = services
        client = next(h for h in node_network.hosts() if h != node_ip)
        lab["clients"] = [{"name": "client", "ip": str(client), "node": node}]
        self.result.lab = lab

    def cluster_cidr(self, pod_ips: list[IPv4]) -> Net:
        if self.options.cluster_cidr:
            self.note(f"clusterCIDR {self.options.cluster_cidr}: from --cluster-cidr")
            return self.options.cluster_cidr
        if self.facts and self.facts.cluster_cidr:
            self.note(f"clusterCIDR {self.facts.cluster_cidr}: kube-proxy's --cluster-cidr, read "
                      f"from the rules (line {self.facts.cidr_line})")
            return self.facts.cluster_cidr
        pod_cidrs = [Net(c) for n in self.objects.nodes
                     for c in ((n.get("spec") or {}).get("podCIDRs")
                               or [(n.get("spec") or {}).get("podCIDR")]) if _v4_net(c)]
        if pod_cidrs:
            cidr = _supernet(pod_cidrs)
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
        cidr = _supernet([Net(f"{ip}/32") for ip in cluster_ips])
        self.note(f"serviceCIDR {cidr}: the smallest network holding every cluster IP (it "
                  "appears in no kube-proxy rule; --service-cidr to set it)")
        return cidr

    def bridge(self, node: str, pod_ips: list[IPv4], avoid: list[IPv4]) -> ipaddress.IPv4Interface:
        """The kit node's pod bridge: its podCIDR when it holds every pod, else the smallest
        round network that does; the address is the first one no pod has (cni0's .1)."""
        spec = next(((n.get("spec") or {}) for n in self.objects.nodes if name_of(n) == node), {})
        candidates = [Net(c) for c in (spec.get("podCIDRs") or [spec.get("podCIDR")]) if _v4_net(c)]
        start = _supernet([Net(f"{ip}/32") for ip in pod_ips]).prefixlen if pod_ips else 24
        candidates += [Net(f"{pod_ips[0] if pod_ips else '10.244.0.0'}/{p}", strict=False)
                       for p in BRIDGE_PREFIXES + tuple(range(min(start, 30), 7, -1))
                       if p <= start]
        for network in candidates:
            ends = {network.network_address, network.broadcast_address}
            if (not all(ip in network for ip in pod_ips) or any(ip in network for ip in avoid)
                    or ends & set(pod_ips)):
                continue
            free = next((h for h in network.hosts() if h not in pod_ips), None)
            if free is not None:
                return ipaddress.IPv4Interface(f"{free}/{network.prefixlen}")
        raise ImportProblem(f"no pod subnet holds the pods {', '.join(map(str, pod_ips[:5]))} "
                            "without a cluster IP: the lab cannot put them on one bridge")

    def node_address(self, node: str, pod_subnet: Net, cluster_cidr: Net) -> tuple[IPv4, Net]:
        """The node's InternalIP in its /24, unless that overlaps the pods (cloud CNIs give pods
        and nodes one VPC subnet): then a spare network, as node addresses appear in no rule."""
        real = next((ip for ip, owner in self.node_ips.items() if owner == node), None)
        if real is not None:
            network = Net(f"{real}/24", strict=False)
            if not network.overlaps(pod_subnet) and real not in cluster_cidr:
                return real, network
        for spare in map(Net, SPARE_NODE_NETWORKS):
            if not spare.overlaps(pod_subnet) and not spare.overlaps(cluster_cidr):
                if real is not None:
                    self.note(f"node {node}'s address {real} is inside the pods' subnet or the "
                              f"cluster CIDR: the lab puts the node at {spare.network_address + 2} "
                              f"on {spare} (no ClusterIP rule names a node address)")
                return spare.network_address + 2, spare
        raise ImportProblem(f"no node network beside pod subnet {pod_subnet}")

    def profile(self) -> tuple[str, bool]:
        nfacct = bool(self.facts and self.facts.nfacct)
        if self.options.profile:
            self.note(f"profile {self.options.profile}: from --profile")
            return self.options.profile, nfacct
        if self.facts:
            self.note(f"profile {self.facts.profile}: {self.facts.profile_reason}")
            if nfacct:
                self.note("kubeProxy.nfacct: the node's rules use -m nfacct")
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

    def clusterip_only(self, service: dict) -> None:
        """The v1.23 profile renders ClusterIP Services only: keep the ClusterIP part."""
        beyond = [k for k in ("type", "externalIPs", "loadBalancerIPs", "loadBalancerSourceRanges",
                              "externalTrafficPolicy", "internalTrafficPolicy",
                              "healthCheckNodePort") if k in service]
        if not beyond:
            return
        for key in beyond:
            del service[key]
        for port in service["ports"]:
            port.pop("nodePort", None)
        self.warn(f"Service {service['namespace']}/{service['name']}", f"{', '.join(beyond)}: the "
                  "v1.23 profile renders ClusterIP Services only; rebuilt as ClusterIP "
                  "(--profile v1.30 keeps them)")


def _key(item: dict) -> tuple[str, str]:
    meta = item["metadata"]
    return meta.get("namespace", "default"), meta.get("name")


def _selects(service: dict, pod: dict) -> bool:
    return pod["namespace"] == service["namespace"] and all(
        pod["labels"].get(k) == v for k, v in service["selector"].items())


def _container_ports(pod: dict | None) -> list[dict]:
    ports, names = [], set()
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            protocol = port.get("protocol", "TCP")
            if protocol not in PROTOCOLS or not port.get("containerPort"):
                continue
            entry = {"containerPort": port["containerPort"], "protocol": protocol}
            if port.get("name") and port["name"] not in names:
                entry["name"] = port["name"]
                names.add(port["name"])
            ports.append(entry)
    return ports


def _pod_ips(pod: dict) -> list[IPv4]:
    status = pod.get("status") or {}
    found = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
    return [IPv4(a) for a in found if _v4(a)]


def _node_ips(node: dict) -> list[IPv4]:
    return [IPv4(a["address"]) for a in (node.get("status") or {}).get("addresses") or []
            if a.get("type") == "InternalIP" and _v4(a.get("address"))]


def _v4(value: Any) -> bool:
    return _parses(value, IPv4)


def _v4_net(value: Any) -> bool:
    return _parses(value, Net)


def _parses(value: Any, kind: type) -> bool:
    try:
        kind(str(value))
    except ValueError:
        return False
    return True


def _supernet(networks: list[Net]) -> Net:
    """The smallest network holding all of them."""
    result = networks[0]
    while not all(n.subnet_of(result) for n in networks):
        result = result.supernet()
    return result


def _minor(version: str) -> int | None:
    parts = version.lstrip("v").split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
