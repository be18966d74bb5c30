"""KPLAB_RUN_JOURNAL: every run id a process makes is appended, so a test session knows its own."""

from __future__ import annotations

import os

import pytest

from lab_runner import runs


def test_each_new_run_id_is_appended(tmp_path, monkeypatch):
    journal = tmp_path / "run-ids"
    monkeypatch.setenv("KPLAB_RUN_JOURNAL", str(journal))
    monkeypatch.setenv("KPLAB_STATE_DIR", str(tmp_path / "state"))
    made = [runs.new_run_id(), runs.scratch_run_id(), runs.new_run_id()]
    assert journal.read_text().split() == made
    assert all(runs.valid_run_id(r) for r in made)
    assert journal.stat().st_mode & 0o077 == 0


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("KPLAB_RUN_JOURNAL", raising=False)
    monkeypatch.chdir(tmp_path)
    runs.scratch_run_id()
    assert os.listdir(tmp_path) == []


def test_a_link_in_place_of_the_journal_is_not_followed(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "run-ids").symlink_to(target)
    monkeypatch.setenv("KPLAB_RUN_JOURNAL", str(tmp_path / "run-ids"))
    with pytest.raises(OSError):
        runs.scratch_run_id()
    assert target.read_text() == ""


def test_a_state_root_removed_meanwhile_is_made_again(tmp_path, monkeypatch):
    """Two graders at once: one's `down` removes the emptied state root just as the other
    reserves its run id (seen in a live batch: FileNotFoundError on state/<run id>)."""
    import shutil

    monkeypatch.setenv("KPLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("KPLAB_RUN_JOURNAL", raising=False)
    real_ensure = runs.ensure_state_root
    calls = []

    def ensure_then_lose_it():
        root = real_ensure()
        calls.append(root)
        if len(calls) == 1:
            shutil.rmtree(root)  # the other process's LiveLab.down, at the worst moment
        return root

    monkeypatch.setattr(runs, "ensure_state_root", ensure_then_lose_it)
    run_id = runs.new_run_id()
    assert (tmp_path / "state" / run_id).is_dir() and len(calls) == 2
