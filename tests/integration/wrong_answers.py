"""What the lab tests share: wrong answers that declare what they lose, and a walk run meanwhile.

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
    """The checks a JSON grading result failed (an undecidable check given full marks passes)
    and the points it lost."""
    failed = {c["id"] for c in result["checks"] if not (c["status"] == "passed" or (
        c["status"] == "undecidable" and c["points"] == c["max_points"]))}
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
