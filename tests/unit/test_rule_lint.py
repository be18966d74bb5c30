"""rule_lint: duplicate rules and rules no packet reaches, proven from the ruleset alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab_runner.grading import exercise as exercises
from lab_runner.grading.rule_lint import lint
from lab_runner.ruleset.parse import parse

ROOT = Path(__file__).resolve().parents[2]
HEAD = ("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n"
        ":KUBE-MARK-MASQ - [0:0]\n:SVC - [0:0]\n:SEP - [0:0]\n:OTHER - [0:0]\n"
        "-A PREROUTING -j KUBE-SERVICES\n")  # lines 1-9


def found(rules: str) -> list[tuple[int, str]]:
    return [(f.rule.line_no, f.text) for f in lint(parse(HEAD + rules + "COMMIT\n"))]


def applied(lab: str, number: str, path: Path):
    """A submission on its exercise's starting state, and its own rules."""
    ex = exercises.find(lab, number)
    base = parse(ex.start_document, "<start>")
    ruleset = parse(path.read_text(), path.name, base=base)
    kept = {id(rule) for rule in base.rules()}
    return ruleset, [rule for rule in ruleset.rules() if id(rule) not in kept]


def test_a_rule_after_the_last_endpoint_rule_is_dead():
    # SEP's DNAT needs -p tcp, but only TCP enters SEP (via SVC, from the -p tcp rule), so
    # every packet leaves SVC at line 12 whichever the endpoint.
    assert found("-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j SVC\n"
                 "-A SVC -m statistic --mode random --probability 0.5 -j SEP\n"
                 "-A SVC -j SEP\n"
                 "-A SVC -j RETURN\n"
                 "-A SEP -p tcp -m tcp -j DNAT --to-destination 172.17.0.2:80\n") == [
        (13, "never reached: after line 12, which every packet leaves the chain by")]


def test_the_same_rule_twice_is_a_duplicate_whatever_its_comment_and_option_order():
    assert found("-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j SVC\n"
                 "-A KUBE-SERVICES -m comment --comment again -m tcp -p tcp --dport 80 "
                 "-d 10.96.0.1 -j SVC\n") == [(11, "duplicate of line 10")]


@pytest.mark.parametrize("rules", [
    # a jump to a chain that returns: packets come back to the next rule
    "-A KUBE-SERVICES -j KUBE-MARK-MASQ\n-A KUBE-SERVICES -j SVC\n-A SVC -j ACCEPT\n"
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n",
    # SVC returns some packets (line 12) before its unconditional verdict
    "-A KUBE-SERVICES -j SVC\n-A KUBE-SERVICES -j ACCEPT\n-A SVC -p udp -j RETURN\n"
    "-A SVC -j DROP\n",
    # -p tcp is a condition where UDP enters too
    "-A KUBE-SERVICES -p tcp -j SEP\n-A KUBE-SERVICES -p udp -j SEP\n-A KUBE-SERVICES -j DROP\n"
    "-A SEP -p tcp -j DNAT --to-destination 172.17.0.2:80\n-A SEP -j ACCEPT\n",
], ids=["jump-to-a-returning-chain", "chain-returns-some", "protocol-is-a-condition"])
def test_rules_some_packet_reaches_are_not_marked(rules):
    assert found(rules) == []


def test_a_goto_and_a_chain_nothing_reaches():
    assert found("-A KUBE-SERVICES -g SVC\n-A KUBE-SERVICES -j OTHER\n-A SVC -j ACCEPT\n"
                 "-A OTHER -j ACCEPT\n") == [
        (11, "never reached: after line 10, which every packet leaves the chain by"),
        (13, "never reached: only rules no packet reaches jump to OTHER")]


@pytest.mark.parametrize("path", sorted(ROOT.glob("labs/lab-[234]-*/solutions/*.rules")),
                         ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_reference_answers_have_no_findings(path):
    lab = path.parent.parent.name[:5]
    ruleset, own = applied(lab, path.stem.split("-")[0].removeprefix("ex"), path)
    assert lint(ruleset, own) == []


def test_kube_proxy_documents_have_no_findings_but_an_unused_chain():
    for path in sorted(ROOT.glob("fixtures/golden/*.rules")):
        findings = lint(parse(path.read_text(), path.name))
        # kube-proxy writes KUBE-MARK-MASQ even when no Service jumps to it
        assert [f.text for f in findings] in (
            [], ["never reached: nothing jumps to KUBE-MARK-MASQ"]), path.name


def test_kube_proxy_restore_documents_without_built_in_jumps_are_not_all_unreached():
    """kube-proxy's own iptables-restore input leaves PREROUTING's jump to KUBE-SERVICES out."""
    paths = sorted(ROOT.glob("fixtures/golden/kube-proxy/*.expected"))
    assert paths
    for path in paths:
        assert lint(parse(path.read_text(), path.name, check=False)) == [], path.name


def test_a_submission_rule_that_makes_a_starting_rule_dead_is_reported_with_it():
    path = ROOT / "fixtures/submissions/lab-3/ex4-one-dnat-before-hairpin.lose-2.rules"
    ruleset, own = applied("lab-3", "4", path)
    [finding] = lint(ruleset, own)
    assert finding.rule not in own and finding.cause in own
    assert finding.rule.target == "KUBE-MARK-MASQ" and finding.cause.target == "DNAT"


def test_the_fixture_written_as_a_duplicate_is_a_dead_copy():
    path = ROOT / "fixtures/submissions/lab-3/ex3-duplicate-rule.lose-1.rules"
    ruleset, own = applied("lab-3", "3", path)
    assert [(f.kind, f.rule.line_no, f.text) for f in lint(ruleset, own)] == [
        ("dead", 8, "never reached: after line 7, which every packet leaves the chain by")]
