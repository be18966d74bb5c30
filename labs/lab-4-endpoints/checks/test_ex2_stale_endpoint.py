"""Exercise 2 (a stale endpoint): the sync kube-proxy missed after a scale-in, done by hand."""

import pytest
from conftest import (NO_DNAT, SERVICE, assert_outside_caller_masqueraded, assert_spread_even,
                      nat_chains, spread)

from lab_runner.grading.common_checks import every_caller_check, nothing_else_changed_check

DELETED_POD = "my-app-7f569f66d9-6dkwl"
STALE_ADDRESS = "172.17.0.7:80"  # the deleted pod's endpoint: no pod has 172.17.0.7 any more
STALE_CHAIN = "KUBE-SEP-56377YKM7VKGGV6C"  # kube-proxy's chain for it


@pytest.mark.check("no-connection-lost")
def test_no_connection_lost(sandbox):
    seen = spread(sandbox)
    endpoints = sandbox.endpoints(SERVICE)  # {"ip:port": pod}, the three pods left
    lost = {d: s for d, s in seen.observed.items() if s > 0 and d not in endpoints}
    how = ("new connections sent from the client, counted by the node's DNAT rules"
           if sandbox.mode == "live" else "exact shares from the rule tracer over your rules")
    where = []
    for dest, share in sorted(lost.items()):
        if dest == NO_DNAT:
            what = f"were not DNATed at all and kept {SERVICE.ip}:{SERVICE.port} as their destination"
        elif dest == STALE_ADDRESS:
            what = f"were sent to {dest}, the address of the deleted pod {DELETED_POD}"
        else:
            what = f"were sent to {dest}, where no pod listens"
        where.append(f"{share * 100:.1f} % {what}")
    assert not lost, (
        f"Of the new connections to {SERVICE.ip}:{SERVICE.port} ({how}), "
        + "; ".join(where) + ". No pod answers them. Expected: every new connection goes to "
        f"one of the pods left: {', '.join(sorted(endpoints))}.")


@pytest.mark.check("spread-even")
def test_spread_even(sandbox):
    assert_spread_even(sandbox)


@pytest.mark.check("stale-chain-gone")
def test_stale_chain_gone(sandbox):
    chains = nat_chains(sandbox)
    where = "the node's nat table" if sandbox.mode == "live" else "the nat table after your rules"
    assert STALE_CHAIN not in chains, (
        f"{STALE_CHAIN}, the chain of the deleted pod's endpoint {STALE_ADDRESS}, is still in "
        f"{where}. Expected: a sync deletes the chains of endpoints that are gone (flush it "
        "and delete it, once no rule jumps to it).")


@pytest.mark.check("outside-caller-masqueraded")
def test_outside_caller_masqueraded(sandbox):
    assert_outside_caller_masqueraded(sandbox)


# Every caller (each pod, to itself too, the node, marked packets), not only the client.
test_every_caller = every_caller_check(SERVICE)
test_nothing_else_changed = nothing_else_changed_check()
