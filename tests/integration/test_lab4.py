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

import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from wrong_answers import ROOT, declared, env, grade_recording_run_ids

LAB = "lab-4"
SOLUTIONS = ROOT / "labs" / "lab-4-endpoints" / "solutions"
FIXTURES = ROOT / "fixtures" / "submissions" / "lab-4"
MODES = ("static", "live")

def solution(exercise: str) -> Path:
    found = sorted(SOLUTIONS.glob(f"ex{exercise}-*.rules"))
    assert len(found) == 1, f"expected one reference answer for exercise {exercise}: {found}"
    return found[0]


def fixtures() -> list[tuple[Path, str, int, set[str]]]:
    """(path, exercise, points lost, checks declared failed) for every wrong answer."""
    return [(path, *declared(path)) for path in sorted(FIXTURES.glob("*.rules"))]


def grade_all(jobs: list[dict]) -> list[dict]:
    """Grade the jobs in one process: each job with its score, error, checks
    ({id: [status, points, max points, output]}) and the run ids of the labs it built."""
    graded = grade_recording_run_ids([{**job, "lab": LAB} for job in jobs])
    return [{**g["job"], "score": g["result"]["score"], "max": g["result"]["max_score"],
             "error": g["result"]["error"], "run_ids": g["run_ids"],
             "checks": {c["id"]: [c["status"], c["points"], c["max_points"], c["output"]]
                        for c in g["result"]["checks"]}} for g in graded]


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
    assert not r["error"] and r["score"] == r["max"] > 0 and not failed, (r["error"], failed)


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
    for _, exercise, _, fails in fixtures():
        failed_by.setdefault(exercise, set()).update(fails)
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
