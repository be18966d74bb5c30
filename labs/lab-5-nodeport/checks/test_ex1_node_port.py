"""Exercise 1 (node port): node-a's KUBE-NODEPORTS rule and KUBE-EXT chain for shop/web."""

import pytest
from conftest import (CLIENT, answered, closed_port_problem, describe, every_caller_problem,
                      lost_any)

from lab_runner.grading import node_ports, outcomes
from lab_runner.grading.common_checks import nothing_else_changed_check

NODE_PORT = 30080


@pytest.mark.check("every-pod-reached")
def test_every_pod_reached(sandbox):
    target = node_ports.node_port(sandbox, NODE_PORT)
    pods = node_ports.service_pods(sandbox, target)
    got = answered(sandbox, CLIENT, target)
    missing = sorted(pods - {f.pod for f in got})
    lost = " Some connections got no answer." if lost_any(sandbox, CLIENT, target) else ""
    assert got and not missing and not lost, (
        f"New connections from the client to {target.ip}:{target.port}: {describe(got)}."
        f"{lost} Never answered by: {', '.join(missing) or 'none'}. Expected: every connection "
        f"answered, by each of {', '.join(sorted(pods))} in turn.")


@pytest.mark.check("outside-caller-masqueraded")
def test_outside_caller_masqueraded(sandbox):
    target = node_ports.node_port(sandbox, NODE_PORT)
    got = answered(sandbox, CLIENT, target)
    pod_ip = {p.name: str(p.ip) for p in sandbox.model.pods}
    wrong = [f for f in got if f.saw_src != outcomes.masquerade_address(sandbox.model, pod_ip[f.pod])]
    assert got and not wrong, (
        (f"No connection from the client to {target.ip}:{target.port} was answered"
         if not got else f"The client's connections arrived as: {describe(wrong)}")
        + ". Expected: each pod sees node-a's address on its way to the pod (10.244.0.1 for a "
        "pod on node-a's bridge, 192.168.49.2 for a pod on node-b), because every caller from "
        "outside is marked for masquerading before it is sent on to a pod.")


@pytest.mark.check("every-caller")
def test_every_caller(sandbox):
    problem = every_caller_problem(sandbox, (NODE_PORT,), cluster_ips=True)
    assert problem is None, problem


@pytest.mark.check("other-ports-closed")
def test_other_ports_closed(sandbox):
    problem = closed_port_problem(sandbox)
    assert problem is None, problem


test_nothing_else_changed = nothing_else_changed_check()
