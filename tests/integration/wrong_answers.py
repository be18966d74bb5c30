"""What the lab tests share: wrong answers that declare what they lose, graders, a walk run meanwhile.

A wrong answer is named `ex<N>-<mistake>.lose-<points>.<ext>` and starts with
`# fails: check-id, …`: graded it must fail exactly those checks and lose exactly those points.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    """The environment of a child `python -m lab_runner …`: this checkout first on its path."""
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def declared(path: Path) -> tuple[str, int, set[str]]:
    """(exercise, points lost, ids of the checks failed) that a wrong answer declares."""
    m = re.match(r"^ex(?P<ex>\w+?)-[\w-]+\.lose-(?P<lose>\d+)\.\w+$", path.name)
    assert m, f"{path.name}: name it ex<N>-<mistake>.lose-<points>{path.suffix}"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# fails:"), f"{path.name}: the first line must be `# fails: check-ids`"
    return m["ex"], int(m["lose"]), {c.strip() for c in first.split(":", 1)[1].split(",") if c.strip()}


def exercise_of(path: Path) -> str:
    """The exercise an answer (wrong or reference) is for: `ex<N>-…`."""
    return re.match(r"ex(\w+?)-", path.name).group(1)


def failed_and_lost(result: dict) -> tuple[set[str], float]:
    """The checks a JSON grading result failed and the points it lost. Static mode may score an
    undecidable check in full (the exercise says so); live mode has a kernel and must decide
    every check, so an undecidable one counts as failed there whatever its points."""
    live = result.get("mode") == "live"
    failed = {c["id"] for c in result["checks"] if not (c["status"] == "passed" or (
        c["status"] == "undecidable" and c["points"] == c["max_points"] and not live))}
    return failed, result["max_score"] - result["score"]


def grade_live(lab: str, path: Path, exercise: str | None = None) -> dict:
    """`lab-runner grade … --format json`, the command an instructor runs, in its own process
    (a grader runs pytest, which is not thread-safe); the exercise is the file name's by default."""
    done = subprocess.run([sys.executable, "-m", "lab_runner", "grade", lab, str(path), "--exercise",
                           exercise or exercise_of(path), "--format", "json"], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.strip(), f"{path.name}: no result (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout)


def grade_all_live(lab: str, paths: list[Path], jobs: int = 3) -> dict[str, dict]:
    """grade_live of every path, `jobs` at a time: {file name: JSON result}."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip((p.name for p in paths), pool.map(lambda p: grade_live(lab, p), paths)))


# Grades a JSON list of jobs {"lab", "exercise", "path", "mode"} (argv[1]) in one process and
# prints one JSON line per job: its result and the run ids of the labs its live grading built.
_RECORDING_GRADER = r"""
import json, sys
import lab_runner.lab as lab_module
from lab_runner.grading.grade import grade

made = []
new_run_id = lab_module.new_run_id
def recorded():
    made.append(new_run_id())
    return made[-1]
lab_module.new_run_id = recorded
for job in json.loads(sys.argv[1]):
    del made[:]
    result = grade(job["lab"], job["exercise"], job["path"], job["mode"])
    print(json.dumps({"job": job, "result": result.to_dict(), "run_ids": made}), flush=True)
"""


def grade_recording_run_ids(jobs: list[dict]) -> list[dict]:
    """Grade `jobs` in one child process: [{"job", "result" (GradeResult.to_dict()), "run_ids"}],
    so that a test can tell that no lab a grading built is left behind."""
    done = subprocess.run([sys.executable, "-c", _RECORDING_GRADER, json.dumps(jobs)], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the grader failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def lab_fixtures(lab: str, paths: list[Path], jobs: int = 3):
    """The module fixtures `walkthrough` (walk_in_background) and `live_results` (grade_all_live
    of `paths`, while the walk runs): `walkthrough, live_results = lab_fixtures(LAB, …)`."""

    @pytest.fixture(scope="module")
    def walkthrough():
        with walk_in_background(lab) as process:
            yield process

    @pytest.fixture(scope="module")
    def live_results(walkthrough) -> dict[str, dict]:
        return grade_all_live(lab, paths, jobs)

    return walkthrough, live_results


@contextmanager
def walk_in_background(lab: str):
    """`walk LAB --check` running while the test module grades; stopped (SIGTERM tears its lab
    down, as Ctrl-C does) if it is still running at the end."""
    process = subprocess.Popen([sys.executable, "-m", "lab_runner", "walk", lab, "--check"],
                               cwd=ROOT, env={**env(), "COLUMNS": "120"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
