"""A cluster's Services and EndpointSlices as lab.yaml's services and pods.

Every endpoint becomes a pod; one of another node than the kit node keeps that node's name as
its `nodeName` (plan.py then puts it on that node when its podCIDR holds it, or leaves it on the
kit node, as kube-proxy's own tests do), so Local traffic policies render as on the real node.
A Service with a selector keeps it, and its pods carry their real labels (or, without Pod
objects, the labels its Services select); a Service without one lists its EndpointSlices'
endpoints in lab.yaml (`endpoints:`), each naming a pod of the lab. An endpoint at a node's
address (or of a hostNetwork Pod) is a hostNetwork pod on that node. ServiceReader is a part of
build._Builder and reports through its warn().
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab_runner.importer.plan import v4, v4_net

IPv4 = ipaddress.IPv4Address
MAX_NAME = 63  # a pod's name is its hostname in the lab
PROTOCOLS = ("TCP", "UDP")


@dataclass
class _Endpoint:
    address: IPv4
    ports: dict[tuple[str, str], int]  # (slice port name, protocol) -> number
    ready: bool
    serving: bool
    terminating: bool
    node_name: str | None
    pod: tuple[str, str] | None  # (namespace, name) of its targetRef Pod


class ServiceReader:
    """Reads Services and their slices into the lab's services and pods (uses self.objects,
    pod_objects, pods_by_ip, node_ips, endpoint_ips, subject, warn)."""

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
        endpoints = self.endpoints(slices, subject)
        kept = [e for e in endpoints if self.buildable(e, subject)]
        if endpoints and not kept:
            return self.warn(subject, "none of its endpoints can be a pod of the lab "
                             "(reasons above); without them it would render as having none")
        service = {"namespace": item["metadata"].get("namespace", "default"),
                   "name": item["metadata"].get("name")}
        if selector:
            service["selector"] = dict(selector)
        service.update({"clusterIP": str(cluster_ip), "ports": ports})
        if item["metadata"].get("labels"):
            service["labels"] = dict(item["metadata"]["labels"])
        self.external(service, spec, kind, subject, item)
        self.endpoint_ips[(service["namespace"], service["name"])] = {self.pod_key(e)
                                                                       for e in kept}
        for endpoint in kept:
            self.pod_for(endpoint, service, pods, node, subject)
        if not selector:  # its slices are made by hand (or by a controller): list them
            service["endpoints"] = [e for e in (self.hand_made(e, service, subject) for e in kept)
                                    if e is not None]
        return service

    def hand_made(self, endpoint: _Endpoint, service: dict, subject: str) -> dict | None:
        """One entry of a selector-less Service's `endpoints:`, with its slice's ports by the
        Service's port names, its conditions and its nodeName."""
        numbers = {}
        for port in service["ports"]:
            number = endpoint.ports.get((port.get("name", ""), port["protocol"]))
            if number is not None:
                numbers[port.get("name", "")] = number
        if not numbers:
            return self.warn(subject, f"endpoint {endpoint.address}: its EndpointSlice has no "
                             "port of the Service's names; left out")
        entry: dict = {"address": str(endpoint.address)}
        if list(numbers) == [""]:
            entry["port"] = numbers[""]
        else:
            entry["ports"] = numbers
        if not (endpoint.ready and endpoint.serving and not endpoint.terminating):
            entry.update(ready=False, serving=endpoint.serving)
        if endpoint.terminating:
            entry["terminating"] = True
        entry["nodeName"] = endpoint.node_name or ""  # none: local to no node
        return entry

    def cluster_ip(self, spec: dict, subject: str) -> IPv4 | None:
        addresses = spec.get("clusterIPs") or [spec.get("clusterIP")]
        if not addresses or addresses[0] in (None, "", "None"):
            return self.warn(subject, "headless (clusterIP: None): kube-proxy writes no rules")
        ipv4 = [a for a in addresses if v4(a)]
        if not ipv4:
            return self.warn(subject, f"IPv6 only ({', '.join(map(str, addresses))}): the kit "
                             "builds IPv4 labs only (ip6tables rules are another table)")
        if len(ipv4) < len(addresses):
            self.warn(subject, "dual-stack: its IPv6 cluster IP is left out (the kit builds "
                      "IPv4 only)")
        return IPv4(ipv4[0])

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
        external_ips = self.ipv4_only(spec.get("externalIPs") or [], "externalIPs", v4, subject)
        ingress = ((item.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb_ips = self.ipv4_only([i["ip"] for i in ingress if i.get("ip")],
                                "load balancer IPs", v4, subject)
        if any(i.get("hostname") and not i.get("ip") for i in ingress):
            self.warn(subject, "a load balancer known by hostname only: kube-proxy writes no "
                      "rule for it, nor does the lab")
        if kind != "ClusterIP":
            service["type"] = kind
        if external_ips:
            service["externalIPs"] = external_ips
        if kind == "LoadBalancer" and lb_ips:
            service["loadBalancerIPs"] = lb_ips
        ranges = self.ipv4_only([str(r).strip()
                                 for r in spec.get("loadBalancerSourceRanges") or []],
                                "loadBalancerSourceRanges", v4_net, subject)
        if kind == "LoadBalancer" and ranges:
            service["loadBalancerSourceRanges"] = ranges
        external = kind != "ClusterIP" or external_ips
        if external and spec.get("externalTrafficPolicy") == "Local":
            service["externalTrafficPolicy"] = "Local"
            if kind == "LoadBalancer" and spec.get("healthCheckNodePort"):
                service["healthCheckNodePort"] = spec["healthCheckNodePort"]
        if spec.get("internalTrafficPolicy") == "Local":
            service["internalTrafficPolicy"] = "Local"

    def ipv4_only(self, values: list, field: str, check, subject: str) -> list:
        """The IPv4 ones; the rest (IPv6, a dual-stack Service's other family) named."""
        kept = [v for v in values if check(v)]
        if len(kept) < len(values):
            others = ", ".join(str(v) for v in values if not check(v))
            self.warn(subject, f"{field} {others} left out: the kit builds IPv4 only")
        return kept

    # -- endpoints and pods ------------------------------------------------------------------
    def endpoints(self, slices: list[dict], subject: str) -> list[_Endpoint]:
        found: dict[IPv4, _Endpoint] = {}
        for item in slices:
            ports = {(p.get("name") or "", p.get("protocol", "TCP")): p.get("port")
                     for p in item.get("ports") or [] if p.get("port")}
            for raw in item.get("endpoints") or []:
                addresses = raw.get("addresses") or []
                if not addresses or not v4(addresses[0]):
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
        if self.host_network(endpoint):
            return True
        if endpoint.pod is None and pod is None:
            self.warn(subject, f"endpoint {endpoint.address} is no pod's (no targetRef) nor a "
                      "node's (a control plane or a machine outside the cluster): the lab makes "
                      "only its pods and nodes answer, so it is left out and the Service renders "
                      "without it")
            return False
        return True

    def host_network(self, endpoint: _Endpoint) -> bool:
        """At a node's address, or of a Pod with hostNetwork: true."""
        pod = self.pod_object(endpoint)
        return (endpoint.address in self.node_ips
                or bool(pod and (pod.get("spec") or {}).get("hostNetwork")))

    def pod_object(self, endpoint: _Endpoint) -> dict | None:
        if endpoint.pod and endpoint.pod in self.pod_objects:
            return self.pod_objects[endpoint.pod]
        found = self.pods_by_ip.get(endpoint.address)
        # A node's address is every hostNetwork pod's there: without a targetRef it names none.
        return None if found and (found.get("spec") or {}).get("hostNetwork") else found

    def pod_key(self, endpoint: _Endpoint):
        """The lab pod an endpoint is: its address, or for the host network (where pods share
        the node's address) the address and the pod."""
        if not self.host_network(endpoint):
            return endpoint.address
        obj = self.pod_object(endpoint)
        return (endpoint.address, endpoint.pod or (obj and (obj["metadata"].get("namespace"),
                                                            obj["metadata"]["name"])))

    def pod_for(self, endpoint: _Endpoint, service: dict, pods: dict, node: str,
                subject: str) -> None:
        """The lab pod at the endpoint's address: made once, then given this Service's labels
        and named target ports too."""
        obj = self.pod_object(endpoint)
        host = self.host_network(endpoint)
        # A node's own endpoint without a Pod (kube-apiserver behind `kubernetes`): named after it.
        owner = self.node_ips.get(endpoint.address) or endpoint.node_name or node
        namespace, name = endpoint.pod or ((obj["metadata"].get("namespace", "default"),
                                            obj["metadata"]["name"]) if obj
                                           else ("kube-system", f"host-{owner}"))
        pod = pods.get(self.pod_key(endpoint))
        if pod is None:
            pod = {"name": name, "namespace": namespace, "node": owner if host else node,
                   "ip": str(endpoint.address),
                   "labels": dict((obj or {}).get("metadata", {}).get("labels") or {}),
                   "ports": _container_ports(obj)}
            if host:  # plan.py gives it its lab node's address (and drops "ip")
                pod["hostNetwork"] = True
            if len(name) > MAX_NAME:
                self.warn(subject, f"pod {namespace}/{name}: a lab pod's name is its hostname, "
                          f"at most {MAX_NAME} characters; cut to {name[:MAX_NAME]}")
                pod["name"] = name[:MAX_NAME]
            if not endpoint.serving:
                pod["ready"] = False
            if endpoint.terminating:
                pod["terminating"] = True
            if endpoint.node_name != pod["node"]:
                pod["nodeName"] = endpoint.node_name or ""
            containers = len(((obj or {}).get("spec") or {}).get("containers") or [None])
            if 1 < containers <= 20:
                pod["containers"] = containers
            pods[self.pod_key(endpoint)] = pod
        elif (pod["namespace"], pod["name"]) != (namespace, name):
            self.warn(subject, f"endpoint {endpoint.address} is pod {namespace}/{name}, but "
                      f"another Service names pod {pod['namespace']}/{pod['name']} at that "
                      "address: one lab pod serves both")
        if host:  # its app listens on the node: on every port a slice names
            have = {(p["containerPort"], p.get("protocol", "TCP")) for p in pod["ports"]}
            for number, protocol in sorted({(n, proto) for (_, proto), n in endpoint.ports.items()}
                                           - have):
                pod["ports"].append({"containerPort": number, "protocol": protocol})
        if "selector" not in service:
            return
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


def key(item: dict) -> tuple[str, str]:
    meta = item["metadata"]
    return meta.get("namespace", "default"), meta.get("name")


def selects(service: dict, pod: dict) -> bool:
    return bool(service.get("selector")) and pod["namespace"] == service["namespace"] and all(
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


def pod_ips(pod: dict) -> list[IPv4]:
    status = pod.get("status") or {}
    found = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
    return [IPv4(a) for a in found if v4(a)]


def node_ips(node: dict) -> list[IPv4]:
    return [IPv4(a["address"]) for a in (node.get("status") or {}).get("addresses") or []
            if a.get("type") == "InternalIP" and v4(a.get("address"))]
