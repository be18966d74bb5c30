"""Exercise 1 (DNAT): 10.96.0.200:80 is web-a2:8080, for arriving connections and for node-a."""

import pytest
from conftest import ENTRY, VIP, connect, not_answered_by, not_reaching, pod_caller_problem, seen

from lab_runner.evidence.probing import Target

POD = "web-a2"
POD_ADDRESS = "10.244.0.12:8080"


@pytest.mark.check("reaches-pod")
def test_reaches_pod(sandbox):
    problem = not_reaching(sandbox, "client", VIP, POD)
    assert problem is None, f"{problem} Expected: DNATed to {POD_ADDRESS} and answered by {POD}."


@pytest.mark.check("reply-from-vip")
def test_reply_from_vip(sandbox):
    problem = not_answered_by(sandbox, "client", VIP)
    assert problem is None, (
        f"{problem} Expected: a SYN-ACK from {VIP.ip}:{VIP.port}: the pod accepts on its own "
        "port, and node-a's conntrack puts the virtual address back on the answer.")


@pytest.mark.check("node-reaches-vip")
def test_node_reaches_vip(sandbox):
    fates = connect(sandbox, ENTRY, VIP)
    assert fates and all(f.answered and f.pod == POD for f in fates), (
        f"A TCP connection opened by {ENTRY} itself to {VIP.ip}:{VIP.port}: {seen(fates)}. "
        f"Expected: answered by {POD}. A packet a process on the node sends never passes "
        "PREROUTING.")


@pytest.mark.check("other-port-untouched")
def test_other_port_untouched(sandbox):
    other = Target(VIP.ip, 81, "tcp")
    fates = connect(sandbox, "client", other)
    wrong = [f for f in fates if f.sent_to or f.answered]
    assert not wrong, (
        f"A TCP connection from the client to {other.ip}:{other.port}: {seen(wrong)}. Expected: "
        f"left alone (not DNATed); only port {VIP.port} of {VIP.ip} is {POD}'s.")


@pytest.mark.check("pod-reaches-vip")
def test_pod_reaches_vip(sandbox):
    problem = pod_caller_problem(sandbox, "web-a1", VIP, POD)
    assert problem is None, (
        f"{problem} Expected: answered by {POD}, which sees web-a1's own address: a pod is a "
        "caller of the virtual IP too, and its packets come in by node-a's pod bridge.")
