"""Pod changes a Deployment controller makes (scale, readiness, re-create), as pure model edits."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import asdict, replace

from lab_runner.errors import LabError
from lab_runner.model import ContainerPort, Lab, Pod

# The characters Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def replica_set(pod: Pod) -> str:
    """`my-app-7f569f66d9-dfrdh` -> `my-app-7f569f66d9` (the name without its random suffix)."""
    return pod.name.rsplit("-", 1)[0]


def members(lab: Lab, deployment: str, *, required: bool = True) -> list[Pod]:
    """Pods of a deployment named `my-app`, or of its replica set `my-app-7f569f66d9`."""
    found = [p for p in lab.pods if replica_set(p) == deployment
             or replica_set(p).rsplit("-", 1)[0] == deployment]
    if not found and required:
        names = sorted({replica_set(p).rsplit("-", 1)[0] for p in lab.pods})
        raise LabError(f"no deployment {deployment!r} in {lab.id}; the deployments are: "
                       f"{', '.join(names) or '(none)'}")
    return found


def find_pod(lab: Lab, name: str) -> Pod:
    matches = [p for p in lab.pods if p.name == name or p.name.endswith("-" + name)]
    if len(matches) != 1:
        raise LabError(f"no single pod {name!r} in {lab.id}; the pods are: "
                       f"{', '.join(p.name for p in lab.pods)}")
    return matches[0]


def scaled(lab: Lab, deployment: str, replicas: int, rng: random.Random | None = None,
           *, templates: Lab | None = None) -> tuple[Lab, list[Pod], list[str]]:
    """The lab with `replicas` pods in the deployment: (new lab, pods added, pod names removed).

    Scale-in removes not-ready pods first, then the most recently created (the lab keeps pods
    in creation order), roughly as the ReplicaSet controller ranks them. `templates` (the lab as its file defines
    it) gives the pod template when the deployment has been scaled to zero.
    """
    if not 0 <= replicas <= 50:
        raise LabError("replicas must be from 0 to 50")
    pods = members(lab, deployment, required=templates is None)
    rng = rng or random.Random()
    template = (pods or members(templates, deployment))[0]
    # A replica of a hostNetwork pod would need its node's address and ports: another node.
    if replicas != len(pods) and any(p.host_network for p in pods or [template]):
        raise LabError(f"deployment {deployment!r} runs hostNetwork pods, at their node's "
                       "address and ports, so the lab cannot scale it")
    new_lab, added = lab, []
    for _ in range(replicas - len(pods)):
        pod = replace(template, name=f"{replica_set(template)}-{_suffix(new_lab, rng)}",
                      ip=free_address(new_lab, template.node), ready=True)
        new_lab = new_lab.with_changes(pods=new_lab.pods + (pod,))
        added.append(pod)
    removed = []
    if replicas < len(pods):
        age = {p.name: i for i, p in enumerate(lab.pods)}  # later in the list = newer
        first_to_go = sorted(pods, key=lambda p: (p.ready, -age[p.name]))
        removed = [p.name for p in first_to_go[:len(pods) - replicas]]
        new_lab = new_lab.with_changes(pods=tuple(p for p in new_lab.pods if p.name not in removed))
    return new_lab, added, removed


def with_readiness(lab: Lab, name: str, ready: bool) -> Lab:
    pod = find_pod(lab, name)
    return lab.with_changes(pods=tuple(replace(p, ready=ready) if p.name == pod.name else p
                                       for p in lab.pods))


def with_termination(lab: Lab, name: str, serving: bool = True) -> Lab:
    """A pod being deleted, within its grace period: still running, listed in its EndpointSlice
    as terminating (not Ready), serving while its readiness probe passes."""
    pod = find_pod(lab, name)
    return lab.with_changes(pods=tuple(
        replace(p, terminating=True, serving=serving, ready=False) if p.name == pod.name else p
        for p in lab.pods))


def recreated(lab: Lab, name: str, rng: random.Random | None = None) -> tuple[Lab, Pod, Pod]:
    """A deleted pod comes back as a new pod: new name suffix, new address (lab 1's lesson)."""
    old = find_pod(lab, name)
    if old.host_network:
        raise LabError(f"pod {old.name!r} is a hostNetwork pod at node {old.node}'s address; "
                       "the lab re-creates only pods with an address of their own")
    rest = lab.with_changes(pods=tuple(p for p in lab.pods if p.name != old.name))
    new = replace(old, name=f"{replica_set(old)}-{_suffix(lab, rng or random.Random())}",
                  ip=free_address(lab, old.node, avoid={old.ip}), ready=True)
    return rest.with_changes(pods=rest.pods + (new,)), old, new


def free_address(lab: Lab, node_name: str, avoid: set = frozenset()) -> ipaddress.IPv4Address:
    """The lowest address of the node's pod subnet that nothing uses, as a simple IPAM would give."""
    node = lab.node(node_name)
    used = {p.ip for p in lab.pods} | {node.bridge_address.ip} | set(avoid)
    used |= {s.cluster_ip for s in lab.services} | {c.ip for c in lab.clients}
    for address in node.pod_subnet.hosts():
        if address not in used:
            return address
    raise LabError(f"node {node_name}'s pod subnet {node.pod_subnet} is full")


def _suffix(lab: Lab, rng: random.Random) -> str:
    names = {p.name for p in lab.pods}
    while True:
        suffix = "".join(rng.choice(SUFFIX_ALPHABET) for _ in range(5))
        if not any(n.endswith("-" + suffix) for n in names):
            return suffix


def pods_to_data(pods) -> list[dict]:
    """Pods as JSON-able data, for the run record (a running lab's pods can differ from its file)."""
    out = []
    for pod in pods:
        data = asdict(pod)
        data["ip"] = str(pod.ip)
        out.append(data)
    return out


def pods_from_data(data: list[dict]) -> tuple[Pod, ...]:
    return tuple(Pod(**{**d, "ip": ipaddress.IPv4Address(d["ip"]),
                        "ports": tuple(ContainerPort(**cp) for cp in d["ports"])}) for d in data)
