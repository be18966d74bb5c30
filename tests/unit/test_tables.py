"""At 80 columns, status and doctor wrap their tables: run ids, lab ids, tool names and paths whole."""

from __future__ import annotations

import time

from click.testing import CliRunner

from lab_runner import doctor, runs
from lab_runner.backends import netns
from lab_runner.cli import cli, lifecycle
from lab_runner.errors import LabError

LONG_LAB = "lab-3-clusterip-ex5-capstone"


def shown(args: list[str]) -> list[str]:
    result = CliRunner().invoke(cli, args, terminal_width=80, env={"COLUMNS": "80"})
    # doctor raises EnvironmentProblem when a check fails: main() turns it into exit code 3.
    assert result.exception is None or isinstance(result.exception, LabError), result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "…" not in result.output
    return lines


def test_status_shows_run_ids_and_lab_names_whole(monkeypatch, tmp_path):
    monkeypatch.setenv("KPLAB_STATE_DIR", str(tmp_path / "state"))
    records = [runs.RunRecord(run_id=run_id, lab_id=lab, lab_source="", state="up",
                              backend=backend, iptables="legacy", created=time.time() - 3600,
                              namespaces=[f"kplab-{run_id}-node-minikube"])
               for run_id, lab, backend in (("3fa2c1", LONG_LAB, "netns"),
                                            ("4cb3d2", "lab-4-endpoints", "docker"))]
    monkeypatch.setattr(lifecycle, "list_runs", lambda: records)
    monkeypatch.setattr(netns, "list_netns", lambda: ["kplab-3fa2c1-node-minikube"])
    monkeypatch.setattr(lifecycle, "_container_states", lambda runs: {"4cb3d2": "running"})
    lines = shown(["status"])
    assert any("3fa2c1" in line and LONG_LAB in line for line in lines), lines
    assert any("4cb3d2" in line and "lab-4-endpoints" in line for line in lines), lines


def test_doctor_shows_tool_names_and_paths_whole(monkeypatch):
    path = "/usr/sbin/iptables-legacy-restore"
    findings = [doctor.Finding("tool iptables-legacy-restore", True, path),
                doctor.Finding("file /etc/ssl/certs/ca-certificates.crt", False, "missing",
                               "sudo apt-get install -y ca-certificates"),
                doctor.Finding("kernel: statistic, mark, comment, recent, addrtype, DNAT, "
                               "MASQUERADE --random-fully, TRACE (nft)", True,
                               "loaded in a scratch namespace")]
    monkeypatch.setattr(doctor, "diagnose", lambda: findings)
    lines = shown(["doctor"])
    text = "\n".join(lines)
    for word in ("iptables-legacy-restore", path, "/etc/ssl/certs/ca-certificates.crt",
                 "ca-certificates", "MASQUERADE"):
        assert any(word in line.split() for line in lines), (word, text)
