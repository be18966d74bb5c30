"""Issue 20's differential test on nftables rules (issue 17): lab 7's `table ip kube-proxy`, the
unedited render and the kept cases (fixtures/differential/nft-cases.yaml, in `make test`) and,
marked slow, generated student-like edits of it (tests/strategies/nft_edits.py), each applied
to one live lab-7 node with one `nft -f` that replaces the table, judged by nft, the kit's
intake and nft_tracer, and by real connections from every caller (the client, each pod, to
itself too, and the node): kernel.py's counting, first-packet fates (0.5 s), binomial p-value
below 1e-6 or a fate the tracer gives no chance = a disagreement, shrunk by Hypothesis.

The kept cases are also checked without root: the intake refuses exactly what nft refused, and
the tracer predicts what the kernel did, from every caller (exact shares).

Environment: as test_differential_kernel.py (KPLAB_DIFF_EXAMPLES, KPLAB_DIFF_MINUTES,
KPLAB_DIFF_SEED, KPLAB_DIFF_LOG for `python -m tests.strategies.kernel LOG`,
KPLAB_DIFF_COLLECT=1, KPLAB_DIFF_CONNECTIONS).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, seed, settings

from lab_runner import lab_file
from tests.strategies import kernel, nft_kernel
from tests.strategies.kernel import labs  # noqa: F401 (a fixture)
from tests.strategies.nft_edits import (DNAT, HAIRPIN, MARK, MASQUERADING, NUMGEN, DropAll,
                                        Element, MoveDown, NftDocument, Replace, edited,
                                        nft_edit_lists)
from tests.strategies.observable import NONE

CASES = nft_kernel.nft_cases()
LAB7 = lab_file.load(nft_kernel.LAB)
BASE = NftDocument.of(nft_kernel.base_document(LAB7))


@pytest.fixture(scope="module")
def lab(labs):
    return labs.get(nft_kernel.LAB)


@pytest.fixture(scope="module")
def base(lab) -> NftDocument:
    assert nft_kernel.base_document(lab.model) == BASE.text
    return BASE


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_a_kept_nft_variant_is_read_and_traced_as_the_kernel_did(case):
    ruleset, refused = nft_kernel.intake(case.text)
    assert (refused is None) == case.loads, refused or "nft refuses it, the intake takes it"
    callers = case.callers()
    for caller, expected in case.expect.items():
        assert callers.predicted(ruleset, caller) == expected, caller


def test_every_nft_case_says_what_was_found_and_every_caller():
    assert CASES
    callers = set(nft_kernel.NftCallers(LAB7).callers)
    for case in CASES:
        assert case.found and case.edits and case.text.startswith("add table ip kube-proxy\n")
        assert not case.loads or set(case.expect) == callers, case.name


@seed(kernel.SEED)
@settings(max_examples=150, deadline=None, database=None)
@given(edits=nft_edit_lists())
def test_a_generated_variant_is_refused_or_traced_to_shares_that_sum_to_one(edits):
    """Without root: the intake refuses a variant with a reason or the tracer gives each caller
    observable fates (a pod and the source it saw, or no answer) summing to exactly 1, or
    names what it does not model; nothing else escapes."""
    ruleset, refused = nft_kernel.intake(edited(BASE, edits).text)
    if ruleset is None:
        assert refused
        return
    callers = nft_kernel.NftCallers(LAB7)
    if nft_kernel.unmodelled(callers, ruleset) is not None:
        return
    for caller in callers.callers:
        shares = callers.predicted(ruleset, caller)
        assert sum(shares.values()) == 1, (caller, shares)
        assert all(seen == NONE or " saw " in seen for seen in shares), shares


@pytest.mark.needs_root
def test_the_unedited_nft_table_agrees_from_every_caller(lab, base):
    assert nft_kernel.kernel_refuses(lab, base.text) is None
    ruleset, refused = nft_kernel.intake(base.text)
    assert refused is None
    entry: dict = {}
    callers = nft_kernel.NftCallers(lab.model)
    assert kernel.compare(lab, callers, ruleset, entry) is None, entry
    assert entry["status"] == "traced" and set(entry["callers"]) == set(callers.callers)


@pytest.mark.needs_root
@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_a_kept_nft_variant_does_on_the_kernel_what_it_did(lab, base, case):
    refused = nft_kernel.kernel_refuses(lab, case.text)
    try:
        assert (refused is None) == case.loads, refused
        if case.loads:
            measured = kernel.measure(lab, case.expect, case.callers().target)
            assert not any(problem for problem, _, _ in measured.values()), measured
    finally:
        nft_kernel.kernel_refuses(lab, base.text)


@pytest.mark.needs_root
@pytest.mark.slow
@seed(kernel.SEED)
@kernel.SURVEY
@given(edits=nft_edit_lists())
# The lessons of lab 7, tried every run: a modulus one short (an endpoint never drawn), one
# long (a draw with no element: the packet falls through undNATed), a duplicated endpoint, no
# hairpin mark, the mark xor'ed, masquerading emptied, the hairpin rule below the DNAT.
@example(edits=[Replace(NUMGEN, 0, r"mod \d+", "mod 3")])
@example(edits=[Replace(NUMGEN, 0, r"mod \d+", "mod 5")])
@example(edits=[Element(NUMGEN, 1, "retarget", 0)])
@example(edits=[Element(NUMGEN, 0, "copy", 0)])
@example(edits=[Replace(MARK, 0, r"mark set .*", "mark set mark xor 0x00004000")])
@example(edits=[DropAll(MASQUERADING)])
@example(edits=[MoveDown(HAIRPIN, 0)])
@example(edits=[Replace(DNAT, 0, r"dnat to \S+", "dnat to 172.17.0.2")])
def test_the_kernel_does_what_nft_tracer_predicts(lab, base, edits):
    text = edited(base, edits).text
    problem = nft_kernel.try_variant(lab, base.text, edits, text)
    if problem and not kernel.COLLECT:
        pytest.fail(f"{problem}\n{edits}\n{text}")
