"""Issue 16/17's evidence: the reference answer of every exercise of labs 5, 6 and 7 gets full
marks live twenty times in a row (slow: about 6 minutes; `pytest -m slow -k twenty`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab_runner.grading import exercise as exercises
from lab_runner.grading.grade import grade

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

REPEATS = 20
REFERENCES = [(lab, ex.number, answer)
              for lab in ("lab-5", "lab-6", "lab-7")
              for ex in exercises.all_exercises(lab)
              for answer in sorted((ex.directory.parent.parent / "solutions").glob(f"{ex.slug}.*"))]


def test_every_new_exercise_has_its_reference_answer():
    assert [(lab, n) for lab, n, _ in REFERENCES] == [
        ("lab-5", "1"), ("lab-5", "2"), ("lab-5", "3"), ("lab-6", "1"), ("lab-6", "2"),
        ("lab-7", "1"), ("lab-7", "2")]


@pytest.mark.parametrize(("lab", "number", "answer"), REFERENCES,
                         ids=[f"{lab}-ex{n}" for lab, n, _ in REFERENCES])
def test_reference_answer_full_marks_live_twenty_times_in_a_row(lab: str, number: str,
                                                                 answer: Path):
    for attempt in range(1, REPEATS + 1):
        result = grade(lab, number, answer, "live")
        failed = [c.id for c in result.checks if c.status != "passed"]
        assert result.score == result.max_score, f"attempt {attempt}: failed {failed}"
