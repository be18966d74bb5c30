"""On the platform: find the student's file, grade it live or static, write the platform's results.

    python -m lab_runner.autograder.runtime gradescope   --assignment A --submission DIR --results FILE
    python -m lab_runner.autograder.runtime prairielearn --assignment A --submission DIR --results FILE
    python -m lab_runner.autograder.runtime github       --assignment A --submission DIR --results FILE
    python -m lab_runner.autograder.runtime check --results FILE CHECK_ID     (GitHub: one check)

The exit code is 0 whenever the results file was written, whatever the score: a platform treats a
failing grader as broken, not as a low mark. `check` exits 0 only if that check passed (GitHub
Classroom's command grader turns the exit code into the check's points).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab_runner.errors import LabError

MODES = ("auto", "live", "static")
SEARCH_DEPTH = 3  # a submission may be a repository (Gradescope from GitHub): look a few levels down
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


@dataclass
class Found:
    """The student's file for one exercise, or why there is none."""

    path: Path | None
    problem: str = ""


# -- the mode ------------------------------------------------------------------------------------
def live_unavailable() -> str:
    """"" when this container can grade live (real namespaces), else why not, in one phrase."""
    try:
        caps = int(next(line.split()[1] for line in open("/proc/self/status")
                        if line.startswith("CapEff:")), 16)
    except (OSError, StopIteration, ValueError):
        return "this is not Linux"
    missing = [name for name, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN),
                                      ("CAP_SYS_ADMIN", CAP_SYS_ADMIN)) if not caps >> bit & 1]
    if missing:
        return f"the container lacks {' and '.join(missing)}"
    for tool in ("unshare", "ip", "iptables-nft-restore"):
        if not (shutil.which(tool) or Path("/usr/sbin", tool).exists()):
            return f"{tool} is not installed"
    # What a lab does first: a namespace of its own with ip_forward on. A read-only /proc/sys
    # (Docker's default, even with the capabilities) fails here.
    probe = subprocess.run(["unshare", "--net", "sh", "-c",
                            "echo 1 > /proc/sys/net/ipv4/ip_forward"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"a network namespace cannot be set up here ({probe.stderr.strip() or 'refused'})"
    return ""


# -- the submission --------------------------------------------------------------------------------
def find(submission_dir: Path, names: list[str], alone: bool) -> Found:
    """The file among `names` (the first name found wins), searched a few levels deep; a bundle
    of one exercise also takes the one file with the same suffix, whatever its name."""
    files = _regular_files(submission_dir)
    for name in names:
        hits = sorted((p for p in files if p.name == name), key=lambda p: len(p.parts))
        if hits:
            return Found(hits[0])
    suffix = Path(names[0]).suffix
    if alone:
        same = [p for p in files if p.suffix == suffix]
        if len(same) == 1:
            return Found(same[0])
    shown = ", ".join(sorted(str(p.relative_to(submission_dir)) for p in files)[:20]) or "nothing"
    return Found(None, f"no file named {' or '.join(names)} was handed in (found: {shown}); "
                       f"rename your answer to {names[0]} and submit again")


def _regular_files(root: Path) -> list[Path]:
    """Regular files below root, hidden ones and links left out (a link is never followed)."""
    found = []
    for here, dirs, files in os.walk(root):
        depth = len(Path(here).relative_to(root).parts)
        dirs[:] = [d for d in dirs if not d.startswith(".") and depth < SEARCH_DEPTH]
        for name in files:
            path = Path(here) / name
            if not name.startswith(".") and path.is_file() and not path.is_symlink():
                found.append(path)
    return found


# -- grading ---------------------------------------------------------------------------------------
def grade_all(spec: dict, lab_dir: Path, submission_dir: Path, mode: str) -> tuple[list, str, str]:
    """Every exercise of the assignment graded: (GradeResults, mode used, why that mode)."""
    from lab_runner.grading.grade import grade
    from lab_runner.grading.results import CheckResult, GradeResult
    from lab_runner.grading import exercise as exercises

    why_not = live_unavailable() if mode in ("auto", "live") else "static was asked for"
    used = "live" if mode == "live" or (mode == "auto" and not why_not) else "static"
    reason = ("live: real packets through the rules in network namespaces of this container"
              if used == "live" else
              f"static: the rule tracer answered every check ({why_not})")
    alone = len(spec["exercises"]) == 1
    results = []
    for entry in spec["exercises"]:
        found = find(submission_dir, entry["files"], alone)
        if found.path is None:
            ex = exercises.find(str(lab_dir), entry["number"])
            result = GradeResult(lab=spec["lab"], exercise=ex.number, exercise_title=ex.title,
                                 submission=entry["files"][0], mode=used, error=found.problem)
            result.checks = [CheckResult(c.id, c.title, 0, c.points, "error",
                                         f"not graded: {found.problem}") for c in ex.checks]
            results.append(result)
            continue
        try:
            result = grade(str(lab_dir), entry["number"], found.path, used)
        except LabError as exc:
            if used != "live" or mode == "live":
                raise
            # The container looked able but a lab would not come up: the tracer answers instead.
            used, reason = "static", f"static: live grading could not start here ({exc})"
            result = grade(str(lab_dir), entry["number"], found.path, used)
        result.submission = str(found.path.relative_to(submission_dir))
        results.append(result)
    return results, used, reason


def hints_text(spec: dict, results: list) -> str:
    """The exercise's hints, for a student who did not get full marks."""
    lines = []
    for entry, result in zip(spec["exercises"], results):
        if result.score < result.max_score and entry["hints"]:
            lines.append(f"Hints for exercise {entry['number']}:")
            lines += [f"  {i}. {hint}" for i, hint in enumerate(entry["hints"], 1)]
    return "\n".join(lines)


def run(platform: str, assignment: Path, submission: Path, results_file: Path, mode: str) -> int:
    from lab_runner.autograder import github, gradescope, prairielearn

    started = time.monotonic()
    spec = json.loads(assignment.read_text())
    lab_dir = assignment.parent / "lab" / spec["lab"]
    try:
        results, used, reason = grade_all(spec, lab_dir, submission, mode)
    except LabError as exc:
        results, used, reason = None, "none", f"the grader failed: {exc}"
    writer = {"gradescope": gradescope.results, "prairielearn": prairielearn.results,
              "github": github.results}[platform]
    document = writer(spec, results, used, reason, round(time.monotonic() - started, 3))
    results_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = results_file.with_name(results_file.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(results_file)
    print(f"kplab: {reason}", file=sys.stderr)
    for result in results or ():
        print(f"kplab: exercise {result.exercise}: {result.score:g}/{result.max_score:g} "
              f"({result.summary_line()})", file=sys.stderr)
    return 0


def check(results_file: Path, check_id: str) -> int:
    """GitHub Classroom, one command grader per check: 0 if the check passed, with its feedback."""
    document = json.loads(results_file.read_text())
    for test in document.get("tests", []):
        if test["id"] == check_id:
            print(f"{test['name']}: {test['status']} ({test['score']:g}/{test['max_score']:g})")
            if test.get("output"):
                print(test["output"])
            return 0 if test["status"] == "passed" else 1
    print(f"no check {check_id!r} in {results_file}: did the grading step run?")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab_runner.autograder.runtime",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("platform", choices=("gradescope", "prairielearn", "github", "check"))
    parser.add_argument("check_id", nargs="?", help="with `check`: the check's id")
    parser.add_argument("--assignment", type=Path, help="kplab/assignment.json of the bundle")
    parser.add_argument("--submission", type=Path, help="the directory the student's files are in")
    parser.add_argument("--results", type=Path, required=True, help="the results file to write")
    parser.add_argument("--mode", choices=MODES, default="auto",
                        help="auto (default): live where the container can, else static")
    args = parser.parse_intermixed_args(argv)  # `check --results F ID`, as the workflow writes it
    if args.platform == "check":
        if not args.check_id:
            parser.error("check needs a CHECK_ID")
        return check(args.results, args.check_id)
    if not (args.assignment and args.submission):
        parser.error(f"{args.platform} needs --assignment and --submission")
    return run(args.platform, args.assignment, args.submission, args.results, args.mode)


if __name__ == "__main__":
    sys.exit(main())
