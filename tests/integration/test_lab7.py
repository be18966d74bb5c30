"""Lab 7 graded live (real kernel, nft -f in the node): every reference solution scores full
marks, every answer in fixtures/submissions/lab-7 loses exactly what its name declares and
scores as static mode scores it, every check is failed by some wrong answer, a file the kernel
refuses is reported with its line, the rules connections met (from `nft monitor trace`) are
those static mode computes, and no grading leaves a namespace behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from wrong_answers import declared, failed_and_lost, grade_all_live

from lab_runner.backends.netns import list_netns
from lab_runner.errors import SubmissionError
from lab_runner.grading import exercise as exercises
from lab_runner.grading.grade import grade
from lab_runner.evidence.probing import Target
from lab_runner.grading import nft_submission
from lab_runner.grading.nft_sandbox import NftLiveSandbox, NftStaticSandbox
from lab_runner.grading.nft_submission import NftSubmission, applied
from lab_runner.runs import run_id_of

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = sorted((ROOT / "labs" / "lab-7-nftables" / "solutions").glob("ex*"))
CORPUS = sorted((ROOT / "fixtures" / "submissions" / "lab-7").glob("*.nft"))
SVC = "service-54NX2MGN-stateful-apps/my-app/tcp/http-svc"
SERVICE = Target("10.104.5.205", 8080, "tcp")


@pytest.fixture(scope="module")
def graded():
    before = set(list_netns())
    results = grade_all_live("lab-7", SOLUTIONS + CORPUS, jobs=2)
    return results, before


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_reference_solution_scores_full_marks_live(graded, path):
    result = graded[0][path.name]
    assert result["mode"] == "live" and not result.get("error")
    assert result["score"] == result["max_score"] > 0, result["checks"]


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_answer_loses_live_exactly_what_it_declares_and_what_static_mode_says(graded, path):
    _, lose, fails = declared(path)
    result = graded[0][path.name]
    assert not result.get("error"), result["error"]
    assert failed_and_lost(result) == (fails, lose), result["checks"]
    static = grade("lab-7", path.name[2], path, "static")
    assert static.score == result["score"]


def test_every_check_is_failed_by_some_wrong_answer(graded):
    failed = {(name[2], check["id"]) for name, result in graded[0].items()
              for check in result["checks"] if check["status"] != "passed"}
    every = {(ex.number, c.id) for ex in exercises.all_exercises("lab-7") for c in ex.checks}
    assert every <= failed, every - failed


def test_no_grading_leaves_a_namespace_behind(graded, runs_made_by_this_session):
    made = runs_made_by_this_session()
    left = [ns for ns in set(list_netns()) - graded[1] if run_id_of(ns) in made]
    assert not left, left


def test_a_file_the_kernel_refuses_is_reported_with_its_line_and_leaves_nothing(
        runs_made_by_this_session):
    # A loop the intake refuses too (nft_submission.refuse_loops); here it goes straight to the
    # kernel, to show what the live sandbox makes of a refusal: the line, nothing left.
    ex = exercises.find("lab-7", 1)
    text = (f"add chain ip kube-proxy service-AAAAAAAA-loop\n"
            f"add rule ip kube-proxy service-AAAAAAAA-loop jump {SVC}\n"
            f"add rule ip kube-proxy {SVC} ip saddr 10.0.0.1 jump service-AAAAAAAA-loop\n")
    submission = NftSubmission("loop.nft", text, applied(ex.start_document, text, "loop.nft"))
    before = set(list_netns())
    with pytest.raises(SubmissionError, match=r"^loop\.nft, line 3: the kernel refused it: .*"
                                              r"Too many links"):
        NftLiveSandbox(ex, submission)
    made = runs_made_by_this_session()
    assert not [ns for ns in set(list_netns()) - before if run_id_of(ns) in made]


def test_live_rules_hit_are_the_kernels_trace_and_equal_static_mode():
    ex = exercises.find("lab-7", 1)
    submission = nft_submission.read(SOLUTIONS[0], ex)
    static, live = NftStaticSandbox(ex, submission), NftLiveSandbox(ex, submission)
    try:
        for caller in ("client", "my-app-7f569f66d9-dfrdh", "node"):
            observations, hit = live.observe(caller, SERVICE)
            assert hit == static.rules_hit(caller, SERVICE), caller
            assert observations and all(o.answered for o in observations)
        assert "kplab-trace" not in live.lab.exec("node", ["nft", "list", "tables"]).stdout
    finally:
        live.close()
