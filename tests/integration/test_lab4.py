"""Lab 4 (endpoints change) end to end: the walkthrough, the reference and the wrong answers.

  - `walk lab-4 --check` finds every mark of every step (scale out and in, the held connection,
    the sample over five endpoints, readiness, the REJECT for a Service without endpoints);
  - each reference solution scores full marks, live (real kernel) and static (rule tracer);
  - each wrong answer in fixtures/submissions/lab-4/ loses exactly the points in its name
    (`….lose-N.rules`) and fails exactly the checks on its first line (`# fails: a, b`), in both
    modes;
  - every check of every exercise is failed by at least one wrong answer;
  - the exercises' starting states are the four-pod chain set the walkthrough starts from.

Grading runs in subprocesses, as `lab-runner grade` would (each grade runs the checks with its
own pytest). The walk and the two exercises' gradings run side by side, each in its own labs, to
keep the module near a minute.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB = "lab-4"
SOLUTIONS = ROOT / "labs" / "lab-4-endpoints" / "solutions"
FIXTURES = ROOT / "fixtures" / "submissions" / "lab-4"
MODES = ("static", "live")
FIXTURE_NAME = re.compile(r"^ex(\d+)-[\w-]+\.lose-(\d+)\.rules$")

# One process grades a list of submissions and prints one JSON line per grade, with the run ids
# of the labs its live gradings built (so that the test can tell that none is left behind).
GRADER = r"""
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
    r = grade("lab-4", job["exercise"], job["path"], job["mode"])
    print(json.dumps({**job, "score": r.score, "max": r.max_score, "error": r.error,
                      "run_ids": made,
                      "checks": {c.id: [c.status, c.points, c.max_points, c.output]
                                 for c in r.checks}}), flush=True)
"""


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def solution(exercise: str) -> Path:
    found = sorted(SOLUTIONS.glob(f"ex{exercise}-*.rules"))
    assert len(found) == 1, f"expected one reference answer for exercise {exercise}: {found}"
    return found[0]


def fixtures() -> list[tuple[Path, str, int, set[str]]]:
    """(path, exercise, points lost, checks declared failed) for every wrong answer."""
    out = []
    for path in sorted(FIXTURES.glob("*.rules")):
        name = FIXTURE_NAME.match(path.name)
        assert name, f"{path.name}: a wrong answer is named exN-<mistake>.lose-<points>.rules"
        first = path.read_text().splitlines()[0]
        assert first.startswith("# fails:"), f"{path.name}: the first line must be '# fails: …'"
        declared = {c.strip() for c in first[len("# fails:"):].split(",") if c.strip()}
        out.append((path, name.group(1), int(name.group(2)), declared))
    return out


def grade_all(jobs: list[dict]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", GRADER, json.dumps(jobs)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the grader failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module", autouse=True)
def walk():
    """`walk lab-4 --check`, started before the grading so that the two overlap.

    Its output goes to a file: a pipe nobody reads until the end could fill up and stall it.
    """
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen([sys.executable, "-m", "lab_runner", "walk", LAB, "--check"],
                                   cwd=ROOT, env=env(), stdout=output, stderr=subprocess.STDOUT,
                                   text=True)
        try:
            yield process, output
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def grades() -> dict[tuple[str, str], dict]:
    """Every solution and wrong answer, graded live and static: {(file name, mode): result}."""
    jobs: dict[str, list[dict]] = {}
    for exercise in ("1", "2"):
        for mode in MODES:
            jobs.setdefault(exercise, []).append(
                {"exercise": exercise, "path": str(solution(exercise)), "mode": mode})
    for path, exercise, _, _ in fixtures():
        for mode in MODES:
            jobs.setdefault(exercise, []).append(
                {"exercise": exercise, "path": str(path), "mode": mode})
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        batches = list(pool.map(grade_all, jobs.values()))
    results = {(Path(r["path"]).name, r["mode"]): r for batch in batches for r in batch}
    assert len(results) == sum(len(j) for j in jobs.values()), "some grades are missing"
    return results


def test_starting_states_are_the_four_pod_chain_set():
    from lab_runner import lab_file
    from lab_runner.grading import exercise as exercises
    from lab_runner.ruleset.compare import compare
    from lab_runner.ruleset.render import render

    four = render(lab_file.load(LAB), "v1.23")
    for number in ("1", "2"):
        ex = exercises.find(LAB, number)
        result = compare(four, ex.start_document)
        assert result.equal, f"exercise {number}'s starting state:\n{result.text}"
        # …and the exercise's own lab (six pods, three pods) is not what the node has.
        assert not compare(render(ex.lab, ex.lab.profile), ex.start_document).equal


@pytest.mark.parametrize("exercise", ["1", "2"])
@pytest.mark.parametrize("mode", MODES)
def test_solution_full_marks(grades, exercise, mode):
    r = grades[(solution(exercise).name, mode)]
    failed = {k: v for k, v in r["checks"].items() if v[0] != "passed"}
    assert not r["error"] and r["score"] == r["max"] == 10 and not failed, (r["error"], failed)


@pytest.mark.parametrize("path,exercise,lose,declared", fixtures(),
                         ids=[f[0].name for f in fixtures()])
@pytest.mark.parametrize("mode", MODES)
def test_fixture_loses_what_it_declares(grades, path, exercise, lose, declared, mode):
    r = grades[(path.name, mode)]
    assert not r["error"], r["error"]
    failed = {k for k, v in r["checks"].items() if v[0] != "passed"}
    assert failed == declared, {k: v for k, v in r["checks"].items() if k in failed ^ declared}
    assert all(r["checks"][k][0] == "failed" for k in declared), r["checks"]
    lost_points = sum(v[2] for k, v in r["checks"].items() if k in declared)
    assert lost_points == lose, f"the checks it declares are worth {lost_points}, its name says {lose}"
    assert r["score"] == r["max"] - lose


def test_no_grading_leaves_a_namespace_behind(grades):
    from lab_runner.backends.netns import namespaces_of_run

    run_ids = [i for r in grades.values() for i in r["run_ids"]]
    assert len(run_ids) == sum(1 for r in grades.values() if r["mode"] == "live")
    left = [ns for i in run_ids for ns in namespaces_of_run(i)]
    assert not left, f"namespaces left by live gradings: {left}"


def test_every_check_is_failed_by_some_fixture():
    from lab_runner.grading import exercise as exercises

    failed_by: dict[str, set[str]] = {}
    for _, exercise, _, declared in fixtures():
        failed_by.setdefault(exercise, set()).update(declared)
    for ex in exercises.all_exercises(LAB):
        never = {c.id for c in ex.checks} - failed_by.get(ex.number, set())
        assert not never, f"exercise {ex.number}: no wrong answer fails {sorted(never)}"


def test_walkthrough_checks(walk):
    process, output = walk
    process.wait(timeout=180)
    output.seek(0)
    text = output.read()
    assert process.returncode == 0, f"walk {LAB} --check failed:\n{text[-8000:]}"
    assert "All 9 step(s) ran as expected." in text
