"""Exercise 3 (random selection): every endpoint gets its even share of new connections."""

import pytest
from conftest import seen

from lab_runner.evidence.probing import Target


def _service(sandbox) -> Target:
    svc = sandbox.model.services[0]
    port = svc.ports[0]
    return Target(str(svc.cluster_ip), port.port, port.protocol.lower())


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
    shares = ", ".join(f"{k} {v * 100:.1f} %" for k, v in sorted(spread.observed.items()))
    expected = ", ".join(f"{k} {v * 100:.1f} %" for k, v in sorted(spread.expected.items()))
    assert spread.passed, (f"Observed shares: {shares} ({spread.detail}). Expected: {expected}.")


@pytest.mark.check("one-rule-per-endpoint")
def test_one_rule_per_endpoint(sandbox):
    # The node's own rules: read live with testinfra, or from the submission in static mode.
    rules = sandbox.node_rules("nat")
    chains = [line.split()[1] for line in rules if line.startswith("-N ")]
    chain = next(name for name in chains if name.startswith("KUBE-SVC-"))
    seps = sorted(name for name in chains if name.startswith("KUBE-SEP-"))
    jumps = [line.split(" -j ", 1)[1].split()[0] for line in rules
             if line.startswith(f"-A {chain} ") and " -j KUBE-SEP-" in line]
    assert sorted(jumps) == seps, (
        f"{chain} jumps to: {', '.join(jumps) or 'no KUBE-SEP chain'}. Expected: exactly one "
        f"rule into each of the {len(seps)} KUBE-SEP chains.")
