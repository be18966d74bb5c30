"""`grade` (one submission or a classroom directory) and `exercises` (what there is to do)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from lab_runner.cli import cli, console
from lab_runner.errors import LabError

STATUS_STYLE = {"passed": "green", "failed": "red", "undecidable": "yellow", "error": "red"}


@cli.command()
@click.argument("lab")
@click.option("--exercise", "-e", "which", help="show one exercise in full (task and hints).")
def exercises(lab: str, which: str | None) -> None:
    """The exercises of LAB, or one of them in full with its task and hints."""
    from lab_runner.grading import exercise as ex_mod

    if which:
        ex = ex_mod.find(lab, which)
        console.rule(f"Exercise {ex.number}: {ex.title}")
        console.print(ex.task, markup=False, highlight=False)
        console.print("\n[bold]Hints[/] (one at a time is best):")
        for i, hint in enumerate(ex.hints, 1):
            console.print(f"  {i}. {hint}", markup=False, highlight=False)
        console.print("\n[bold]Checks[/]:")
        for c in ex.checks:
            console.print(f"  {c.points:>2} pt  {c.title}", markup=False, highlight=False)
        return
    table = Table("exercise", "title", "points", "checks", box=None)
    for ex in ex_mod.all_exercises(lab):
        table.add_row(ex.number, ex.title, str(ex.max_score), str(len(ex.checks)))
    console.print(table)


@cli.command()
@click.argument("lab")
@click.argument("submission", type=click.Path(exists=True))
@click.option("--exercise", "-e", "which", required=True, help="exercise number (e.g. 3, 3v5).")
@click.option("--static", "static", is_flag=True,
              help="grade with the rule tracer instead of a real kernel (no privileges needed).")
@click.option("--format", "formats", multiple=True, default=("terminal",), show_default=True,
              type=click.Choice(["terminal", "json", "junit", "gradescope", "prairielearn", "html"]),
              help="output format(s); repeat for several.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="directory for reports.")
@click.option("--jobs", "-j", type=int, default=2, show_default=True,
              help="submissions graded at once (directory mode).")
def grade(lab, submission, which, static, formats, out_dir, jobs) -> None:
    """Grade SUBMISSION (an iptables-restore file) for an exercise of LAB, or a directory of them.

    \b
    One file:    sudo lab-runner grade lab-3 --exercise 3 answer.rules
    No root:     lab-runner grade lab-3 --exercise 3 answer.rules --static
    A class:     sudo lab-runner grade lab-3 --exercise 3 submissions/ --jobs 2 --out reports/
    The last line is `N passed, N failed`; the exit code is 0 only with full marks.
    """
    from lab_runner.grading import formats as fmt

    mode = "static" if static else "live"
    if mode == "live":
        from lab_runner.cli.lifecycle import require_root

        require_root()
    if Path(submission).is_dir():
        from lab_runner.grading import batch

        outcome = batch.grade_directory(lab, which, Path(submission), mode=mode, jobs=jobs,
                                        out_dir=Path(out_dir or "reports"), formats=formats,
                                        console=console)
        if outcome.failed_any:
            raise SystemExit(1)
        return
    from lab_runner.grading.grade import grade as grade_one

    result = grade_one(lab, which, submission, mode)
    for name in formats:
        if name == "terminal":
            fmt.terminal(result, console)
        elif out_dir:
            for path in fmt.write(result, name, Path(out_dir)):
                console.print(f"[dim]wrote {path}[/]")
        elif name == "json":
            click.echo(json.dumps(result.to_dict(), indent=1))
        else:
            raise click.UsageError(f"--format {name} writes files: give --out DIR")
    if result.error or result.score < result.max_score:
        raise SystemExit(1)
