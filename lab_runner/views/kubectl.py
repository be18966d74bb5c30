"""kubectl's `get` and `describe` output for the lab model, laid out column for column as kubectl does.

Pure: no cluster, no I/O. The subset is what the labs use:

    kubectl [-n NS | --namespace NS | -A] get svc|pod|endpoints|nodes [NAME] [-o wide]
    kubectl [-n NS | -A] describe svc [NAME]

Anything else raises NotModelled, which names what is modelled. The sources followed are kubectl's
table printers (pkg/printers/internalversion/printers.go), its service describer
(k8s.io/kubectl/pkg/describe), apimachinery's duration.HumanDuration and Go's text/tabwriter.

    LabError
    └── KubectlError        kubectl would print an error instead of a table
        ├── NotModelled     a verb, resource or flag this lab does not model
        └── NotFound        a named object that is not in the lab
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from lab_runner.endpoints import resolve_target_port, selects, sliced
from lab_runner.errors import LabError
from lab_runner.model import Lab, Pod, Service, ServicePort

MODELLED = ("get svc|pod|endpoints|nodes [NAME] [-o wide] [-n NS|-A], "
            "describe svc [NAME] [-n NS|-A]")

# kubectl's resource names and short names, mapped to the canonical plural.
RESOURCES = {
    "svc": "services", "service": "services", "services": "services",
    "po": "pods", "pod": "pods", "pods": "pods",
    "ep": "endpoints", "endpoints": "endpoints",
    "no": "nodes", "node": "nodes", "nodes": "nodes",
}
DESCRIBABLE = ("services",)

# The printers' tabwriter (k8s.io/cli-runtime printers.GetNewTabWriter) and describe's (tabbedString).
GET_MINWIDTH, GET_PADDING = 6, 3
DESCRIBE_MINWIDTH, DESCRIBE_PADDING = 0, 2

ENDPOINTS_SHOWN = 3  # formatEndpoints lists the first three, then "+ N more..."
LOAD_BALANCER_WIDTH = 16  # printers.go's loadBalancerWidth: get svc clips longer ingress lists


class KubectlError(LabError):
    """kubectl would print this error (to stderr, exit 1) instead of any output."""


class NotModelled(KubectlError):
    """A kubectl verb, resource or flag the lab does not model; the message says what is."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(f"{what} is not modelled by this lab; the lab models: kubectl {MODELLED}")


class NotFound(KubectlError):
    """A named object that is not in the lab, reported with kubectl's own message."""

    def __init__(self, resource: str, name: str):
        self.resource = resource
        self.name = name
        super().__init__(f'Error from server (NotFound): {resource} "{name}" not found')


@dataclass(frozen=True)
class Release:
    """What a node of the lab's profile reports: minikube's defaults of that Kubernetes era."""

    kubelet: str
    first_node_roles: str
    os_image: str
    container_runtime: str
    internal_traffic_policy: bool  # describe svc prints it from kubectl v1.26 on


# minikube v1.25 (the seed's era), v1.33 and v1.37; the kernel column is always the real one.
RELEASES = {
    "v1.23": Release("v1.23.3", "control-plane,master", "Ubuntu 20.04.2 LTS", "docker://20.10.12",
                     False),
    "v1.30": Release("v1.30.0", "control-plane", "Ubuntu 22.04.4 LTS", "docker://26.0.1", True),
    "v1.34": Release("v1.34.0", "control-plane", "Ubuntu 22.04.5 LTS", "docker://28.4.0", True),
}


# -- formatting helpers, each a port of the Go function named in its docstring ---------------------

def human_duration(d: timedelta) -> str:
    """apimachinery's duration.HumanDuration: about 2-3 significant figures, like `5h56m`, `3d4h`."""
    micros = d // timedelta(microseconds=1)
    # Go's int(d.Seconds()) truncates toward zero; a clock skew under 2s still reads as "0s".
    seconds = -(-micros // 1_000_000) if micros < 0 else micros // 1_000_000
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def tabwrite(lines: Sequence[str], *, minwidth: int, padding: int) -> str:
    """Go's text/tabwriter (padchar ' ', no flags): align tab-terminated cells in column blocks.

    A column block is a run of consecutive lines that all have a cell in that column; each block
    gets its own width (widest cell + padding, at least minwidth). The last cell of a line is
    not tab-terminated and is never padded, so no line ends in spaces unless its last cell is
    empty. This is why describe's `Port:` line aligns its second column on its own.
    """
    rows = [line.split("\t") for line in lines]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for cells in rows[line0:line1]:
            text = []
            for j, cell in enumerate(cells):
                text.append(cell.ljust(widths[j]) if j < len(widths) else cell)
            out.append("".join(text))

    def format_block(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(rows[this]) - 1:  # no tab-terminated cell in this column
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(rows[this]) - 1:
                width = max(width, len(rows[this][column]) + padding)
                this += 1
            widths.append(width)
            format_block(line0, this)  # the columns to the right, within this block
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    format_block(0, len(rows))
    return "".join(line + "\n" for line in out)


def format_labels(labels: Mapping[str, str]) -> str:
    """apimachinery's labels.FormatLabels: `k=v` sorted by key, joined by commas; `<none>` if empty."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels)) or "<none>"


def make_port_string(ports: Sequence[ServicePort]) -> str:
    """printers.go's makePortString: `port/PROTO`, or `port:nodePort/PROTO` with a node port."""
    return ",".join(f"{p.port}:{p.node_port}/{p.protocol}" if p.node_port
                    else f"{p.port}/{p.protocol}" for p in ports)


def load_balancer_status(service: Service, wide: bool) -> str:
    """printers.go's loadBalancerStatusStringer: the ingress IPs as a sorted string set joined by
    commas, clipped to loadBalancerWidth with `...` unless -o wide."""
    text = ",".join(sorted({str(ip) for ip in service.load_balancer_ips}))
    if not wide and len(text) > LOAD_BALANCER_WIDTH:
        text = text[:LOAD_BALANCER_WIDTH - 3] + "..."
    return text


def service_external_ip(service: Service, wide: bool) -> str:
    """printers.go's getServiceExternalIP: externalIPs for ClusterIP and NodePort; a
    LoadBalancer's ingress IPs first, then its externalIPs, `<pending>` when it has neither."""
    external = [str(ip) for ip in service.external_ips]
    if service.type != "LoadBalancer":
        return ",".join(external) or "<none>"
    ingress = load_balancer_status(service, wide)
    if external:
        return ",".join((ingress.split(",") if ingress else []) + external)
    return ingress or "<pending>"


# -- the Endpoints object, as the endpoints controller writes it ------------------------------------

@dataclass(frozen=True)
class EndpointPort:
    """One port of an endpoint subset: the service port's name with the number it resolved to."""

    name: str  # "" for an unnamed service port, as in the API
    port: int
    protocol: str


@dataclass(frozen=True)
class EndpointSubset:
    """Addresses that offer exactly the same ports, as in an Endpoints object's `subsets`."""

    addresses: tuple[str, ...]  # ready pod IPs
    not_ready: tuple[str, ...]  # pods selected but not ready: kept, but never shown by kubectl
    ports: tuple[EndpointPort, ...]


def endpoint_subsets(lab: Lab, service: Service) -> list[EndpointSubset]:
    """The Endpoints object of a service: pods grouped by the ports they offer (RepackSubsets).

    Every selected pod counts, ready or not (not-ready ones go to notReadyAddresses), for each
    service port its targetPort resolves on. A Service without selector shows its hand-made
    endpoints, as the Endpoints object one writes by hand (and the EndpointSlice mirroring
    controller copies into the slice lab.yaml describes), like default/kubernetes's. Addresses
    are sorted by IP string as the API does. kubectl orders subsets and ports by an internal
    hash; here they follow the service's ports, which only matters for a service whose pods do
    not all offer the same ports.
    """
    offered: dict[EndpointPort, set[tuple[str, bool]]] = {}
    for service_port in service.ports:
        for pod, number in _offers(lab, service, service_port):
            key = EndpointPort(service_port.name or "", number, service_port.protocol)
            offered.setdefault(key, set()).add((str(pod.ip), pod.ready))
    by_addresses: dict[frozenset[tuple[str, bool]], list[EndpointPort]] = {}
    for port, addresses in offered.items():
        by_addresses.setdefault(frozenset(addresses), []).append(port)
    return [EndpointSubset(addresses=tuple(sorted(ip for ip, ready in addresses if ready)),
                           not_ready=tuple(sorted(ip for ip, ready in addresses if not ready)),
                           ports=tuple(ports))
            for addresses, ports in by_addresses.items()]


def _offers(lab: Lab, service: Service, port: ServicePort) -> list[tuple[Pod, int]]:
    """(pod, port number) behind one service port: selected pods on which its targetPort
    resolves, or a selector-less Service's hand-made endpoints that name the port."""
    if not service.selector:
        return [(pod, number) for _, pod, number in sliced(service, port)]
    found = []
    for pod in lab.pods:
        if selects(service, pod):
            number = resolve_target_port(port, pod)
            if number is not None:
                found.append((pod, number))
    return found


def has_endpoints_object(service: Service) -> bool:
    """The endpoints controller makes an Endpoints object for a service with a selector; one
    without has one only when its endpoints were written by hand (lab.yaml `endpoints:`)."""
    return bool(service.selector or service.endpoints)


def format_endpoints(subsets: Sequence[EndpointSubset], port_names: set[str] | None = None) -> str:
    """kubectl's formatEndpoints: the first three `ip:port` then ` + N more...`.

    `<none>` only when there are no subsets at all (no selected pod offers the port); selected
    pods that are all not ready give an empty string, as kubectl prints it.
    """
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for subset in subsets:
        for port in subset.ports:
            if port_names is not None and port.name not in port_names:
                continue
            for ip in subset.addresses:
                if len(shown) < ENDPOINTS_SHOWN:
                    shown.append(f"{ip}:{port.port}")
                count += 1
    text = ",".join(shown)
    if count > ENDPOINTS_SHOWN:
        return f"{text} + {count - ENDPOINTS_SHOWN} more..."
    return text


# -- the command line ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """A parsed kubectl command line of the modelled subset."""

    verb: str
    resource: str  # canonical plural: services, pods, endpoints, nodes
    name: str | None
    namespace: str
    all_namespaces: bool
    wide: bool


def parse_args(args: Sequence[str]) -> Request:
    """Parse kubectl's arguments (flags anywhere, as kubectl allows); refuse what is not modelled."""
    words = list(args)
    if words and words[0] == "kubectl":
        words = words[1:]
    positional: list[str] = []
    unknown_flags: list[str] = []
    namespace, all_namespaces, output = "default", False, None
    i = 0
    while i < len(words):
        word = words[i]
        flag, eq, attached = word.partition("=")
        if word in ("-n", "--namespace", "-o", "--output"):
            if i + 1 >= len(words):
                raise KubectlError(f"error: flag needs an argument: {word}")
            value, i = words[i + 1], i + 1
            if word in ("-n", "--namespace"):
                namespace = value
            else:
                output = value
        elif eq and flag in ("-n", "--namespace"):
            namespace = attached
        elif eq and flag in ("-o", "--output"):
            output = attached
        elif word.startswith("-n") and not word.startswith("--") and len(word) > 2:
            namespace = word[2:]  # pflag accepts a shorthand's value attached: -nstateful-apps
        elif word.startswith("-o") and not word.startswith("--") and len(word) > 2:
            output = word[2:]
        elif word in ("-A", "--all-namespaces", "--all-namespaces=true"):
            all_namespaces = True
        elif word == "--all-namespaces=false":
            all_namespaces = False
        elif word.startswith("-"):
            unknown_flags.append(flag)
        else:
            positional.append(word)
        i += 1

    if not positional:
        raise NotModelled("kubectl without a command")
    verb, rest = positional[0], positional[1:]
    if verb not in ("get", "describe"):
        raise NotModelled(f"kubectl {verb}")  # named before its flags: `apply -f` is about apply
    if unknown_flags:
        raise NotModelled(f"the flag {unknown_flags[0]}")
    if not rest:
        raise KubectlError(f"You must specify the type of resource to {verb}. "
                           f"The lab models: kubectl {MODELLED}")
    kind, _, slash_name = rest[0].partition("/")
    names = ([slash_name] if slash_name else []) + rest[1:]
    if "," in kind or kind.lower() not in RESOURCES:
        raise NotModelled(f"kubectl {verb} {rest[0]}")
    resource = RESOURCES[kind.lower()]
    if verb == "describe" and resource not in DESCRIBABLE:
        raise NotModelled(f"kubectl describe {kind}")
    if len(names) > 1:
        raise NotModelled(f"kubectl {verb} with several names ({' '.join(names)})")
    if output is not None and (verb == "describe" or output != "wide"):
        raise NotModelled(f"kubectl {verb} -o {output}")
    name = names[0] if names else None
    if name and all_namespaces and resource != "nodes":  # describe too: the same resource builder
        raise KubectlError("error: a resource cannot be retrieved by name across all namespaces")
    return Request(verb, resource, name, namespace, all_namespaces, output == "wide")


# -- the views ----------------------------------------------------------------------------------------

def kubectl(lab: Lab, args: Sequence[str], started_at: datetime, now: datetime | None = None, *,
            age_offsets: Mapping[str, timedelta] | None = None) -> str:
    """What `kubectl ARGS` prints for the lab, every object having been created at `started_at`.

    `age_offsets` makes a kind older than the lab's start, keyed by canonical resource name
    (services, pods, endpoints, nodes); endpoints default to their service's offset, since the
    endpoints controller creates them with the service. The seed's services are 5h56m old and
    its pods 4h39m (the Deployment was rolled after the Service was made).
    Raises NotModelled, NotFound or KubectlError where kubectl would print an error.
    """
    request = parse_args(args)
    now = now if now is not None else datetime.now(started_at.tzinfo)
    offsets = dict(age_offsets or {})
    offsets.setdefault("endpoints", offsets.get("services", timedelta(0)))
    ages = {kind: human_duration(now - started_at + offsets.get(kind, timedelta(0)))
            for kind in ("services", "pods", "endpoints", "nodes")}
    release = RELEASES.get(lab.profile, RELEASES["v1.23"])
    if request.verb == "describe":
        return _describe_services(lab, request, release)
    view = {"services": _get_services, "pods": _get_pods, "endpoints": _get_endpoints,
            "nodes": _get_nodes}[request.resource]
    return view(lab, request, ages[request.resource], release)


def _in_scope(request: Request, namespace: str) -> bool:
    return request.all_namespaces or namespace == request.namespace


def _no_resources(request: Request) -> str:
    if request.all_namespaces:
        return "No resources found\n"
    return f"No resources found in {request.namespace} namespace.\n"


def _table(request: Request, header: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """rows are (namespace, cells); -A adds kubectl's NAMESPACE column in front."""
    namespaced = request.all_namespaces and request.resource != "nodes"
    lines = ["\t".join((["NAMESPACE"] if namespaced else []) + header)]
    for namespace, cells in rows:
        lines.append("\t".join(([namespace] if namespaced else []) + cells))
    return tabwrite(lines, minwidth=GET_MINWIDTH, padding=GET_PADDING)


def _named(request: Request, objects: list, resource: str) -> list:
    if request.name is None:
        return objects
    found = [o for o in objects if o.name == request.name]
    if not found:
        raise NotFound(resource, request.name)
    return found


def _get_services(lab: Lab, request: Request, age: str, release: Release) -> str:
    services = sorted((s for s in lab.services if _in_scope(request, s.namespace)),
                      key=lambda s: (s.namespace, s.name))
    services = _named(request, services, "services")
    if not services:
        return _no_resources(request)
    header = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    header += ["SELECTOR"] if request.wide else []
    rows = []
    for s in services:
        cells = [s.name, s.type, str(s.cluster_ip), service_external_ip(s, request.wide),
                 make_port_string(s.ports) or "<none>", age]
        cells += [format_labels(s.selector)] if request.wide else []
        rows.append((s.namespace, cells))
    return _table(request, header, rows)


def _get_pods(lab: Lab, request: Request, age: str, release: Release) -> str:
    pods = sorted((p for p in lab.pods if _in_scope(request, p.namespace)),
                  key=lambda p: (p.namespace, p.name))
    pods = _named(request, pods, "pods")
    if not pods:
        return _no_resources(request)
    header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    header += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"] if request.wide else []
    rows = []
    for p in pods:
        # A not-ready pod is one whose app container fails its readiness probe; sidecars stay
        # ready and the pod keeps Running, exactly what kubectl shows for such a pod. A pod being
        # deleted shows Terminating, its containers ready while its probe passes (serving).
        probe_passes = p.ready or (p.terminating and p.serving)
        ready = p.containers if probe_passes else p.containers - 1
        status = "Terminating" if p.terminating else "Running"
        cells = [p.name, f"{ready}/{p.containers}", status, "0", age]
        cells += [str(p.ip), p.node, "<none>", "<none>"] if request.wide else []
        rows.append((p.namespace, cells))
    return _table(request, header, rows)


def _get_endpoints(lab: Lab, request: Request, age: str, release: Release) -> str:
    services = sorted((s for s in lab.services
                       if has_endpoints_object(s) and _in_scope(request, s.namespace)),
                      key=lambda s: (s.namespace, s.name))
    services = _named(request, services, "endpoints")
    if not services:
        return _no_resources(request)
    rows = [(s.namespace, [s.name, format_endpoints(endpoint_subsets(lab, s)), age])
            for s in services]
    return _table(request, ["NAME", "ENDPOINTS", "AGE"], rows)


def _get_nodes(lab: Lab, request: Request, age: str, release: Release) -> str:
    nodes = _named(request, sorted(lab.nodes, key=lambda n: n.name), "nodes")
    header = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if request.wide:
        header += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    first = lab.nodes[0].name if lab.nodes else None
    rows = []
    for n in nodes:
        # minikube's first node is the control plane; further nodes are plain workers.
        roles = release.first_node_roles if n.name == first else "<none>"
        cells = [n.name, "Ready", roles, age, release.kubelet]
        if request.wide:
            # The lab's node is a namespace on this very kernel, so this column is the truth.
            cells += [str(n.ip), "<none>", release.os_image, platform.release(),
                      release.container_runtime]
        rows.append(("", cells))
    return _table(request, header, rows)


def _describe_services(lab: Lab, request: Request, release: Release) -> str:
    services = sorted((s for s in lab.services if _in_scope(request, s.namespace)),
                      key=lambda s: (s.namespace, s.name))
    if request.name is not None:
        exact = [s for s in services if s.name == request.name]
        # kubectl describe falls back to every object whose name starts with the one given.
        services = exact or [s for s in services if s.name.startswith(request.name)]
        if not services:
            raise NotFound("services", request.name)
    if not services:
        return _no_resources(request)
    return "\n\n".join(describe_service(lab, s, release) for s in services)


def describe_service(lab: Lab, service: Service, release: Release = RELEASES["v1.23"]) -> str:
    """kubectl describe svc: one aligned block, a Port/TargetPort/(NodePort/)Endpoints group per
    port; external IPs, load balancer ingress and traffic policies where the Service has them."""
    lines = [f"Name:\t{service.name}", f"Namespace:\t{service.namespace}"]
    lines += _multiline("Labels", service.labels)
    lines += ["Annotations:\t<none>",
              f"Selector:\t{format_labels(service.selector)}",
              f"Type:\t{service.type}",
              "IP Family Policy:\tSingleStack",
              "IP Families:\tIPv4",
              f"IP:\t{service.cluster_ip}",
              f"IPs:\t{service.cluster_ip}"]
    if service.external_ips:
        lines.append(f"External IPs:\t{','.join(str(ip) for ip in service.external_ips)}")
    if service.load_balancer_ips:  # buildIngressString: in status order, ", " between
        lines.append(f"LoadBalancer Ingress:\t"
                     f"{', '.join(str(ip) for ip in service.load_balancer_ips)}")
    subsets = endpoint_subsets(lab, service)
    for port in service.ports:
        name = port.name or "<unset>"
        lines += [f"Port:\t{name}\t{port.port}/{port.protocol}",
                  f"TargetPort:\t{port.target}/{port.protocol}"]
        if port.node_port:
            lines.append(f"NodePort:\t{name}\t{port.node_port}/{port.protocol}")
        lines.append(f"Endpoints:\t{format_endpoints(subsets, {port.name or ''})}")
    lines.append(f"Session Affinity:\t{service.session_affinity}")
    # The API defaults externalTrafficPolicy only for NodePort and LoadBalancer Services.
    if service.type != "ClusterIP" or service.external_traffic_policy == "Local":
        lines.append(f"External Traffic Policy:\t{service.external_traffic_policy}")
    if release.internal_traffic_policy:
        lines.append(f"Internal Traffic Policy:\t{service.internal_traffic_policy}")
    if service.health_check_node_port:
        lines.append(f"HealthCheck NodePort:\t{service.health_check_node_port}")
    if service.source_ranges:
        lines.append("LoadBalancer Source Ranges:\t"
                     f"{','.join(str(r) for r in service.source_ranges)}")
    lines.append("Events:\t<none>")
    return tabwrite(lines, minwidth=DESCRIBE_MINWIDTH, padding=DESCRIBE_PADDING)


def _multiline(title: str, labels: Mapping[str, str]) -> list[str]:
    """describe's printLabelsMultiline: one `k=v` per line, later lines indented by an empty cell."""
    if not labels:
        return [f"{title}:\t<none>"]
    keys = sorted(labels)
    return [f"{title}:\t{keys[0]}={labels[keys[0]]}"] + [f"\t{k}={labels[k]}" for k in keys[1:]]
