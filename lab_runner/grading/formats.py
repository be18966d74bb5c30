"""Grade reports: the terminal view (ending in `N passed, N failed`) and files in standard formats."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab_runner.grading.results import GradeResult

STYLE = {"passed": "green", "failed": "red", "undecidable": "yellow", "error": "red"}


def terminal(result: GradeResult, console: Console) -> None:
    console.rule(f"{result.lab} exercise {result.exercise}: {result.exercise_title} "
                 f"({result.mode})")
    if result.error:
        console.print(f"[red]not graded:[/] {result.error}", highlight=False)
    table = Table("", "points", "check", "feedback", box=None, show_lines=False)
    for c in result.checks:
        table.add_row(f"[{STYLE[c.status]}]{c.status}[/]", f"{c.points:g}/{c.max_points:g}",
                      c.title, "" if c.status == "passed" else c.output)
    console.print(table)
    console.print(f"score {result.score:g}/{result.max_score:g} in {result.seconds:.1f} s")
    console.print(result.summary_line(), highlight=False)


def write(result: GradeResult, name: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    if name == "json":
        path = out_dir / "result.json"
        path.write_text(json.dumps(result.to_dict(), indent=1))
        return [path]
    raise ValueError(f"format {name!r} is not written yet")
