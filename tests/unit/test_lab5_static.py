"""Lab 5 without root: node port fates in the static sandbox (masquerading to the address of the
way out, answers that go around the graded node), and exercise 2's starting state."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

from lab_runner import lab_file
from lab_runner.grading import exercise as exercises
from lab_runner.grading import node_ports, outcomes, submission
from lab_runner.grading.sandbox import StaticSandbox
from lab_runner.ruleset.compare import normalize
from lab_runner.ruleset.parse import parse
from lab_runner.ruleset.render import render

ROOT = Path(__file__).resolve().parents[2]
ANSWERS = ROOT / "fixtures" / "submissions" / "lab-5"
LAB = ROOT / "labs" / "lab-5-nodeport"


def _sandbox(number: int, path: Path) -> StaticSandbox:
    ex = exercises.find("lab-5", number)
    return StaticSandbox(ex, submission.read(path, ex))


def _client_fates(number: int, path: Path, port: int) -> set[outcomes.Fate]:
    box = _sandbox(number, path)
    return set(node_ports.outcome(box, "client", node_ports.node_port(box, port)).fates)


def test_a_node_port_masquerades_to_the_address_of_the_way_out():
    # web-a1 is behind node-a's bridge, web-b1 is reached over the node network.
    fates = _client_fates(1, LAB / "solutions" / "ex1-node-port.rules", 30080)
    assert fates == {outcomes.Fate(True, "web-a1", "10.244.0.1"),
                     outcomes.Fate(True, "web-b1", "192.168.49.2")}


def test_an_unmasqueraded_pod_on_the_other_node_answers_around_node_a():
    fates = _client_fates(1, ANSWERS / "ex1-no-mark.lose-8.rules", 30080)
    assert fates == {outcomes.Fate(True, "web-a1", "192.168.49.1"), outcomes.NO_ANSWER}


def test_policy_local_preserves_the_source_and_keeps_to_the_node():
    fates = _client_fates(2, LAB / "solutions" / "ex2-local-policy.rules", 30081)
    assert fates == {outcomes.Fate(True, "web-a1", "192.168.49.1")}


def test_a_node_without_a_local_endpoint_drops_and_without_the_rule_refuses():
    for path, how in ((LAB / "solutions" / "ex2-local-policy.rules", "dropped"),
                      (ANSWERS / "ex2-no-drop-rule.lose-2.rules", "refused")):
        box = _sandbox(2, path)
        assert node_ports.refused_or_dropped(box, "client", node_ports.node_port(box, 30082)) == how


def test_exercise_2_starts_from_kube_proxys_rules_for_policy_cluster():
    ex = exercises.find("lab-5", 2)
    services = tuple(replace(s, external_traffic_policy="Cluster") for s in ex.lab.services)
    cluster = render(replace(ex.lab, services=services), ex.lab.profile)
    start, want = (parse(doc, name, check=False) for doc, name in
                   ((ex.start_document, "<start>"), (cluster, "<cluster>")))
    for table in ("nat", "filter"):
        assert set(start.table(table).chains) == set(want.table(table).chains), table
        for chain in want.table(table).chains:
            got = [normalize(r) for r in start.chain(table, chain).rules]
            assert got == [normalize(r) for r in want.chain(table, chain).rules], chain


def test_masquerade_address_takes_the_longest_route():
    model = lab_file.load(LAB / "lab.yaml")
    assert outcomes.masquerade_address(model, "10.244.0.11") == "10.244.0.1"
    assert outcomes.masquerade_address(model, "10.244.1.11") == "192.168.49.2"
    assert not outcomes.answers_around_the_node(model, "10.244.1.11", "10.244.0.11")
    assert outcomes.answers_around_the_node(model, "10.244.1.11", "192.168.49.1")
    assert ipaddress.ip_address("10.244.0.11") in model.nodes[0].bridge_address.network
