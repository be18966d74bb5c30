"""Exercise 1 (scale out): the chain set for six endpoints, written by hand as a sync would."""

import pytest
from conftest import (SERVICE, assert_outside_caller_masqueraded, assert_spread_even, flows,
                      sep_chain)

from lab_runner.grading.common_checks import every_caller_check, nothing_else_changed_check

# The endpoints the starting state (four pods) does not have yet.
OLD_ENDPOINTS = {"172.17.0.2:80", "172.17.0.5:80", "172.17.0.6:80", "172.17.0.7:80"}


def _new_endpoints(sandbox) -> dict[str, str]:
    return {a: p for a, p in sandbox.endpoints(SERVICE).items() if a not in OLD_ENDPOINTS}


@pytest.mark.check("every-endpoint-reached")
def test_every_endpoint_reached(sandbox):
    seen = flows(sandbox)
    endpoints = sandbox.endpoints(SERVICE)  # {"ip:port": pod}
    never = sorted(f"{pod} ({address})" for address, pod in endpoints.items()
                   if seen.to(address) <= 0)
    assert not never, (
        f"New connections to {SERVICE.ip}:{SERVICE.port} went to: {seen.describe()} "
        f"({seen.how}). Never reached: {', '.join(never)}. Expected: each of the "
        f"{len(endpoints)} pods gets some of them.")


@pytest.mark.check("spread-even")
def test_spread_even(sandbox):
    assert_spread_even(sandbox)


@pytest.mark.check("new-chains-dnat")
def test_new_chains_dnat(sandbox):
    seen = flows(sandbox)
    problems = []
    for address, pod in sorted(_new_endpoints(sandbox).items()):
        chain = sep_chain(address)
        used = seen.chains_to(address)
        if seen.to(address) <= 0:
            problems.append(f"no connection reached {pod} ({address})")
        elif used != {chain}:
            problems.append(f"connections to {pod} ({address}) were DNATed by "
                            f"{', '.join(sorted(used))}, not by its own chain {chain}")
        into = {d for (c, d), s in seen.shares.items() if c == chain and s > 0}
        if into - {address}:
            problems.append(f"{chain} sends connections to {', '.join(sorted(into - {address}))}, "
                            f"not to {address}")
    assert not problems, (
        "; ".join(problems) + f" ({seen.how}). Expected: each new pod has its own KUBE-SEP "
        "chain, named by kube-proxy's hash of its endpoint, which the service chain uses and "
        "which DNATs to that pod's address and port.")


@pytest.mark.check("outside-caller-masqueraded")
def test_outside_caller_masqueraded(sandbox):
    assert_outside_caller_masqueraded(sandbox)


# Every caller (each pod, to itself too, the node, marked packets), not only the client.
test_every_caller = every_caller_check(SERVICE)
test_nothing_else_changed = nothing_else_changed_check()
