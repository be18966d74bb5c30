"""The Makefile's targets do what `make help` and the README say, and no more."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def planned(target: str, *variables: str) -> str:
    """The lab-runner commands `make -n TARGET` would run (the venv steps left out)."""
    done = subprocess.run(["make", "-n", "-s", target, *variables], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    return "\n".join(line for line in done.stdout.splitlines() if "lab-runner" in line)


def test_down_and_clean_touch_only_what_they_name():
    """On a shared machine `make down` is the running lab and `make clean` crashed runs' leftovers:
    neither takes down every user's labs."""
    assert planned("down").split()[1:] == ["down"]
    assert planned("down", "RUN=3fa2c1").split()[1:] == ["down", "3fa2c1"]
    assert planned("clean").split()[1:] == ["clean"]


def test_destructive_forms_are_asked_for_by_name():
    assert planned("down-all").split()[1:] == ["down", "--all"]
    assert planned("clean-all").split()[1:] == ["clean", "--all"]
