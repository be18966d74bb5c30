"""exercise.yaml: what it must say about the chains a submission may write (no root)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lab_runner.errors import LabFileError
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
