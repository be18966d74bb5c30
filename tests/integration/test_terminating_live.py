"""A rollout's terminating pods on a live lab (`lab-runner terminate`): kube-proxy keeps new
connections on the ready pods while there are any and falls back to the serving-terminating ones
when none is left (profile v1.34), on the kernel."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab_runner.evidence.probing import Target, connections
from lab_runner.lab import LiveLab

pytestmark = pytest.mark.needs_root

ROOT = Path(__file__).resolve().parents[2]
LAB_RUNNER = str(ROOT / ".venv" / "bin" / "lab-runner")
# demo/web-np (ClusterIP 10.96.0.50): web-a1 and web-a2 on node-a, web-b on node-b.
LAB = ROOT / "fixtures" / "labs" / "nodeport-policies.yaml"
WEB = Target("10.96.0.50", 80, "tcp")
ALL = {"web-a1", "web-a2", "web-b"}


@pytest.fixture(scope="module")
def lab():
    with LiveLab.up(LAB) as live:
        yield live


def cli(lab: LiveLab, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "KPLAB_RUN": lab.run.run_id}
    return subprocess.run([LAB_RUNNER, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)


def terminate(lab: LiveLab, pod: str, *flags: str) -> str:
    done = cli(lab, "terminate", lab.run.run_id, pod, *flags)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def reached(lab: LiveLab, count: int = 40) -> set[str]:
    reports, _ = connections(lab, "client", WEB, count=count, until_pods=ALL, counters=False)
    assert all(r.answered for r in reports), [r.answer for r in reports]
    return {r.pod for r in reports}


def test_a_rollout_keeps_new_connections_on_ready_pods_then_falls_back(lab):
    assert reached(lab) == ALL
    # As the command line does it: each `terminate` re-syncs the nodes from the run's record.
    assert "web-a1 is terminating, still serving; chains re-synced" in terminate(lab, "web-a1")
    terminate(lab, "web-a2")
    assert reached(lab) == {"web-b"}  # ready pods remain: the terminating ones get nothing
    pods = cli(lab, "kubectl", lab.run.run_id, "--", "get", "pods", "-n", "demo")
    assert pods.returncode == 0, pods.stderr
    status = {line.split()[0]: line.split()[2] for line in pods.stdout.splitlines()[1:]}
    assert status["web-a1"] == status["web-a2"] == "Terminating" and status["web-b"] == "Running"
    # The last ready pod starts terminating too: every endpoint is serving-terminating, and
    # kube-proxy v1.26+ falls back to them rather than leave the Service without endpoints.
    terminate(lab, "web-b")
    assert reached(lab) == ALL
    # One of them fails its readiness probe as well: it is no fallback any more.
    assert "terminating, not serving" in terminate(lab, "web-a2", "--not-serving")
    assert reached(lab) == {"web-a1", "web-b"}
