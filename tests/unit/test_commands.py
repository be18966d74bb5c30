"""Code that runs commands, tested through commands.FakeRunner: what it runs, where, with what
input, and what it makes of the answer (no root, no iptables)."""

from __future__ import annotations

import pytest

from lab_runner.commands import FakeRunner, Place
from lab_runner.errors import CommandFailed, RestoreFailed
from lab_runner.ruleset import apply

NODE = Place("kplab-3fa2c1-node-minikube")
DOCUMENT = ("*nat\n:KUBE-SVC-X - [0:0]\n-A KUBE-SERVICES -j KUBE-SVC-X\n"
            "-A KUBE-SVC-X -j KUBE-SEP-GONE\nCOMMIT\n")


def test_restore_runs_one_iptables_restore_in_the_node_with_the_document_as_input():
    runner = FakeRunner()
    apply.restore(runner, NODE, DOCUMENT, "legacy", noflush=True)
    [(place, argv, given)] = runner.calls
    assert (place, argv, given) == (NODE, ("iptables-legacy-restore", "--noflush"), DOCUMENT)


def test_a_refused_document_names_the_line_iptables_restore_names():
    runner = FakeRunner({("iptables-nft-restore",): (2, "", "iptables-nft-restore: line 3 failed")})
    with pytest.raises(RestoreFailed) as caught:
        apply.restore(runner, NODE, DOCUMENT, noflush=False)
    assert caught.value.line_no == 3 and caught.value.argv[:3] == ["ip", "netns", "exec"]
    assert ">     3  -A KUBE-SERVICES -j KUBE-SVC-X" in caught.value.context
    assert "nothing was applied; the rejected line is 3" in str(caught.value)


def test_nft_blaming_the_commit_is_pointed_at_the_jump_to_the_missing_chain():
    """iptables-nft reports a jump to a chain that does not exist at the table's COMMIT."""
    runner = FakeRunner({("iptables-nft-restore",): (
        1, "", "iptables-nft-restore v1.8.9 (nf_tables): Chain 'KUBE-SEP-GONE' does not exist\n"
               "Error occurred at line: 5")})
    with pytest.raises(RestoreFailed) as caught:
        apply.restore(runner, NODE, DOCUMENT)
    assert caught.value.line_no == 4


def test_save_asks_for_counters_and_one_table_and_returns_what_it_printed():
    runner = FakeRunner({("iptables-nft-save",): (0, "*nat\nCOMMIT\n", "")})
    assert apply.save(runner, NODE, table="nat") == "*nat\nCOMMIT\n"
    assert runner.calls == [(NODE, ("iptables-nft-save", "-c", "-t", "nat"), None)]


def test_a_failing_command_raises_with_its_place_unless_asked_not_to():
    runner = FakeRunner({("ip", "link"): (1, "", "Cannot find device")})
    with pytest.raises(CommandFailed) as caught:
        runner.run(["ip", "link", "show", "eth9"], NODE)
    assert "kplab-3fa2c1-node-minikube" in str(caught.value) and caught.value.rc == 1
    assert runner.run(["ip", "link", "show", "eth9"], NODE, check=False).rc == 1


def test_a_place_with_a_uts_namespace_enters_it_with_the_network_namespace():
    """A node's or pod's hostname lives in its holder process's UTS namespace (netns backend)."""
    assert Place("kplab-3fa2c1-node-minikube", uts_pid=4242).prefix() == [
        "ip", "netns", "exec", "kplab-3fa2c1-node-minikube", "nsenter", "--uts=/proc/4242/ns/uts"]
    assert NODE.prefix() == ["ip", "netns", "exec", "kplab-3fa2c1-node-minikube"]
