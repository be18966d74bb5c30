"""Grade a classroom: every submission in a directory, each in its own process and sandbox.

What counts as a submission:

    submissions/alice.rules          a regular file directly in the directory: student "alice"
    submissions/bob/answer.rules     a student sub-directory holding exactly one submission file
                                     (*.rules; *.ip for lab 1, *.nft for lab 7)
                                     (hidden files aside): student "bob"

Anything else gets a row in the gradebook with zero points and the reason, and the batch goes on:
a hidden entry (its name starts with "."), a symbolic link (never followed: one pointing outside
the directory would read someone else's file), a FIFO, socket or device, a file that cannot be
opened, a sub-directory with no or several submission files. Every entry has its row; only the
reports of an earlier batch (out_dir inside the directory) are passed over. A submission the grader refuses (empty, binary, not iptables-restore text, over
the size limit, refused by the kernel) scores zero with the grader's reason.

Each submission is graded by `python -m lab_runner grade LAB -e N - --worker --format json`: the
one-file command in a process of its own, started ahead of need (it loads the kit while the
others grade) and then told its file and report directory on stdin. J grade at a time, so a
crash or a hang never touches the others: past the timeout a grader gets SIGTERM (its sandbox
tears itself down), then SIGKILL, and whatever lab it still owned is removed by its run id.

Reports go to out_dir/<student>/ (result.json plus the requested formats); out_dir/gradebook.csv
has one row per submission. A report directory's name is the student's name made safe (no "..",
no leading "." or "-", no separator or control character, unique): always directly in out_dir.
Every report is written through safe_files (a link planted in out_dir is replaced, never
followed) and a per-student directory that is a link is refused.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table
from rich.text import Text

from lab_runner.errors import LabError
from lab_runner.grading import exercise as exercises
from lab_runner.grading import formats as fmt
from lab_runner.grading.results import CheckResult, GradeResult
from lab_runner.safe_files import UnsafePath, make_dirs, read_below, read_regular, write_file

DEFAULT_TIMEOUT = 120.0  # seconds per submission; a live exercise takes a few
TERM_GRACE = 20.0  # seconds a timed-out grader gets to tear its sandbox down before SIGKILL
SUBMISSION_SUFFIXES = (".rules", ".ip", ".nft")  # iptables-restore; lab 1's `ip`; lab 7's nft
RESERVED = {"gradebook.csv"}
GRADEBOOK_FIELDS = ("student", "file", "score", "max_score", "passed", "failed", "error", "report")
NAME_BYTES = 100
HIDDEN_REFUSAL = ('a hidden entry (its name starts with "."): not graded; rename it without the '
                  'leading "." to have it graded')
RESULT_LIMIT = 16 << 20  # bytes of a grader's result.json read back
COPY_LIMIT = 1 << 20  # bytes of a submission copied for its grader (more: the grader refuses it)
WARM_SPARES = 1  # grader processes started ahead, per job (0: start each when its turn comes)


@dataclass(frozen=True)
class Entry:
    """One thing found in the submissions directory: a file to grade, or a refusal."""

    student: str  # shown in the gradebook (the file's stem or the sub-directory's name)
    file: str  # as found, relative to the submissions directory
    path: Path | None  # the file to grade; None when refused
    refusal: str = ""
    report: str = ""  # the report directory's name inside out_dir


@dataclass
class Row:
    student: str
    file: str
    score: float
    max_score: float
    passed: int
    failed: int
    error: str
    report: str

    @property
    def full_marks(self) -> bool:
        return not self.error and self.max_score > 0 and self.score >= self.max_score


@dataclass
class BatchOutcome:
    failed_any: bool
    rows: list[Row]
    out_dir: Path | None = None
    gradebook: Path | None = None


# -- finding submissions -----------------------------------------------------------------------
def safe_name(name: str) -> str:
    """A directory name that stays where it is put: letters, digits, ".", "_", "-" only."""
    name = unicodedata.normalize("NFC", name)
    out = "".join(c if (c.isalnum() or c in "._-") and c.isprintable() else "_" for c in name)
    out = re.sub(r"\.{2,}", "_", out).lstrip(".-_")
    while len(out.encode("utf-8", "replace")) > NAME_BYTES:
        out = out[:-1]
    return out or "submission"


def _shown(name: str) -> str:
    """A name as the gradebook and terminal show it: undecodable bytes as ?, control codes as �."""
    return fmt.plain(name.encode("utf-8", "replace").decode("utf-8"))


def _stem(name: str) -> str:
    suffix = next((x for x in SUBMISSION_SUFFIXES if name.endswith(x) and len(name) > len(x)), "")
    return name[: -len(suffix)] if suffix else (Path(name).stem or name)


def _readable(path: Path) -> str:
    """"" when the regular file can be opened and read, else why not (never follows a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return f"cannot be opened ({exc.strerror})"
    try:
        os.read(fd, 1)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    finally:
        os.close(fd)
    return ""


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return word
    return "not a regular file"


def _link_refusal(path: Path, root: Path) -> str:
    target = os.readlink(path)
    try:
        resolved = (path.parent / target).resolve()
    except (OSError, RuntimeError):  # a loop of links
        resolved = Path(os.path.normpath(path.parent / target))
    inside = resolved == root or root in resolved.parents
    where = "inside" if inside else "outside"
    return (f"a symbolic link (to {_shown(target)}, {where} the submissions directory): links "
            "are refused and never followed; submit the file itself")


def _examine(path: Path, root: Path) -> tuple[Path | None, str]:
    """(file to grade, "") or (None, reason) for one directory entry, without following links."""
    try:
        info = path.lstat()
    except OSError as exc:
        return None, f"cannot be examined ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return None, _link_refusal(path, root)
    if stat.S_ISREG(info.st_mode):
        problem = _readable(path)
        return (None, problem) if problem else (path, "")
    return None, f"{_kind(info.st_mode)}, not a file: refused"


def discover(directory: Path, out_dir: Path | None = None) -> list[Entry]:
    """Every submission in `directory` (see the module docstring), with unique report names."""
    root = directory.resolve()
    skip = out_dir.resolve() if out_dir is not None and out_dir.exists() else None
    entries: list[Entry] = []
    for name in sorted(os.listdir(root)):
        path = root / name
        shown = _shown(name)
        if name.startswith("."):  # `..rules`, `.alice.rules`: said, never silently passed over
            if skip is None or path.resolve() != skip:
                entries.append(Entry(_shown(_stem(name)) or shown, shown, None, HIDDEN_REFUSAL))
            continue
        if path.is_dir() and not path.is_symlink():
            if skip is not None and path.resolve() == skip:
                continue  # the reports of an earlier run, inside the submissions directory
            entries.append(_from_subdirectory(path, root, shown))
            continue
        graded, refusal = _examine(path, root)
        entries.append(Entry(_shown(_stem(name)), shown, graded, refusal))
    taken = set(RESERVED)
    named = []
    for entry in entries:
        base = safe_name(entry.student)
        report, n = base, 1
        while report.lower() in taken:
            n += 1
            report = f"{base}-{n}"
        taken.add(report.lower())
        named.append(Entry(entry.student, entry.file, entry.path, entry.refusal, report))
    return named


def _from_subdirectory(path: Path, root: Path, shown: str) -> Entry:
    try:
        names = sorted(n for n in os.listdir(path) if not n.startswith("."))
    except OSError as exc:
        return Entry(shown, shown + "/", None, f"the directory cannot be listed ({exc.strerror})")
    candidates = [n for n in names if n.endswith(SUBMISSION_SUFFIXES)]
    if len(candidates) != 1:
        found = ", ".join(_shown(n) for n in candidates) or "none"
        return Entry(shown, shown + "/", None,
                     f"a student directory must hold exactly one submission file "
                     f"({' or '.join('*' + x for x in SUBMISSION_SUFFIXES)}) "
                     f"(found: {found})")
    graded, refusal = _examine(path / candidates[0], root)
    return Entry(shown, f"{shown}/{_shown(candidates[0])}", graded, refusal)


# -- running one grader ------------------------------------------------------------------------
class _Graders:
    """The grader processes: one per submission, each started ahead of need.

    A grader process spends its first second importing the kit; a spare started while the others
    grade has done that by the time it is given its submission (on stdin). At most `jobs` grade
    at once; at most `jobs` spares wait. An interrupt stops every one of them.
    """

    def __init__(self, argv: list[str], jobs: int, total: int):
        self.argv = argv
        self.env = _child_env()
        self.jobs = jobs
        self.unassigned = total
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()
        self.spares: list[subprocess.Popen] = []
        self.stopping = threading.Event()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env, start_new_session=True)

    def take(self) -> subprocess.Popen | None:
        """A grader process for the next submission (a warm spare when there is one)."""
        with self.lock:
            if self.stopping.is_set():
                return None
            proc = self.spares.pop(0) if self.spares else self._spawn()
            self.running.add(proc)
            self.unassigned -= 1
            while len(self.spares) < min(self.jobs * WARM_SPARES, self.unassigned):
                self.spares.append(self._spawn())
            return proc

    def done(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.running.discard(proc)

    def close(self) -> None:
        """Let unused spares go: an empty assignment makes them exit."""
        with self.lock:
            spares, self.spares = self.spares, []
        for proc in spares:
            try:
                proc.communicate(input=b"", timeout=TERM_GRACE)
            except subprocess.TimeoutExpired:
                _stop(proc)

    def stop_all(self) -> None:
        with self.lock:
            self.stopping.set()
            procs = list(self.running) + self.spares
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the grader leads its own session: its group is its own
    except (ProcessLookupError, PermissionError):
        pass


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (the grader tears its sandbox down, as on Ctrl-C), then SIGKILL after a grace."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.communicate(timeout=TERM_GRACE)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.communicate()


def _remove_runs_of(pid: int) -> None:
    """Remove the labs a dead grader process still owned (only those: matched by owner pid)."""
    from lab_runner.backends.netns import NetnsBackend
    from lab_runner.runs import list_runs, state_root

    for run in list_runs():
        if run.owner_pid == pid and run.orphaned():
            NetnsBackend().destroy(run)
            shutil.rmtree(state_root() / run.run_id, ignore_errors=True)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the checkout holding lab_runner/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NO_COLOR"] = "1"
    env.pop("KPLAB_RUN_ID", None)  # every grader needs a run id of its own for its sandbox
    return env


def _last_line(text: bytes) -> str:
    lines = [line for line in text.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def grader_argv(lab_dir: str, ex: exercises.Exercise, mode: str) -> list[str]:
    """`lab-runner grade LAB -e N - --worker --format json [--static]`: told its file on stdin."""
    return [sys.executable, "-m", "lab_runner", "grade", lab_dir, "--exercise", ex.number, "-",
            "--worker", "--format", "json"] + (["--static"] if mode == "static" else [])


def _private_copy(entry: Entry, root: Path, scratch: Path, limit: int) -> tuple[Path | None, str]:
    """(a copy of the submission in the batch's own 0700 directory, "") or (None, why not).

    The file is read once from the submissions directory, one directory at a time and never
    through a link (safe_files.read_below): a student who swaps a file or a sub-directory for a
    link after discovery gets a refusal, and the grader only ever reads what root copied.
    """
    try:
        raw = read_below(root, entry.path.relative_to(root), limit)
    except UnsafePath:
        return None, "no longer a regular file when it was read: refused"
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return None, ("a symbolic link appeared where the submission was: links are refused "
                          "and never followed")
        return None, f"cannot be read ({exc.strerror})"
    folder = scratch / entry.report
    os.mkdir(folder, 0o700)
    return write_file(folder / entry.path.name, raw, 0o600), ""


def _clear_reports(report_dir: Path) -> None:
    """No report of an earlier batch may stay behind; removed through the directory's own
    descriptor, opened without following a link (it may have become one since it was checked)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    directory = os.open(report_dir, flags)
    try:
        for name in fmt.report_paths():
            folder, _, file = name.rpartition("/")  # a platform's folder (formats.report_path)
            try:
                inner = os.open(folder, flags, dir_fd=directory) if folder else directory
            except OSError:  # no such folder, or not a plain one: nothing of ours to remove
                continue
            try:
                os.unlink(file, dir_fd=inner)
            except FileNotFoundError:
                pass
            finally:
                if inner != directory:
                    os.close(inner)
    finally:
        os.close(directory)


def _grade_one(entry: Entry, ex: exercises.Exercise, mode: str, report_dir: Path,
               timeout: float, graders: _Graders, root: Path, scratch: Path) -> GradeResult:
    """The result of one submission; any failure of the grader itself becomes an error result."""
    _clear_reports(report_dir)
    if entry.path is None:
        return error_result(ex, mode, entry.file, entry.refusal)
    copy, refusal = _private_copy(entry, root, scratch, max(COPY_LIMIT, ex.max_bytes))
    if copy is None:
        return error_result(ex, mode, entry.file, refusal)
    job = json.dumps({"submission": str(copy), "out": str(report_dir)}) + "\n"
    started = time.monotonic()
    proc = graders.take()
    if proc is None:
        return error_result(ex, mode, entry.file, "not graded: the batch was interrupted")
    try:
        try:
            _, err = proc.communicate(input=job.encode("utf-8", "surrogateescape"),
                                      timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return error_result(ex, mode, entry.file, f"grading took longer than {timeout:g} s "
                                "and was stopped", time.monotonic() - started)
    finally:
        graders.done(proc)
        if proc.returncode not in (0, 1):
            _remove_runs_of(proc.pid)
    path = report_dir / fmt.FILE_NAMES["json"]
    if proc.returncode in (0, 1) and path.is_file():
        try:  # never through a link planted in its place
            result = GradeResult.from_dict(json.loads(read_regular(path, RESULT_LIMIT)))
        except (OSError, ValueError, TypeError, LabError) as exc:
            return error_result(ex, mode, entry.file, f"the grader's result is unreadable: {exc}")
        result.submission = entry.file
        return result
    if graders.stopping.is_set():
        return error_result(ex, mode, entry.file, "not graded: the batch was interrupted")
    why = _last_line(err) or f"exit status {proc.returncode}"
    return error_result(ex, mode, entry.file, f"the grader failed: {why}",
                        time.monotonic() - started)


def error_result(ex: exercises.Exercise, mode: str, submission: str, reason: str,
                 seconds: float = 0.0) -> GradeResult:
    """Zero points on every check, with the reason: what an ungradable submission scores."""
    return GradeResult(lab=ex.lab.id, exercise=ex.number, exercise_title=ex.title,
                       submission=submission, mode=mode, error=reason, seconds=round(seconds, 3),
                       checks=[CheckResult(c.id, c.title, 0, c.points, "error",
                                           f"not graded: {reason}") for c in ex.checks])


# -- the batch ---------------------------------------------------------------------------------
def grade_directory(lab: str, which: str | int, directory: Path, *, mode: str, jobs: int,
                    out_dir: Path, formats, console: Console,
                    timeout: float = DEFAULT_TIMEOUT) -> BatchOutcome:
    """Grade every submission in `directory`, `jobs` at a time; write reports and gradebook.csv."""
    from lab_runner import lab_file

    ex = exercises.find(lab, which)
    lab_dir = str(lab_file.lab_path(lab).resolve().parent)
    if not directory.is_dir():
        raise LabError(f"{directory}: not a directory of submissions")
    entries = discover(directory, out_dir)
    root = directory.resolve()
    if not entries:
        raise LabError(f"{directory}: no submissions (a submission is a file directly in the "
                       f"directory, or a sub-directory holding one submission file)")
    make_dirs(out_dir)
    out_root = out_dir.resolve()
    extra = [f for f in formats if f in fmt.FILE_NAMES and f != "json"]
    to_grade = sum(1 for e in entries if e.path is not None)
    graders = _Graders(grader_argv(lab_dir, ex, mode), max(1, jobs), to_grade)
    rows: dict[int, Row] = {}

    def work(entry: Entry) -> Row:
        report_dir = out_root / entry.report
        try:
            make_dirs(report_dir)
            if report_dir.is_symlink() or report_dir.resolve().parent != out_root:
                return _row(entry, error_result(ex, mode, entry.file, f"the report directory "
                                                f"{entry.report} is not a plain directory in "
                                                f"{out_root}: not graded"))
            result = _grade_one(entry, ex, mode, report_dir, timeout, graders, root, scratch)
            for name in ["json", *extra]:  # json again: with the submission named as found
                fmt.write(result, name, report_dir, follow_dir_link=False,
                          formats=["json", *extra])
        except Exception as exc:  # noqa: BLE001 - one submission never stops the batch
            result = error_result(ex, mode, entry.file, f"internal error: {exc!r}")
        return _row(entry, result)

    columns = (SpinnerColumn(), TextColumn("grading {task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    scratch = Path(tempfile.mkdtemp(prefix="kplab-batch-"))  # 0700: the copies graders read
    with Progress(*columns, console=console, transient=False) as progress, _removed(scratch):
        task = progress.add_task(f"{len(entries)} submissions, {jobs} at a time ({mode})",
                                 total=len(entries))
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            futures = {pool.submit(work, e): i for i, e in enumerate(entries)}
            for future in as_completed(futures):
                i = futures[future]
                rows[i] = future.result()
                progress.console.print(_progress_line(rows[i]), highlight=False)
                progress.advance(task)
        except BaseException:  # Ctrl-C, SIGTERM: stop every grader, let each tear down
            graders.stop_all()
            pool.shutdown(wait=True, cancel_futures=True)
            graders.close()
            raise
        pool.shutdown(wait=True)
        graders.close()
    ordered = [rows[i] for i in range(len(entries))]
    gradebook = write_gradebook(ordered, out_root / "gradebook.csv")
    _summary(ordered, console, out_root, gradebook)
    return BatchOutcome(any(not r.full_marks for r in ordered), ordered, out_root, gradebook)


@contextlib.contextmanager
def _removed(folder: Path):
    """Remove folder when the block ends, however it ends."""
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _row(entry: Entry, result: GradeResult) -> Row:
    return Row(entry.student, entry.file, result.score, result.max_score, result.passed_count,
               result.failed_count, fmt.plain(" ".join(result.error.split()))[:300], entry.report)


def _progress_line(row: Row) -> Text:
    colour = "green" if row.full_marks else "red"
    text = Text.assemble((f"{row.score:>4g}/{row.max_score:g}", colour), "  ", row.student)
    if row.error:
        text.append(f"  ({row.error[:100]})", style="dim")
    return text


def _cell(value) -> str:
    """A gradebook cell a spreadsheet shows as text (=, +, -, @ would start a formula)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_gradebook(rows: list[Row], path: Path) -> Path:
    """gradebook.csv, written whole through safe_files (a link at path is replaced, not followed)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(GRADEBOOK_FIELDS)
    for r in rows:
        writer.writerow([_cell(r.student), _cell(r.file), f"{r.score:g}", f"{r.max_score:g}",
                         r.passed, r.failed, _cell(r.error), r.report])
    return write_file(path, text.getvalue().encode("utf-8", errors="replace"), 0o644)


def _summary(rows: list[Row], console: Console, out_dir: Path, gradebook: Path) -> None:
    table = Table("student", "score", "checks passed", "note", box=None)
    for r in rows:
        table.add_row(Text(r.student), Text(f"{r.score:g}/{r.max_score:g}",
                                            style="green" if r.full_marks else "red"),
                      f"{r.passed}/{r.passed + r.failed}", Text(r.error[:80], style="dim"))
    console.print(table)
    full = sum(r.full_marks for r in rows)
    console.print(Text(f"reports in {out_dir}/<student>/, gradebook {gradebook}"), highlight=False)
    console.print(f"{full} of {len(rows)} submissions have full marks", highlight=False)
    console.print(f"{full} passed, {len(rows) - full} failed", markup=False, highlight=False)
