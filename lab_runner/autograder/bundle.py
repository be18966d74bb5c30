"""kplab/, in every platform's bundle: the lab without its solutions, the kit's wheels, one installer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import lab_runner
from lab_runner.errors import EnvironmentProblem, LabError
from lab_runner.grading import exercise as exercises
from lab_runner.system_deps import LIST as SYSTEM_PACKAGES

PAYLOAD = "kplab"
VENV = "/opt/kplab"  # where install.sh puts the kit on the platform's machine
# Never copied into a bundle: reference answers, the walkthrough (it prints the full rules),
# caches. A check file is copied only for the exercises bundled.
LEFT_OUT = {"solutions", "walkthrough.md", "__pycache__"}
WHEEL_TIMEOUT = 600  # seconds for `pip wheel` (it may fetch the dependencies from an index)

# install.sh: one installer for the three platforms, run as root (Gradescope's setup.sh, the
# PrairieLearn image's build, the GitHub job's sudo). Network is allowed here, as the platforms
# allow it at setup; grading then needs none.
INSTALL_SH = r"""#!/usr/bin/env bash
# Installs the lab kit into /opt/kplab: its system packages (the kit's one list,
# system-packages.txt beside this file) with apt, then the kit from the wheels beside this file,
# offline when they fit this Python, else with pip's index for what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  $(sed -e 's/#.*//' "$here/system-packages.txt" | awk 'NF {print $1}') >/dev/null
python=python3
# The kit needs Python >= 3.11: Ubuntu 22.04's python3 is 3.10, and it has python3.11 beside it.
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv >/dev/null
  python=python3.11
fi
"$python" -m venv /opt/kplab
pip=(/opt/kplab/bin/pip install -q --disable-pip-version-check --find-links "$here/wheels")
if ! "${pip[@]}" --no-index lab-runner 2>/dev/null; then
  echo "kplab: the bundled wheels do not fit $("$python" -V); fetching the rest from the index"
  "${pip[@]}" lab-runner
fi
/opt/kplab/bin/lab-runner --version
"""


@dataclass(frozen=True)
class Assignment:
    """The exercises of one lab that a bundle grades."""

    lab_dir: Path
    exercises: tuple[exercises.Exercise, ...]

    @property
    def lab_id(self) -> str:
        return self.lab_dir.name

    @property
    def max_score(self) -> int:
        return sum(ex.max_score for ex in self.exercises)


def load(lab: str, numbers: list[str] | tuple[str, ...]) -> Assignment:
    """The assignment for LAB's exercises `numbers`; the error lists the exercises there are."""
    if not numbers:
        raise LabError("name at least one exercise with -e N (`lab-runner exercises LAB` lists them)")
    chosen = tuple(exercises.find(lab, n) for n in numbers)
    slugs = [ex.slug for ex in chosen]
    if len(set(slugs)) != len(slugs):
        raise LabError(f"an exercise is named twice: {', '.join(numbers)}")
    lab_dirs = {ex.directory.parent.parent for ex in chosen}
    return Assignment(lab_dir=lab_dirs.pop(), exercises=chosen)


def submission_suffix(ex: exercises.Exercise) -> str:
    """`.ip` for a wiring exercise (lab 1's `ip` commands), `.nft` for an exercise in kube-proxy's
    nftables mode (`nft -f` commands, lab 7), else `.rules` (iptables-restore)."""
    from lab_runner.grading import wiring

    if wiring.applies(ex):
        return ".ip"
    return ".nft" if ex.format == "nft" else ".rules"


def accepted_names(ex: exercises.Exercise, alone: bool) -> list[str]:
    """The file names that are this exercise's submission; with `alone` (the only exercise of
    its bundle) `answer.rules` (or .ip, .nft) too, and then any one file with the suffix
    (runtime.find)."""
    suffix = submission_suffix(ex)
    names = [ex.slug + suffix, f"ex{ex.number}{suffix}"]
    return names + ([f"answer{suffix}"] if alone else [])


def student_markdown(ex: exercises.Exercise, alone: bool) -> str:
    """The exercise as students read it: task, hints, what is checked for how many points, and
    what to hand in. Titles only: how a check decides is in the grader, never here."""
    names = accepted_names(ex, alone)
    lines = [f"# Exercise {ex.number}: {ex.title}", "", ex.task, "", "## Hints", ""]
    lines += [f"{i}. {hint}" for i, hint in enumerate(ex.hints, 1)]
    lines += ["", f"## What is checked ({ex.max_score} points)", ""]
    lines += [f"- {c.points} pt: {c.title}" for c in ex.checks]
    lines += ["", "## What to hand in", "",
              f"One file named `{names[0]}` (or {', '.join(f'`{n}`' for n in names[1:])}).", ""]
    return "\n".join(lines)


def starter_text(ex: exercises.Exercise) -> str:
    """The file a student starts from: the format, and no rule of the answer."""
    if submission_suffix(ex) == ".ip":
        return (f"# Exercise {ex.number}: {ex.title}\n"
                "# One `ip` command per line (see the task); `#` starts a comment.\n")
    if submission_suffix(ex) == ".nft":
        opened = ", ".join(name for names in ex.allowed.values() for name in names)
        return (f"# Exercise {ex.number}: {ex.title} (`nft -f` commands on table ip kube-proxy)\n"
                f"# One command a line (add rule, insert rule, add element, add chain) for: "
                f"{opened}\n")
    tables = sorted(ex.allowed) or ["nat"]
    body = "".join(f"*{table}\n# your rules for {', '.join(ex.allowed.get(table, ()))} here\n"
                   "COMMIT\n" for table in tables)
    return f"# Exercise {ex.number}: {ex.title} (iptables-restore format)\n{body}"


WHEELS = ("all", "kit", "none")  # the kit and its dependencies; the kit alone; none (unit tests)


def write_payload(assignment: Assignment, dest: Path, *, wheels: str = "all") -> Path:
    """Write kplab/ into dest; returns its path. `wheels`: one of WHEELS."""
    payload = dest / PAYLOAD
    if payload.exists():
        shutil.rmtree(payload)
    payload.mkdir(parents=True)
    _copy_lab(assignment, payload / "lab" / assignment.lab_id)
    alone = len(assignment.exercises) == 1
    spec = {"lab": assignment.lab_id, "max_score": assignment.max_score,
            "exercises": [{"number": ex.number, "slug": ex.slug, "title": ex.title,
                           "files": accepted_names(ex, alone), "hints": list(ex.hints),
                           "max_score": ex.max_score} for ex in assignment.exercises]}
    (payload / "assignment.json").write_text(json.dumps(spec, indent=1) + "\n")
    shutil.copyfile(SYSTEM_PACKAGES, payload / "system-packages.txt")
    install = payload / "install.sh"
    install.write_text(INSTALL_SH)
    install.chmod(0o755)
    if wheels != "none":
        build_wheels(payload / "wheels", dependencies=wheels == "all")
    return payload


def _copy_lab(assignment: Assignment, dest: Path) -> None:
    """lab.yaml, the chosen exercises and the checks they use; solutions/ and the rest stay home."""
    src = assignment.lab_dir
    ignore = shutil.ignore_patterns(*LEFT_OUT)
    dest.mkdir(parents=True)
    shutil.copyfile(src / "lab.yaml", dest / "lab.yaml")
    for ex in assignment.exercises:
        shutil.copytree(ex.directory, dest / "exercises" / ex.slug, ignore=ignore)
    checks = dest / "checks"
    checks.mkdir()
    used = {f.name for ex in assignment.exercises for f in ex.check_files}
    for path in sorted((src / "checks").glob("*.py")):
        # Helpers (conftest.py) go with every bundle; test files only for the bundled exercises.
        if not re.match(r"test_ex", path.name) or path.name in used:
            shutil.copyfile(path, checks / path.name)


def kit_root() -> Path:
    """The kit's source tree (where pyproject.toml is), to build its wheel from."""
    root = Path(lab_runner.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise EnvironmentProblem(f"no pyproject.toml at {root}: build bundles from a checkout of "
                                 "the kit (git clone …; make venv), not from an installed wheel")
    return root


def build_wheels(dest: Path, *, dependencies: bool = True) -> list[Path]:
    """The kit's wheel, and (dependencies=True) wheels of everything it needs, for this Python.

    Fetching the dependencies needs pip's index; without one only the kit's wheel is bundled and
    install.sh fetches the rest on the platform (setup may use the network there).
    """
    dest.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w",
            str(dest), str(kit_root())]
    done = None
    if dependencies:
        done = subprocess.run(base, capture_output=True, text=True, timeout=WHEEL_TIMEOUT)
    if done is None or done.returncode != 0:
        shutil.rmtree(dest)
        dest.mkdir()
        done = subprocess.run(base + ["--no-deps"], capture_output=True, text=True,
                              timeout=WHEEL_TIMEOUT)
    if done.returncode != 0:
        raise EnvironmentProblem(f"cannot build the kit's wheel (pip wheel {kit_root()}):\n"
                                 f"{done.stderr.strip()[-1500:]}\nrun `make venv` first; behind a "
                                 "proxy, set PIP_INDEX_URL or PIP_CERT")
    return sorted(dest.glob("*.whl"))
