"""Runs last: the host's root network namespace is as it was, and this session left no lab behind.

Other people may use the kit on the machine while the tests run: leftovers are looked for among
the run ids this session made (every process of it appends them to KPLAB_RUN_JOURNAL, see
conftest.py), never among all the kit's namespaces.
"""

import pytest

from lab_runner import hostcheck
from lab_runner.backends.netns import list_netns
from lab_runner.runs import run_id_of


def test_host_network_namespace_unchanged(host_snapshot_before):
    assert host_snapshot_before, "the 'before' snapshot was not taken"
    diff = hostcheck.differences(host_snapshot_before, hostcheck.snapshot())
    assert not diff, "the host's network namespace changed:\n" + "\n".join(diff)


def test_no_lab_namespace_of_this_session_left(runs_made_by_this_session):
    made = runs_made_by_this_session()
    if not made:
        pytest.skip("this session made no lab (only some integration tests were selected)")
    assert [ns for ns in list_netns() if run_id_of(ns) in made] == []
