"""`autograder`: what Gradescope, PrairieLearn or GitHub Classroom takes to grade an exercise."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from lab_runner.cli import cli, console

NEXT_STEPS = {
    "gradescope": "upload {out}/autograder.zip as the assignment's autograder (Configure "
                  "Autograder > Zip file upload, Ubuntu base); paste {out}/student/*.md into "
                  "the assignment's description",
    "prairielearn": "build and push the grader image from {out}/grader (its Dockerfile says how), "
                    "then copy {out}/questions/* into your course's questions/",
    "github": "push {out} to a repository, mark it a template, and make it the starter code "
              "of a GitHub Classroom assignment",
}


@cli.command()
@click.argument("platform", type=click.Choice(["gradescope", "prairielearn", "github"]))
@click.argument("lab")
@click.option("--exercise", "-e", "numbers", multiple=True, required=True,
              help="exercise number (e.g. 3, 3v5); repeat for several.")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="directory to write the bundle into (made if missing).")
@click.option("--image", default="", help="prairielearn: the grader image's name in info.json "
                                           "(default kplab-grader-LAB:exN).")
@click.option("--no-dependency-wheels", is_flag=True,
              help="bundle only the kit's wheel: setup then fetches its dependencies from PyPI.")
def autograder(platform, lab, numbers, out_dir, image, no_dependency_wheels) -> None:
    """Write what PLATFORM takes to grade exercises of LAB, without the reference solutions.

    Every bundle carries the lab's exercise(s) and checks, the kit as wheels and one installer
    for the kit's system packages; it grades live where the platform's container can (CAP_NET_ADMIN)
    and statically where not, and its results say which.

    \b
    Gradescope:    lab-runner autograder gradescope lab-3 -e 1 -e 3 -o out/gs
                   (out/gs/autograder.zip: setup.sh + run_autograder; out/gs/student/: task text)
    PrairieLearn:  lab-runner autograder prairielearn lab-3 -e 3 -o out/pl
                   (out/pl/grader/Dockerfile; out/pl/questions/<exercise>/info.json, …)
    GitHub:        lab-runner autograder github lab-3 -e 3 -o out/gh
                   (a template repository: README, starter file, .github/workflows/classroom.yml)
    """
    from lab_runner.autograder import bundle, github, gradescope, prairielearn

    if platform != "gradescope" and len(numbers) > 1:
        raise click.UsageError(f"{platform} grades one exercise per question or repository: "
                               "give one -e N (run the command once per exercise)")
    assignment = bundle.load(lab, numbers)
    out = Path(out_dir)
    console.print(f"building the {platform} bundle for {assignment.lab_id} exercise(s) "
                  f"{', '.join(ex.number for ex in assignment.exercises)} (the kit's wheels: "
                  "this takes a minute)", markup=False, highlight=False)
    wheels = "kit" if no_dependency_wheels else "all"
    if platform == "gradescope":
        written = gradescope.write(assignment, out, wheels=wheels)
    elif platform == "prairielearn":
        written = prairielearn.write(assignment, out, image=image, wheels=wheels)
    else:
        written = github.write(assignment, out, wheels=wheels)
    for path in written:
        console.print(Text(f"wrote {path}", style="dim"), highlight=False)
    console.print(f"next: {NEXT_STEPS[platform].format(out=out)}", markup=False, highlight=False)
