"""Exercise 1 (matching): the KUBE-SERVICES rule catches the Service's traffic and nothing else."""

import pytest
from conftest import SERVICE, SVC_CHAIN, jumps_into, seen

from lab_runner.evidence.probing import Target
from lab_runner.grading.common_checks import every_caller_check, nothing_else_changed_check


@pytest.mark.check("reaches-service")
def test_reaches_service(sandbox):
    observations = sandbox.connect("client", SERVICE)
    endpoints = set(sandbox.endpoints(SERVICE).values())
    assert observations and all(o.answered and o.pod in endpoints for o in observations), (
        f"A TCP connection from the client to {SERVICE.ip}:{SERVICE.port}: {seen(observations)}. "
        f"Expected: an answer from one of the Service's pods.")


@pytest.mark.check("enters-service-chain")
def test_enters_service_chain(sandbox):
    hit = sandbox.rules_hit("client", SERVICE)
    assert jumps_into(hit, SVC_CHAIN, "KUBE-SERVICES"), (
        f"No rule in KUBE-SERVICES sent the connection to {SERVICE.ip}:{SERVICE.port} into "
        f"{SVC_CHAIN} (its counters did not move). Expected: a KUBE-SERVICES rule that jumps there.")


test_every_caller = every_caller_check(SERVICE)


def _not_sent(sandbox, target: Target, what: str) -> None:
    observations, hit = sandbox.observe("client", target)
    wrongly = [o for o in observations if o.answered]
    assert not jumps_into(hit, "KUBE-SVC-") and not wrongly, (
        f"{what} ({target}) was sent into the service chain"
        + (f" and {seen(wrongly)}" if wrongly else "")
        + ". Expected: it matches no service rule; the Service only has "
        f"{SERVICE.port}/{SERVICE.proto.upper()} at {SERVICE.ip}.")


@pytest.mark.check("other-port-not-matched")
def test_other_port_not_matched(sandbox):
    _not_sent(sandbox, Target(SERVICE.ip, 8081, "tcp"), "TCP to another port")


@pytest.mark.check("udp-not-matched")
def test_udp_not_matched(sandbox):
    _not_sent(sandbox, Target(SERVICE.ip, SERVICE.port, "udp"), "UDP to the Service's port")


@pytest.mark.check("other-address-not-matched")
def test_other_address_not_matched(sandbox):
    _not_sent(sandbox, Target("10.104.5.206", SERVICE.port, "tcp"), "TCP to another address")


test_nothing_else_changed = nothing_else_changed_check()
