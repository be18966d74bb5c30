"""Lab 5 (NodePort and the caller's address) end to end, on real namespaces.

  - `walk lab-5 --check` finds every mark of its eight steps (node ports on both nodes, node-a's
    node port reaching node-b's pod masqueraded, traces on node-a and node-b, policy Local, the
    drop on a node without a local pod, the health check node port);
  - each reference answer (three exercises) scores full marks live and static, and each answer in
    fixtures/submissions/lab-5/ fails exactly the checks its first line names and loses the
    points its name says, in both modes; every check is failed by some wrong answer;
  - no live grading leaves a namespace behind;
  - slow: each reference answer scores full marks live 20 times in a row (issue 16).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from wrong_answers import ROOT, declared, grade_recording_run_ids, walk_in_background

LAB = "lab-5"
SOLUTIONS = ROOT / "labs" / "lab-5-nodeport" / "solutions"
ANSWERS = ROOT / "fixtures" / "submissions" / "lab-5"
MODES = ("static", "live")
EXERCISES = ("1", "2", "3")
REPEATS = 20


def reference(exercise: str) -> Path:
    (found,) = SOLUTIONS.glob(f"ex{exercise}-*.rules")
    return found


def answers() -> list[tuple[Path, str, int, set[str]]]:
    return [(path, *declared(path)) for path in sorted(ANSWERS.glob("*.rules"))]


def _graded(jobs: list[dict]) -> list[dict]:
    return grade_recording_run_ids([{**job, "lab": LAB} for job in jobs])


def grade_each_exercise(paths_of) -> dict[tuple[str, str, int], dict]:
    """{(file name, mode, n): graded} for every path paths_of(exercise) lists, in both modes;
    one grading process per exercise, the exercises side by side."""
    def batch(exercise):
        return _graded([{"exercise": exercise, "path": str(p), "mode": mode}
                        for p in paths_of(exercise) for mode in MODES])

    with ThreadPoolExecutor(max_workers=len(EXERCISES)) as pool:
        graded = [g for done in pool.map(batch, EXERCISES) for g in done]
    out: dict[tuple[str, str, int], dict] = {}
    for g in graded:
        name, mode = Path(g["job"]["path"]).name, g["job"]["mode"]
        n = sum(1 for key in out if key[:2] == (name, mode))
        out[(name, mode, n)] = g
    return out


@pytest.fixture(scope="module")
def walk():
    with walk_in_background(LAB) as process:
        yield process


@pytest.fixture(scope="module")
def grades(walk) -> dict[tuple[str, str, int], dict]:
    return grade_each_exercise(lambda exercise: [reference(exercise)] + [
        path for path, ex, _, _ in answers() if ex == exercise])


def _failed(result: dict) -> dict[str, dict]:
    return {c["id"]: c for c in result["checks"] if c["status"] != "passed"}


@pytest.mark.parametrize("exercise", EXERCISES)
@pytest.mark.parametrize("mode", MODES)
def test_reference_answer_full_marks(grades, exercise, mode):
    result = grades[(reference(exercise).name, mode, 0)]["result"]
    assert not result["error"] and result["score"] == result["max_score"] > 0, (
        result["error"], _failed(result))


@pytest.mark.parametrize("path,exercise,lose,fails", answers(), ids=[a[0].name for a in answers()])
@pytest.mark.parametrize("mode", MODES)
def test_answer_loses_what_it_declares(grades, path, exercise, lose, fails, mode):
    result = grades[(path.name, mode, 0)]["result"]
    assert not result["error"], result["error"]
    failed = _failed(result)
    assert set(failed) == fails, {k: c["output"] for k, c in failed.items()}
    assert all(c["status"] == "failed" for c in failed.values()), failed
    assert result["max_score"] - result["score"] == lose


def test_every_check_is_failed_by_some_answer():
    from lab_runner.grading import exercise as exercises

    for ex in exercises.all_exercises(LAB):
        failed = set().union(*(fails for _, n, _, fails in answers() if n == ex.number))
        assert {c.id for c in ex.checks} <= failed, f"exercise {ex.number}"


def test_the_corpus_has_right_answers_written_differently():
    for exercise in EXERCISES:
        right = [p for p, n, lose, _ in answers() if n == exercise and lose == 0]
        wrong = [p for p, n, lose, _ in answers() if n == exercise and lose > 0]
        assert len(right) >= 2 and len(wrong) >= 6, (exercise, right, wrong)


def test_no_grading_leaves_a_namespace_behind(grades):
    from lab_runner.backends.netns import namespaces_of_run

    live = [g for g in grades.values() if g["job"]["mode"] == "live"]
    run_ids = [i for g in live for i in g["run_ids"]]
    assert len(run_ids) == len(live)
    assert not [ns for i in run_ids for ns in namespaces_of_run(i)]


def test_walkthrough_checks(walk):
    out, err = walk.communicate(timeout=240)
    assert walk.returncode == 0, f"walk {LAB} --check failed:\n{out[-6000:]}\n{err[-2000:]}"
    assert "All 8 step(s) ran as expected." in out


@pytest.mark.slow
def test_reference_answers_pass_live_twenty_times_in_a_row():
    graded = grade_each_exercise(lambda exercise: [reference(exercise)] * REPEATS)
    live = [g["result"] for key, g in graded.items() if key[1] == "live"]
    assert len(live) == REPEATS * len(EXERCISES)
    bad = [(r["exercise"], r["score"], _failed(r)) for r in live if r["score"] != r["max_score"]]
    assert not bad, bad
