"""The command's entry: interruptible at any moment, and a sentence where it cannot work (old Python, not Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("delay", [0.05, 0.08, 0.11, 0.14, 0.17, 0.2])
def test_a_signal_while_the_command_loads_says_interrupted(signum, delay):
    """The window the issue measured: the first ~0.15 s, while click and rich are imported."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lab_runner", "list"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    if proc.returncode == 0:  # the command finished before the signal: it said all it had to
        assert "lab-3" in out
    else:
        assert (proc.returncode, "interrupted" in err) == (130, True), (proc.returncode, err)


def test_an_old_python_gets_a_sentence(monkeypatch, capsys):
    from lab_runner import __main__ as entry

    monkeypatch.setattr(entry.sys, "version_info", (3, 9, 6))
    with pytest.raises(SystemExit) as stopped:
        entry.main()
    assert stopped.value.code == 3
    assert "needs Python 3.11 or newer" in capsys.readouterr().err


def test_the_netns_backend_off_linux_says_what_to_use_instead(monkeypatch):
    from lab_runner.cli import lifecycle
    from lab_runner.errors import EnvironmentProblem

    monkeypatch.setattr(lifecycle.sys, "platform", "darwin")
    with pytest.raises(EnvironmentProblem, match="use the docker backend"):
        lifecycle.require_root()
