"""Checks every lab's exercises share: each caller class as the reference makes it, nothing else changed.

A lab's check module takes them by assignment (`test_every_caller = every_caller_check(...)`,
`test_nothing_else_changed = nothing_else_changed_check()`); pytest collects them there, and
the exercise file gives their points, as for any check.
"""

from __future__ import annotations

import pytest

from lab_runner.evidence.probing import Target
from lab_runner.grading.outcomes import caller_classes


def caller_problem(sandbox, target: Target, *, callers=None, focus=None) -> str | None:
    """The first packet class (caller, and mark bits it came with) whose outcome differs from
    what the reference rules make of it, in words; None when every class is as it should be.
    callers: the caller names to try (default: every caller of the lab)."""
    for cls in caller_classes(sandbox.model, target):
        if callers is None or cls.caller in callers:
            problem = sandbox.differs(cls, focus)
            if problem:
                return problem
    return None


def not_to_itself(cls, fate) -> bool:
    """Fates other than a pod reaching itself (for an exercise with a hairpin check of its own)."""
    return fate.pod != cls.caller


def to_itself(cls, fate) -> bool:
    """A pod reaching itself, or a connection nobody answered."""
    return fate.pod == cls.caller or not fate.answered


def lost_rules_message(sandbox) -> str | None:
    """What a submission removed that its task did not concern, in words; None when nothing."""
    lost = sandbox.lost_rules()
    if not lost:
        return None
    parts = []
    for chain, number, rule in lost:
        comment = rule.match("comment")
        what = (f"the one that jumps to {rule.target}" if rule.target and rule.target.startswith("KUBE-")
                else f"a {rule.target or 'counting'} rule")
        if comment and comment.args:
            what += f", kube-proxy's comment \"{comment.args[-1]}\""
        parts.append(f"{chain} lost rule {number} of the starting state ({what})")
    return "; ".join(parts) + ". Expected: rules the task does not concern stay as they were."


def every_caller_check(target, focus=None):
    """The `every-caller` check: each caller class meets what the reference rules make of it.
    target: the Target, or a function of the sandbox giving it."""

    @pytest.mark.check("every-caller")
    def test_every_caller(sandbox):
        problem = caller_problem(sandbox, target(sandbox) if callable(target) else target,
                                 focus=focus)
        assert problem is None, problem

    return test_every_caller


def nothing_else_changed_check():
    """The `nothing-else-changed` check: the starting state's rules the task does not concern
    are still there, in their order (extra rules in between are fine)."""

    @pytest.mark.check("nothing-else-changed")
    def test_nothing_else_changed(sandbox):
        problem = lost_rules_message(sandbox)
        assert problem is None, problem

    return test_nothing_else_changed
