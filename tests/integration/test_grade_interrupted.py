"""Ctrl-C or SIGTERM while a live grade's checks run: "interrupted", exit 130, the sandbox gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab_runner.backends.netns import list_netns
from lab_runner.runs import run_id_of

ROOT = Path(__file__).resolve().parents[2]
CAPSTONE = ROOT / "labs/lab-3-clusterip/solutions/ex5-capstone.rules"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_checks_cleans_up_and_exits_130(signum, runs_made_by_this_session):
    before = runs_made_by_this_session()
    proc = subprocess.Popen([sys.executable, "-m", "lab_runner", "grade", "lab-3", "-e", "5",
                             str(CAPSTONE)], cwd=ROOT, env={**os.environ, "COLUMNS": "120"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until the sandbox exists and its checks have begun, then interrupt.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        mine = runs_made_by_this_session() - before
        if mine and any(run_id_of(ns) in mine for ns in list_netns()):
            break
        time.sleep(0.02)
    time.sleep(0.4)  # the sandbox is built in ~0.3 s; the checks take over a second
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert "could not run" not in out + err
    assert "Traceback" not in err, err
    assert proc.returncode == 130, (proc.returncode, out[-2000:], err[-2000:])
    assert "interrupted" in err
    made = runs_made_by_this_session() - before
    assert made, "the grade made no sandbox"
    assert [ns for ns in list_netns() if run_id_of(ns) in made] == []
