"""Several nodes: pod subnets routed between nodes, the chain set on every node, a Service across both."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab_runner.evidence.probing import Target, probe
from lab_runner.lab import LiveLab

LAB = Path(__file__).resolve().parents[2] / "fixtures" / "labs" / "two-nodes.yaml"
SERVICE = Target("10.96.0.50", 80, "tcp")


@pytest.fixture(scope="module")
def two_nodes():
    with LiveLab.up(LAB) as lab:
        yield lab


def test_every_node_has_the_chain_set(two_nodes):
    for node in ("node-a", "node-b"):
        rules = two_nodes.exec(node, ["iptables", "-t", "nat", "-S", "KUBE-SERVICES"], check=True)
        assert "-d 10.96.0.50/32" in rules.stdout


def test_pod_to_pod_across_nodes(two_nodes):
    report = probe(two_nodes, "web-a", Target("10.244.1.10", 8000, "tcp"), "http", counters=False)
    assert report.pod == "web-b" and report.pod_view.src == "10.244.0.10"


def test_service_reaches_pods_on_both_nodes_through_node_a(two_nodes):
    seen = set()
    for _ in range(40):
        report = probe(two_nodes, "client", SERVICE, "http", counters=False)
        assert report.answered, report.answer
        # The client is outside the cluster CIDR: masqueraded by node-a, the node it entered,
        # so the reply from a pod on node-b comes back through node-a's conntrack.
        assert report.pod_view.src in {"10.244.0.1", "192.168.49.2"}
        seen.add(report.pod)
        if seen == {"web-a", "web-b"}:
            break
    assert seen == {"web-a", "web-b"}
