"""nftables mode of a live lab without root: nft_apply's errors, and what LiveLab runs per mode
(a FakeRunner records the commands)."""

from __future__ import annotations

import pytest

from lab_runner import lab_file
from lab_runner.commands import FakeRunner, Place
from lab_runner.errors import LabError
from lab_runner.lab import LiveLab
from lab_runner.ruleset import nft_apply
from lab_runner.runs import RunRecord

REFUSAL = ("/dev/stdin:3:22-28: Error: Could not process rule: No such file or directory\n"
           "add rule ip t c jump nowhere\n                     ^^^^^^^\n")
DOCUMENT = "add table ip t\nadd chain ip t c\nadd rule ip t c jump nowhere\nadd chain ip t d\n"


def test_a_refused_document_names_its_line_with_neighbours_and_says_nothing_was_applied():
    runner = FakeRunner({("nft", "-f"): (1, "", REFUSAL)})
    with pytest.raises(nft_apply.NftApplyFailed) as caught:
        nft_apply.apply(runner, Place("kplab-abc123-node-minikube"), DOCUMENT)
    error = caught.value
    assert error.line_no == 3
    assert ">     3  add rule ip t c jump nowhere" in error.context
    assert "add chain ip t c" in error.context  # a neighbour
    assert "nothing was applied; the rejected line is 3" in str(error)
    assert "kplab-abc123-node-minikube" in str(error)


def test_a_refusal_without_a_line_still_says_nothing_was_applied():
    runner = FakeRunner({("nft", "-f"): (1, "", "Error: Could not process rule: Operation not "
                                                "permitted\n")})
    with pytest.raises(nft_apply.NftApplyFailed, match="nothing was applied.") as caught:
        nft_apply.apply(runner, Place("kplab-abc123-node-minikube"), DOCUMENT)
    assert caught.value.line_no is None


def test_the_document_goes_to_nft_on_stdin_and_is_applied_once():
    runner = FakeRunner()
    nft_apply.apply(runner, Place("ns"), DOCUMENT)
    assert runner.calls == [(Place("ns"), ("nft", "-f", "-"), DOCUMENT)]


def _live(mode: str) -> tuple[LiveLab, FakeRunner]:
    model = lab_file.load("lab-3").with_changes(profile="v1.34", proxy_mode=mode)
    run = RunRecord(run_id="abc123", lab_id=model.id, lab_source="", profile="v1.34",
                    proxy_mode=mode)
    runner = FakeRunner()
    return LiveLab(model, run, runner), runner


def test_an_nftables_lab_gets_kube_proxys_table_with_nft_and_no_iptables_document():
    live, runner = _live("nftables")
    live.install_rules()
    assert {argv for _, argv, _ in runner.calls} == {("nft", "-f", "-")}  # nothing of iptables
    # a new node: the table in nft_load's transactions, together the whole render
    parts = [document for _, _, document in runner.calls]
    assert parts[0].startswith('add table ip kube-proxy { comment "rules for kube-proxy" ; }')
    assert "numgen random mod 4 vmap" not in parts[0]  # anonymous maps after the chains
    assert any("numgen random mod 4 vmap" in part for part in parts[1:])
    assert sorted(line for part in parts for line in part.splitlines()) == \
        sorted(live.rendered_rules(node="minikube").splitlines())


def test_an_iptables_lab_still_gets_iptables_restore():
    live, runner = _live("iptables")
    live.install_rules()
    assert [argv[0] for _, argv, _ in runner.calls] == ["iptables-nft-restore"]


def test_resync_replaces_the_whole_table_in_one_nft_call():
    live, runner = _live("nftables")
    live.resync()
    (_, argv, document), = runner.calls
    assert argv == ("nft", "-f", "-")
    # add + delete first: stale endpoint chains go in the same transaction as the new state
    assert document.splitlines()[:2] == ["add table ip kube-proxy", "delete table ip kube-proxy"]


def test_save_lists_kube_proxys_table_and_refuses_an_iptables_table_by_name():
    live, runner = _live("nftables")
    live.save()
    assert runner.calls[-1][1] == ("nft", "list", "table", "ip", "kube-proxy")
    with pytest.raises(LabError, match="nftables mode.*not the iptables nat table"):
        live.save(table="nat")


def test_nftables_mode_with_an_iptables_profile_is_refused_before_anything_is_built():
    model = lab_file.load("lab-3")  # profile v1.23
    with pytest.raises(LabError, match="nftables mode needs profile v1.34"):
        LiveLab.start(model, proxy_mode="nftables")


def test_rules_of_an_nftables_lab_print_its_nft_document_and_refuse_an_iptables_profile(
        tmp_path):
    from click.testing import CliRunner

    from lab_runner.cli import load_commands

    cli = load_commands()
    text = (lab_file.LABS_DIR / "lab-3-clusterip" / "lab.yaml").read_text()
    path = tmp_path / "lab.yaml"
    path.write_text(text.replace("profile: v1.23", "profile: v1.34\nkubeProxy: {mode: nftables}"))
    shown = CliRunner().invoke(cli, ["rules", str(path)])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("add table ip kube-proxy")
    refused = CliRunner().invoke(cli, ["rules", str(path), "--profile", "v1.23"])
    # the kit's error (main() prints it as one line), not a renderer's ValueError
    assert isinstance(refused.exception, LabError), refused.exception
    assert "nftables mode needs profile v1.34" in str(refused.exception)
