"""The integration tests' reading of a grading result (tests/integration/wrong_answers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from wrong_answers import failed_and_lost  # noqa: E402


def _result(mode: str, status: str, points: float) -> dict:
    return {"mode": mode, "max_score": 3, "score": 2 + points,
            "checks": [{"id": "a", "status": "passed", "points": 2, "max_points": 2},
                       {"id": "b", "status": status, "points": points, "max_points": 1}]}


@pytest.mark.parametrize("mode,failed", [("live", {"b"}), ("static", set())])
def test_an_undecidable_check_at_full_points_fails_only_live(mode, failed):
    assert failed_and_lost(_result(mode, "undecidable", 1)) == (failed, 0)


def test_an_undecidable_check_at_zero_fails_in_both_modes():
    for mode in ("live", "static"):
        assert failed_and_lost(_result(mode, "undecidable", 0)) == ({"b"}, 1)
