"""Grade one submission: read it, open a sandbox, run the exercise's checks with pytest, score."""

from __future__ import annotations

import contextlib
import io
import sys
import time
from pathlib import Path

import pytest

from lab_runner.errors import LabError, SubmissionError
from lab_runner.grading import exercise as exercises
from lab_runner.grading import submission as submissions
from lab_runner.grading.results import CheckResult, GradeResult
from lab_runner.grading.sandbox import open_sandbox
from lab_runner.pytest_plugin import GradingPlugin


def grade(lab: str, which: str | int, path: str | Path, mode: str = "live") -> GradeResult:
    """Score `path` for exercise `which`; a submission that cannot be graded scores 0 with a reason."""
    ex = exercises.find(lab, which)
    read, open_for = _intake(ex)
    started = time.monotonic()
    # The lab the exercise belongs to (a variant's own lab file has another id).
    result = GradeResult(lab=ex.directory.parent.parent.name, exercise=ex.number, exercise_title=ex.title,
                         submission=str(path), mode=mode)
    try:
        submission = read(path)
        sandbox = open_for(mode, submission)
    except SubmissionError as exc:
        result.error = str(exc)
        result.checks = [CheckResult(c.id, c.title, 0, c.points, "error", f"not graded: {exc}")
                         for c in ex.checks]
        result.seconds = round(time.monotonic() - started, 3)
        return result
    try:
        result.checks = run_checks(ex, sandbox)
        # For reports: the submission, the state it was applied to, and (live) the node's nat
        # table with the counters grading moved, for the chain graph.
        result.evidence = {**sandbox.evidence, "submission": submission.text,
                           "start": ex.start_document}
        if getattr(sandbox, "lab", None) is not None and ex.format != "nft":  # nft: no counters
            try:
                result.evidence["counters"] = sandbox.lab.save(table="nat")
            except LabError as exc:
                result.evidence["counters_error"] = str(exc)
    finally:
        sandbox.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


@contextlib.contextmanager
def _own_check_modules():
    """Each lab's checks import their own `conftest`; keep it apart from any other lab's (or the
    calling test session's) module of that name, so several labs can be graded in one process."""
    def ours(name: str) -> bool:
        return name == "conftest" or name.startswith("test_ex")

    saved = {name: module for name, module in sys.modules.items() if ours(name)}
    for name in saved:
        del sys.modules[name]
    try:
        yield
    finally:
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


def _intake(ex: exercises.Exercise):
    """How this exercise's submissions are read and sandboxed: iptables-restore text, `nft -f`
    commands (a lab in kube-proxy's nftables mode), or (lab 1) a pod wired by hand as `ip`
    commands."""
    from lab_runner.grading import nft_submission, wiring

    if ex.format == nft_submission.FORMAT:
        return (lambda path: nft_submission.read(path, ex),
                lambda mode, sub: open_sandbox(mode, ex, sub))

    if wiring.applies(ex):
        spec = wiring.load_spec(ex)
        return (lambda path: wiring.read(path, ex, spec),
                lambda mode, sub: wiring.open_sandbox(mode, ex, sub, spec))
    return (lambda path: submissions.read(path, ex),
            lambda mode, sub: open_sandbox(mode, ex, sub))


def run_checks(ex: exercises.Exercise, sandbox) -> list[CheckResult]:
    if not ex.check_files:
        raise LabError(f"exercise {ex.number} has no checks (expected "
                       f"{ex.directory.parent.parent}/checks/test_ex{ex.number}_*.py)")
    plugin = GradingPlugin(ex, sandbox)
    args = [str(f) for f in ex.check_files] + ["-q", "--no-header", "-p", "no:cacheprovider",
                                               "-p", "no:randomly", "--disable-warnings",
                                               "--rootdir", str(ex.directory.parent.parent)]
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), \
            _own_check_modules():
        code = pytest.main(args, plugins=[plugin])
    if code == pytest.ExitCode.INTERRUPTED:
        # pytest swallowed a Ctrl-C or SIGTERM (cli.Terminated): pass it on, so the sandbox is
        # taken down and the command says "interrupted" and exits 130, as anywhere else.
        raise KeyboardInterrupt()
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise LabError(f"the checks of exercise {ex.number} could not run (pytest exit "
                       f"{int(code)}):\n{output.getvalue()[-2000:]}")
    results = []
    for spec in ex.checks:
        found = plugin.results.get(spec.id)
        results.append(found or CheckResult(spec.id, spec.title, 0, spec.points, "error",
                                            "no check implements this (a kit bug: tell the "
                                            "instructor)"))
    return results
