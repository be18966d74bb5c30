"""Issue 20's live tier for labs 2 and 4, as root and marked slow: generated student-like edits
of each lab's documents (tests/strategies/edits.py lab_bases: lab 2's node-a with exercise 2's
or 3's answer, its virtual IP 10.96.0.200:80 reaching pods on both nodes; lab 4's starting and
synced chain sets of each exercise, on that exercise's own pods), applied to one live lab per
model and judged as test_differential_kernel.py judges lab 3's (tests/strategies/kernel.py).
Their kept cases run there, in `make test`. Same environment variables (KPLAB_DIFF_EXAMPLES is
per lab here).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, seed
from hypothesis import strategies as st

from lab_runner.evidence.probing import Target
from tests.strategies import kernel
from tests.strategies.edits import edit_lists, edited, lab_bases
from tests.strategies.kernel import labs  # noqa: F401 (a fixture)
from tests.strategies.observable import Callers

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]


def _variant(labs, base, edits) -> None:
    text = edited(base.document, edits).text
    if kernel.skipped(text):
        return
    live = labs.get(base.lab, base.exercise)
    callers = Callers(live.model, Target(*base.target) if base.target else None)
    entry: dict = {"lab": base.lab, "base": base.name, "edits": repr(edits), "at": time.time()}
    began = time.monotonic()
    try:
        problem = kernel.judge(live, callers, text, entry)
    finally:
        entry["seconds"] = round(time.monotonic() - began, 2)
        kernel.log(entry)
    if problem and not kernel.COLLECT:
        pytest.fail(f"{base.name}: {problem}\n{edits}\n{text}")


@seed(kernel.SEED)
@kernel.SURVEY
@given(base=st.sampled_from(lab_bases("lab-2")), edits=edit_lists())
def test_lab2_the_kernel_does_what_the_tracer_predicts(labs, base, edits):
    _variant(labs, base, edits)


@seed(kernel.SEED)
@kernel.SURVEY
@given(base=st.sampled_from(lab_bases("lab-4")), edits=edit_lists())
def test_lab4_the_kernel_does_what_the_tracer_predicts(labs, base, edits):
    _variant(labs, base, edits)


def test_every_base_agrees_unedited(labs):
    """Each document the edits start from, as it is: the kernel does what the tracer says."""
    for base in lab_bases("lab-2") + lab_bases("lab-4"):
        entry: dict = {}
        live = labs.get(base.lab, base.exercise)
        callers = Callers(live.model, Target(*base.target) if base.target else None)
        assert kernel.judge(live, callers, base.document.text, entry) is None, (base.name, entry)
        assert entry["status"] == "traced", (base.name, entry)
