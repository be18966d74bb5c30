"""pytest plugin: a `lab` fixture for tests, and the grading fixtures checks are written with.

Checks are ordinary pytest tests marked `@pytest.mark.check("id")`; they ask the `sandbox`
fixture questions (connect, spread, rules_hit) and assert with messages a student can act on.
"""

from __future__ import annotations

import time

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "check(id): a graded check; its points come from the "
                            "exercise file")
    config.addinivalue_line("markers", "lab(name): the lab the `lab` fixture brings up")


@pytest.fixture
def lab(request):
    """A lab up for one test (default lab-3, or @pytest.mark.lab("lab-x")); always torn down."""
    from lab_runner.lab import LiveLab

    marker = request.node.get_closest_marker("lab")
    with LiveLab.up(marker.args[0] if marker else "lab-3") as live:
        yield live


class GradingPlugin:
    """Feeds one submission's sandbox to the checks and records each check's result."""

    def __init__(self, exercise, sandbox):
        from lab_runner.grading.results import CheckResult

        self._exercise = exercise
        self._sandbox = sandbox
        self.results: dict[str, CheckResult] = {}
        self._started: dict[str, float] = {}

    @pytest.fixture(scope="session")
    def sandbox(self):
        return self._sandbox

    @pytest.fixture(scope="session")
    def exercise(self):
        return self._exercise

    def pytest_collection_modifyitems(self, items):
        for item in items:
            if item.get_closest_marker("check") is None:
                raise pytest.UsageError(f"{item.nodeid}: a check needs @pytest.mark.check(id)")

    def pytest_runtest_logstart(self, nodeid, location):
        self._started[nodeid] = time.monotonic()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when != "call" and not (report.when == "setup" and report.failed):
            return
        from lab_runner.grading.results import CheckResult
        from lab_runner.grading.sandbox import Undecidable

        check_id = item.get_closest_marker("check").args[0]
        try:
            spec = self._exercise.check(check_id)
        except KeyError:
            raise pytest.UsageError(f"{item.nodeid}: check {check_id!r} is not in "
                                    f"{self._exercise.directory}/exercise.yaml") from None
        seconds = time.monotonic() - self._started.get(item.nodeid, time.monotonic())
        if report.passed:
            status, points, output = "passed", spec.points, "ok"
        elif call.excinfo is not None and call.excinfo.errisinstance(Undecidable):
            full = spec.static == "full"
            status, points = "undecidable", spec.points if full else 0
            output = (f"static mode cannot decide this ({call.excinfo.value}); scored "
                      f"{'in full' if full else 'zero'} as the exercise file says")
        elif call.excinfo is not None and call.excinfo.errisinstance(AssertionError):
            status, points, output = "failed", 0, _message(call.excinfo.value)
        else:
            status, points = "error", 0
            output = f"the check could not run: {call.excinfo.exconly() if call.excinfo else report.longreprtext}"
        self.results[check_id] = CheckResult(check_id, spec.title, points, spec.points, status,
                                             output, round(seconds, 3))


def _message(exc: AssertionError) -> str:
    """The check's own sentence, without pytest's rewritten comparison detail."""
    text = str(exc).strip()
    return text.split("\nassert ", 1)[0].strip() or "the check failed"
