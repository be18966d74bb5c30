"""exercise.yaml: what it must say about the chains a submission may write (no root)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lab_runner.errors import LabError, LabFileError
from lab_runner.grading import exercise as exercises

LAB3 = Path(__file__).resolve().parents[2] / "labs" / "lab-3-clusterip"


MISSING = object()


def _exercise_with(tmp_path: Path, **changes):
    """Lab 3's exercise 1 in a copy of the lab, its exercise.yaml changed (MISSING: removed)."""
    lab = tmp_path / "lab-3-clusterip"
    shutil.copytree(LAB3, lab)
    directory = next((lab / "exercises").glob("ex1-*"))
    data = yaml.safe_load((directory / "exercise.yaml").read_text())
    for key, value in changes.items():
        if value is MISSING:
            data.pop(key, None)
        else:
            data[key] = value
    (directory / "exercise.yaml").write_text(yaml.safe_dump(data))
    return directory


@pytest.mark.parametrize("allowed", [MISSING, None, []], ids=["missing", "blank", "a list"])
def test_allowed_must_be_written(tmp_path, allowed):
    directory = _exercise_with(tmp_path, allowed=allowed)
    with pytest.raises(LabFileError) as caught:
        exercises.load(directory)
    assert "allowed: list the tables and chains a submission may write" in str(caught.value)


def test_allowed_empty_on_purpose_opens_no_table(tmp_path):
    ex = exercises.load(_exercise_with(tmp_path, allowed={}))
    assert ex.allowed == {} and not ex.chain_allowed("nat", "KUBE-SERVICES")


def test_allowed_chains_are_globs(tmp_path):
    ex = exercises.load(_exercise_with(tmp_path, allowed={"nat": ["KUBE-SVC-*"]}))
    assert ex.chain_allowed("nat", "KUBE-SVC-Q7IJ732UBZY4AJKA")
    assert not ex.chain_allowed("nat", "KUBE-SERVICES") and not ex.chain_allowed("filter", "INPUT")


def test_allowed_chains_must_be_a_list(tmp_path):
    with pytest.raises(LabFileError) as caught:
        exercises.load(_exercise_with(tmp_path, allowed={"nat": "KUBE-SVC-*"}))
    assert "allowed.nat: a list of chain names or globs" in str(caught.value)


# -- random selection and the rules a task concerns ----------------------------------------------

def test_tolerance_is_in_percentage_points_with_a_default(tmp_path):
    assert exercises.load(_exercise_with(tmp_path, tolerance=MISSING)).tolerance == pytest.approx(0.005)
    assert exercises.load(_exercise_with(tmp_path / "b", tolerance=2)).tolerance == pytest.approx(0.02)


@pytest.mark.parametrize("value", ["2", 0, 75], ids=["text", "zero", "too large"])
def test_tolerance_must_be_a_small_positive_number(tmp_path, value):
    with pytest.raises(LabFileError) as caught:
        exercises.load(_exercise_with(tmp_path, tolerance=value))
    assert "tolerance: percentage points" in str(caught.value)


def test_round_robin_is_refused_unless_the_exercise_accepts_it(tmp_path):
    assert exercises.load(_exercise_with(tmp_path, round_robin=MISSING)).round_robin == "refuse"
    assert exercises.load(_exercise_with(tmp_path / "b", round_robin="accept")).round_robin == "accept"
    with pytest.raises(LabFileError) as caught:
        exercises.load(_exercise_with(tmp_path / "c", round_robin="maybe"))
    assert "round_robin: choose one of refuse, accept" in str(caught.value)


def test_a_break_fix_concerns_the_lines_its_start_replaced():
    ex = exercises.find("lab-3", "6")
    assert len(ex.concerned) == 4 and all(line in ex.start_document for line in ex.concerned)
    assert any("--probability 0.5000000000 -j KUBE-SEP-LCP7KINQA756A5JS" in c for c in ex.concerned)


def test_concerns_patterns_add_lines(tmp_path):
    ex = exercises.load(_exercise_with(tmp_path, concerns=[r"-j KUBE-NODEPORTS$"]))
    assert [line for line in ex.concerned] == [
        line for line in ex.start_document.splitlines() if line.endswith("-j KUBE-NODEPORTS")]
    with pytest.raises(LabFileError) as caught:
        exercises.load(_exercise_with(tmp_path / "b", concerns=["("]))
    assert "concerns[0]" in str(caught.value)


def test_every_shipped_tolerance_is_decidable_live():
    """Live mode needs flows_for_tolerance new flows from one caller: at most one per port."""
    from fractions import Fraction

    from lab_runner.grading.sandbox import MAX_LIVE_FLOWS
    from lab_runner.probes.stats import flows_for_tolerance

    for lab in ("lab-2", "lab-3", "lab-4"):
        for ex in exercises.all_exercises(lab):
            if any(c.id == "spread-even" for c in ex.checks):
                for n in range(2, 7):
                    shares = {str(i): Fraction(1, n) for i in range(n)}
                    assert flows_for_tolerance(shares, ex.tolerance) <= MAX_LIVE_FLOWS, (lab, ex.number)


@pytest.mark.parametrize("which,number", [("03", "3"), ("ex3", "3"), ("3V5", "3v5"),
                                          ("ex3v03", "3v3"), ("ex6-break-fix", "6"), (4, "4")])
def test_find_reads_a_number_as_exercises_shows_it(which, number):
    assert exercises.find("lab-3", which).number == number


def test_find_names_the_lab_and_the_numbers_e_takes_not_the_install():
    with pytest.raises(LabError) as caught:
        exercises.find("lab-3", "9")
    said = str(caught.value)
    assert "no exercise '9' in lab-3-clusterip" in said
    assert "-e takes one of: 1, 2, 3, 3v3, 3v5, 4, 5, 6" in said
    assert "/" not in said.split("(")[0] and "ex1-matching" not in said, said
