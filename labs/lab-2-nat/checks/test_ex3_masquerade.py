"""Exercise 3 (masquerade): web-b1 on node-b behind 10.96.0.200:80, answers back through node-a."""

import pytest
from conftest import (ENTRY, VIP, connect, marks_kept, masqueraded, not_answered_by,
                      not_reaching, seen)

from lab_runner.evidence.probing import Target

POD = "web-b1"
POD_TARGET = Target("10.244.1.11", 8080, "tcp")
CALLER_POD = "web-a1"
OTHER_BIT = 0x2  # a bit some other component set before node-a's nat rules


def _node_a(sandbox) -> set[str]:
    node = sandbox.model.node(ENTRY)
    return {str(node.ip), str(node.bridge_address.ip)}


@pytest.mark.check("reaches-pod")
def test_reaches_pod(sandbox):
    problem = not_reaching(sandbox, "client", VIP, POD)
    assert problem is None, f"{problem} Expected: answered by {POD}."


@pytest.mark.check("reply-from-vip")
def test_reply_from_vip(sandbox):
    problem = not_answered_by(sandbox, "client", VIP)
    assert problem is None, (
        f"{problem} Expected: a SYN-ACK from {VIP.ip}:{VIP.port}. An answer from the pod's own "
        f"address means it went around {ENTRY}, whose conntrack alone can undo the DNAT.")


@pytest.mark.check("client-masqueraded")
def test_client_masqueraded(sandbox):
    fates = connect(sandbox, "client", VIP)
    mine = _node_a(sandbox)
    assert fates and all(f.answered and f.saw_src in mine for f in fates), (
        f"The client ({sandbox.caller_ip('client')}) connected to {VIP.ip}:{VIP.port}: "
        f"{seen(fates)}. Expected: {POD} sees an address of {ENTRY} "
        f"({' or '.join(sorted(mine))}), so that it answers {ENTRY}.")


@pytest.mark.check("pod-caller-keeps-address")
def test_pod_caller_keeps_address(sandbox):
    fates = connect(sandbox, CALLER_POD, VIP)
    own = sandbox.caller_ip(CALLER_POD)
    assert fates and all(f.answered and f.pod == POD and f.saw_src == own for f in fates), (
        f"{CALLER_POD} ({own}) connected to {VIP.ip}:{VIP.port}: {seen(fates)}. Expected: "
        f"{POD} answers and sees {own}: a pod's address is routed back through {ENTRY} anyway, "
        "and the pod should know who called it.")


@pytest.mark.check("direct-not-masqueraded")
def test_direct_not_masqueraded(sandbox):
    rules = masqueraded(sandbox, "client", POD_TARGET)
    client = sandbox.caller_ip("client")
    used = sorted({r for r in rules if r})
    assert rules and not used, (
        f"A connection from the client ({client}) straight to {POD_TARGET.ip}:{POD_TARGET.port} "
        f"(no virtual IP) was masqueraded on {ENTRY} by: {'; '.join(used)}. Expected: it leaves "
        f"with its own source {client}: only connections to the virtual IP need masquerading.")


@pytest.mark.check("mark-keeps-other-bits")
def test_mark_keeps_other_bits(sandbox):
    kept = marks_kept(sandbox, "client", VIP, OTHER_BIT)
    assert kept == {True}, (
        f"A connection from the client to {VIP.ip}:{VIP.port} whose packets already carried the "
        f"mark {OTHER_BIT:#x} left {ENTRY}'s rules without it"
        + (" (some of them)" if True in kept else "") + ". Expected: your mark sets its own bit "
        "and keeps the others, which other rules on the node may use.")
