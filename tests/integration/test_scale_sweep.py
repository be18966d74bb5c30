"""Lab 8's sweep on the real kernel: a tiny sweep runs in both modes, reaches the pods, syncs, and
leaves no namespace or process behind (also on an error halfway)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lab_runner.backends.netns import list_netns
from lab_runner.commands import Runner
from lab_runner.errors import RestoreFailed
from lab_runner.runs import run_id_of
from lab_runner.scale import sweep as sweep_module
from lab_runner.scale.sweep import sweep


def _left(made) -> list[str]:
    """Namespaces of run ids this test session made (others may run labs meanwhile)."""
    ids = made()
    assert ids, "the sweep journaled no run id"
    return [ns for ns in list_netns() if run_id_of(ns) in ids]


def test_tiny_sweep_measures_both_modes_and_leaves_nothing(runs_made_by_this_session):
    points = sweep([10, 50], 3, ["iptables", "nftables"], flows=30)
    assert [(p.mode, p.services) for p in points] == [
        ("iptables", 10), ("nftables", 10), ("iptables", 50), ("nftables", 50)]
    for point in points:
        assert point.first.count + point.first.lost == 30 and point.first.count >= 25
        assert point.last.count >= 25
        assert 0 < point.first.median < 10_000 and 0 < point.last.median < 10_000
        assert point.write_s > 0 and point.partial_s > 0 and point.full_s > 0
        assert point.listing_kib > 0
    assert _left(runs_made_by_this_session) == []


def test_the_command_writes_its_files(tmp_path):
    env = dict(os.environ, COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "lab_runner", "scale-sweep", "--services", "10",
                           "--endpoints", "2", "--flows", "20", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "iptables: the last Service's first packet" in done.stdout
    data = json.loads((tmp_path / "scale.json").read_text())
    assert [p["mode"] for p in data["points"]] == ["iptables", "nftables"]
    assert (tmp_path / "scale.png").stat().st_size > 1000


def test_a_failed_write_tears_the_point_down(monkeypatch, runs_made_by_this_session):

    def broken(self, place, document):
        raise RestoreFailed(["iptables-restore"], 1, "", "refused", str(place), None, "")

    monkeypatch.setattr(sweep_module.Mode, "write", broken)
    with pytest.raises(RestoreFailed):
        sweep_module.measure("iptables", 5, 2, 20, runner=Runner())
    assert _left(runs_made_by_this_session) == []
