"""Exercise 4 (DNAT): each KUBE-SEP chain sends the connection to its own pod's port."""

import pytest
from conftest import SERVICE, seen

from lab_runner.grading.common_checks import every_caller_check, nothing_else_changed_check

test_every_caller = every_caller_check(SERVICE)


@pytest.mark.check("pod-sees-its-own-port")
def test_pod_sees_its_own_port(sandbox):
    observations = sandbox.connect("client", SERVICE)
    addresses = sandbox.endpoints(SERVICE)  # {"ip:port": pod}
    wrong = [o for o in observations if not (o.answered and addresses.get(o.dnat or "") == o.pod)]
    assert observations and not wrong, (
        f"Connections to {SERVICE.ip}:{SERVICE.port}: {seen(observations)}"
        + "".join(f"; one went to {o.dnat or 'no DNAT at all'}" for o in wrong if not o.answered)
        + f". Expected: each arrives at a pod's own address and port, one of: "
        f"{', '.join(sorted(addresses))}.")


@pytest.mark.check("reply-from-cluster-ip")
def test_reply_from_cluster_ip(sandbox):
    replies = sandbox.reply_sources("client", SERVICE)
    want = f"{SERVICE.ip}:{SERVICE.port}"
    assert replies and all(r == want for r in replies), (
        f"The client's SYN to {want} was answered by: {', '.join(r or 'nothing' for r in replies)}. "
        f"Expected: a SYN-ACK from {want} (conntrack undoes the DNAT on the reply).")


@pytest.mark.check("every-endpoint-reached")
def test_every_endpoint_reached(sandbox):
    observations = sandbox.connect("client", SERVICE)
    wanted = set(sandbox.endpoints(SERVICE).values())
    reached = {o.pod for o in observations if o.answered}
    assert wanted <= reached, (
        f"Connections to the Service: {seen(observations)}. Never reached: "
        f"{', '.join(sorted(wanted - reached))}. Expected: all {len(wanted)} pods answer.")
    got = sandbox.endpoint_chains("client", SERVICE)
    want = sandbox.reference_endpoint_chains("client", SERVICE)
    pods = sandbox.endpoints(SERVICE)
    wrong = sorted(chain for chain in want if got.get(chain, want[chain]) != want[chain])
    assert not wrong, "; ".join(
        f"{chain} sent its connections to " + ", ".join(f"{d} ({pods.get(d, 'no pod')})"
                                                        for d in sorted(got[chain]))
        for chain in wrong) + (". Expected: each KUBE-SEP chain sends to the endpoint it belongs "
                               "to (the one its hairpin rule names).")


test_nothing_else_changed = nothing_else_changed_check()
