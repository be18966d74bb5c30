"""Lab 6 (sticky and local) end to end: the walkthrough, the reference answers and the wrong ones.

  - `walk lab-6 --check` finds every mark of every step (the recent lists, ten connections to
    one pod from each of four callers, the timeout waited out, the sticky pod deleted,
    internalTrafficPolicy: Local and node-b's DROP, the rollout's fallback);
  - each reference solution scores full marks, live (`lab-runner grade`, real packets) and
    static (the rule tracer);
  - each answer in fixtures/submissions/lab-6/ fails exactly the checks on its first line and
    loses exactly the points in its name (right ones written differently: none, nothing), in
    both modes; each exercise has 6+ wrong answers and 2+ right ones, and every check is failed
    by one of them;
  - stickiness measured: the live rounds on exercise 1's reference answer, each caller's later
    connections at its first pod in every round, the first connections at all three pods.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from lab_runner.grading import exercise as exercises
from lab_runner.grading import submission
from lab_runner.grading.grade import grade
from lab_runner.grading.sandbox import open_sandbox
from wrong_answers import ROOT, declared, exercise_of, failed_and_lost, lab_fixtures

LAB = "lab-6"
FIXTURES = sorted((ROOT / "fixtures" / "submissions" / "lab-6").glob("ex*.rules"))
SOLUTIONS = sorted((ROOT / "labs" / "lab-6-sticky-local" / "solutions").glob("ex*.rules"))

# `walk LAB --check` runs in the background while every answer is graded live.
walkthrough, live_results = lab_fixtures(LAB, FIXTURES + SOLUTIONS)


def test_corpus_per_exercise():
    for ex in exercises.all_exercises(LAB):
        mine = [declared(p) for p in FIXTURES if declared(p)[0] == ex.number]
        right = [d for d in mine if d[1] == 0]
        assert len(right) >= 2 and len(mine) - len(right) >= 6, (ex.number, len(right), len(mine))
        failed = set().union(*(fails for _, _, fails in mine))
        never = {c.id for c in ex.checks} - failed
        assert not never, f"exercise {ex.number}: no wrong answer fails {sorted(never)}"
        for _, lose, fails in mine:
            assert lose == sum(ex.check(c).points for c in fails), (ex.number, lose, fails)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
@pytest.mark.parametrize("mode", ("static", "live"))
def test_solution_full_marks(path, mode, live_results):
    result = live_results[path.name] if mode == "live" else \
        grade(LAB, exercise_of(path), path, "static").to_dict()
    assert failed_and_lost(result) == (set(), 0) and not result["error"], result["checks"]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("mode", ("static", "live"))
def test_fixture_loses_what_it_declares(path, mode, live_results):
    number, lose, fails = declared(path)
    result = live_results[path.name] if mode == "live" else \
        grade(LAB, number, path, "static").to_dict()
    assert not result["error"] and failed_and_lost(result) == (fails, lose), result["checks"]


def test_stickiness_measured_live_on_the_reference():
    """The live rounds themselves, on exercise 1's reference answer: in every round each
    caller's later connections reach its first pod, and over the rounds the first connections
    reach all three pods (a sticky answer that always chose one pod would not)."""
    # The checks' helper module, under its own name (tests/integration has a conftest).
    spec = importlib.util.spec_from_file_location(
        "lab6_checks", ROOT / "labs" / "lab-6-sticky-local" / "checks" / "conftest.py")
    lab6 = sys.modules["lab6_checks"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lab6)
    ex = exercises.find(LAB, "1")
    sandbox = open_sandbox("live", ex, submission.read(SOLUTIONS[0], ex))
    try:
        seen = lab6.rounds(sandbox)
    finally:
        sandbox.close()
    assert len(seen.rounds) == lab6.ROUNDS, seen.how
    for pods, _ in seen.rounds:
        first = pods[0]
        assert first != lab6.NO_ANSWER and set(pods[:lab6.ROUND.count(lab6.FIRST)]) == {first}, pods
    assert set(seen.firsts(0)) == set(lab6.pods_of(sandbox))


# -- the walkthrough (last: it ran in the background meanwhile) ---------------------------------
def test_walkthrough_marks_all_found(walkthrough):
    out, err = walkthrough.communicate(timeout=300)
    assert walkthrough.returncode == 0, out[-4000:] + err[-2000:]
    assert "All 9 step(s) ran as expected." in out
