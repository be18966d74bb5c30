"""Executable lessons: a Markdown walkthrough, parsed into steps and run command by command.

The lesson format, as an instructor writes it (labs/<lab>/walkthrough.md):

    # Title of the lesson

    Optional intro prose (any Markdown).

    ## 1. Title of the first step

    Explanation (any Markdown, including ```text or ```yaml samples, which are shown, never run).

    ```host
    kubectl -n stateful-apps get svc
    ```

    ```expect
    my-app
    re: 10\\.104\\.5\\.205\\s+<none>
    ```

    ## 2. A step with no command is fine: pure explanation

A command block's first word says where it runs: `host` (the student's own machine: `kubectl …`,
`lab-runner …`), `node [NAME]`, `client [NAME]` or `pod NAME`. Each line of it is one command
(a line ending in `\\` goes on to the next; lines starting with `#` are comments). An `expect`
block right after a command block lists marks its output must contain, one per line: plain text
(spaces at either end ignored), `re: PATTERN` (a Python regular expression, searched per line), or
`exit: N` (the exit status expected from every command of the block; 0 unless stated).

The runner shows each step, runs its commands through an injected `execute(where, command)`,
shows the real output and checks the marks. It never decides how a command is run.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Union

from rich.console import Console
from rich.markdown import Markdown
from rich.text import Text

from lab_runner.errors import LabError

Execute = Callable[[str, str], tuple[int, str]]  # (where, command) -> (exit status, output)

# Where a command block may run, and whether it takes a name after the kind.
PLACES = {"host": "none", "node": "optional", "client": "optional", "pod": "required"}
DISPLAY_ONLY = ("text", "yaml")  # samples an instructor shows; never run
VALID_KINDS = "host, node [NAME], client [NAME], pod NAME, expect, text, yaml"

# Prompts shown before a command; `{name}` is the block's target (or its kind when none is given).
# The caller passes the lab's own, e.g. {"node": "docker@minikube:~$ "} for the seed's minikube.
DEFAULT_PROMPTS = {"host": "$ ", "node": "{name}:~$ ", "client": "{name}:~$ ", "pod": "{name}:/# "}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")
STEP_TITLE = re.compile(r"^(\d+)[.)][ \t]+(\S.*)$")


class LessonError(LabError):
    """A walkthrough that cannot be used; lists every problem as `file:line: message`."""

    def __init__(self, path: str, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = problems
        listing = "\n".join(f"  {path}:{line}: {message}" for line, message in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the lesson:\n{listing}")


class NoSuchStep(LabError):
    """A start step that the lesson does not have; the message lists the steps it has."""


# -- the lesson as data -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mark:
    """Something the output must contain: plain text or, for `re:` marks, a regular expression."""

    text: str
    line: int
    regex: bool = False

    def found_in(self, output: str) -> bool:
        if self.regex:
            return re.search(self.text, output, re.MULTILINE) is not None
        return self.text in output

    def __str__(self) -> str:
        return f"re: {self.text}" if self.regex else self.text


@dataclass(frozen=True)
class Command:
    """One command as written in the lesson (continuation lines kept for display)."""

    text: str
    line: int

    @property
    def to_run(self) -> str:
        # The continuation is for the reader; the command itself is one line.
        return re.sub(r"[ \t]*\\\n[ \t]*", " ", self.text)


@dataclass(frozen=True)
class CommandBlock:
    """A fenced block of commands that run in one place, with the marks its output must show."""

    where: str  # the block's info string, normalised: "host", "node", "pod my-app-7f569f66d9-dfrdh"
    commands: tuple[Command, ...]
    line: int
    marks: tuple[Mark, ...] = ()
    exit_code: int = 0
    has_expect: bool = False


@dataclass(frozen=True)
class Prose:
    """Explanation shown as rendered Markdown."""

    text: str


Item = Union[Prose, CommandBlock]


@dataclass(frozen=True)
class Step:
    """One `## N. Title` section: explanation and command blocks, in the order written."""

    number: int
    title: str
    line: int
    items: tuple[Item, ...] = ()

    @property
    def blocks(self) -> tuple[CommandBlock, ...]:
        return tuple(i for i in self.items if isinstance(i, CommandBlock))


@dataclass(frozen=True)
class Lesson:
    """A parsed walkthrough: title, intro and numbered steps."""

    title: str
    intro: str
    steps: tuple[Step, ...]
    source: str = ""


# -- parsing -------------------------------------------------------------------------------------------

def parse(path: str | Path) -> Lesson:
    """Read a walkthrough file, or raise LessonError listing every problem with its line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LessonError(str(path), [(0, f"cannot read: {exc}")]) from exc
    return parse_text(text, str(path))


def parse_text(text: str, source: str = "<walkthrough.md>") -> Lesson:
    """Parse walkthrough Markdown; `source` names the file in messages."""
    return _Parser(source).parse(text.splitlines())


class _Parser:
    """Reads the lesson line by line, collecting every problem so an author fixes them in one go."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[tuple[int, str]] = []
        self.title: str | None = None
        self.intro: list[str] = []
        self.steps: list[Step] = []
        self.step: dict | None = None  # the step being read: number, title, line, items
        self.prose: list[str] = []

    def parse(self, lines: list[str]) -> Lesson:
        i = 0
        while i < len(lines):
            number, line = i + 1, lines[i]
            fence = FENCE.match(line)
            if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
                end = self._closing(lines, i, fence.group(1))
                if end is None:
                    self.problem(number, f"this {fence.group(1)} block is never closed; add a line "
                                         f"with {fence.group(1)} after its last line")
                    break
                self.block(fence.group(2).strip(), lines[i + 1:end], number, lines[i:end + 1])
                i = end + 1
                continue
            heading = HEADING.match(line)
            if heading and len(heading.group(1)) == 1:
                self.title_line((heading.group(2) or "").strip(), number)
            elif heading and len(heading.group(1)) == 2:
                self.step_heading((heading.group(2) or "").strip(), number)
            else:
                self.prose.append(line)
            i += 1
        self.end_step()
        if self.title is None:
            self.problem(1, "the lesson needs a title: a first line like '# How a ClusterIP "
                            "Service works'")
        if not self.steps and self.title is not None:
            self.problem(len(lines) or 1, "the lesson has no steps; start one with '## 1. Step title'")
        if self.problems:
            raise LessonError(self.source, self.problems)
        return Lesson(self.title or "", "\n".join(self.intro).strip(), tuple(self.steps), self.source)

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    @staticmethod
    def _closing(lines: list[str], start: int, opening: str) -> int | None:
        for j in range(start + 1, len(lines)):
            stripped = lines[j].strip()
            if stripped and set(stripped) == {opening[0]} and len(stripped) >= len(opening) \
                    and len(lines[j]) - len(lines[j].lstrip(" ")) <= 3:
                return j
        return None

    # -- headings ---------------------------------------------------------------------------------
    def title_line(self, title: str, line: int) -> None:
        if self.title is not None or self.step is not None:
            self.problem(line, "only one '# Title' per lesson; steps are '## N. Title', "
                               "and headings inside a step start with '###'")
            return
        if not title:
            self.problem(line, "the '#' title line is empty")
        self.title = title or "?"
        self.intro.extend(self.prose)
        self.prose = []

    def step_heading(self, text: str, line: int) -> None:
        if self.title is None:
            self.problem(line, "the lesson needs its '# Title' before the first step")
            self.title = "?"
        self.end_step()
        expected = len(self.steps) + 1
        match = STEP_TITLE.match(text)
        if not match:
            self.problem(line, f"a step heading must look like '## {expected}. Step title', "
                               f"got '## {text}'")
            title = text or "?"
        else:
            title = match.group(2).strip()
            if int(match.group(1)) != expected:
                self.problem(line, f"this step is numbered {match.group(1)} but it is step "
                                   f"{expected}; number the steps 1, 2, 3, … in order")
        self.step = {"number": expected, "title": title, "line": line, "items": []}

    def end_step(self) -> None:
        if self.step is None:
            self.intro.extend(self.prose)
            self.prose = []
            return
        self.flush_prose()
        self.steps.append(Step(self.step["number"], self.step["title"], self.step["line"],
                               tuple(self.step["items"])))
        self.step = None

    def flush_prose(self) -> None:
        text = "\n".join(self.prose).strip("\n")
        self.prose = []
        if text.strip() and self.step is not None:
            self.step["items"].append(Prose(text))
        elif text.strip():
            self.intro.append(text)

    # -- fenced blocks ----------------------------------------------------------------------------
    def block(self, info: str, body: list[str], line: int, verbatim: list[str]) -> None:
        words = info.split()
        kind = words[0] if words else ""
        if kind in DISPLAY_ONLY:
            self.prose.extend(verbatim)  # a sample stays part of the explanation
        elif kind == "expect":
            self.expect(body, line)
        elif kind in PLACES:
            self.commands(kind, words[1:], body, line)
        elif not kind:
            self.problem(line, f"a fenced block must say what it is after the fence; "
                               f"valid kinds: {VALID_KINDS}")
        else:
            self.problem(line, f"unknown block kind {kind!r}; valid kinds: {VALID_KINDS}")

    def commands(self, kind: str, names: list[str], body: list[str], line: int) -> None:
        rule = PLACES[kind]
        if rule == "required" and len(names) != 1:
            self.problem(line, f"a {kind} block needs exactly one name, like '```{kind} "
                               f"my-app-7f569f66d9-dfrdh'")
        elif rule == "optional" and len(names) > 1:
            self.problem(line, f"a {kind} block takes at most one name, got {' '.join(names)}")
        elif rule == "none" and names:
            self.problem(line, f"a {kind} block takes no name, got {' '.join(names)}")
        if self.step is None:
            self.problem(line, "commands must be inside a step; start one with '## 1. Step title'")
            return
        commands = _split_commands(body, line + 1)
        if not commands:
            self.problem(line, f"this {kind} block has no command in it")
            return
        self.flush_prose()
        where = " ".join([kind] + names[:1])
        self.step["items"].append(CommandBlock(where, tuple(commands), line))

    def expect(self, body: list[str], line: int) -> None:
        self.flush_prose()
        items = self.step["items"] if self.step is not None else []
        last = items[-1] if items else None
        if not isinstance(last, CommandBlock):
            self.problem(line, "this expect block has no command block before it; put it right "
                               "after the command block whose output it checks")
            return
        if last.has_expect:
            self.problem(line, f"a second expect block for the command block of line {last.line}; "
                               "put all its marks in one expect block")
            return
        marks, exit_code = [], 0
        for offset, raw in enumerate(body, start=1):
            text, number = raw.strip(), line + offset
            if not text:
                continue
            if text.startswith("re:"):
                pattern = text[3:].strip()
                try:
                    re.compile(pattern)
                except re.error as exc:
                    self.problem(number, f"bad regular expression {pattern!r}: {exc}")
                    continue
                if not pattern:
                    self.problem(number, "an empty 're:' mark matches anything; give a pattern")
                    continue
                marks.append(Mark(pattern, number, regex=True))
            elif text.startswith("exit:"):
                value = text[5:].strip()
                if not value.isdigit():
                    self.problem(number, f"'exit:' needs a whole number (the exit status), got {value!r}")
                    continue
                exit_code = int(value)
            else:
                marks.append(Mark(text, number))
        items[-1] = CommandBlock(last.where, last.commands, last.line, tuple(marks), exit_code,
                                 has_expect=True)


def _split_commands(body: list[str], first_line: int) -> list[Command]:
    """One command per line; a trailing backslash continues it; blank and `#` lines are skipped."""
    commands: list[Command] = []
    pending: list[str] = []
    start = first_line
    for offset, raw in enumerate(body):
        if not pending:
            start = first_line + offset
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
        pending.append(raw.rstrip())
        if not raw.rstrip().endswith("\\"):
            commands.append(Command("\n".join(pending).strip(), start))
            pending = []
    if pending:
        commands.append(Command("\n".join(pending).rstrip("\\").strip(), start))
    return commands


# -- running -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CommandRun:
    """One command as it ran: where, what, its exit status and output, how long it took."""

    where: str
    command: str
    rc: int
    output: str
    seconds: float


@dataclass(frozen=True)
class StepResult:
    """What one step did. `passed` is the truth (every mark found, every exit status as expected);
    whether a failure counts is the walk's policy (`check`)."""

    number: int
    title: str
    passed: bool
    missing: tuple[str, ...]  # marks not found, as written (`re: …` for patterns)
    bad_exits: tuple[str, ...]  # "`cmd` exited 1, expected 0"
    output: str
    seconds: float
    commands: tuple[CommandRun, ...] = ()


@dataclass(frozen=True)
class WalkResult:
    """Every step that ran, in order; `ok` is what the command's exit status should say."""

    steps: tuple[StepResult, ...]
    check: bool = False
    quit_early: bool = False

    @property
    def failed(self) -> tuple[StepResult, ...]:
        return tuple(s for s in self.steps if not s.passed)

    @property
    def missing(self) -> dict[int, tuple[str, ...]]:
        """Every missing mark, per step number (steps with none left out)."""
        return {s.number: s.missing for s in self.steps if s.missing}

    @property
    def ok(self) -> bool:
        # Without --check a missing mark is a warning: the walk still succeeds.
        return not self.check or not self.failed


def prompt_for(where: str, prompts: Mapping[str, str]) -> str:
    """The prompt shown before a command: the exact `where` first, then its kind, then `$ `."""
    kind, _, name = where.partition(" ")
    template = prompts.get(where, prompts.get(kind, "$ "))
    return template.replace("{name}", name or kind)


def run(lesson: Lesson, execute: Execute, *, start_step: int = 1, pause: bool = True,
        check: bool = False, console: Console | None = None,
        input_fn: Callable[[str], str] = input, prompts: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic) -> WalkResult:
    """Walk the lesson from `start_step`: show, run, check each step; pause between steps if asked.

    At a pause, Enter goes on and `q` + Enter (or end of input) stops the walk early.
    """
    console = console or Console()
    numbers = [s.number for s in lesson.steps]
    if start_step not in numbers:
        raise NoSuchStep(f"{lesson.source or 'the lesson'} has no step {start_step}; its steps are "
                         f"1 to {len(numbers)}")
    places = {**DEFAULT_PROMPTS, **(prompts or {})}
    todo = [s for s in lesson.steps if s.number >= start_step]
    if start_step == 1:
        console.rule(Text(lesson.title, style="bold"))
        if lesson.intro:
            console.print(Markdown(lesson.intro))
    results: list[StepResult] = []
    quit_early = False
    for index, step in enumerate(todo):
        results.append(_run_step(step, len(lesson.steps), execute, places, check, console, clock))
        following = todo[index + 1] if index + 1 < len(todo) else None
        if pause and following is not None and not _go_on(following, input_fn, console):
            quit_early = True
            break
    result = WalkResult(tuple(results), check=check, quit_early=quit_early)
    _summary(result, len(todo), console)
    return result


def _run_step(step: Step, total: int, execute: Execute, prompts: Mapping[str, str], check: bool,
              console: Console, clock: Callable[[], float]) -> StepResult:
    console.print()
    console.rule(Text(f"Step {step.number}/{total}: {step.title}", style="bold cyan"), align="left")
    started = clock()
    missing: list[str] = []
    bad_exits: list[str] = []
    outputs: list[str] = []
    runs: list[CommandRun] = []
    for item in step.items:
        if isinstance(item, Prose):
            console.print(Markdown(item.text))
            continue
        block_output: list[str] = []
        for command in item.commands:
            console.print(Text(prompt_for(item.where, prompts), style="green")
                          + Text(command.text, style="bold"), soft_wrap=True)
            began = clock()
            rc, output = _execute(execute, item.where, command.to_run)
            runs.append(CommandRun(item.where, command.to_run, rc, output, clock() - began))
            if output:
                # Plain Text: iptables output is full of [brackets] that must not become markup.
                console.print(Text(output.rstrip("\n")), soft_wrap=True, highlight=False)
            if rc != item.exit_code:
                bad_exits.append(f"`{command.to_run}` exited {rc}, expected {item.exit_code}")
                _flag(console, check, f"exit status {rc} (expected {item.exit_code})")
            block_output.append(output)
        text = "\n".join(block_output)
        outputs.append(text)
        absent = [str(m) for m in item.marks if not m.found_in(text)]
        for mark in absent:
            _flag(console, check, f"missing from the output: {mark}")
        if item.marks and not absent:
            console.print(Text(f"✓ all {len(item.marks)} mark(s) found", style="green"))
        console.print()  # a gap before the next block or explanation
        missing.extend(absent)
    return StepResult(step.number, step.title, not (missing or bad_exits), tuple(missing),
                      tuple(bad_exits), "\n".join(outputs), clock() - started, tuple(runs))


def _execute(execute: Execute, where: str, command: str) -> tuple[int, str]:
    """Run one command; a LabError (e.g. a kubectl view that is not modelled) becomes its output."""
    try:
        rc, output = execute(where, command)
    except LabError as exc:
        return getattr(exc, "rc", None) or exc.exit_code or 1, f"{exc}\n"
    return rc, output


def _flag(console: Console, check: bool, message: str) -> None:
    if check:
        console.print(Text(f"✗ {message}", style="bold red"), soft_wrap=True)
    else:
        console.print(Text(f"warning: {message}", style="yellow"), soft_wrap=True)


def _go_on(following: Step, input_fn: Callable[[str], str], console: Console) -> bool:
    try:
        answer = input_fn(f"\n[Enter: step {following.number}. {following.title} · q + Enter: quit] ")
    except EOFError:
        return False  # nobody at the keyboard: stop rather than run on unseen
    return answer.strip().lower() not in ("q", "quit")


def _summary(result: WalkResult, planned: int, console: Console) -> None:
    console.print()
    ran = len(result.steps)
    if result.quit_early:
        console.print(Text(f"Stopped after step {result.steps[-1].number} ({ran} of {planned} "
                           "steps run).", style="yellow"))
    if not result.failed:
        console.print(Text(f"All {ran} step(s) ran as expected.", style="bold green"))
        return
    style, word = ("bold red", "failed") if result.check else ("yellow", "had warnings")
    console.print(Text(f"{len(result.failed)} of {ran} step(s) {word}:", style=style))
    for step in result.failed:
        console.print(Text(f"  step {step.number}. {step.title}", style=style))
        for mark in step.missing:
            console.print(Text(f"    missing: {mark}"), soft_wrap=True)
        for problem in step.bad_exits:
            console.print(Text(f"    {problem}"), soft_wrap=True)
