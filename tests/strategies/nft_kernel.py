"""The nftables side of issue 20's differential test (issue 17): lab 7's callers traced with
nft_tracer, a whole nft document judged by `nft -f` on a live lab-7 node and by the kit's intake,
and the kept cases of fixtures/differential/nft-cases.yaml. The connections, their counting and
the binomial judgement are kernel.py's (tests/integration/test_differential_nft.py); the intake
and the prediction here need no root.
"""

from __future__ import annotations

import time
from fractions import Fraction

import yaml

from lab_runner.errors import LabError, RestoreFailed, SubmissionError
from lab_runner.grading import nft_submission
from lab_runner.lab import LiveLab
from lab_runner.model import Lab
from lab_runner.ruleset import nft_tracer
from lab_runner.ruleset.nft_model import NftRuleset
from lab_runner.ruleset.nft_parse import NftSyntaxError, parse_nft
from lab_runner.ruleset.nft_render import render
from lab_runner.ruleset.semantics import TraceLimit, UnsupportedRule
from tests.strategies import kernel
from tests.strategies.observable import CASES, LIMITS, Callers, Case

LAB = "lab-7"
NFT_CASES = CASES / "nft-cases.yaml"


class NftCallers(Callers):
    """Callers whose predictions come from nft_tracer (what each observes: as Callers)."""

    def predicted(self, ruleset, caller: str) -> dict[str, Fraction]:
        out: dict[str, Fraction] = {}
        for outcome in nft_tracer.trace(ruleset, self.packet(caller), LIMITS).outcomes:
            seen = self.observable(caller, outcome)
            out[seen] = out.get(seen, Fraction(0)) + outcome.probability
        return out


def base_document(model: Lab) -> str:
    """The kit's render for the lab's node, as one `nft -f` that replaces the table there."""
    return render(model, model.profile, replace=True)


def intake(text: str) -> tuple[NftRuleset | None, str | None]:
    """The kit's reading of a whole nft document: (ruleset, None), or (None, why it refuses).
    The parser, then the whole-file refusals the nft grading intake makes (a jump nowhere, a key
    that does not fit its map, a loop), each of which nft makes too."""
    try:
        ruleset = parse_nft(text)
        for check in (nft_submission.refuse_unknown_targets, nft_submission.refuse_bad_keys):
            check(ruleset, text, "variant.nft")
        nft_submission.refuse_loops(ruleset, "", "variant.nft")
    except (NftSyntaxError, SubmissionError) as exc:
        return None, str(exc)[:300]
    return ruleset, None


def kernel_refuses(live: LiveLab, text: str) -> str | None:
    """`nft -f`'s refusal of the document on the lab's node, or None (applied: the document's
    head deletes the table it replaces, in the same transaction)."""
    try:
        live.restore(text)
    except RestoreFailed as exc:
        return (exc.stderr or str(exc)).strip()[:300]
    return None


def unmodelled(callers: Callers, ruleset) -> tuple[str, str] | None:
    """(status, what) when the tracer does not model the variant for some caller, else None."""
    for caller in callers.callers:
        try:
            callers.predicted(ruleset, caller)
        except TraceLimit as exc:
            return "limit", str(exc)
        except (UnsupportedRule, LabError) as exc:
            return "unsupported", str(exc)
    return None


def judge(live: LiveLab, callers: Callers, text: str, entry: dict) -> str | None:
    """One variant on the live node: nft and the intake accept or refuse it alike; if both take
    it and the tracer models it, every caller's connections must show the traces. The first
    disagreement, or None; `entry` gets the status and figures (as kernel.judge)."""
    refused = kernel_refuses(live, text)
    ruleset, kit = intake(text)
    gap = unmodelled(callers, ruleset) if ruleset is not None else None
    if refused is not None and gap is not None:
        # The parser keeps what it cannot read as an unmodelled statement, which the grading
        # intake refuses (refuse_unmodelled): neither takes the file, as nft does not.
        entry.update(status="refused", kernel=refused, kit=gap[1])
        return None
    if (refused is None) != (kit is None):
        entry.update(status="intake-differs", kernel=refused, kit=kit)
        return f"nft -f: {refused or 'loads it'}; the intake: {kit or 'takes it'}"
    if refused is not None:
        entry.update(status="refused", kernel=refused)
        return None
    if gap is not None:
        entry.update(status=gap[0], what=gap[1])
        return None
    return kernel.compare(live, callers, ruleset, entry)


class NftCase(Case):
    """A kept nft variant of lab 7's table (fields: observable.Case's), traced with nft_tracer."""

    def callers(self) -> NftCallers:
        return NftCallers(self.model())


def nft_cases() -> list[NftCase]:
    out = []
    for entry in yaml.safe_load(NFT_CASES.read_text(encoding="utf-8")):
        expect = {caller: {seen: Fraction(p) for seen, p in fates.items()}
                  for caller, fates in (entry.get("expect") or {}).items()}
        out.append(NftCase(entry["name"], entry["found"], entry["edits"],
                           (CASES / f"{entry['name']}.nft").read_text(encoding="utf-8"),
                           entry["loads"], expect, lab=LAB))
    return out


def try_variant(live: LiveLab, base_text: str, edits, text: str) -> str | None:
    """One generated variant judged on the live node (unless kernel.skipped), its log line
    written, the unedited table put back; the disagreement, or None."""
    if kernel.skipped(text):
        return None
    entry: dict = {"lab": "lab-7-nft", "edits": repr(edits), "at": time.time()}
    began = time.monotonic()
    try:
        return judge(live, NftCallers(live.model), text, entry)
    finally:
        entry["seconds"] = round(time.monotonic() - began, 2)
        kernel.log(entry)
        kernel_refuses(live, base_text)
