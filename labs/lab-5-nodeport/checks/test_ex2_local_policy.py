"""Exercise 2 (local policy): externalTrafficPolicy: Local for web-local and api on node-a."""

import pytest
from conftest import CLIENT, answered, describe, every_caller_problem, lost_any, problem_check

from lab_runner.grading import node_ports
from lab_runner.grading.common_checks import nothing_else_changed_check

WEB_LOCAL = 30081  # pods on both nodes
API = 30082  # its one pod on node-b: none on node-a


def _local_pods(sandbox, target) -> set[str]:
    graded = sandbox.model.nodes[0].name
    return {p.name for p in sandbox.model.pods
            if p.name in node_ports.service_pods(sandbox, target) and p.node == graded}


@pytest.mark.check("source-preserved")
def test_source_preserved(sandbox):
    target = node_ports.node_port(sandbox, WEB_LOCAL)
    client = sandbox.caller_ip(CLIENT)
    got = answered(sandbox, CLIENT, target)
    wrong = [f for f in got if f.saw_src != client]
    lost = lost_any(sandbox, CLIENT, target)
    assert got and not wrong and not lost, (
        f"New connections from the client to {target.ip}:{target.port}: {describe(got)}"
        + ("; some got no answer" if lost else "")
        + f". Expected: every one answered, by a pod that sees the client's own address {client}"
        ": with policy Local nothing marks an outside caller for masquerading.")


@pytest.mark.check("local-pods-only")
def test_local_pods_only(sandbox):
    target = node_ports.node_port(sandbox, WEB_LOCAL)
    local = _local_pods(sandbox, target)
    reached = {f.pod for f in answered(sandbox, CLIENT, target)}
    # A pod on node-b reached without masquerading answers around node-a: no answer, no pod.
    lost = lost_any(sandbox, CLIENT, target)
    assert reached == local and not lost, (
        f"New connections from the client to {target.ip}:{target.port} reached: "
        f"{', '.join(sorted(reached)) or 'no pod'}"
        + ("; some got no answer (sent to a pod on another node, whose answer goes around "
           "node-a)" if lost else "")
        + f". Expected: {', '.join(sorted(local))} only, node-a's own pods: with policy Local a "
        "node never sends an outside caller to another node.")


@pytest.mark.check("no-local-endpoint-drops")
def test_no_local_endpoint_drops(sandbox):
    target = node_ports.node_port(sandbox, API)
    how = node_ports.refused_or_dropped(sandbox, CLIENT, target)
    assert how == "dropped", (
        f"A connection from the client to {target.ip}:{target.port} was {how}"
        + (" (node-a answered with a reset: nothing on it listens there)" if how == "refused"
           else "") + ". Expected: dropped without an answer, as kube-proxy drops external "
        "traffic to a node port of a Service with policy Local on a node without a local "
        "endpoint.")


test_every_caller = problem_check("every-caller", every_caller_problem, (WEB_LOCAL, API))
test_nothing_else_changed = nothing_else_changed_check()
