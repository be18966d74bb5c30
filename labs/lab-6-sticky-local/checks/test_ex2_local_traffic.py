"""Exercise 2 (internalTrafficPolicy: Local): web's chains on node-a, written by hand."""

import pytest
from conftest import WEB, share

from lab_runner.grading.common_checks import caller_problem, nothing_else_changed_check

GRADED_NODE = "node-a"  # the sandbox's node: callers there meet its rules


def _local_pods(sandbox) -> set[str]:
    return {p.name for p in sandbox.model.pods if p.node == GRADED_NODE}


def _callers(sandbox) -> list[str]:
    """The client (it comes in through node-a), node-a's pods and node-a itself."""
    return ["client", *sorted(_local_pods(sandbox)), "node"]


@pytest.mark.check("local-only")
def test_local_only(sandbox):
    local = _local_pods(sandbox)
    remote = {}
    for caller in ("client", "shop-a"):
        for o in sandbox.connect(caller, WEB):
            if o.answered and o.pod not in local:
                remote.setdefault(caller, set()).add(f"{o.pod} ({o.dnat})")
    assert not remote, (
        "; ".join(f"{caller}'s connections reached {', '.join(sorted(pods))}"
                  for caller, pods in sorted(remote.items()))
        + f". Expected: with internalTrafficPolicy: Local, connections that enter {GRADED_NODE} "
        f"go only to the web pods on {GRADED_NODE} ("
        + ", ".join(sorted(p for p in local if p in sandbox.endpoints(WEB).values()))
        + "); the KUBE-SVL chain has no rule for a pod on another node.")


@pytest.mark.check("spread-even")
def test_spread_even(sandbox):
    seen = sandbox.spread("client", WEB)
    got = ", ".join(f"{k} {share(v)}" for k, v in sorted(seen.observed.items()))
    want = ", ".join(f"{k} {share(v)}" for k, v in sorted(seen.expected.items()))
    assert seen.passed, (f"The client's new connections went to: {got} ({seen.detail}). "
                         f"Expected: {want}: an even random choice between the local pods.")


@pytest.mark.check("every-caller")
def test_every_caller(sandbox):
    problem = caller_problem(sandbox, WEB, callers=_callers(sandbox))
    assert problem is None, problem


test_nothing_else_changed = nothing_else_changed_check()
