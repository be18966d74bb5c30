"""A classroom directory of exercise-1 submissions graded in one go, static and live (--jobs 2).

The directory holds the reference answer under three names (one plain, one with a space and
accents, one with a leading dash and ".."), a wrong answer, an empty file, a binary file, a link
to /etc/passwd, a dangling link, a FIFO and a hidden file. An unreadable file cannot be made
here: the tests run as root, and root reads a chmod-000 file anyway, so the entries the grader
cannot read are a FIFO (opening it would block: it must be refused without being opened) and a
dangling link (nothing to read). Every one gets its gradebook row; none stops the batch; no lab
is left behind.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from lab_runner.backends.netns import list_netns
from lab_runner.grading import batch
from lab_runner.runs import run_id_of

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "labs" / "lab-3-clusterip" / "solutions" / "ex1-matching.rules"
ODD = "-rf ..José Ü.rules"  # a leading dash, "..", a space, accents
WRONG = "*nat\n-A KUBE-SERVICES -d 10.104.5.205/32 -j KUBE-SVC-Q7IJ732UBZY4AJKA\nCOMMIT\n"
MAX_SCORE = 11
# student → (score, error contains); MAX_SCORE (exercise 1 of lab 3) for every row
EXPECTED = {
    "alice": (11, ""), "bob": (11, ""), ODD[:-len(".rules")]: (11, ""),
    "wrong": (8, ""),  # any protocol, any port: UDP and port 8081 are sent in too (-3)
    "empty": (0, "empty"), "binary": (0, "binary data"),
    "passwd": (0, "outside the submissions directory"),
    "dangling": (0, "symbolic link"), "fifo": (0, "FIFO"),
    ".hidden": (0, "hidden entry"), ".": (0, "hidden entry"),  # `..rules`: a row, not skipped
}


@pytest.fixture
def submissions(tmp_path) -> Path:
    d = tmp_path / "submissions"
    d.mkdir()
    for name in ("alice.rules", ODD):
        (d / name).write_bytes(SOLUTION.read_bytes())
    (d / "bob").mkdir()  # a student directory with its one .rules file
    (d / "bob" / "answer.rules").write_bytes(SOLUTION.read_bytes())
    (d / "wrong.rules").write_text(WRONG)
    (d / "empty.rules").write_bytes(b"")
    (d / "binary.rules").write_bytes(bytes(range(256)) * 4)
    (d / "passwd.rules").symlink_to("/etc/passwd")
    (d / "dangling.rules").symlink_to(d / "no-such-file")
    os.mkfifo(d / "fifo.rules")
    (d / ".hidden.rules").write_bytes(SOLUTION.read_bytes())
    (d / "..rules").write_bytes(SOLUTION.read_bytes())
    return d


@pytest.fixture
def private_state(tmp_path, monkeypatch):
    """Runs recorded in a directory of this test's own, watched: the run ids its graders used."""
    state = tmp_path / "state"
    monkeypatch.setenv("KPLAB_STATE_DIR", str(state))
    seen: set[str] = set()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if state.is_dir():
                seen.update(p.name for p in state.iterdir())
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield seen
    stop.set()
    watcher.join()


def assert_no_lab_left(seen: set[str]) -> None:
    left = [ns for ns in list_netns() if run_id_of(ns) in seen]
    assert left == [], f"namespaces left behind: {left}"
    state = Path(os.environ["KPLAB_STATE_DIR"])
    assert not state.exists() or not any(state.glob("*/run.json")), list(state.iterdir())


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", "lab_runner", "grade", "lab-3", "-e", "1", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def read_gradebook(out: Path) -> dict[str, dict]:
    with (out / "gradebook.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {row["student"].removeprefix("'"): row for row in rows}


def check_batch(submissions: Path, out: Path, proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 1, proc.stderr  # not every submission has full marks
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
    assert last == "3 passed, 8 failed", proc.stdout[-2000:]
    book = read_gradebook(out)
    assert set(book) == set(EXPECTED), book.keys()
    for student, (score, error) in EXPECTED.items():
        row = book[student]
        assert (float(row["score"]), float(row["max_score"])) == (score, MAX_SCORE), row
        assert error in row["error"] and (bool(row["error"]) == bool(error)), row
        report = out / row["report"]
        assert report.parent == out and report.is_dir(), row["report"]
        assert {p.name for p in report.iterdir()} == {"result.json", "report.html", "junit.xml"}
    odd = book[ODD[:-len(".rules")]]
    assert odd["student"].startswith("'-")  # a spreadsheet must not read it as a formula
    assert not odd["report"].startswith(("-", ".")) and ".." not in odd["report"]
    written = {p.resolve() for p in out.rglob("*")}
    assert all(out.resolve() in p.parents for p in written)
    assert (submissions / "fifo.rules").exists()  # refused, not opened (it would have blocked)
    return book


def test_safe_names_stay_inside():
    for name in ("..", "../../etc/passwd", "-rf", ".hidden", "a/b", "x" * 300, "\x1b[2J",
                 "José Ünïcode", "\udcff\udcfe", "CON", ""):
        safe = batch.safe_name(name)
        assert safe and safe not in (".", "..") and "/" not in safe and ".." not in safe
        assert not safe.startswith(("-", ".")) and len(safe.encode()) <= batch.NAME_BYTES
    assert batch.safe_name("José Ünïcode") == "José_Ünïcode"


def test_static_batch(submissions, tmp_path):
    out = tmp_path / "reports"
    proc = run_cli(str(submissions), "--static", "--jobs", "2", "--out", str(out),
                   "--format", "html", "--format", "junit")
    check_batch(submissions, out, proc)


def test_live_batch_two_at_a_time(submissions, tmp_path, private_state):
    out = tmp_path / "reports"
    proc = run_cli(str(submissions), "--jobs", "2", "--out", str(out),
                   "--format", "html", "--format", "junit")
    book = check_batch(submissions, out, proc)
    page = (out / book["alice"]["report"] / "report.html").read_text(encoding="utf-8")
    assert "pkts" in page and "KUBE-SEP-" in page  # the chain graph, with live counters
    assert private_state, "no grader recorded a lab: was this graded live?"
    assert_no_lab_left(private_state)


def test_full_marks_everywhere_exits_zero(tmp_path):
    d = tmp_path / "all-right"
    d.mkdir()
    for name in ("a.rules", "b.rules"):
        (d / name).write_bytes(SOLUTION.read_bytes())
    proc = run_cli(str(d), "--static", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1] == "2 passed, 0 failed"


def test_a_hung_grader_is_killed_and_its_lab_removed(tmp_path, private_state, monkeypatch):
    """A grader that hangs with its lab up (SIGSTOP: it cannot even handle SIGTERM) is killed at
    the timeout, and the lab it owned is removed by its run id; the batch carries on."""
    import json
    import signal

    monkeypatch.setattr(batch, "TERM_GRACE", 3.0)
    d = tmp_path / "hang"
    d.mkdir()
    (d / "carol.rules").write_bytes(SOLUTION.read_bytes())
    state = Path(os.environ["KPLAB_STATE_DIR"])
    stopped: list[int] = []

    def freeze_the_grader_once_its_lab_is_up():
        for _ in range(600):
            for record in state.glob("*/run.json") if state.is_dir() else ():
                try:
                    data = json.loads(record.read_text())
                except ValueError:
                    continue
                if data.get("state") == "up":
                    os.kill(data["owner_pid"], signal.SIGSTOP)
                    stopped.append(data["owner_pid"])
                    return
            threading.Event().wait(0.05)

    freezer = threading.Thread(target=freeze_the_grader_once_its_lab_is_up, daemon=True)
    freezer.start()
    outcome = batch.grade_directory("lab-3", "1", d, mode="live", jobs=1, out_dir=tmp_path / "out",
                                    formats=("json",), console=Console(quiet=True), timeout=10)
    freezer.join(timeout=1)
    [row] = outcome.rows
    assert stopped, "the grader's lab never came up"
    assert outcome.failed_any and row.score == 0 and "longer than 10 s" in row.error
    assert_no_lab_left(private_state)
