"""The kit's one exception tree; only the CLI turns these into exit codes.

    LabError                      anything the kit reports to a user (exit 1 unless stated)
    ├── LabFileError              a lab.yaml that is malformed or inconsistent (names file, line, path)
    ├── EnvironmentProblem        the machine lacks something (root, a tool, a kernel feature) (exit 3)
    ├── CommandFailed             a command run by the kit failed (argv, rc, stderr)
    │   └── RestoreFailed         iptables-restore rejected a document (offending line + neighbours)
    ├── RunNotFound               no running lab matches what was asked for
    │   └── AmbiguousRun          several running labs match: the user names one by run id
    └── SubmissionError           a student submission the grader cannot accept (names file and line)

Defined beside the code that raises them (same tree): explain.dump.DumpError (an iptables-save dump
that cannot be read: names file and line) and explain.packet.ExplainError (a question explain
cannot answer for that dump); ruleset.nft_apply.NftApplyFailed, a RestoreFailed for `nft -f`.
"""

from __future__ import annotations


class LabError(Exception):
    """Base of every error the kit reports to a user."""

    exit_code = 1


class LabFileError(LabError):
    """A lab file that cannot be loaded; carries every problem found, each with its YAML path."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s):\n{listing}")


class EnvironmentProblem(LabError):
    """The machine lacks something the kit needs; the message says how to fix it."""

    exit_code = 3


class CommandFailed(LabError):
    """A command the kit ran exited non-zero."""

    def __init__(self, argv: list[str], rc: int, stdout: str, stderr: str, where: str = ""):
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        place = f" in {where}" if where else ""
        detail = (stderr or stdout).strip()
        super().__init__(f"`{' '.join(argv)}`{place} failed (exit {rc}): {detail}")


class RestoreFailed(CommandFailed):
    """iptables-restore refused a document; nothing was applied (it is atomic)."""

    def __init__(self, argv, rc, stdout, stderr, where, line_no: int | None, context: str):
        super().__init__(argv, rc, stdout, stderr, where)
        self.line_no = line_no
        self.context = context
        if line_no is not None:
            self.args = (f"{self.args[0]}\nnothing was applied; the rejected line is {line_no}:\n{context}",)
        else:
            self.args = (f"{self.args[0]}\nnothing was applied.",)


class RunNotFound(LabError):
    """No running lab matches the run id or lab id given."""


class AmbiguousRun(RunNotFound):
    """Several running labs match a lab id: a command must not pick one (or the lab file) itself."""


class SubmissionError(LabError):
    """A submission the grader cannot accept; the message names the file and line."""
