"""`explain` of a live nftables node against its kernel: lab 7's `nft list ruleset`, read back into
a file as a learner would take it, explained offline; then 400 new flows from the client (the
burst agent's crafted SYNs, counted by where the node forwards them) must fit explain's exact
shares (chi-square, alpha = 1e-6), and refute the classic 1/n-per-rule mistake."""

from __future__ import annotations

from typing import Iterator

import pytest

from lab_runner.evidence import nft_sampling, sampling
from lab_runner.explain.nft_dump import read_file
from lab_runner.explain.nft_packet import explain
from lab_runner.explain.nft_services import find_services
from lab_runner.explain.packet import Question
from lab_runner.lab import LiveLab
from lab_runner.probes import stats

pytestmark = pytest.mark.needs_root

FLOWS = 400
SERVICE = "stateful-apps/my-app:http-svc"


@pytest.fixture(scope="module")
def lab() -> Iterator[LiveLab]:
    with LiveLab.up("lab-7") as live:
        yield live


def test_kernel_spreads_new_flows_as_explain_of_its_listing_says(lab, tmp_path):
    listed = lab.exec("node", ["nft", "list", "ruleset"], check=True).stdout
    path = tmp_path / "node.nft"
    path.write_text(listed)
    target = sampling.service_target(lab.model, SERVICE)
    caller = sampling.host_ip(lab, "client")
    answer = explain(read_file(path), Question(target.ip, target.port, target.proto, src=caller))
    shares = answer.dnat_shares()
    assert {f.verdict for f in answer.fates} == {"ACCEPT"} and len(shares) == 4
    [port] = [p for p in find_services(read_file(path)) if p.name == SERVICE]
    assert {e.address: e.share for e in port.endpoints} == shares

    counts = nft_sampling.burst(lab, target, FLOWS, set(shares), source="client")

    assert counts.get(sampling.NO_DNAT, 0) == 0 and counts.get(nft_sampling.ELSEWHERE, 0) == 0, \
        counts
    observed = {key: n for key, n in counts.items() if key in shares}
    assert sum(observed.values()) == FLOWS, counts
    result = stats.gof(observed, shares, alpha=1e-6)
    assert result.passed, f"{FLOWS} flows: observed {observed}, explain said {shares}: {result}"
    # Negative control: the same counts refute every rule at 1/4 (the last endpoint at 42 %).
    wrong = dict(zip(shares, sampling.wrong_alternative(len(shares)).values()))
    assert not stats.gof(observed, wrong, alpha=1e-6).passed, observed


def test_the_node_table_and_the_whole_ruleset_explain_alike(lab, tmp_path):
    table, ruleset = tmp_path / "table.nft", tmp_path / "ruleset.nft"
    table.write_text(lab.save())  # `nft list table ip kube-proxy`
    ruleset.write_text(lab.exec("node", ["nft", "list", "ruleset"], check=True).stdout)
    target = sampling.service_target(lab.model, SERVICE)
    question = Question(target.ip, target.port, target.proto)
    assert explain(read_file(table), question).dnat_shares() == \
        explain(read_file(ruleset), question).dnat_shares()
