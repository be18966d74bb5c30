"""Grading end to end, live (real kernel) and static (rule tracer), for every exercise of lab 3.

- Every reference solution scores full marks in both modes.
- Every answer in fixtures/submissions/lab-3 loses exactly the points in its name
  (`exN-mistake.lose-P.rules`) and fails exactly the checks on its first line
  (`# fails: a, b`), in both modes, with the same score in both; `lose-0` answers (with an
  empty `# fails:`) are right ones written differently, and must score full marks.
- Together the wrong answers fail every check of every exercise at least once (computed).
- The bad inputs in fixtures/submissions/bad (and one over the size limit, made here) are
  refused with an error naming the file and, where there is one, the line; they score 0 on
  every check and build no lab.
- No grading leaves a namespace behind.

Live gradings run as separate processes, a few at a time (each builds and tears down its own
sandbox, as `lab-runner grade` does), longest first; one driver process per submission records
the run ids it created so the namespace check can tell ours from other runs on the machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from lab_runner.backends.netns import list_netns
from lab_runner.grading import exercise as exercises
from lab_runner.grading.grade import grade
from lab_runner.grading.results import GradeResult
from lab_runner.ruleset.compare import compare
from lab_runner.ruleset.parse import parse
from lab_runner.runs import run_id_of
from wrong_answers import grade_recording_run_ids

ROOT = Path(__file__).resolve().parents[2]
LAB = "lab-3"
SOLUTIONS = ROOT / "labs" / "lab-3-clusterip" / "solutions"
WRONG = ROOT / "fixtures" / "submissions" / "lab-3"
BAD = ROOT / "fixtures" / "submissions" / "bad"
MODES = ("live", "static")
LIVE_WORKERS = int(os.environ.get("KPLAB_GRADING_WORKERS", "3"))  # live gradings at once
WRONG_NAME = re.compile(r"^ex(?P<number>[0-9]+(?:v[0-9]+)?)-(?P<mistake>[a-z0-9-]+)"
                        r"\.lose-(?P<points>[0-9]+)\.rules$")


# -- what there is to grade ---------------------------------------------------------------------

EXERCISES = {ex.number: ex for ex in exercises.all_exercises(LAB)}


def _wrong_answers() -> list[tuple[str, Path, int, frozenset[str]]]:
    out = []
    for path in sorted(WRONG.glob("*.rules")):
        name = WRONG_NAME.match(path.name)
        assert name, f"{path.name}: name it exN-mistake.lose-P.rules"
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# fails:"), f"{path.name}: line 1 must be `# fails: check, …`"
        fails = frozenset(c.strip() for c in first.split(":", 1)[1].split(",") if c.strip())
        out.append((name["number"], path, int(name["points"]), fails))
    return out


WRONG_ANSWERS = _wrong_answers()
BAD_INPUTS = yaml.safe_load((BAD / "expected.yaml").read_text(encoding="utf-8"))


def _solution(number: str) -> Path:
    return SOLUTIONS / f"{EXERCISES[number].slug}.rules"


# -- grading, once per submission and mode ------------------------------------------------------

def _live(number: str, path: Path) -> tuple[GradeResult, list[str]]:
    [data] = grade_recording_run_ids([{"lab": LAB, "exercise": number, "path": str(path),
                                       "mode": "live"}])
    return GradeResult.from_dict(data["result"]), data["run_ids"]


class Graded:
    """Every submission's result in each mode, the run ids the live ones used, and timings."""

    def __init__(self):
        self.results: dict[tuple[str, str, str], GradeResult] = {}
        self.run_ids: list[str] = []
        self.netns_before = set(list_netns())
        self.seconds = 0.0

    def get(self, mode: str, number: str, path: Path) -> GradeResult:
        return self.results[(mode, number, str(path))]


# Rough live cost of a submission, to start the long ones first: answers that leave a pod
# unanswered make the grader probe up to 40 times, once per check that looks for every pod.
def _expected_cost(number: str, path: Path) -> float:
    slow = {"ex2-no-hairpin": 40, "ex2-mark-chain-emptied": 40, "ex3v3-two-endpoints": 15, "ex3v5-four-endpoints": 15,
            "ex6-port-not-fixed": 15, "ex3-off-by-one": 12}
    return next((v for k, v in slow.items() if path.name.startswith(k)), 6.0)


@pytest.fixture(scope="module")
def graded() -> Graded:
    started = time.monotonic()
    out = Graded()
    jobs = [(n, _solution(n)) for n in EXERCISES] + [(n, p) for n, p, _, _ in WRONG_ANSWERS]
    jobs.sort(key=lambda job: -_expected_cost(*job))
    with ThreadPoolExecutor(max_workers=LIVE_WORKERS) as pool:
        live = [(job, pool.submit(_live, *job)) for job in jobs]
        for number, path in jobs:  # in this process, while the live ones run
            out.results[("static", number, str(path))] = grade(LAB, number, path, "static")
        for (number, path), future in live:
            result, ids = future.result()
            out.results[("live", number, str(path))] = result
            out.run_ids += ids
    out.seconds = time.monotonic() - started
    return out


def _failed(result: GradeResult) -> set[str]:
    return {c.id for c in result.checks if not c.passed}


def _report(result: GradeResult) -> str:
    lines = [f"{result.mode}: score {result.score:g}/{result.max_score:g} {result.error}"]
    lines += [f"  {c.status:9} {c.points:g}/{c.max_points:g} {c.id}: {c.output}"
              for c in result.checks]
    return "\n".join(lines)


# -- reference solutions ------------------------------------------------------------------------

def test_every_exercise_has_its_reference_solution():
    missing = [ex.slug for ex in EXERCISES.values() if not _solution(ex.number).is_file()]
    assert not missing, f"no solutions/<exercise dir>.rules for: {', '.join(missing)}"
    assert {"1", "2", "3", "3v3", "3v5", "4", "5", "6"} <= set(EXERCISES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("number", sorted(EXERCISES))
def test_reference_solution_scores_full_marks(graded, number, mode):
    result = graded.get(mode, number, _solution(number))
    assert not result.error and result.score == result.max_score > 0, _report(result)
    assert all(c.status == "passed" for c in result.checks), _report(result)


# -- wrong answers ------------------------------------------------------------------------------

WRONG_IDS = [path.name for _, path, _, _ in WRONG_ANSWERS]


@pytest.mark.parametrize("number,path,points,fails", WRONG_ANSWERS, ids=WRONG_IDS)
def test_wrong_answer_declares_real_checks(number, path, points, fails):
    ex = EXERCISES.get(number)
    assert ex is not None, f"{path.name}: there is no exercise {number}"
    ids = {c.id for c in ex.checks}
    assert fails <= ids, f"{path.name}: not checks of exercise {number}: {sorted(fails - ids)}"
    declared = sum(ex.check(c).points for c in fails)
    assert declared == points, (f"{path.name}: the checks on line 1 are worth {declared} "
                                f"points, the name says {points}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("number,path,points,fails", WRONG_ANSWERS, ids=WRONG_IDS)
def test_wrong_answer_loses_exactly_its_points(graded, mode, number, path, points, fails):
    result = graded.get(mode, number, path)
    assert not result.error, _report(result)
    assert result.max_score - result.score == points, _report(result)
    assert _failed(result) == fails, _report(result)
    assert all(c.status == "failed" for c in result.checks if c.id in fails), _report(result)


@pytest.mark.parametrize("number,path,points,fails", WRONG_ANSWERS, ids=WRONG_IDS)
def test_live_and_static_agree(graded, number, path, points, fails):
    live, static = (graded.get(m, number, path) for m in MODES)
    assert (live.score, _failed(live)) == (static.score, _failed(static)), (
        f"{path.name}\n{_report(live)}\n{_report(static)}")


def test_every_check_is_failed_by_some_wrong_answer(graded):
    never = []
    for number, ex in sorted(EXERCISES.items()):
        failed: set[str] = set()
        for n, path, _, _ in WRONG_ANSWERS:
            if n == number:
                failed |= (_failed(graded.get("live", n, path))
                           & _failed(graded.get("static", n, path)))
        never += [f"exercise {number}: {c.id}" for c in ex.checks if c.id not in failed]
    assert not never, "no wrong answer fails: " + "; ".join(never)


def test_feedback_never_shows_the_reference_chain_set(graded):
    """A failed check says what was observed and expected, not the rules that would pass."""
    for (mode, number, path), result in graded.results.items():
        if Path(path).parent != WRONG:
            continue
        for check in result.checks:
            assert "-j DNAT" not in check.output and "--probability 0." not in check.output, (
                f"{Path(path).name} ({mode}) {check.id}: {check.output}")
    capstone = EXERCISES["5"].lab
    hidden = set(re.findall(r"KUBE-(?:SVC|SEP)-[A-Z0-9]{16}",
                            _solution("5").read_text(encoding="utf-8")))
    for (mode, number, path), result in graded.results.items():
        if number == "5" and Path(path).parent == WRONG:
            shown = " ".join(c.output for c in result.checks)
            leaked = {name for name in hidden if name in shown
                      and name not in Path(path).read_text(encoding="utf-8")}
            assert not leaked, f"{Path(path).name} ({mode}) feedback names {leaked} ({capstone.id})"


def test_live_grading_takes_reasonable_time(graded):
    live = [r.seconds for (mode, _, _), r in graded.results.items() if mode == "live"]
    print(f"\n{len(live)} live gradings, {LIVE_WORKERS} at a time, and as many static ones: "
          f"{graded.seconds:.0f} s in all; one live grading took {min(live):.1f}-{max(live):.1f} s")
    assert max(live) < 280, "a live grading took more than 280 s: is a probe loop stuck?"


# -- bad inputs -----------------------------------------------------------------------------------

@pytest.fixture
def run_ids_made(monkeypatch):
    """The run ids of every lab this test starts in-process (a refused submission starts none)."""
    import lab_runner.lab as lab_module

    made: list[str] = []
    original = lab_module.new_run_id

    def recorded():
        made.append(original())
        return made[-1]

    monkeypatch.setattr(lab_module, "new_run_id", recorded)
    before = set(list_netns())
    yield made
    left = [ns for ns in set(list_netns()) - before if run_id_of(ns) in made]
    assert not left, f"namespaces left behind: {left}"


def _assert_refused(result: GradeResult, path: Path, words: str, line: int | None) -> None:
    # Feedback names the file, not the directory it was graded from.
    assert result.error.startswith(path.name) and str(path.parent) not in result.error, result.error
    assert words in result.error, result.error
    if line is not None:
        assert result.error.startswith(f"{path.name}, line {line}:"), result.error
    assert result.score == 0 and result.checks, _report(result)
    assert all(c.status == "error" and c.points == 0 and "not graded" in c.output
               for c in result.checks), _report(result)
    assert len(result.checks) == len(EXERCISES[result.exercise].checks)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_refused_with_its_line(name, mode, run_ids_made):
    expected = BAD_INPUTS[name]
    path = BAD / name
    result = grade(LAB, expected["exercise"], path, mode)
    _assert_refused(result, path, expected["error"], expected["line"])
    assert run_ids_made == [], "a refused submission must not build a lab"


@pytest.mark.parametrize("mode", MODES)
def test_submission_over_the_size_limit_is_refused(tmp_path, mode, run_ids_made):
    limit = EXERCISES["1"].max_bytes
    path = tmp_path / "huge.rules"
    rule = ("-A KUBE-SERVICES -m tcp -p tcp -d 10.104.5.205/32 --dport 8080 "
            "-j KUBE-SVC-Q7IJ732UBZY4AJKA\n")
    body = "*nat\n" + rule * (limit // len(rule) + 1) + "COMMIT\n"
    path.write_text(body)
    assert path.stat().st_size > limit
    result = grade(LAB, "1", path, mode)
    _assert_refused(result, path, f"more than {limit} bytes, the limit", None)
    assert run_ids_made == []


def test_bad_inputs_cover_what_the_grader_must_refuse():
    """Empty, syntax errors, binary, not UTF-8, a table or chain not opened, -F without a chain,
    DROP/REJECT of all probe traffic in an allowed chain (plus the size limit, made above)."""
    assert set(BAD_INPUTS) >= {"empty.rules", "dport-before-protocol.rules", "missing-commit.rules",
                               "binary.rules", "latin1.rules", "wrong-table.rules",
                               "wrong-chain.rules", "flush-all.rules", "drop-all.rules",
                               "reject-all.rules"}
    assert sorted(p.name for p in BAD.glob("*.rules")) == sorted(BAD_INPUTS)


# -- what every grading leaves behind -------------------------------------------------------------

def test_no_namespace_left_behind(graded):
    assert graded.run_ids, "the live gradings recorded no run ids"
    now = set(list_netns())
    ours = sorted(ns for ns in now - graded.netns_before if run_id_of(ns) in set(graded.run_ids))
    assert not ours, f"namespaces left behind by live grading: {ours}"
    assert not [ns for ns in now if run_id_of(ns) in set(graded.run_ids)]


# -- exercise 6 shows the state it grades ---------------------------------------------------------

def test_break_fix_task_shows_the_starting_state():
    """The listing in exercise 6's task is the broken chain set the sandbox starts from."""
    ex = EXERCISES["6"]
    lines = [line.strip() for line in ex.task.splitlines()]
    listing = "\n".join(lines[lines.index("*nat"):lines.index("COMMIT") + 1])
    shown = parse(listing, "<exercise 6 task>")
    start = parse(ex.start_document, "<starting state>")
    chains = [c for c in shown.table("nat").chains if c.startswith("KUBE-")]
    diff = compare(start, shown, chains=chains, tables=["nat"])
    assert diff.equal, diff.text
    kube_proxy_chains = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-SERVICES", "KUBE-NODEPORTS",
                         "KUBE-MARK-MASQ", "KUBE-POSTROUTING")
    assert len(chains) == len([c for c in start.table("nat").chains
                               if c.startswith(kube_proxy_chains)])


# -- the kubectl views the tasks send students to -------------------------------------------------

KUBECTL_LINES = [(number, line.strip()) for number, ex in sorted(EXERCISES.items())
                 for line in ex.task.splitlines()
                 if "lab-runner kubectl " in line and "lab.yaml" in line]


def test_the_capstone_task_sends_students_to_kubectl():
    assert [line for number, line in KUBECTL_LINES if number == "5"], "exercise 5 names no view"


@pytest.mark.parametrize("number,line", KUBECTL_LINES, ids=[f"ex{n}-{i}" for i, (n, _) in
                                                          enumerate(KUBECTL_LINES)])
def test_kubectl_views_named_in_tasks_work(number, line):
    """Each `lab-runner kubectl <exercise lab file> -- …` in a task runs from the kit's dir."""
    import shlex

    args = shlex.split(line[line.index("lab-runner kubectl ") + len("lab-runner "):])
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "lab_runner", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip(), f"{line}\n{done.stdout}{done.stderr}"
    svc = EXERCISES[number].lab.services[0]
    assert svc.name in done.stdout
    if number == "5" and "get pod" in line:  # the pod that is not ready shows as such
        not_ready = [p.name for p in EXERCISES[number].lab.pods if not p.ready]
        assert not_ready and all(re.search(rf"{name}\s+0/1\s", done.stdout) for name in not_ready)
