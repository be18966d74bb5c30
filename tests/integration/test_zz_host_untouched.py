"""Runs last: the host's root network namespace is exactly as it was before the integration tests."""

from lab_runner import hostcheck
from lab_runner.backends.netns import list_netns


def test_host_network_namespace_unchanged(host_snapshot_before):
    assert host_snapshot_before, "the 'before' snapshot was not taken"
    diff = hostcheck.differences(host_snapshot_before, hostcheck.snapshot())
    assert not diff, "the host's network namespace changed:\n" + "\n".join(diff)


def test_no_lab_namespace_left(lab_namespaces_before):
    """No namespace of the kit that was not already there when the tests started remains."""
    before = lab_namespaces_before
    assert [ns for ns in list_netns() if ns.startswith("kplab-") and ns not in before] == []
