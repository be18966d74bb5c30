"""Exercise 6 (break-fix): one check per injected fault, each blind to the other three.

The faults: wrong probabilities (spread-even), the outside-caller mark (outside-caller-
masqueraded), DNAT to the wrong port on one endpoint (dnat-to-pod-port) and a too-broad match
in KUBE-SERVICES (only-service-traffic-matched). A check must not fail because of another
fault: the spread is counted per pod address whatever the port, the marking is judged on the
connection's first packet (counters) and on the pods that did answer.

Two checks look past the four faults: every-caller (every caller class, not only the client,
meets what kube-proxy's rules make of it; a fault left in place usually shows there too) and
nothing-else-changed (a rewritten chain keeps the rules the ticket did not concern).
"""

import pytest
from conftest import SERVICE, jumps_into, node_address, shares, unanswering_pods, unmasqueraded

from lab_runner.evidence.probing import Target
from lab_runner.grading.common_checks import every_caller_check, nothing_else_changed_check


test_every_caller = every_caller_check(SERVICE)


@pytest.mark.check("spread-even")
def test_spread_even(sandbox):
    spread = sandbox.address_spread("client", SERVICE)
    assert spread.passed, (
        f"Observed shares of new connections to {SERVICE.ip}:{SERVICE.port} by pod address: "
        f"{shares(spread)}; {spread.detail}. Expected: {len(spread.expected)} equal shares.")


@pytest.mark.check("outside-caller-masqueraded")
def test_outside_caller_masqueraded(sandbox):
    problem = unmasqueraded(sandbox, SERVICE)
    assert problem is None, (
        f"{problem} Expected: a caller from outside the cluster CIDR "
        f"{sandbox.model.cluster_cidr} is marked, so the pod sees the node's address "
        f"{node_address(sandbox)}.")


@pytest.mark.check("dnat-to-pod-port")
def test_dnat_to_pod_port(sandbox):
    missing, account = unanswering_pods(sandbox, SERVICE)
    assert not missing, (
        f"{account}. Never answered: {', '.join(missing)}. Expected: every pod answers on the "
        "port its targetPort names.")


@pytest.mark.check("only-service-traffic-matched")
def test_only_service_traffic_matched(sandbox):
    others = [(Target(SERVICE.ip, 8081, "tcp"), "TCP to another port"),
              (Target(SERVICE.ip, SERVICE.port, "udp"), "UDP to the Service's port")]
    wrongly = [f"{what} ({target})" for target, what in others
               if jumps_into(sandbox.rules_hit("client", target), "KUBE-SVC-")]
    assert not wrongly, (
        f"Sent into the service chain: {', '.join(wrongly)}. Expected: only "
        f"{SERVICE.proto.upper()} to {SERVICE.ip}:{SERVICE.port} matches the Service.")


test_nothing_else_changed = nothing_else_changed_check()
