"""`grade` (one submission or a classroom directory) and `exercises` (what there is to do)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from lab_runner.cli import cli, console
from lab_runner.grading.batch import DEFAULT_TIMEOUT
from lab_runner.grading.formats import FORMATS

STATUS_STYLE = {"passed": "green", "failed": "red", "undecidable": "yellow", "error": "red"}


@cli.command()
@click.argument("lab")
@click.option("--exercise", "-e", "which",
              help="show one exercise in full (task and hints): its number, e.g. 3 or 3v5.")
def exercises(lab: str, which: str | None) -> None:
    """The exercises of LAB, or one of them in full with its task and hints.

    \b
    Examples:
      lab-runner exercises lab-3          the exercises, their points and checks
      lab-runner exercises lab-3 -e 3     exercise 3 in full
    """
    from lab_runner.grading import exercise as ex_mod

    if which:
        from lab_runner.views.text import print_hanging, print_reflowed

        ex = find_exercise(lab, which)
        console.rule(f"Exercise {ex.number}: {ex.title}")
        print_reflowed(console, ex.task)
        console.print("\n[bold]Hints[/] (one at a time is best):")
        for i, hint in enumerate(ex.hints, 1):
            print_hanging(console, f"{i}.", hint)
        console.print("\n[bold]Checks[/]:")
        for c in ex.checks:
            print_hanging(console, f"{c.points:>2} pt ", c.title)
        return
    table = Table("exercise", "title", "points", "checks", box=None)
    for ex in ex_mod.all_exercises(lab):
        table.add_row(ex.number, ex.title, str(ex.max_score), str(len(ex.checks)))
    console.print(table)


@cli.command()
@click.argument("lab")
# Checked after the exercise (see grade): a wrong -e is named first, whatever the path.
@click.argument("submission", type=click.Path(allow_dash=True))
@click.option("--exercise", "-e", "which", required=True, help="exercise number (e.g. 3, 3v5).")
@click.option("--static", "static", is_flag=True,
              help="grade with the rule tracer instead of a real kernel (no privileges needed).")
@click.option("--format", "formats", multiple=True, default=("terminal",), show_default=True,
              type=click.Choice(list(FORMATS)), help="report format(s); repeat for several.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="directory for report files (a directory of submissions: default reports/).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True,
              help="submissions graded at once (directory mode).")
@click.option("--timeout", type=click.FloatRange(1), default=DEFAULT_TIMEOUT, show_default=True,
              help="seconds one submission may take before it is stopped (directory mode).")
@click.option("--worker", is_flag=True, hidden=True,
              help="internal, for the batch grader: with SUBMISSION `-`, load the kit first, then "
                   'read {"submission": PATH, "out": DIR} as one JSON line from stdin.')
def grade(lab, submission, which, static, formats, out_dir, jobs, timeout, worker) -> None:
    """Grade SUBMISSION (an iptables-restore file; lab 1: `ip` commands; lab 7: `nft -f`
    commands) for an exercise of LAB, or a directory of them.

    Live mode (the default, root) builds a fresh lab, applies the exercise's starting state and
    then the submission (one iptables-restore, or one nft -f), and sends real packets. --static answers the
    same checks with the rule tracer: no root, no kernel, and checks that need a kernel are
    scored as the exercise file says.

    \b
    Formats: terminal (the default), json (result.json; alone and without --out: printed;
    written to --out when no other file format is asked for),
    junit (junit.xml), gradescope and prairielearn (results.json, the file each platform
    reads; asked for together, gradescope/results.json and prairielearn/results.json), html
    (report.html, one self-contained page with the endpoint shares and the nat chains with
    their counters). Formats may be repeated freely.

    \b
    A directory holds one submission per student: a file (alice.rules) or a sub-directory with
    one *.rules (*.ip, *.nft) file (bob/answer.rules); hidden entries, links, FIFOs and unreadable
    entries score zero with the reason. Each is graded in its own process and sandbox; reports
    go to OUT/<student>/ and OUT/gradebook.csv has one row per submission.

    The last line is `N passed, N failed` (checks; for a directory: submissions with full
    marks or not). The exit code is 0 only with full marks (for a directory: every submission).

    \b
    Examples:
      One file:    sudo lab-runner grade lab-3 --exercise 3 answer.rules
      No root:     lab-runner grade lab-3 --exercise 3 answer.rules --static
      Reports:     lab-runner grade lab-3 -e 3 answer.rules --static --format html --out out/
      Gradescope:  lab-runner grade lab-3 -e 3 answer.rules --format gradescope --out /autograder/results
      A class:     sudo lab-runner grade lab-3 --exercise 3 submissions/ --jobs 2 --out reports/
    """
    from lab_runner.grading import formats as fmt

    which = find_exercise(lab, which).number
    if submission != "-" and not Path(submission).exists():
        raise click.BadParameter(f"{submission!r}: no such file or directory (an iptables-restore "
                                 "file, or a directory of them)", param_hint="SUBMISSION")
    mode = "static" if static else "live"
    if mode == "live":
        from lab_runner.cli.lifecycle import require_root

        require_root()
    if worker or submission == "-":
        if not (worker and submission == "-"):
            raise click.UsageError("SUBMISSION `-` is for the batch grader's --worker only")
        submission, out_dir = _await_assignment(lab, which)
    if not worker and Path(submission).is_dir():
        from lab_runner.grading import batch

        outcome = batch.grade_directory(lab, which, Path(submission), mode=mode, jobs=jobs,
                                        out_dir=Path(out_dir or "reports"), formats=formats,
                                        console=console, timeout=timeout)
        if outcome.failed_any:
            raise SystemExit(1)
        return
    from lab_runner.grading.grade import grade as grade_one

    files = [name for name in formats if name in fmt.FILE_NAMES]
    if out_dir and not files:
        files = ["json"]  # --out asks for a file: the terminal report alone would leave it empty
    if files and not out_dir and files != ["json"]:
        raise click.UsageError(f"--format {' '.join(f for f in files if f != 'json')} writes "
                               "files: give --out DIR")
    result = grade_one(lab, which, submission, mode)
    for name in files:
        if out_dir:
            # A batch's per-student directory (--worker) is never followed if it became a link.
            for path in fmt.write(result, name, Path(out_dir), follow_dir_link=not worker,
                                  formats=files):
                console.print(Text(f"report: {path}", style="dim"), highlight=False)
        else:
            click.echo(json.dumps(result.to_dict(), indent=1))
    if "terminal" in formats:  # last: its closing line is the last line printed
        fmt.terminal(result, console)
    elif out_dir:  # files only: the terminal still ends with the line the README promises
        console.print(result.summary_line(), markup=False, highlight=False)
    if result.error or result.score < result.max_score:
        raise SystemExit(1)


def _await_assignment(lab: str, which: str) -> tuple[str, str]:
    """The batch grader starts this process ahead of need: load the kit, then wait for the job."""
    import sys

    from lab_runner.grading import exercise as ex_mod
    import lab_runner.grading.grade  # noqa: F401  (pytest and the sandboxes: the slow imports)

    ex_mod.find(lab, which)
    line = sys.stdin.readline()
    if not line.strip():
        raise SystemExit(0)  # not needed after all: the batch is over
    job = json.loads(line)
    return str(job["submission"]), str(job["out"])


def find_exercise(lab: str, which: str):
    """The exercise `-e` names (grading.exercise.find reads the number and words the error)."""
    from lab_runner.grading import exercise as ex_mod

    return ex_mod.find(lab, which)
