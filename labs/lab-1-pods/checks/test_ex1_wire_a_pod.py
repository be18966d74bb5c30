"""Exercise 1 (wiring): the new pod, wired by hand, is reachable from the node, a pod and outside."""

import pytest
from conftest import CLIENT, NODE, OTHER_POD, failures, reaches


@pytest.mark.check("node-reaches-pod")
def test_node_reaches_pod(sandbox):
    reaches(sandbox, NODE, f"{NODE} (from its bridge address 10.244.0.1)")


@pytest.mark.check("pod-reaches-pod")
def test_pod_reaches_pod(sandbox):
    reaches(sandbox, OTHER_POD, f"The pod {OTHER_POD} (10.244.0.2)")


@pytest.mark.check("client-reaches-pod")
def test_client_reaches_pod(sandbox):
    reaches(sandbox, CLIENT, "The client 192.168.49.1, outside the pod subnet,")


@pytest.mark.check("interface-named-eth0")
def test_interface_named_eth0(sandbox):
    name, why = sandbox.pod_interface()
    assert name == "eth0", (
        (f"The pod's end of the veth pair is named {name}." if name else f"{why}.")
        + f" Expected: eth0, the name kubelet gives the CNI plugin.{failures(sandbox) if not name else ''}")
