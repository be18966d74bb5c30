"""nft_load.split: which lines go into which transaction, and errors named by the whole
document's line numbers."""

from __future__ import annotations

import pytest

from lab_runner.commands import FakeRunner, Place
from lab_runner.ruleset.nft_apply import NftApplyFailed
from lab_runner.ruleset.nft_load import NftLoadFailed, load, split

T = "add rule ip kube-proxy"
DOC = "\n".join([
    "add table ip kube-proxy",
    "add map ip kube-proxy service-ips { type ipv4_addr : verdict ; }",
    "add chain ip kube-proxy svc-a",
    "add chain ip kube-proxy ep-a",
    f"{T} svc-a ip daddr 10.0.0.1 jump mark",
    f"{T} svc-a numgen random mod 2 vmap {{ 0 : goto ep-a , 1 : goto ep-a }}",
    f"{T} svc-a counter",  # after an anonymous-set rule in its chain: must follow it
    f"{T} ep-a dnat to 1.2.3.4:80",
    "add chain ip kube-proxy svc-b",
    f"{T} svc-b numgen random mod 1 vmap {{ 0 : goto ep-a }}",
    "add element ip kube-proxy service-ips { 10.0.0.1 : goto svc-a }",
    "",
])


def test_split_defers_anonymous_set_rules_and_elements():
    parts = split(DOC)
    assert [p.numbers for p in parts] == [(1, 2, 3, 4, 5, 8, 9), (6, 7, 10), (11,)]
    assert parts[1].lines[1] == f"{T} svc-a counter"
    assert parts[0].text.endswith("svc-b\n")


def test_split_batches_deferred_rules():
    assert [p.numbers for p in split(DOC, batch=2)][1:] == [(6, 7), (10,), (11,)]


def test_a_non_add_command_after_a_rule_keeps_one_transaction():
    doc = DOC + f"flush chain ip kube-proxy svc-a\n{T} svc-a drop\n"
    (only,) = split(doc)
    assert only.numbers == tuple(range(1, 14)) and only.text == doc


def test_load_runs_each_transaction_in_order():
    runner = FakeRunner()
    load(runner, Place("ns"), DOC)
    assert [c[1] for c in runner.calls] == [("nft", "-f", "-")] * 3
    assert [c[2] for c in runner.calls] == [p.text for p in split(DOC)]


def test_error_names_the_documents_line():
    runner = FakeRunner({("nft",): (1, "", "/dev/stdin:6:5-9: Error: Could not process rule")})
    with pytest.raises(NftApplyFailed) as failed:
        load(runner, Place("ns"), DOC)
    assert failed.value.line_no == 8  # the 6th line of the first transaction
    assert "> " + "    8  " + f"{T} ep-a dnat" in failed.value.context


def test_a_failure_after_the_first_transaction_says_what_stayed_applied():
    class SecondFails(FakeRunner):
        def run(self, argv, place=Place(), *, input=None, check=True, timeout=60):
            self.answers = {("nft",): (1, "", "/dev/stdin:2:1-3: Error: No such file")} \
                if self.calls else {}
            return super().run(argv, place, input=input, check=check, timeout=timeout)

    with pytest.raises(NftLoadFailed) as failed:
        load(SecondFails(), Place("ns"), DOC)
    assert failed.value.committed == 1 and failed.value.line_no == 7
    assert "the 1 before it were" in str(failed.value)
    assert "nothing was applied" not in str(failed.value)
