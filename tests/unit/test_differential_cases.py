"""Issue 20's differential regression cases, checked without root: each kept variant of a lab's
nat table (fixtures/differential/: labs 2, 3 and 4) is refused by the intake exactly when
iptables-restore refused it, and the tracer predicts what the kernel did from every caller
(exact shares). Also the known gaps outside the tracer (issue 20, items 1 and 6: both mended,
now plain tests).
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from lab_runner import lab_file
from lab_runner.errors import SubmissionError
from lab_runner.evidence.probing import Target
from lab_runner.grading.submission import as_iptables_restore
from tests.strategies.observable import Callers, cases

CASES = cases()
LAB3 = lab_file.load("lab-3")


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_a_kept_variant_is_read_and_traced_as_the_kernel_did(case):
    try:
        ruleset = as_iptables_restore(case.text, f"{case.name}.rules")
    except SubmissionError as exc:
        assert not case.loads, f"iptables-restore loads it, the intake refuses: {exc}"
        return
    assert case.loads, "iptables-restore refuses it, the intake takes it"
    callers = case.callers()
    for caller, expected in case.expect.items():
        assert callers.predicted(ruleset, caller) == expected, caller


def test_every_case_has_its_rules_and_says_what_was_found():
    assert CASES
    for case in CASES:
        assert case.found and case.edits and case.text.startswith("# ")
        assert not case.loads or set(case.expect) == set(case.callers().callers), case.name
    assert {case.lab for case in CASES} >= {"lab-2", "lab-3", "lab-4"}


def test_issue_16s_service_kinds_each_have_a_kept_case():
    """NodePort, externalTrafficPolicy Local with and without a local endpoint, internal
    traffic policy Local and ClientIP affinity over several endpoints: each the target of a
    kept case on the kit's own v1.34 render."""
    kinds = set()
    for case in CASES:
        model = case.model()
        if model.profile == "v1.34":
            kinds |= {_kind(model, service, port, case.target)
                      for service in model.services for port in service.ports}
    assert kinds >= {"nodeport", "etp-local-with-local-endpoint",
                     "etp-local-without-local-endpoint", "itp-local", "affinity"}, kinds


def _kind(model, service, port, target) -> str | None:
    """Which of issue 16's kinds a case's target is of this Service port, or None."""
    node = model.nodes[0]
    pods = [p for p in model.pods if service.selector.items() <= p.labels.items()]
    if port.node_port and target == Target(str(node.ip), port.node_port, "tcp"):
        if service.external_traffic_policy == "Cluster":
            return "nodeport"
        local = "with" if any(p.node == node.name for p in pods) else "without"
        return f"etp-local-{local}-local-endpoint"
    if target != Target(str(service.cluster_ip), port.port, "tcp"):
        return None
    if service.internal_traffic_policy == "Local":
        return "itp-local"
    return "affinity" if service.session_affinity == "ClientIP" and len(pods) > 1 else None


# -- gaps outside the tracer (files another engineer owns now) -----------------------------------

def test_static_sandbox_reports_an_unmasqueraded_hairpin_as_unanswered():
    from lab_runner.grading import exercise
    from lab_runner.grading.sandbox import StaticSandbox
    from lab_runner.grading.submission import from_bytes

    ex = exercise.find("lab-3", "2")
    submission = from_bytes(b"*nat\n:KUBE-MARK-MASQ - [0:0]\nCOMMIT\n", "empty-mark.rules", ex)
    sandbox = StaticSandbox(ex, submission)
    callers = Callers(ex.lab)
    pod = next(p for p in ex.lab.pods if f"{p.ip}:80" in sandbox.endpoints(callers.target))
    hairpins = [o for o in sandbox.connect(pod.name, callers.target)
                if o.dnat == f"{pod.ip}:80"]
    assert hairpins and all(o.probability > 0 for o in hairpins)
    assert not any(o.answered for o in hairpins), hairpins


def test_live_sampler_keys_a_dnat_without_port_as_the_tracer_does():
    from lab_runner.evidence import sampling
    from lab_runner.ruleset.counters import Snapshot
    from lab_runner.ruleset.parse import parse

    rules = ("*nat\n:KUBE-SVC-X - [0:0]\n"
             "[{n}:0] -A PREROUTING -d 10.104.5.205/32 -p tcp -m tcp --dport 8080 -j KUBE-SVC-X\n"
             "[{n}:0] -A KUBE-SVC-X -p tcp -j DNAT --to-destination 172.17.0.2\nCOMMIT\n")
    before, after = (Snapshot.parse(rules.format(n=n)) for n in (0, 5))
    target = sampling.service_target(LAB3, "stateful-apps/my-app:http-svc")
    counted, _ = sampling.dnat_counts(before, after, target.port)
    expected = sampling.expected_distribution(parse(rules.format(n=0)), LAB3, "192.168.49.1",
                                              target)
    assert expected == {"172.17.0.2:8080": Fraction(1)}
    assert set(counted) == set(expected), (counted, expected)
