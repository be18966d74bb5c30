"""The command line without root: help that teaches, pure commands, and errors that say what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab_runner", *args], capture_output=True,
                          text=True, cwd=ROOT, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                    "PYTHONPATH": str(ROOT), "COLUMNS": "200"})


def test_help_lists_the_commands_and_where_to_start():
    result = run("--help")
    assert result.returncode == 0
    for command in ("up", "down", "walk", "probe", "trace", "sample", "grade", "doctor", "clean"):
        assert f"  {command}" in result.stdout
    assert "sudo lab-runner up lab-3" in result.stdout


def test_rules_prints_the_seed_chains():
    result = run("rules", "lab-3")
    assert result.returncode == 0, result.stderr
    assert "-j KUBE-SVC-Q7IJ732UBZY4AJKA" in result.stdout
    assert "--probability 0.3333333333" in result.stdout


def test_rules_diff_is_semantic(tmp_path):
    same = tmp_path / "same.rules"
    same.write_text(run("rules", "lab-3").stdout.replace(" -d 10.104.5.205 ", " -d 10.104.5.205/32 "))
    assert run("rules", "lab-3", "--diff", str(same)).returncode == 0
    changed = tmp_path / "changed.rules"
    changed.write_text(same.read_text().replace("0.5000000000", "0.2500000000"))
    result = run("rules", "lab-3", "--diff", str(changed))
    assert result.returncode == 1
    assert "KUBE-SVC-Q7IJ732UBZY4AJKA" in result.stdout and "statistic" in result.stdout


def test_unknown_lab_lists_the_labs():
    result = run("rules", "lab-99")
    assert result.returncode == 1
    assert "lab-3-clusterip" in result.stderr


def test_kubectl_view_and_what_is_not_modelled():
    result = run("kubectl", "lab-3", "--", "-n", "stateful-apps", "get", "svc")
    assert result.returncode == 0 and "10.104.5.205" in result.stdout
    result = run("kubectl", "lab-3", "--", "apply", "-f", "x.yaml")
    assert result.returncode == 1 and "not modelled" in result.stderr


def test_exercises_are_listed_with_points():
    result = run("exercises", "lab-3")
    assert result.returncode == 0
    assert "Matching" in result.stdout and "Random selection" in result.stdout


def test_grade_with_out_alone_writes_result_json(tmp_path):
    """--out without a file format still writes a file: the terminal report alone left it empty."""
    answer = ROOT / "labs/lab-3-clusterip/solutions/ex3-random-selection.rules"
    result = run("grade", "lab-3", "-e", "3", str(answer), "--static", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    import json

    written = json.loads((tmp_path / "result.json").read_text())
    assert written["score"] == written["max_score"] > 0
    assert "report:" in result.stdout and result.stdout.rstrip().endswith("5 passed, 0 failed")
