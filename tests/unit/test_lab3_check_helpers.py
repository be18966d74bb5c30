"""Lab 3's check helpers on rulesets and outcomes made here (no sandbox, no root): what they
read must be the parsed rule and the Service's own chain, never raw text or the first match."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab_runner.grading import exercise as exercises
from lab_runner.grading.sandbox import Hit, Observation
from lab_runner.ruleset.parse import parse

CHECKS = Path(__file__).resolve().parents[2] / "labs" / "lab-3-clusterip" / "checks"
SVC = "KUBE-SVC-Q7IJ732UBZY4AJKA"
SEPS = ["KUBE-SEP-TWZJG7ZWZYI5EC7J", "KUBE-SEP-LCP7KINQA756A5JS"]


@pytest.fixture
def checks():
    """Lab 3's conftest and exercise 3's check module, imported as grading imports them."""
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n == "conftest" or n.startswith("test_ex")}
    sys.path.insert(0, str(CHECKS))
    try:
        yield SimpleNamespace(conftest=importlib.import_module("conftest"),
                              ex3=importlib.import_module("test_ex3_random_selection"))
    finally:
        sys.path.remove(str(CHECKS))
        for name in [n for n in sys.modules if n == "conftest" or n.startswith("test_ex")]:
            del sys.modules[name]
        sys.modules.update(saved)


def _sandbox(document: str, **more):
    ex = exercises.find("lab-3", "3")
    return SimpleNamespace(model=ex.lab, rules_now=lambda: parse(document, "<test>"), **more)


def _nat(chains: list[str], rules: list[str]) -> str:
    return "*nat\n" + "".join(f":{c} - [0:0]\n" for c in chains) + "".join(
        r + "\n" for r in rules) + "COMMIT\n"


def test_one_rule_per_endpoint_reads_the_services_own_chain_not_a_students_extra_one(checks):
    document = _nat(["KUBE-SVC-AAAAAAAAAAAAAAAA", SVC, *SEPS],
                    [f"-A {SVC} -m statistic --mode random --probability 0.5 -j {SEPS[0]}",
                     f"-A {SVC} -j {SEPS[1]}"])
    checks.ex3.test_one_rule_per_endpoint(_sandbox(document))


def test_one_rule_per_endpoint_without_the_service_chain_says_so(checks):
    with pytest.raises(AssertionError) as failed:
        checks.ex3.test_one_rule_per_endpoint(_sandbox(_nat(SEPS, [])))
    assert f"There is no chain {SVC}" in str(failed.value)


def _hit(rule: str) -> Hit:
    chain = rule.split()[1]
    return Hit.of(parse(_nat([chain], [rule]), "<test>").chain("nat", chain).rules[0])


@pytest.mark.parametrize("rule", [
    f"-A {SVC} -j MARK --or-mark 0x4000",
    f"--append {SVC} --jump MARK --set-xmark 0x4000/0x4000",
    f"-A {SVC} -j MARK --set-xmark 16384/16384",
])
def test_unmasqueraded_reads_a_mark_however_it_is_spelled(checks, rule):
    node = "172.17.0.1"
    answered = [Observation(True, "my-app-7f569f66d9-dfrdh", "172.17.0.2:80", node, True)]
    sandbox = _sandbox("", observe=lambda *_: (answered, {_hit(rule)}),
                       caller_ip=lambda _: "192.168.49.1")
    assert checks.conftest.unmasqueraded(sandbox, checks.conftest.SERVICE) is None


def test_unmasqueraded_wants_an_answer(checks):
    nobody = [Observation(False, None, None, None, None, detail="timeout")]
    sandbox = _sandbox("", observe=lambda *_: (nobody, {_hit(f"-A {SVC} -j MARK --or-mark 0x4000")}),
                       caller_ip=lambda _: "192.168.49.1")
    problem = checks.conftest.unmasqueraded(sandbox, checks.conftest.SERVICE)
    assert problem and "No pod answered the client's connection to 10.104.5.205:8080" in problem


def test_a_postrouting_unmark_is_not_a_marking_rule(checks):
    answered = [Observation(True, "my-app-7f569f66d9-dfrdh", "172.17.0.2:80", "172.17.0.1", True)]
    sandbox = _sandbox("", observe=lambda *_: (answered, {
        _hit("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000")}), caller_ip=lambda _: "192.168.49.1")
    assert "no rule sent it to KUBE-MARK-MASQ" in checks.conftest.unmasqueraded(
        sandbox, checks.conftest.SERVICE)


def test_the_capstone_names_a_dnat_without_port_as_such():
    from lab_runner.grading.grade import grade

    path = (Path(__file__).resolve().parents[2] / "fixtures" / "submissions" / "lab-3"
            / "ex5-dnat-without-port.lose-11.rules")
    names = next(c for c in grade("lab-3", "5", path, "static").checks
                 if c.id == "kube-proxy-chain-names")
    assert "without a port" in names.output and "another endpoint" not in names.output, names.output
