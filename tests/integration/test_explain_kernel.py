"""`explain`'s shares against a real kernel: lab 3's rules on a live node, 1,000 new flows each.

The node's rules are read back with `iptables-save -c` into a file, as a learner would take them
on their own node, and explained offline; the kernel then spreads 1,000 new connections from a
caller, and the spread over the DNAT rules must fit explain's exact shares (chi-square,
alpha = 1e-6, lab_runner.probes.stats). The masquerading explain predicts is checked on the
counters of the rule it names.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterator

import pytest

from lab_runner.evidence import sampling
from lab_runner.explain.dump import read_file
from lab_runner.explain.packet import Question, explain, marked_by
from lab_runner.explain.services import find_services
from lab_runner.lab import LiveLab
from lab_runner.probes import stats
from lab_runner.ruleset.counters import Snapshot
from lab_runner.ruleset.render import render

pytestmark = pytest.mark.needs_root

FLOWS = 1000
SERVICE = "stateful-apps/my-app:http-svc"


@pytest.fixture(scope="module")
def lab() -> Iterator[LiveLab]:
    with LiveLab.up("lab-3") as live:
        yield live


def node_file(lab: LiveLab, tmp_path) -> str:
    path = tmp_path / "node.rules"
    path.write_text(lab.save())
    return str(path)


def explained_shares(path: str, question: Question) -> dict[str, Fraction]:
    answer = explain(read_file(path), question)
    assert {f.verdict for f in answer.fates} == {"ACCEPT"}, answer.fates
    return answer.dnat_shares()


@pytest.mark.parametrize("source", ["client", "dfrdh"])
def test_kernel_spreads_new_flows_as_explain_says(lab, tmp_path, source):
    path = node_file(lab, tmp_path)
    target = sampling.service_target(lab.model, SERVICE)
    caller = sampling.host_ip(lab, source)
    inbound = "eth0" if source == "client" else lab.model.nodes[0].bridge
    shares = explained_shares(path, Question(target.ip, target.port, target.proto, src=caller,
                                             in_interface=inbound))
    # The summary reads the same shares from the Service's chain without a packet.
    [port] = [p for p in find_services(read_file(path).ruleset) if p.name == SERVICE]
    assert {e.address: e.share for e in port.endpoints} == shares
    assert len(shares) == 4 and sum(shares.values()) == 1

    report = sampling.sample(lab, target, FLOWS, source=source, expected=shares)

    assert report.flows == FLOWS and sum(report.observed.values()) == FLOWS, report.observed
    assert sampling.NO_DNAT not in report.observed, report.observed
    assert report.passed, (f"{FLOWS} flows from {source}: observed {report.observed}, explain "
                           f"said {shares}: {report.result}")
    # Negative control: the same counts refute the classic mistake (every rule at 1/4, so the
    # last endpoint would take 42 %), keyed to the endpoints in rule order.
    wrong = dict(zip(shares, sampling.wrong_alternative(len(shares)).values()))
    assert not stats.gof(report.observed, wrong, alpha=1e-6).passed, report.observed


def test_the_rule_explain_says_marked_the_packet_counted_every_flow(lab, tmp_path):
    target = sampling.service_target(lab.model, SERVICE)
    before = node_file(lab, tmp_path)
    answer = explain(read_file(before), Question(target.ip, target.port, target.proto,
                                                 src=sampling.host_ip(lab, "client")))
    marks = {s.rule.line_no for f in answer.fates for s in marked_by(f)}
    assert len(marks) == 1 and all(f.masquerade for f in answer.fates)
    [line] = marks
    counted = Snapshot.parse(lab.save()).ruleset
    start = next(r for r in read_file(before).ruleset.rules() if r.line_no == line)
    rule = next(r for r in counted.rules() if r.line_no == line)
    assert rule.text == start.text  # the same rule, read back at the same line
    sampling.sample(lab, target, 200, source="client", expected=explained_shares(before, Question(
        target.ip, target.port, target.proto, src=sampling.host_ip(lab, "client"))))
    after = next(r for r in Snapshot.parse(lab.save()).ruleset.rules() if r.line_no == line)
    assert after.counters.packets - rule.counters.packets == 200


def test_the_render_and_the_nodes_read_back_explain_alike(lab, tmp_path):
    rendered = tmp_path / "render.rules"
    rendered.write_text(render(lab.model))
    target = sampling.service_target(lab.model, SERVICE)
    question = Question(target.ip, target.port, target.proto)
    assert explained_shares(str(rendered), question) == \
        explained_shares(node_file(lab, tmp_path), question)
