"""GitHub Classroom: a template repository whose workflow grades live and reports points to Classroom.

GitHub Classroom reads points from its reporter action (classroom-resources/
autograding-grading-reporter): it sums the results of the grader steps it is told of, each a
base64 JSON that a grader action (autograding-command-grader: the command's exit code gives all
or none of max-score) leaves in its `result` output, and posts "Points X/Y". Classroom takes them
only from a workflow named "Autograding Tests" with one job, `run-autograding-tests`.

So the job installs the kit (sudo: hosted runners are VMs), grades once, live, writing
.kplab-results/results.json (this module's `results`), and then has one command grader per check,
`runtime check ID`, worth the check's points: the per-check points appear in Classroom as they
do in the kit's own report.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lab_runner.autograder import bundle
from lab_runner.autograder.runtime import hints_text

PAYLOAD_DIR = ".github/kplab"
RESULTS = ".kplab-results/results.json"
PYTHON = f"{bundle.VENV}/bin/python"


def check_ids(assignment: bundle.Assignment) -> list[tuple[str, str, int]]:
    """(id for `runtime check`, title, points) for every check; ids carry the exercise when the
    template has several."""
    alone = len(assignment.exercises) == 1
    return [(c.id if alone else f"ex{ex.number}/{c.id}", c.title, c.points)
            for ex in assignment.exercises for c in ex.checks]


def workflow(assignment: bundle.Assignment) -> dict:
    """.github/workflows/classroom.yml as data."""
    grade = (f"sudo {PYTHON} -m lab_runner.autograder.runtime github "
             f"--assignment {PAYLOAD_DIR}/assignment.json --submission . --results {RESULTS}")
    steps = [{"name": "Checkout code", "uses": "actions/checkout@v4"},
             {"name": "Install the lab kit (apt and pip; the runner's sudo)",
              "run": f"sudo bash {PAYLOAD_DIR}/install.sh"},
             {"name": "Grade: live, real packets through your rules in network namespaces",
              "run": grade}]
    runners = []
    for i, (check_id, title, points) in enumerate(check_ids(assignment), 1):
        runner = f"check{i}"
        runners.append(runner)
        steps.append({"name": title[:80], "id": runner,
                      "uses": "classroom-resources/autograding-command-grader@v1",
                      "with": {"test-name": title, "setup-command": "",
                               "command": f"{PYTHON} -m lab_runner.autograder.runtime check "
                                          f"--results {RESULTS} {check_id}",
                               "timeout": 1, "max-score": points}})
    steps.append({"name": "Autograding Reporter",
                  "uses": "classroom-resources/autograding-grading-reporter@v1",
                  "env": {f"{r.upper()}_RESULTS": "${{steps.%s.outputs.result}}" % r
                          for r in runners},
                  "with": {"runners": ",".join(runners)}})
    return {"name": "Autograding Tests", "on": ["push", "repository_dispatch", "workflow_dispatch"],
            "permissions": {"checks": "write", "actions": "read", "contents": "read"},
            "jobs": {"run-autograding-tests": {
                "runs-on": "ubuntu-latest", "if": "github.actor != 'github-classroom[bot]'",
                "timeout-minutes": 30, "steps": steps}}}


def write(assignment: bundle.Assignment, out: Path, *, wheels: str = "all") -> list[Path]:
    """The template repository in out/: README.md (the task), starter files, .gitignore,
    .github/workflows/classroom.yml and .github/kplab/."""
    out.mkdir(parents=True, exist_ok=True)
    bundle.write_payload(assignment, out / ".github", wheels=wheels)
    flows = out / ".github" / "workflows"
    flows.mkdir(parents=True, exist_ok=True)
    # `on` is a YAML 1.1 boolean to some readers: written quoted, as GitHub's own examples do.
    text = yaml.safe_dump(workflow(assignment), sort_keys=False, width=100)
    (flows / "classroom.yml").write_text(text.replace("\non:", "\n'on':", 1))
    alone = len(assignment.exercises) == 1
    readme = [f"# {assignment.lab_id}", "",
              "Write your answer in the file(s) named below, commit and push: the "
              "**Autograding Tests** workflow grades it on a real kernel and GitHub Classroom "
              "records the points (the Actions tab shows what each check saw).", ""]
    for ex in assignment.exercises:
        readme.append(bundle.student_markdown(ex, alone).replace("\n# ", "\n## ", 1))
        (out / bundle.accepted_names(ex, alone)[0]).write_text(bundle.starter_text(ex))
    (out / "README.md").write_text("\n".join(readme))
    (out / ".gitignore").write_text(".kplab-results/\n")
    return [out]


def results(spec: dict, graded: list | None, mode: str, reason: str, seconds: float) -> dict:
    """What `runtime check` reads: every check with its id, status, points and feedback."""
    if graded is None:
        return {"mode": mode, "reason": reason, "score": 0, "max_score": spec["max_score"],
                "tests": []}
    alone = len(graded) == 1
    tests = [{"id": c.id if alone else f"ex{r.exercise}/{c.id}", "name": c.title,
              "status": "passed" if c.passed else "failed", "score": c.points,
              "max_score": c.max_points, "output": c.output if not c.passed else ""}
             for r in graded for c in r.checks]
    return {"mode": mode, "reason": reason, "seconds": seconds,
            "score": sum(r.score for r in graded), "max_score": sum(r.max_score for r in graded),
            "hints": hints_text(spec, graded), "tests": tests}
