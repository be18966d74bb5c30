"""Shared test set-up: markers for root-only tests and a scratch namespace for low-level tests."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from lab_runner import PREFIX

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="needs root (CAP_NET_ADMIN): run `sudo make test`")
    for item in items:
        if "needs_root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def scratch_netns():
    """An empty network namespace named with the kit's prefix and a fresh run id; deleted after."""
    name = f"{PREFIX}-{secrets.token_hex(3)}-scratch"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
