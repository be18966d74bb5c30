"""Exercise 5 (capstone): the whole chain set of a new Service, written from kubectl's views.

The Service under test is the lab's only one (shop/cart in the exercise's lab file); every
address, port and pod comes from sandbox.model, never from the answer.
"""

import pytest
from conftest import jumps_into, node_address, shares, unanswering_pods, unmasqueraded

from lab_runner.endpoints import selects
from lab_runner.evidence.probing import Target
from lab_runner.grading.common_checks import (caller_problem, every_caller_check, not_to_itself,
                                              nothing_else_changed_check, to_itself)
from lab_runner.ruleset import names, semantics
from lab_runner.ruleset.compare import compare


def _service(sandbox):
    svc = sandbox.model.services[0]
    return svc, svc.ports[0]


def _target(sandbox) -> Target:
    svc, port = _service(sandbox)
    return Target(str(svc.cluster_ip), port.port, port.protocol.lower())


test_every_caller = every_caller_check(_target, focus=not_to_itself)


@pytest.mark.check("hairpin-masqueraded")
def test_hairpin_masqueraded(sandbox):
    problem = caller_problem(sandbox, _target(sandbox), focus=to_itself,
                             callers=[p.name for p in sandbox.model.pods])
    assert problem is None, problem


@pytest.fixture(scope="module")
def spread(sandbox):
    """One measurement of where new connections go (by pod address), shared by two checks."""
    return sandbox.address_spread("client", _target(sandbox))


@pytest.mark.check("matching")
def test_matching(sandbox):
    target = _target(sandbox)
    hit = sandbox.rules_hit("client", target)
    assert jumps_into(hit, "KUBE-SVC-", "KUBE-SERVICES"), (
        f"A TCP connection from the client to {target.ip}:{target.port} was not sent from "
        "KUBE-SERVICES into any KUBE-SVC chain (no such rule's counter moved). Expected: a "
        "KUBE-SERVICES rule that matches the Service's protocol, address and port.")
    others = [(Target(target.ip, target.port + 1, target.proto), "another port"),
              (Target(target.ip, target.port, "udp" if target.proto == "tcp" else "tcp"),
               "another protocol")]
    wrongly = [f"{what} ({other})" for other, what in others
               if jumps_into(sandbox.rules_hit("client", other), "KUBE-SVC-")]
    assert not wrongly, (
        f"Traffic the Service does not have was sent into a service chain: {', '.join(wrongly)}. "
        f"Expected: only {target.proto.upper()} to {target.ip}:{target.port} matches.")


@pytest.mark.check("outside-caller-masqueraded")
def test_outside_caller_masqueraded(sandbox):
    problem = unmasqueraded(sandbox, _target(sandbox))
    assert problem is None, (
        f"{problem} Expected: the service chain marks callers from outside the cluster CIDR "
        f"{sandbox.model.cluster_cidr}, so the pod sees the node's address "
        f"{node_address(sandbox)}.")


@pytest.mark.check("each-ready-pod-answers")
def test_each_ready_pod_answers(sandbox):
    missing, account = unanswering_pods(sandbox, _target(sandbox))
    assert not missing, (
        f"{account}. Never answered on its own address and port: {', '.join(missing)}. "
        "Expected: every ready pod answers, on the port its targetPort name stands for.")


@pytest.mark.check("not-ready-pod-gets-nothing")
def test_not_ready_pod_gets_nothing(sandbox, spread):
    svc, _ = _service(sandbox)
    not_ready = {str(p.ip): p.name for p in sandbox.model.pods if selects(svc, p) and not p.ready}
    got = {ip: share for ip, share in spread.observed.items() if ip in not_ready and share > 0}
    assert not got, (
        "New connections went to a pod that is not ready: "
        + ", ".join(f"{not_ready[ip]} ({ip}) {share * 100:.1f} %" for ip, share in got.items())
        + ". Expected: none; a pod whose readiness probe fails is no endpoint, so kube-proxy "
        "writes no rule for it.")


@pytest.mark.check("spread-even")
def test_spread_even(sandbox, spread):
    count = len([k for k in spread.expected if spread.expected[k] > 0])
    assert spread.passed, (
        f"Observed shares of new connections by pod address: {shares(spread)}; {spread.detail}. "
        f"Expected: the {count} ready pods get one share each, as evenly as kube-proxy's "
        "probabilities make it.")


@pytest.mark.check("kube-proxy-chain-names")
def test_kube_proxy_chain_names(sandbox):
    svc, _ = _service(sandbox)
    reference, got = sandbox.reference, sandbox.submission.ruleset
    ours = {c for c in reference.table("nat").chains if names.is_per_service_chain(c)}
    theirs = {c for c in got.table("nat").chains if names.is_per_service_chain(c)}
    comparison = compare(reference, got, chains=ours | theirs, tables=["nat"], comments=False)
    missing = [d.chain for d in comparison.differences if d.kind == "missing chain"]
    extra = sorted(d.chain for d in comparison.differences if d.kind == "extra chain")
    mistakes = [(c, _dnat_mistake(got.chain("nat", c), reference.chain("nat", c)))
                for c in sorted(ours & theirs) if c.startswith(names.ENDPOINT_PREFIX)]
    service = f"{svc.namespace}/{svc.name}"
    problems = []
    if extra:
        problems.append(f"{', '.join(extra)}: not a name kube-proxy gives to the service chain "
                        f"of {service} or to the chain of any of its endpoints")
    if missing:
        kinds = sorted({c.rsplit("-", 1)[0] for c in missing})
        problems.append(f"{len(missing)} of the {len(ours)} chains kube-proxy makes for "
                        f"{service} are not in your rules ({', '.join(k + '-…' for k in kinds)})")
    problems += [f"{chain}: a name of one endpoint's chain, but it {mistake}"
                 for chain, mistake in mistakes if mistake]
    assert not problems, (
        "; ".join(problems) + ". Expected: the names kube-proxy derives from the service port's "
        "name and protocol (and, for a KUBE-SEP chain, the endpoint's ip:port), one KUBE-SEP "
        "chain per ready endpoint.")


def _dnat_mistake(got, want) -> str | None:
    """What is wrong with where a KUBE-SEP chain DNATs, in the student's words (a DNAT without a
    port or to another port is named as such, not as another endpoint); None when nothing is."""
    theirs, ours = _destinations(got), _destinations(want)
    if theirs == ours:
        return None
    if len(theirs) != 1 or len(ours) != 1:
        return ("DNATs to " + (", ".join(_endpoint(d) for d in sorted(theirs, key=str))
                               or "nowhere") + ", where its endpoint's chain DNATs to one address")
    return semantics.dnat_mistake(next(iter(theirs)), next(iter(ours)))


def _destinations(chain) -> set[tuple[str, int | None]]:
    out = set()
    for rule in chain.rules:
        if rule.target == "DNAT":
            try:
                out.add(semantics.dnat_destination(rule))
            except semantics.UnsupportedRule:
                out.add((" ".join(rule.target_args), None))
    return out


def _endpoint(where: tuple[str, int | None]) -> str:
    return where[0] if where[1] is None else f"{where[0]}:{where[1]}"


test_nothing_else_changed = nothing_else_changed_check()
