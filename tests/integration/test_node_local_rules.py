"""Rules that differ from node to node, and kube-proxy's nfacct counters, on a live lab.

kube-proxy on each node writes its own document: with internalTrafficPolicy Local, a node's
KUBE-SVL chain holds only that node's endpoints. And a profile that counts INVALID drops with
`-m nfacct` needs the counter made first, as kube-proxy makes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab_runner.evidence.probing import Target, probe
from lab_runner.lab import LiveLab
from lab_runner.ruleset import names

ROOT = Path(__file__).resolve().parents[2]
SERVICE = Target("10.96.0.50", 80, "tcp")
PORT_NAME = "demo/web:http"


@pytest.fixture(scope="module")
def local_policy(tmp_path_factory):
    """fixtures/labs/two-nodes.yaml with internalTrafficPolicy Local and a caller on each node."""
    text = (ROOT / "fixtures/labs/two-nodes.yaml").read_text()
    text = text.replace("clusterCIDR:", "profile: v1.30\nclusterCIDR:", 1)
    text = text.replace("    clusterIP: 10.96.0.50\n",
                        "    clusterIP: 10.96.0.50\n    internalTrafficPolicy: Local\n", 1)
    text = text.replace("services:", "  - {name: caller-a, namespace: demo, node: node-a, "
                        "ip: 10.244.0.20}\n  - {name: caller-b, namespace: demo, node: node-b, "
                        "ip: 10.244.1.20}\nservices:", 1)
    path = tmp_path_factory.mktemp("itp") / "lab.yaml"
    path.write_text(text)
    with LiveLab.up(path) as lab:
        yield lab


@pytest.mark.parametrize("node, local, remote", [("node-a", "10.244.0.10", "10.244.1.10"),
                                                 ("node-b", "10.244.1.10", "10.244.0.10")])
def test_each_node_s_local_chain_holds_its_own_endpoints(local_policy, node, local, remote):
    svl = names.local_service_chain(PORT_NAME, "tcp")
    rules = local_policy.exec(node, ["iptables", "-t", "nat", "-S", svl], check=True).stdout
    assert names.endpoint_chain(PORT_NAME, "tcp", f"{local}:8000") in rules
    assert names.endpoint_chain(PORT_NAME, "tcp", f"{remote}:8000") not in rules


@pytest.mark.parametrize("caller, pod", [("caller-a", "web-a"), ("caller-b", "web-b")])
def test_a_caller_reaches_only_the_pod_on_its_own_node(local_policy, caller, pod):
    for _ in range(12):
        report = probe(local_policy, caller, SERVICE, "http", counters=False)
        assert report.answered, report.answer
        assert report.pod == pod


def test_a_lab_with_nfacct_gets_kube_proxy_s_counters_before_its_rules(tmp_path):
    """Without the counter iptables-restore refuses the whole document (RULE_APPEND failed)."""
    text = (ROOT / "labs/lab-3-clusterip/lab.yaml").read_text()
    path = tmp_path / "lab.yaml"
    path.write_text(text.replace("profile: v1.23", "profile: v1.34\nkubeProxy: {nfacct: true}", 1))
    with LiveLab.up(path) as lab:
        forward = lab.exec("node", ["iptables", "-S", "KUBE-FORWARD"], check=True).stdout
        assert "--nfacct-name" in forward and "ct_state_invalid_dropped_pkts" in forward
        report = probe(lab, "client", Target("10.104.5.205", 8080, "tcp"), "http", counters=False)
        assert report.answered, report.answer
