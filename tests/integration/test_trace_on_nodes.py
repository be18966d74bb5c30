"""`trace` on a lab of two nodes traces where the packet is NATed: the node its address names, the
caller's own node, or the one `--on` names; in iptables and in nftables mode."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from lab_runner.lab import LiveLab

ROOT = Path(__file__).resolve().parents[2]
LAB_RUNNER = str(ROOT / ".venv" / "bin" / "lab-runner")
LAB5 = ROOT / "labs" / "lab-5-nodeport" / "lab.yaml"
NODE_B = "192.168.49.3"
WEB_NODEPORT = 30080  # shop/web, NodePort, externalTrafficPolicy Cluster
API_LOCAL_NODEPORT = 30082  # shop/api, externalTrafficPolicy Local, its one pod on node-b


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab5(request):
    with LiveLab.up(LAB5, proxy_mode=request.param) as lab:
        yield lab


def trace(lab: LiveLab, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "KPLAB_RUN": lab.run.run_id}
    return subprocess.run([LAB_RUNNER, "trace", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)


def test_a_node_port_on_node_b_is_traced_on_node_b(lab5):
    """The client's own node is node-a, but a packet to node-b's address is NATed by node-b."""
    result = trace(lab5, "--to", f"{NODE_B}:{API_LOCAL_NODEPORT}/tcp")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"-> {NODE_B}:{API_LOCAL_NODEPORT}/tcp from client on node-b" in result.stdout
    assert "-> 10.244.1.21:8080" in result.stdout.split("after NAT:")[1], result.stdout  # api-b1


def test_on_names_the_node_and_the_wrong_node_sees_nothing_of_it(lab5):
    """Traced on node-a, a packet sent to node-b's address never meets node-a's NAT rules."""
    on_b = trace(lab5, "--to", f"{NODE_B}:{WEB_NODEPORT}/tcp", "--on", "node-b")
    assert on_b.returncode == 0, on_b.stdout + on_b.stderr
    assert re.search(r"after NAT:\s+\S+ -> 10\.244\.[01]\.11:8080", on_b.stdout), on_b.stdout
    on_a = trace(lab5, "--to", f"{NODE_B}:{WEB_NODEPORT}/tcp", "--on", "node-a")
    assert on_a.returncode == 1 and "None" not in on_a.stdout + on_a.stderr, on_a.stdout
    assert "no trace events for this probe on node-a" in on_a.stderr, on_a.stderr
    assert "--on node-b" in on_a.stderr and "after NAT" not in on_a.stdout


def test_on_refuses_what_is_not_a_node(lab5):
    result = trace(lab5, "--to", f"{NODE_B}:{WEB_NODEPORT}/tcp", "--on", "web-a1")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "is not a node of lab-5-nodeport" in result.stderr and "node-a, node-b" in result.stderr
