"""Grade reports: the terminal view (ending in `N passed, N failed`) and files in standard formats.

Every writer takes a GradeResult and nothing else, so a result read back from `result.json` (as
the batch grader does) gives the same reports as a fresh one. File formats, one file each:

    json          result.json    GradeResult.to_dict(), evidence included
    junit         junit.xml      <testsuites> with one <testsuite> per submission, one <testcase>
                                 per check (classname `<lab>.ex<N>`), <properties> score/max_score;
                                 valid for both common schemas: Ant's (windyroad JUnit.xsd)
                                 and Surefire/Jenkins' (junit-10.xsd, which pytest checks against)
    gradescope    results.json   Gradescope's autograder results (run with --out /autograder/results)
    prairielearn  results.json   PrairieLearn's external grader results (--out /grade/results)
    html          report.html    one self-contained page: checks, endpoint shares, chain graph

gradescope and prairielearn both write `results.json`, the name each platform reads where it is
given the output directory (/autograder/results, /grade/results). Asked for together, each goes
into a folder named after its platform instead (`gradescope/results.json`,
`prairielearn/results.json`; see report_path), so --format can be repeated freely.
Submissions are hostile input: their names and the feedback quoting them are escaped for every
format (XML-illegal characters replaced, HTML escaped, Gradescope told to render plain text).
"""

from __future__ import annotations

import json
import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from lab_runner.grading.results import CheckResult, GradeResult
from lab_runner.safe_files import make_dirs, write_file

FORMATS = ("terminal", "json", "junit", "gradescope", "prairielearn", "html")
FILE_NAMES = {"json": "result.json", "junit": "junit.xml", "gradescope": "results.json",
              "prairielearn": "results.json", "html": "report.html"}
STYLE = {"passed": "green", "failed": "red", "undecidable": "yellow", "error": "red"}
STATUS_WIDTH = max(map(len, STYLE))
OUTPUT_LIMIT = 8_000  # characters of feedback per check in a platform file (PrairieLearn: 1 MB total)
# Control characters a terminal would act on (ESC starts an escape sequence): from file names.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# XML 1.0 allows tab, newline, carriage return and these ranges, nothing else.
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# -- terminal ----------------------------------------------------------------------------------
def terminal(result: GradeResult, console: Console) -> None:
    """One line per check (`passed 3/3  title`), feedback indented below a check that did not pass,
    then `score X/Y in T s` and the closing `N passed, N failed` alone on its line."""
    console.rule(Text(plain(f"{result.lab} exercise {result.exercise}: {result.exercise_title} "
                            f"({result.mode})")))
    console.print(Text(plain(f"submission: {result.submission}")), highlight=False)
    if result.error:
        console.print(Text.assemble(("not graded: ", "bold red"), plain(result.error)),
                      highlight=False)
    points = [f"{c.points:g}/{c.max_points:g}" for c in result.checks]
    width = max(map(len, points), default=3)
    indent = STATUS_WIDTH + 2 + width + 2
    for check, score in zip(result.checks, points):
        line = Table.grid(padding=(0, 2))
        line.add_column(width=STATUS_WIDTH, no_wrap=True)
        line.add_column(width=width, justify="right", no_wrap=True)
        line.add_column(overflow="fold")
        line.add_row(Text(check.status, style=STYLE.get(check.status, "")), Text(score),
                     Text(plain(check.title)))
        console.print(line)
        feedback = _feedback(check, result)
        if feedback:
            console.print(Padding(Text(plain(feedback), style="dim" if check.passed else ""),
                                  (0, 0, 0, indent), expand=False))
    console.print(Text(f"score {result.score:g}/{result.max_score:g} in {result.seconds:.1f} s"),
                  highlight=False)
    console.print(result.summary_line(), markup=False, highlight=False, style=None)


def plain(text: str) -> str:
    """Text safe to print on a terminal: control characters (from hostile file names) shown as �."""
    return _CONTROL.sub("\ufffd", str(text))


def _feedback(check: CheckResult, result: GradeResult) -> str:
    """What to show under a check: nothing when it passed, and no copy of the not-graded reason."""
    if check.status == "passed":
        return ""
    if result.error and check.output == f"not graded: {result.error}":
        return ""  # the reason is printed once, above the checks
    return check.output


# -- files -------------------------------------------------------------------------------------
def report_path(name: str, formats=()) -> str:
    """Where in the output directory the report `name` goes, when `formats` are written together:
    its file name, or `<format>/<file name>` where another format of the same run has that name."""
    same = sorted({f for f in formats if FILE_NAMES.get(f) == FILE_NAMES[name]} | {name})
    return FILE_NAMES[name] if len(same) == 1 else f"{name}/{FILE_NAMES[name]}"


def report_paths() -> set[str]:
    """Every place in an output directory a report may be written (a batch clears them all)."""
    return set(FILE_NAMES.values()) | {report_path(f, FORMATS) for f in FILE_NAMES}


def write(result: GradeResult, name: str, out_dir: Path, *, follow_dir_link: bool = True,
          formats=()) -> list[Path]:
    """Write the report `name` into out_dir (where report_path says, given all the `formats` of
    this run); returns the files written.

    Written through safe_files.write_file: a link planted where the report goes is replaced,
    never followed. follow_dir_link=False: out_dir itself must not be a link either (a batch's
    per-student directory, in an output directory others may write).
    """
    if name not in FILE_NAMES:
        raise ValueError(f"unknown report format {name!r}; the file formats are: "
                         f"{', '.join(FILE_NAMES)}")
    make_dirs(out_dir)
    path = out_dir / report_path(name, formats)
    if path.parent != out_dir:
        if not follow_dir_link and out_dir.is_symlink():
            raise OSError(f"{out_dir} is a link: no report is written through it")
        make_dirs(path.parent)
    if name == "json":
        text = json.dumps(result.to_dict(), indent=1)
    elif name == "junit":
        text = junit_xml(result)
    elif name == "gradescope":
        text = json.dumps(gradescope(result), indent=1, ensure_ascii=False)
    elif name == "prairielearn":
        text = json.dumps(prairielearn(result), indent=1, ensure_ascii=False)
    else:
        from lab_runner.grading.report_html import render

        text = render(result)
    # A file name that is not UTF-8 reaches us as lone surrogates: written as "?", never a crash.
    # (result.json keeps them as \udcXX escapes, so it reads back exactly.)
    write_file(path, text.encode("utf-8", errors="replace"), 0o644,
               follow_dir_link=follow_dir_link)
    return [path]


def check_name(check: CheckResult) -> str:
    return f"{check.id}: {check.title}"


def _clip(text: str, limit: int = OUTPUT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n… (cut short)"


def _xml(text: str) -> str:
    """Text XML 1.0 can carry: characters it forbids become U+FFFD (ElementTree would not)."""
    return _XML_ILLEGAL.sub("\ufffd", str(text))


# -- JUnit -------------------------------------------------------------------------------------
def junit_xml(result: GradeResult) -> str:
    """<testsuites><testsuite>… one testcase per check; a check that did not pass has a <failure>
    whose type is its status: failed, undecidable (scored zero) or error (the check could not run,
    or the submission could not be graded). Not <error>: Ant's schema knows only <error>,
    Surefire's junit-10.xsd only <errors>, and a <failure> is valid in both."""
    failures = sum(1 for c in result.checks if not c.passed)
    errors = 0
    seconds = f"{result.seconds:.3f}"
    root = ET.Element("testsuites")  # no attributes: the Ant (windyroad) schema allows none here
    suite = ET.SubElement(root, "testsuite", {
        "name": _xml(f"{result.lab}.ex{result.exercise}: {result.submission}"),
        "tests": str(len(result.checks)), "failures": str(failures), "errors": str(errors),
        "skipped": "0", "time": seconds, "id": "0", "package": _xml(result.lab),
        "hostname": _xml(socket.gethostname() or "localhost"),
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")})
    properties = ET.SubElement(suite, "properties")
    for key, value in (("score", f"{result.score:g}"), ("max_score", f"{result.max_score:g}"),
                       ("lab", result.lab), ("exercise", result.exercise),
                       ("submission", result.submission), ("mode", result.mode),
                       ("error", result.error)):
        if value != "":
            ET.SubElement(properties, "property", name=key, value=_xml(value))
    classname = _xml(f"{result.lab}.ex{result.exercise}")
    for check in result.checks:
        case = ET.SubElement(suite, "testcase", name=_xml(check_name(check)), classname=classname,
                             time=f"{check.seconds:.3f}")
        message = _xml(_clip(check.output))
        if not check.passed:
            ET.SubElement(case, "failure", message=message, type=check.status).text = message
    # A testcase may hold only its verdict (Ant schema): notes on checks scored in full although
    # static mode could not decide them go to the suite's output.
    notes = [f"{c.id}: {c.output}" for c in result.checks if c.passed and c.status == "undecidable"]
    ET.SubElement(suite, "system-out").text = _xml("\n".join(
        [f"score {result.score:g}/{result.max_score:g}", *notes, result.summary_line()]))
    ET.SubElement(suite, "system-err").text = _xml(result.error)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- Gradescope --------------------------------------------------------------------------------
def gradescope(result: GradeResult) -> dict:
    """Gradescope's results.json (gradescope-autograders.readthedocs.io, "Autograder Specifications").

    The top-level score is given (it overrides the tests' sum); the top-level maximum is the
    assignment's setting on Gradescope, so it goes in extra_data. Output is plain text
    (`output_format`, `test_output_format`, `test_name_format` = "text"): the top-level default,
    simple_format, would render HTML from a hostile submission name.
    """
    summary = [f"{result.lab} exercise {result.exercise}: {result.exercise_title} ({result.mode})",
               f"score {result.score:g}/{result.max_score:g}", result.summary_line()]
    if result.error:
        summary.insert(1, f"not graded: {result.error}")
    return {
        "score": result.score,
        "execution_time": max(0, round(result.seconds)),
        "output": _clip("\n".join(summary)),
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"max_score": result.max_score, "lab": result.lab,
                       "exercise": result.exercise, "mode": result.mode,
                       "graded": not result.error},
        "tests": [{"name": check_name(c), "number": str(i), "score": c.points,
                   "max_score": c.max_points, "status": "passed" if c.passed else "failed",
                   "output": _clip(c.output if c.status != "passed" else "ok"),
                   "visibility": "visible"}
                  for i, c in enumerate(result.checks, 1)],
    }


# -- PrairieLearn ------------------------------------------------------------------------------
def prairielearn(result: GradeResult) -> dict:
    """PrairieLearn's external grader results (docs/externalGrading.md, "Grading results").

    score is the fraction in [0, 1]. A submission that could not be graded at all (empty, binary,
    not iptables-restore text, refused by the kernel) is `gradable: false` with the reason in
    `format_errors`: PrairieLearn then neither awards nor takes points nor uses up an attempt.
    """
    fraction = result.score / result.max_score if result.max_score else 0.0
    data = {
        "gradable": not result.error,
        "score": min(1.0, max(0.0, fraction)),
        "message": (f"not graded: {result.error}" if result.error else
                    f"score {result.score:g}/{result.max_score:g}: {result.summary_line()}"),
        "output": _clip("\n".join(f"{c.status:<{STATUS_WIDTH}} {c.points:g}/{c.max_points:g}  "
                                  f"{c.title}" for c in result.checks)),
        "tests": [{"name": check_name(c), "description": c.title, "points": c.points,
                   "max_points": c.max_points,
                   "message": c.status if c.status != "undecidable" else
                   f"undecidable in static mode: scored {c.points:g}/{c.max_points:g}",
                   "output": _clip(c.output)}
                  for c in result.checks],
    }
    if result.error:
        data["format_errors"] = [_clip(result.error)]
    return data
