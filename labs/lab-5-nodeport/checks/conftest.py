"""Shared words for lab 5's checks: node-a's node ports and ClusterIPs, and who calls them.

Every question goes to node-a, the graded node (the lab's first): the submission is applied
there, and the client, node-a's own processes and its pod web-a1 call it. node-b's pods are
reached through node-a, never called from (node-b keeps no rules in a sandbox). Answers come
from lab_runner.grading.node_ports, alike in both modes.
"""

from __future__ import annotations

from lab_runner.evidence.probing import Target
from lab_runner.grading import node_ports, outcomes
from lab_runner.grading.common_checks import caller_problem

LOCAL_CALLERS = ("web-a1", "node")  # node-a's own pod and processes
CLIENT = "client"
CLOSED_PORT = 30099  # no Service has it: nothing on node-a answers there


def cluster_ip(sandbox, node_port: int) -> Target:
    """The ClusterIP target of the Service port that owns `node_port`."""
    for service in sandbox.model.services:
        for port in service.ports:
            if port.node_port == node_port:
                return Target(str(service.cluster_ip), port.port, port.protocol.lower())
    raise LookupError(f"no Service has node port {node_port}")


def answered(sandbox, caller: str, target: Target) -> list[outcomes.Fate]:
    return sorted(f for f in node_ports.outcome(sandbox, caller, target).fates if f.answered)


def lost_any(sandbox, caller: str, target: Target) -> bool:
    return outcomes.NO_ANSWER in node_ports.outcome(sandbox, caller, target).fates


def describe(fates) -> str:
    return ", ".join(f"{f.pod} saw {f.saw_src}" for f in fates) or "no pod answered"


def every_caller_problem(sandbox, node_port_numbers, *, cluster_ips=False) -> str | None:
    """node-a's pod and processes through each node port, then (cluster_ips: where the task
    may write a chain the ClusterIP's way passes) the client, node-a's pod and processes through
    each Service's ClusterIP, as the reference rules make them."""
    for number in node_port_numbers:
        for caller in LOCAL_CALLERS:
            problem = node_ports.problem(sandbox, caller, node_ports.node_port(sandbox, number))
            if problem:
                return problem
    for number in node_port_numbers if cluster_ips else ():
        problem = caller_problem(sandbox, cluster_ip(sandbox, number),
                                 callers=(CLIENT, *LOCAL_CALLERS))
        if problem:
            return problem
    return None


def closed_port_problem(sandbox) -> str | None:
    target = node_ports.node_port(sandbox, CLOSED_PORT)
    got = answered(sandbox, CLIENT, target)
    if got:
        return (f"A connection from the client to {target.ip}:{target.port}, a port no Service "
                f"has, was answered ({describe(got)}). Expected: nothing answers there; only "
                "the Service's own node port leads to its pods.")
    return None
