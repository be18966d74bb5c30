"""A cluster's objects as a lab: plain data in lab.yaml's shape, and a warning per dropped item.

The kit node, whose rules are rebuilt (--node), is the lab's first; services.py turns Services
and EndpointSlices into services and pods, plan.py chooses the nodes, addresses and profile
(hostNetwork pods take their lab node's address, see on_lab_nodes). Here:
the whole, and the checks on it (pods beyond --max-pods, named target ports no pod defines, a
selector that picks other pods than the Service's slices list).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from lab_runner.importer.node_rules import NodeFacts
from lab_runner.importer.objects import ImportProblem, Objects, name_of
from lab_runner.importer.plan import AddressPlan
from lab_runner.importer.services import ServiceReader, key, node_ips, pod_ips

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network
DEFAULT_NODE_PORTS = range(30000, 32768)
MAX_PODS = 100  # one app server process per pod: beyond this `up` takes minutes


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


def build(objects: Objects, options: Options, facts: NodeFacts | None = None) -> Result:
    return _Builder(objects, options, facts).run()


class _Builder(ServiceReader, AddressPlan):
    """Builds one lab from one set of objects; warn() and note() collect what the file says."""

    def __init__(self, objects: Objects, options: Options, facts: NodeFacts | None):
        self.objects = objects
        self.options = options
        self.facts = facts
        self.result = Result(lab={})
        self.sources: dict[str, str] = {}
        self.pod_objects = {(p["metadata"].get("namespace", "default"),
                             p["metadata"].get("name")): p for p in objects.pods}
        self.pods_by_ip = {ip: p for p in objects.pods for ip in pod_ips(p)}
        self.endpoint_ips: dict[tuple[str, str], set] = {}  # Service -> its pods (services.pod_key)
        self.node_ips = {ip: name_of(n) for n in objects.nodes for ip in node_ips(n)}

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
            service = self.service(item, slices.pop(key(item), []), pods, node)
            if service is not None:
                services.append(service)
        for (namespace, name), orphans in slices.items():
            for item in orphans:
                self.warn(self.subject(item), f"its Service {namespace}/{name} is "
                          "not in the objects (kubernetes.io/service-name label)")
        services, pods = self.within_pod_limit(services, pods)
        picks = _Selection(pods)
        services = [s for s in services if self.named_targets_defined(s, picks)]
        if not services:
            listing = "".join(f"\n  - {w}" for w in self.result.warnings)
            raise ImportProblem("nothing to build: no Service in the objects can be rebuilt as a "
                                f"lab (take them with `kubectl get svc,endpointslices,pods,nodes "
                                f"-A -o yaml`){listing}")
        self.check_selection(services, picks)
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

    def named_targets_defined(self, service: dict, picks: "_Selection") -> bool:
        """lab.yaml refuses a named targetPort that no selected pod defines (kube-proxy renders
        such a port as having no endpoints): leave the port out; False when none is left."""
        selected = [picks.pods[ip] for ip in picks.of(service)]
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

    def check_selection(self, services: list[dict], picks: "_Selection") -> None:
        """Name each Service whose selector picks other pods in the lab than its slices list
        (a slice left out of the objects; labels that clash)."""
        pods = picks.pods
        for service in services:
            key = (service["namespace"], service["name"])
            picked = picks.of(service)
            listed = self.endpoint_ips[key] & pods.keys()
            extra = sorted(f"{pods[ip]['namespace']}/{pods[ip]['name']}" for ip in picked - listed)
            if extra:
                self.warn(f"Service {key[0]}/{key[1]}", f"its selector also picks pod(s) "
                          f"{', '.join(extra[:5])} of the lab, which its EndpointSlices do not "
                          "list: the lab gives it those endpoints too")

    # -- addresses ---------------------------------------------------------------------------
    def assemble(self, node: str, services: list[dict], pods: list[dict]) -> None:
        cluster_ips = [IPv4(s["clusterIP"]) for s in services]
        cluster_cidr = self.cluster_cidr()
        inside = [str(ip) for ip in cluster_ips if ip in cluster_cidr]
        if inside:
            raise ImportProblem(f"cluster CIDR {cluster_cidr} holds the cluster IP(s) "
                                f"{', '.join(inside[:5])}: pods and Services need apart ranges "
                                "(is it the Service range? give the pods' with --cluster-cidr)")
        service_cidr = self.service_cidr(cluster_ips)
        host = [p for p in pods if p.get("hostNetwork")]  # at a node's address, on no bridge
        pods = [p for p in pods if not p.get("hostNetwork")]
        bridges = self.bridges(node, pods, cluster_ips)
        addresses, node_network = self.node_addresses(bridges, cluster_cidr)
        pods += self.on_lab_nodes(host, addresses, services)
        profile, nfacct = self.profile()
        masquerade_all = bool(self.facts and self.facts.masquerade_all)
        if profile == "v1.23":
            for service in services:
                self.clusterip_only(service)
        lab: dict[str, Any] = {
            "id": self.options.lab_id,
            "title": f"Imported: {len(services)} Service(s), the rules of node {node}",
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
        lab["nodes"] = [{"name": name, "ip": str(addresses[name]),
                         "bridge": {"name": "cni0", "address": str(bridge)}}
                        for name, bridge in bridges.items()]
        for pod in pods:
            if not pod["ports"]:
                del pod["ports"]
        lab["pods"] = sorted(pods, key=lambda p: (p["namespace"], p["name"]))
        lab["services"] = services
        client = next(h for h in node_network.hosts() if h not in addresses.values())
        lab["clients"] = [{"name": "client", "ip": str(client), "node": node}]
        self.result.lab = lab


    def on_lab_nodes(self, host: list[dict], addresses: dict[str, IPv4],
                     services: list[dict]) -> list[dict]:
        """hostNetwork pods on the lab's nodes, at the lab node's address (the real one unless
        plan.py chose a spare network); hand-made endpoints follow them. A pod of a node the lab
        does not build is left out, with its endpoints."""
        moved: dict[str, str | None] = {}
        kept = []
        for pod in host:
            real = pod.pop("ip")
            subject = f"Pod {pod['namespace']}/{pod['name']}"
            lab_ip = addresses.get(pod["node"])
            if lab_ip is None:
                self.warn(subject, f"hostNetwork on node {pod['node']}, which the lab does not "
                          f"build (it builds {', '.join(addresses)}): left out, with its "
                          "endpoints")
            elif str(lab_ip) != real:
                self.warn(subject, f"hostNetwork at {real}, node {pod['node']}'s address; the "
                          f"lab's node is at {lab_ip}, so its endpoints are (and their KUBE-SEP "
                          "chains are named after that address)")
            moved[real] = None if lab_ip is None else str(lab_ip)
            if lab_ip is not None:
                kept.append(pod)
        for service in services:
            if "endpoints" in service:
                service["endpoints"] = [dict(e, address=moved.get(e["address"], e["address"]))
                                        for e in service["endpoints"]
                                        if moved.get(e["address"], "") is not None]
        return kept


class _Selection:
    """The lab's pods by (namespace, label, value), so a selector looks only at the pods that
    carry its labels (1,000 Services x 5,000 pods: every pair would take 20 s)."""

    def __init__(self, pods: dict):
        self.pods = pods
        self.by_label: dict[tuple[str, str, str], set] = {}
        for ip, pod in pods.items():
            for label, value in pod["labels"].items():
                self.by_label.setdefault((pod["namespace"], label, value), set()).add(ip)

    def of(self, service: dict) -> set:
        """The addresses of the pods the Service's selector picks."""
        sets = [self.by_label.get((service["namespace"], label, value), set())
                for label, value in (service.get("selector") or {}).items()]
        return set.intersection(*sets) if sets else set()
