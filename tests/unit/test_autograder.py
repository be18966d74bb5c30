"""Autograder bundles without a container: contents, no solutions, results against each platform's
documented format, the GitHub workflow's shape, finding the student's file."""

from __future__ import annotations

import functools
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lab_runner.autograder import bundle, github, gradescope, prairielearn, runtime
from lab_runner.grading import exercise as exercises
from lab_runner.grading.results import CheckResult, GradeResult

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = sorted(ROOT.glob("labs/*/solutions/*"))

# Gradescope's results.json, from its "Autograder Specifications" (gradescope-autograders docs):
# the keys it reads at the top and per test, and the values its enumerations take.
GS_TOP = {"score", "execution_time", "output", "output_format", "test_output_format",
          "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests",
          "leaderboard"}
GS_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output",
           "output_format", "tags", "visibility", "extra_data"}
GS_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
GS_FORMATS = {"text", "html", "simple_format", "md", "ansi"}
# PrairieLearn's external grader results (docs/externalGrading.md, "Grading results").
PL_TOP = {"gradable", "score", "message", "output", "tests", "format_errors", "images", "partial_scores"}
PL_TEST = {"name", "description", "points", "max_points", "message", "output", "images"}


def gradescope_problems(doc: dict) -> list[str]:
    """Where a results.json departs from Gradescope's documented format ([] when it does not)."""
    problems = [f"unknown top-level key {k!r}" for k in set(doc) - GS_TOP]
    number = (int, float)
    tests = doc.get("tests", [])
    if "score" not in doc and not all("score" in t for t in tests):
        problems.append("no top-level score and a test without one")
    for key in ("score", "execution_time"):
        if key in doc and not isinstance(doc[key], number):
            problems.append(f"{key} is not a number")
    for key in ("visibility", "stdout_visibility"):
        if key in doc and doc[key] not in GS_VISIBILITY:
            problems.append(f"{key} {doc[key]!r}")
    for key in ("output_format", "test_output_format", "test_name_format"):
        if key in doc and doc[key] not in GS_FORMATS:
            problems.append(f"{key} {doc[key]!r}")
    for key in ("output",):
        if key in doc and not isinstance(doc[key], str):
            problems.append(f"{key} is not text")
    if "extra_data" in doc and not isinstance(doc["extra_data"], dict):
        problems.append("extra_data is not an object")
    if not isinstance(tests, list):
        return problems + ["tests is not a list"]
    for i, test in enumerate(tests):
        problems += [f"tests[{i}]: unknown key {k!r}" for k in set(test) - GS_TEST]
        for key in ("score", "max_score"):
            if key in test and not isinstance(test[key], number):
                problems.append(f"tests[{i}].{key} is not a number")
        if test.get("status", "passed") not in ("passed", "failed"):
            problems.append(f"tests[{i}].status {test['status']!r}")
        if test.get("visibility", "visible") not in GS_VISIBILITY:
            problems.append(f"tests[{i}].visibility {test['visibility']!r}")
        for key in ("name", "number", "output"):
            if key in test and not isinstance(test[key], str):
                problems.append(f"tests[{i}].{key} is not text")
        if "tags" in test and not all(isinstance(t, str) for t in test["tags"]):
            problems.append(f"tests[{i}].tags are not all text")
    return problems


def prairielearn_problems(doc: dict) -> list[str]:
    """Where a results.json departs from PrairieLearn's documented grading results."""
    problems = [f"unknown top-level key {k!r}" for k in set(doc) - PL_TOP]
    if not isinstance(doc.get("gradable", True), bool):
        problems.append("gradable is not a boolean")
    score = doc.get("score")
    if not isinstance(score, (int, float)) or not 0 <= score <= 1:
        problems.append(f"score {score!r} is not a fraction in [0, 1]")
    for i, test in enumerate(doc.get("tests", [])):
        problems += [f"tests[{i}]: unknown key {k!r}" for k in set(test) - PL_TEST]
        if not isinstance(test.get("name"), str):
            problems.append(f"tests[{i}] has no name")
        for key in ("points", "max_points"):
            if not isinstance(test.get(key), (int, float)):
                problems.append(f"tests[{i}].{key} is not a number")
    return problems


@functools.cache
def solution_lines() -> dict[str, frozenset[str]]:
    """Each solution file's answer lines, but those its lab's task texts show students anyway
    (lab 1's task gives `ip netns add pod` as the example): what a bundle must never contain."""
    found = {}
    for path in SOLUTIONS:
        lab = path.parent.parent
        shown = "\n".join(ex.task for ex in exercises.all_exercises(str(lab)))
        lines = {line.strip() for line in path.read_text().splitlines()}
        found[str(path.relative_to(ROOT))] = frozenset(
            line for line in lines
            if len(line) >= 20 and not line.startswith("#") and line not in shown)
    return found


def leaks(tree: Path) -> list[str]:
    """Solution lines found in any file below tree, zips and wheels opened too."""
    texts = []
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix in (".zip", ".whl"):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                texts += [(f"{path}:{n}", zf.read(n)) for n in zf.namelist()]
        else:
            texts.append((str(path), data))
        assert "solutions" not in path.parts, f"a solutions directory in the bundle: {path}"
    found = []
    for where, data in texts:
        text = data.decode("utf-8", "replace")
        for solution, lines in solution_lines().items():
            found += [f"{where} holds a line of {solution}: {line}" for line in lines if line in text]
    return found


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """One bundle per platform for lab-3 exercise 1 (Gradescope: 1 and 3), without wheels."""
    out = tmp_path_factory.mktemp("bundles")
    gradescope.write(bundle.load("lab-3", ["1", "3"]), out / "gs", wheels="none")
    prairielearn.write(bundle.load("lab-3", ["3"]), out / "pl", wheels="none")
    github.write(bundle.load("lab-3", ["3"]), out / "gh", wheels="none")
    github.write(bundle.load("lab-1", ["1"]), out / "gh-lab1", wheels="none")
    return out


def test_no_bundle_holds_a_solution(bundles):
    assert solution_lines(), "the solutions were not found: the test would prove nothing"
    assert not leaks(bundles)


def test_the_leak_test_sees_a_leak(tmp_path):
    (tmp_path / "x.txt").write_text(SOLUTIONS[0].read_text())
    assert leaks(tmp_path)


def test_gradescope_zip_has_its_scripts_at_the_root(bundles):
    with zipfile.ZipFile(bundles / "gs" / "autograder.zip") as zf:
        names = set(zf.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    assert {"setup.sh", "run_autograder", "kplab/assignment.json", "kplab/install.sh"} <= names
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert "kplab/lab/lab-3-clusterip/checks/test_ex3_random_selection.py" in names
    assert "kplab/lab/lab-3-clusterip/checks/test_ex2_marking.py" not in names  # not bundled
    assert (bundles / "gs" / "student" / "ex3-random-selection.md").read_text().count("Hints")


def test_installer_reads_the_kits_package_list(bundles):
    payload = bundles / "gs" / "source" / "kplab"
    assert (payload / "system-packages.txt").read_text() == bundle.SYSTEM_PACKAGES.read_text()
    assert "system-packages.txt" in (payload / "install.sh").read_text()


def _result(statuses=("passed", "failed"), error="") -> GradeResult:
    result = GradeResult("lab-3-clusterip", "3", "Random selection", "ex3.rules", "static",
                         error=error)
    result.checks = [CheckResult(f"c{i}", f"check <{i}>", 2 if s == "passed" else 0, 2, s,
                                 "observed x. Expected: y")
                     for i, s in enumerate(statuses)]
    return result


SPEC = {"lab": "lab-3-clusterip", "max_score": 4,
        "exercises": [{"number": "3", "files": ["ex3.rules"], "hints": ["look at -m statistic"]}]}


@pytest.mark.parametrize("graded", [[_result()], [_result(error="empty file")], None])
def test_gradescope_results_follow_the_documented_format(graded):
    doc = gradescope.results(SPEC, graded, "static", "static: no CAP_NET_ADMIN", 1.2)
    assert gradescope_problems(json.loads(json.dumps(doc))) == []
    assert doc["extra_data"]["mode"] == "static"
    if graded and not graded[0].error:
        assert doc["score"] == 2 and "look at -m statistic" in doc["output"]
        assert "static: no CAP_NET_ADMIN" in doc["output"]


def test_the_schema_check_sees_a_bad_document():
    assert gradescope_problems({"tests": [{"name": 1, "status": "ok"}], "visibility": "x"})


@pytest.mark.parametrize("graded", [[_result()], [_result(error="empty file")], None])
def test_prairielearn_results_follow_the_documented_format(graded):
    doc = prairielearn.results(SPEC, graded, "static", "static: no CAP_NET_ADMIN", 1.2)
    assert prairielearn_problems(doc) == []
    assert doc["gradable"] is bool(graded and not graded[0].error)


def test_prairielearn_question(bundles):
    question = bundles / "pl" / "questions" / "ex3-random-selection"
    info = json.loads((question / "info.json").read_text())
    assert info["gradingMethod"] == "External" and info["type"] == "v3"
    options = info["externalGradingOptions"]
    assert options["enabled"] and options["entrypoint"] == "/kplab/run-grader"
    page = (question / "question.html").read_text()
    assert 'file-name="ex3-random-selection.rules"' in page and "<pl-external-grader-results>" in page
    assert "<your" not in page  # the task's placeholders are escaped
    assert "def generate(data)" in (question / "server.py").read_text()
    dockerfile = (bundles / "pl" / "grader" / "Dockerfile").read_text()
    assert "install.sh" in dockerfile and "/grade/results/results.json" in dockerfile


def test_github_workflow_reports_every_check_to_classroom(bundles):
    flow = yaml.safe_load((bundles / "gh" / ".github/workflows/classroom.yml").read_text())
    assert flow["name"] == "Autograding Tests"  # the only name Classroom takes scores from
    assert list(flow["jobs"]) == ["run-autograding-tests"]
    steps = flow["jobs"]["run-autograding-tests"]["steps"]
    graders = [s for s in steps if "autograding-command-grader" in s.get("uses", "")]
    reporter = steps[-1]
    assert "autograding-grading-reporter" in reporter["uses"]
    assert reporter["with"]["runners"] == ",".join(s["id"] for s in graders)
    for step in graders:
        assert re.fullmatch(r"[a-zA-Z0-9]+", step["id"])
        assert reporter["env"][f"{step['id'].upper()}_RESULTS"] == \
            "${{steps.%s.outputs.result}}" % step["id"]
    ex = bundle.load("lab-3", ["3"]).exercises[0]
    assert sum(s["with"]["max-score"] for s in graders) == ex.max_score
    assert (bundles / "gh" / "ex3-random-selection.rules").read_text().startswith("# Exercise 3")
    assert "Random selection" in (bundles / "gh" / "README.md").read_text()
    assert (bundles / "gh-lab1" / "ex1-wire-a-pod.ip").exists()


def test_runtime_check_exit_codes(tmp_path, capsys):
    doc = github.results(SPEC, [_result()], "live", "live: namespaces", 1.0)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    assert runtime.check(path, "c0") == 0
    assert runtime.check(path, "c1") == 1
    assert "Expected: y" in capsys.readouterr().out
    assert runtime.check(path, "nope") == 1
    # As the workflow's command graders call it.
    for step in github.workflow(bundle.load("lab-3", ["3"]))["jobs"]["run-autograding-tests"]["steps"]:
        if "command-grader" in step.get("uses", ""):
            argv = step["with"]["command"].split()[3:]
            assert argv[0] == "check" and runtime.main(
                [a.replace(github.RESULTS, str(path)) for a in argv[:-1]] + ["c0"]) == 0


def test_find_by_the_names_the_exercise_accepts(tmp_path):
    (tmp_path / "repo" / "sub").mkdir(parents=True)
    (tmp_path / "repo" / "sub" / "ex3.rules").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    assert runtime.find(tmp_path, ["ex3-random-selection.rules", "ex3.rules"], False).path.name == "ex3.rules"
    (tmp_path / "ex3-random-selection.rules").write_text("x")
    assert runtime.find(tmp_path, ["ex3-random-selection.rules", "ex3.rules"], False).path == \
        tmp_path / "ex3-random-selection.rules"


def test_find_alone_takes_the_one_file_and_never_a_link(tmp_path):
    (tmp_path / "target.rules").write_text("x")
    (tmp_path / "answer.rules").symlink_to(tmp_path / "target.rules")
    (tmp_path / ".hidden.rules").write_text("x")
    found = runtime.find(tmp_path, ["ex1.rules", "answer.rules"], True)
    assert found.path == tmp_path / "target.rules"
    (tmp_path / "target.rules").unlink()
    missing = runtime.find(tmp_path, ["ex1.rules"], True)
    assert missing.path is None and "rename your answer to ex1.rules" in missing.problem


def test_static_grading_of_a_missing_file_says_what_to_hand_in(tmp_path):
    spec_dir = tmp_path / "gs"
    payload = bundle.write_payload(bundle.load("lab-3", ["1"]), spec_dir, wheels="none")
    results = tmp_path / "results.json"
    (tmp_path / "sub").mkdir()
    assert runtime.main(["gradescope", "--assignment", str(payload / "assignment.json"),
                         "--submission", str(tmp_path / "sub"), "--results", str(results),
                         "--mode", "static"]) == 0
    doc = json.loads(results.read_text())
    assert doc["score"] == 0 and not doc["extra_data"]["graded"]
    assert "ex1-matching.rules" in doc["tests"][0]["output"]
    assert gradescope_problems(doc) == []


def test_cli_help_and_usage():
    from lab_runner.cli import cli
    import lab_runner.cli.autograder_cmds  # noqa: F401

    runner = CliRunner()
    help_text = runner.invoke(cli, ["autograder", "--help"]).output
    assert "lab-runner autograder gradescope lab-3 -e 1 -e 3" in help_text
    refused = runner.invoke(cli, ["autograder", "github", "lab-3", "-e", "1", "-e", "3", "-o", "x"])
    assert refused.exit_code != 0 and "one -e N" in refused.output


def test_an_nftables_exercise_is_handed_in_as_nft_commands():
    """Lab 7's answers are `nft -f` commands: the student text, the starter and the names a bundle
    accepts say .nft, not .rules."""
    ex = bundle.load("lab-7", ["1"]).exercises[0]
    assert bundle.accepted_names(ex, alone=True) == ["ex1-numgen.nft", "ex1.nft", "answer.nft"]
    assert "`ex1-numgen.nft`" in bundle.student_markdown(ex, alone=True)
    starter = bundle.starter_text(ex)
    assert "nft -f" in starter and "*nat" not in starter and "COMMIT" not in starter
    assert bundle.submission_suffix(bundle.load("lab-3", ["1"]).exercises[0]) == ".rules"


def test_a_class_directory_takes_nft_answers(tmp_path):
    from lab_runner.grading import batch

    (tmp_path / "alice.nft").write_text("add element ip kube-proxy service-ips { }\n")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "answer.nft").write_text("add element ip kube-proxy service-ips { }\n")
    found = {e.student: e for e in batch.discover(tmp_path)}
    assert set(found) == {"alice", "bob"}
    assert all(e.path is not None and not e.refusal for e in found.values()), found


def test_student_text_names_checks_not_how_they_decide():
    ex = bundle.load("lab-3", ["3"]).exercises[0]
    text = bundle.student_markdown(ex, alone=True)
    assert ex.task in text and all(h in text for h in ex.hints)
    assert "answer.rules" in text and "KUBE-SEP-TWZJG7ZWZYI5EC7J" not in text



@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_a_bundle_alone_grades_the_reference_answer_in_full(solution, tmp_path):
    """The payload's copy of the lab (no solutions, only the exercise's own checks) is enough
    to grade: variants' own lab files, lab 1's wiring.yaml and shared checks come along."""
    lab = solution.parent.parent
    number = re.match(r"ex(\w+?)-", solution.name).group(1)
    payload = bundle.write_payload(bundle.load(str(lab), [number]), tmp_path, wheels="none")
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / solution.name).write_bytes(solution.read_bytes())
    results = tmp_path / "results.json"
    runtime.main(["github", "--assignment", str(payload / "assignment.json"), "--submission",
                  str(submission), "--results", str(results), "--mode", "static"])
    doc = json.loads(results.read_text())
    assert doc["score"] == doc["max_score"] > 0, doc
