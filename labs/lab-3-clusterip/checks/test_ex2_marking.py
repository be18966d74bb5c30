"""Exercise 2 (marking): outside callers and hairpin are masqueraded; pod-to-pod keeps its source."""

import pytest
from conftest import SERVICE, seen

from lab_runner.grading.common_checks import (caller_problem, not_to_itself,
                                              nothing_else_changed_check, to_itself)
from lab_runner.grading.outcomes import MASQ_BIT, PREMARK, caller_classes, marks

CALLER = "my-app-7f569f66d9-dfrdh"  # 172.17.0.2, one of the Service's own pods


def _node_address(sandbox) -> str:
    return str(sandbox.model.nodes[0].bridge_address.ip)


@pytest.mark.check("outside-caller-masqueraded")
def test_outside_caller_masqueraded(sandbox):
    problem = caller_problem(sandbox, SERVICE, callers=("node",))
    assert problem is None, problem
    observations = sandbox.connect("client", SERVICE)
    node = _node_address(sandbox)
    assert observations and all(o.answered and o.saw_src == node for o in observations), (
        f"The client ({sandbox.caller_ip('client')}) connected to the Service: {seen(observations)}. "
        f"Expected: the pod sees the node's address {node}, so that its reply goes back through "
        "the node and conntrack can undo the DNAT.")


@pytest.mark.check("pod-caller-keeps-address")
def test_pod_caller_keeps_address(sandbox):
    observations = sandbox.connect(CALLER, SERVICE)
    others = [o for o in observations if o.answered and o.pod != CALLER]
    caller_ip = sandbox.caller_ip(CALLER)
    assert others and all(o.saw_src == caller_ip for o in others), (
        f"{CALLER} ({caller_ip}) connected to the Service: {seen(observations)}. Expected: "
        f"every other pod sees {caller_ip}, the caller's own address; it is inside the cluster "
        "CIDR and needs no masquerading.")
    pods = [p.name for p in sandbox.model.pods]
    problem = caller_problem(sandbox, SERVICE, callers=pods, focus=lambda c, f: f.answered
                             and not_to_itself(c, f))
    assert problem is None, problem


@pytest.mark.check("hairpin-masqueraded")
def test_hairpin_masqueraded(sandbox):
    observations = sandbox.connect(CALLER, SERVICE)
    own = [o for o in observations if o.pod == CALLER]
    node = _node_address(sandbox)
    assert own and all(o.answered and o.saw_src == node for o in own), (
        f"{CALLER} connected to the Service until the Service sent it to itself: "
        f"{seen(observations) if own else seen(observations) + '; it never got an answer from itself'}. "
        f"Expected: when a pod reaches itself it is answered and sees the node's address {node}.")
    problem = caller_problem(sandbox, SERVICE, callers=[p.name for p in sandbox.model.pods],
                             focus=to_itself)
    assert problem is None, problem


@pytest.mark.check("mark-sets-bit")
def test_mark_sets_bit(sandbox):
    hit = sandbox.rules_hit("client", SERVICE)
    assert any(h.chain == "KUBE-MARK-MASQ" and marks(h.rule) for h in hit), (
        "The client's connection to the Service matched no rule of KUBE-MARK-MASQ that sets the "
        f"mark bit {MASQ_BIT:#x} (its counters stayed 0). Expected: KUBE-MARK-MASQ marks it.")
    # The bit ORed in, the others kept and none added: judged on what the mark is as the
    # packets leave (the premarked class's outcome), not on how the rule is written.
    premarked = [c for c in caller_classes(sandbox.model, SERVICE) if c.premark == PREMARK]
    problem = next(filter(None, (sandbox.differs(c) for c in premarked)), None)
    assert problem is None, problem


test_nothing_else_changed = nothing_else_changed_check()
