"""Shared words for lab 5's checks: node-a's node ports and ClusterIPs, and who calls them.

Every question goes to node-a, the graded node (the lab's first): the submission is applied
there, and the client, node-a's own processes and its pod web-a1 call it. node-b's pods are
reached through node-a, never called from (node-b keeps no rules in a sandbox). Answers come
from lab_runner.grading.node_ports, alike in both modes.
"""

from __future__ import annotations

import pytest

from lab_runner.evidence.probing import Target
from lab_runner.grading import node_ports, outcomes
from lab_runner.grading.common_checks import caller_problem

LOCAL_CALLERS = ("web-a1", "node")  # node-a's own pod and processes
CLIENT = "client"
CLOSED_PORT = 30099  # no Service has it: nothing on node-a answers there


def problem_check(check_id: str, problem, *args, **kwargs):
    """A check that passes when `problem(sandbox, *args, **kwargs)` finds none (None), and
    fails with the words it found; a check module takes it by assignment, as common_checks'."""

    @pytest.mark.check(check_id)
    def test(sandbox):
        found = problem(sandbox, *args, **kwargs)
        assert found is None, found

    return test


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


def every_pod_problem(sandbox, port: int, why: str) -> str | None:
    """The client's connections to node-a's `port`: every one answered, and each pod of the
    Service among those that answered; `why` ends the message."""
    target = node_ports.node_port(sandbox, port)
    pods = node_ports.service_pods(sandbox, target)
    got = answered(sandbox, CLIENT, target)
    missing = sorted(pods - {f.pod for f in got})
    lost = lost_any(sandbox, CLIENT, target)
    if got and not missing and not lost:
        return None
    return (f"New connections from the client to {target.ip}:{target.port}: {describe(got)}"
            + ("; some got no answer" if lost else "")
            + f". Never answered by: {', '.join(missing) or 'none'}. Expected: every connection "
            f"answered, by each of {', '.join(sorted(pods))} in turn{why}")


def masquerade_problem(sandbox, port: int, why: str) -> str | None:
    """The client's connections to node-a's `port`, answered, each by a pod that saw the address
    node-a sends it from (outcomes.masquerade_address); `why` ends the message."""
    target = node_ports.node_port(sandbox, port)
    got = answered(sandbox, CLIENT, target)
    pod_ip = {p.name: str(p.ip) for p in sandbox.model.pods}
    wrong = [f for f in got
             if f.saw_src != outcomes.masquerade_address(sandbox.model, pod_ip[f.pod])]
    if got and not wrong:
        return None
    return ((f"No connection from the client to {target.ip}:{target.port} was answered"
             if not got else f"The client's connections arrived as: {describe(wrong)}")
            + ". Expected: each pod sees the address node-a sends it from, 10.244.0.1 to a pod "
            f"on its bridge and 192.168.49.2 to a pod on node-b: {why}")


def closed_port_problem(sandbox) -> str | None:
    target = node_ports.node_port(sandbox, CLOSED_PORT)
    got = answered(sandbox, CLIENT, target)
    if got:
        return (f"A connection from the client to {target.ip}:{target.port}, a port no Service "
                f"has, was answered ({describe(got)}). Expected: nothing answers there; only "
                "the Service's own node port leads to its pods.")
    return None
