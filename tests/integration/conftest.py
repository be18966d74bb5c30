"""Integration tests build real labs: they need root and prove the host namespace stays untouched."""

from __future__ import annotations

import pytest

from lab_runner import hostcheck

HOST_BEFORE: dict[str, str] = {}
LAB_NAMESPACES_BEFORE: set[str] = set()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.needs_root)


@pytest.fixture(scope="session", autouse=True)
def host_snapshot_before():
    """Taken once before the first integration test; test_zz_host_untouched compares at the end."""
    import os

    if os.geteuid() == 0 and not HOST_BEFORE:
        from lab_runner.backends.netns import list_netns

        HOST_BEFORE.update(hostcheck.snapshot())
        # Labs someone else runs on this machine are not this test session's leftovers.
        LAB_NAMESPACES_BEFORE.update(ns for ns in list_netns() if ns.startswith("kplab-"))
    yield HOST_BEFORE


@pytest.fixture(scope="session")
def lab_namespaces_before(host_snapshot_before):
    return LAB_NAMESPACES_BEFORE


@pytest.fixture(scope="module")
def lab3():
    """Lab 3 up for a whole test module, torn down after it."""
    from lab_runner.lab import LiveLab

    with LiveLab.up("lab-3") as lab:
        yield lab
