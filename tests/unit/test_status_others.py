"""`status` without root lists this user's runs and says that root's or others' labs may exist."""

from __future__ import annotations

from click.testing import CliRunner

from lab_runner import runs
from lab_runner.backends import netns
from lab_runner.cli import cli, lifecycle


def status_as(monkeypatch, tmp_path, euid: int, namespaces: list[str]) -> str:
    monkeypatch.setenv("KPLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(lifecycle.os, "geteuid", lambda: euid)
    monkeypatch.setattr(lifecycle, "list_runs", lambda: [])
    monkeypatch.setattr(netns, "list_netns", lambda: namespaces)
    monkeypatch.setattr(runs, "list_runs", lambda: [])
    result = CliRunner().invoke(cli, ["status"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_an_ordinary_user_is_told_that_other_labs_may_run(monkeypatch, tmp_path):
    said = status_as(monkeypatch, tmp_path, 1000, ["kplab-87fc80-node-minikube",
                                                   "kplab-87fc80-pod-a", "other-ns"])
    assert "no lab of yours is running" in said
    assert "1 other run(s) have namespaces on this machine (87fc80)" in said
    assert "`sudo lab-runner status` shows root's" in said


def test_root_sees_every_record_and_gets_no_such_note(monkeypatch, tmp_path):
    said = status_as(monkeypatch, tmp_path, 0, ["kplab-87fc80-node-minikube"])
    assert said == "no lab is running"
