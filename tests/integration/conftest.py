"""Integration tests build real labs: they need root and prove the host namespace stays untouched."""

from __future__ import annotations

import pytest

from lab_runner import hostcheck

HOST_BEFORE: dict[str, str] = {}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.needs_root)


@pytest.fixture(scope="session", autouse=True)
def host_snapshot_before():
    """Taken once before the first integration test; test_zz_host_untouched compares at the end."""
    import os

    if os.geteuid() == 0 and not HOST_BEFORE:
        HOST_BEFORE.update(hostcheck.snapshot())
    yield HOST_BEFORE


@pytest.fixture(scope="session", autouse=True)
def runs_made_by_this_session(tmp_path_factory):
    """Every run id this session's processes make is appended to one journal (runs.journal)."""
    import os

    journal = tmp_path_factory.mktemp("journal") / "run-ids"
    journal.touch(mode=0o600)
    os.environ["KPLAB_RUN_JOURNAL"] = str(journal)  # inherited by every subprocess
    yield lambda: set(journal.read_text().split())
    os.environ.pop("KPLAB_RUN_JOURNAL", None)


@pytest.fixture(scope="module")
def lab3():
    """Lab 3 up for a whole test module, torn down after it."""
    from lab_runner.lab import LiveLab

    with LiveLab.up("lab-3") as lab:
        yield lab
