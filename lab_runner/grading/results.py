"""The outcome of grading one submission: per-check points and feedback, as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

STATUSES = ("passed", "failed", "undecidable", "error")


@dataclass
class CheckResult:
    id: str
    title: str
    points: float
    max_points: float
    status: str  # passed | failed | undecidable | error
    output: str = ""  # what the student reads: observed vs expected, never the solution
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed" or (self.status == "undecidable" and self.points == self.max_points)


@dataclass
class GradeResult:
    lab: str
    exercise: str
    exercise_title: str
    submission: str
    mode: str
    checks: list[CheckResult] = field(default_factory=list)
    error: str = ""  # the submission could not be graded at all (and scores 0)
    seconds: float = 0.0
    evidence: dict = field(default_factory=dict)  # for reports: spreads, counters

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.checks)

    @property
    def passed_count(self) -> int:
        return sum(1 for c in self.checks if c.passed)

    @property
    def failed_count(self) -> int:
        return len(self.checks) - self.passed_count

    def summary_line(self) -> str:
        """The closing line graders and CI read: `N passed, N failed`."""
        return f"{self.passed_count} passed, {self.failed_count} failed"

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(score=self.score, max_score=self.max_score, passed=self.passed_count,
                    failed=self.failed_count)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "GradeResult":
        checks = [CheckResult(**{k: v for k, v in c.items() if k in CheckResult.__dataclass_fields__})
                  for c in data.get("checks", [])]
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "checks"}
        return cls(checks=checks, **fields)
