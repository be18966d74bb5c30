"""Exercise 3 (random selection): every endpoint gets its even share of new connections."""

import pytest
from conftest import seen, shares

from lab_runner.evidence.probing import Target
from lab_runner.grading.common_checks import every_caller_check, nothing_else_changed_check
from lab_runner.ruleset import names


def _service(sandbox) -> Target:
    svc = sandbox.model.services[0]
    port = svc.ports[0]
    return Target(str(svc.cluster_ip), port.port, port.protocol.lower())


test_every_caller = every_caller_check(_service)


@pytest.mark.check("every-endpoint-reached")
def test_every_endpoint_reached(sandbox):
    target = _service(sandbox)
    observations = sandbox.connect("client", target)
    wanted = set(sandbox.endpoints(target).values())
    reached = {o.pod for o in observations if o.answered}
    assert wanted <= reached, (
        f"Connections to {target.ip}:{target.port}: {seen(observations)}. Never reached: "
        f"{', '.join(sorted(wanted - reached))}. Expected: every pod of the Service gets some.")


@pytest.mark.check("spread-even")
def test_spread_even(sandbox):
    spread = sandbox.spread("client", _service(sandbox))
    assert spread.passed, (f"Observed shares of new connections: {shares(spread)}; "
                           f"{spread.detail}. Expected: every pod gets an equal share.")


@pytest.mark.check("one-rule-per-endpoint")
def test_one_rule_per_endpoint(sandbox):
    # The node's rules as the kit's parser reads them (live: read back from the node).
    nat = sandbox.rules_now().table("nat")
    chain = _service_chain(sandbox)
    assert chain in nat.chains, (
        f"There is no chain {chain}, the Service's own (kube-proxy's name for "
        f"{_port_name(sandbox)}). Expected: it jumps to each KUBE-SEP chain once.")
    seps = sorted(name for name in nat.chains if name.startswith("KUBE-SEP-"))
    jumps = [r.target for r in nat.chains[chain].rules if (r.target or "").startswith("KUBE-SEP-")]
    assert sorted(jumps) == seps, (
        f"{chain} jumps to: {', '.join(jumps) or 'no KUBE-SEP chain'}. Expected: exactly one "
        f"rule into each of the {len(seps)} KUBE-SEP chains.")


def _port_name(sandbox) -> str:
    svc = sandbox.model.services[0]
    return svc.port_name(svc.ports[0])


def _service_chain(sandbox) -> str:
    """The Service's own KUBE-SVC chain, by kube-proxy's name (not any KUBE-SVC-* a student
    made)."""
    svc = sandbox.model.services[0]
    return names.service_chain(_port_name(sandbox), svc.ports[0].protocol.lower())


test_nothing_else_changed = nothing_else_changed_check()
