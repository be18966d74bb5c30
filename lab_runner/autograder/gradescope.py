"""Gradescope: the autograder upload (setup.sh, run_autograder, kplab/, zipped) and its results.json."""

from __future__ import annotations

import zipfile
from pathlib import Path

from lab_runner.autograder import bundle
from lab_runner.autograder.runtime import hints_text
from lab_runner.grading import formats

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (Ubuntu): the kit and
# its system packages into /opt/kplab, offline from the bundled wheels where they fit.
set -euo pipefail
bash "$(cd "$(dirname "$0")" && pwd)/kplab/install.sh"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: grade what is in /autograder/submission and write
# /autograder/results/results.json. Live where the container grants CAP_NET_ADMIN, else static;
# results.json says which.
export PYTHONDONTWRITEBYTECODE=1
exec /opt/kplab/bin/python -m lab_runner.autograder.runtime gradescope \\
  --assignment /autograder/source/kplab/assignment.json \\
  --submission /autograder/submission --results /autograder/results/results.json "$@"
"""

ZIP_NAME = "autograder.zip"


def write(assignment: bundle.Assignment, out: Path, *, wheels: str = "all") -> list[Path]:
    """out/source/ (the files), out/autograder.zip (what is uploaded), out/student/ (task text
    for the assignment's description)."""
    source = out / "source"
    source.mkdir(parents=True, exist_ok=True)
    bundle.write_payload(assignment, source, wheels=wheels)
    for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
        (source / name).write_text(text)
        (source / name).chmod(0o755)
    student = out / "student"
    student.mkdir(exist_ok=True)
    alone = len(assignment.exercises) == 1
    for ex in assignment.exercises:
        (student / f"{ex.slug}.md").write_text(bundle.student_markdown(ex, alone))
    archive = out / ZIP_NAME
    zip_tree(source, archive)
    return [archive, source, student]


def zip_tree(source: Path, archive: Path) -> None:
    """setup.sh and run_autograder at the zip's root, as Gradescope requires, modes kept."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo.from_file(path, path.relative_to(source).as_posix())
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())


def results(spec: dict, graded: list | None, mode: str, reason: str, seconds: float) -> dict:
    """One results.json for every exercise of the upload: the kit's Gradescope format per exercise
    (formats.gradescope), tests numbered by exercise, scores summed, the mode said at the top."""
    if graded is None:
        return {"score": 0, "execution_time": round(seconds), "output": reason,
                "output_format": "text", "visibility": "visible",
                "extra_data": {"mode": mode, "graded": False}, "tests": []}
    tests, output = [], [f"graded {reason}"]
    for result in graded:
        one = formats.gradescope(result)
        for test in one["tests"]:
            test["number"] = f"{result.exercise}.{test['number']}"
            if len(graded) > 1:
                test["name"] = f"exercise {result.exercise}, {test['name']}"
            test["tags"] = [f"exercise-{result.exercise}"]
        tests += one["tests"]
        output.append(one["output"])
    hints = hints_text(spec, graded)
    return {
        "score": sum(r.score for r in graded),
        "execution_time": max(0, round(seconds)),
        "output": "\n\n".join(output + ([hints] if hints else [])),
        "output_format": "text", "test_output_format": "text", "test_name_format": "text",
        "visibility": "visible", "stdout_visibility": "hidden",
        "extra_data": {"mode": mode, "mode_reason": reason, "lab": spec["lab"],
                       "max_score": sum(r.max_score for r in graded),
                       "graded": all(not r.error for r in graded)},
        "tests": tests,
    }
