"""A student's submission: read as data (never shell), size-limited, parsed, confined to its chains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab_runner.errors import SubmissionError
from lab_runner.grading.characters import lines, refuse_unreadable
from lab_runner.grading.exercise import Exercise
from lab_runner.grading.jump_graph import refuse_bad_jumps
from lab_runner.grading.kernel_limits import refuse_what_the_kernel_refuses
from lab_runner.grading.text_file import decode, read_limited
from lab_runner.ruleset.parse import Ruleset, RulesetSyntaxError, parse
from lab_runner.ruleset.semantics import unsupported


CHAIN_COMMANDS = ("-A", "--append", "-I", "--insert", "-N", "--new-chain", "-F", "--flush", "-X",
                  "--delete-chain", "-D", "--delete", "-R", "--replace", "-P", "--policy", "-Z",
                  "--zero")


@dataclass(frozen=True)
class Submission:
    path: str
    text: str
    ruleset: Ruleset  # the submission applied on top of the exercise's starting state


def read(path: str | Path, exercise: Exercise) -> Submission:
    """Read and validate one submission file; every refusal names the file and, where it can, the line."""
    name, raw = read_limited(path, exercise.max_bytes)
    return from_bytes(raw, name, exercise)


def from_bytes(raw: bytes, name: str, exercise: Exercise) -> Submission:
    """The one intake of both modes: a file either mode refuses, both refuse, with one message
    (file and line): what iptables-restore or the kernel would refuse, what the exercise does
    not open, and what the rule tracer cannot model, before any lab is built."""
    text = decode(raw, name, exercise.max_bytes)
    if not text.strip():
        raise SubmissionError(f"{name}: the file is empty; submit the rules in iptables-restore "
                              "format (what `iptables-save` prints)")
    ruleset = as_iptables_restore(text, name, parse(exercise.start_document, "<starting state>"))
    confine(text, name, exercise)
    refuse_unmodelled(ruleset, name)
    return Submission(name, text, ruleset)


def as_iptables_restore(text: str, name: str, base: Ruleset | None = None) -> Ruleset:
    """The document applied on `base` as iptables-restore would apply it, or the SubmissionError
    (file and line) for what iptables-restore or the kernel would refuse in it."""
    refuse_unreadable(text, name)  # line endings, control characters, lengths
    base = base if base is not None else Ruleset()
    try:
        ruleset = parse(text, name, base=base)
    except RulesetSyntaxError as exc:
        raise SubmissionError(str(exc)) from exc
    refuse_what_the_kernel_refuses(text, name)
    refuse_bad_jumps(ruleset, base, name)
    return ruleset


def refuse_unmodelled(ruleset: Ruleset, name: str) -> None:
    """Refuse a rule the tracer cannot model, in both modes alike: static mode could not grade
    it, and live mode alone must not give a file a score the other mode cannot. Static mode's
    packets carry the node's routes (sampling.node_routes), so `-o` and REDIRECT are graded (a
    REDIRECT hands the connection to the node itself, where nothing of the lab listens)."""
    problem = unsupported(ruleset, routes=True, redirect=True)
    if problem is not None:
        rule = problem.rule
        raise SubmissionError(f"{name}, line {rule.line_no}: the kit cannot model {problem.what} "
                              "(neither grading mode takes this file); write it with the matches "
                              f"and targets the labs use\n    {rule.text}")


def confine(text: str, name: str, exercise: Exercise) -> None:
    """Refuse tables and chains the exercise does not open to the student, naming the line."""
    table = None
    allowed_tables = ", ".join(sorted(exercise.allowed))
    for number, raw in enumerate(lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            if table not in exercise.allowed:
                raise SubmissionError(f"{name}, line {number}: table {table!r} is not part of this "
                                      f"exercise; write only in: {allowed_tables}")
            continue
        if line == "COMMIT" or table is None:
            continue
        words = line.split()
        if words[0] in CHAIN_COMMANDS and len(words) == 1:
            raise SubmissionError(f"{name}, line {number}: `{words[0]}` without a chain acts on "
                                  f"every chain of table {table!r}; name the chain")
        if line.startswith(":"):
            chain = words[0][1:]
        elif len(words) >= 2 and words[0] in CHAIN_COMMANDS:
            chain = words[1]
        elif words and words[0].startswith("["):  # counters in front, as iptables-save -c writes
            chain = words[2] if len(words) > 2 else ""
        else:
            continue
        if not exercise.chain_allowed(table, chain):
            chains = ", ".join(exercise.allowed[table])
            raise SubmissionError(f"{name}, line {number}: chain {chain!r} in table {table!r} is "
                                  f"not part of this exercise; write only in: {chains}")
