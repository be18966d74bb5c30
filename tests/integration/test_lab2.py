"""Lab 2 (NAT by hand, two nodes): the walkthrough's marks, and the exercises graded live and static.

Every wrong answer in fixtures/submissions/lab-2/ is named `ex<N>-<mistake>.lose-<points>.rules`
and starts with `# fails: check-id, …`: graded live (`lab-runner grade`, real packets) and static
(the rule tracer and the lab's routing model) it must fail exactly those checks and lose exactly
those points. The reference answers score full marks both ways.
"""

from __future__ import annotations

import pytest

from lab_runner import lab_file
from lab_runner.grading import exercise as exercises
from lab_runner.grading.grade import grade
from lab_runner.lab import LiveLab
from wrong_answers import (ROOT, declared, exercise_of, failed_and_lost, lab_fixtures)

LAB = "lab-2"
FIXTURES = sorted((ROOT / "fixtures" / "submissions" / "lab-2").glob("ex*.rules"))
SOLUTIONS = sorted((ROOT / "labs" / "lab-2-nat" / "solutions").glob("ex*.rules"))
LIVE_JOBS = 3
VIRTUAL_IPS = ("10.96.0.100", "10.96.0.200")


# `walk LAB --check` runs in the background while every answer is graded live.
walkthrough, live_results = lab_fixtures(LAB, FIXTURES + SOLUTIONS, jobs=LIVE_JOBS)


# -- the lab --------------------------------------------------------------------------------------
def test_up_installs_nothing_for_the_virtual_ips():
    model = lab_file.load(LAB)
    assert not model.services and len(model.nodes) == 2
    with LiveLab.up(LAB) as lab:
        for node in ("node-a", "node-b"):
            rules = lab.save(node)
            assert not any(ip in rules for ip in VIRTUAL_IPS), rules
        # The client sends the service range to node-a, the node it enters by.
        routes = lab.exec("client", ["ip", "route"], check=True).stdout
        assert "10.96.0.0/12 via 192.168.49.2" in routes


# -- the exercises ---------------------------------------------------------------------------------
def test_every_check_is_failed_by_some_fixture():
    for ex in exercises.all_exercises(LAB):
        failed = set().union(*(declared(p)[2] for p in FIXTURES if declared(p)[0] == ex.number))
        missing = {c.id for c in ex.checks} - failed
        assert not missing, f"exercise {ex.number}: no fixture fails {sorted(missing)}"


def test_fixtures_declare_what_they_lose():
    for path in FIXTURES:
        number, lose, fails = declared(path)
        ex = exercises.find(LAB, number)
        assert fails <= {c.id for c in ex.checks}, f"{path.name}: unknown check ids"
        assert lose == sum(ex.check(c).points for c in fails), f"{path.name}: the name says lose-{lose}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_full_marks_static(path):
    result = grade(LAB, exercise_of(path), path, "static")
    assert not result.error and result.score == result.max_score, result.to_dict()["checks"]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_full_marks_live(path, live_results):
    assert failed_and_lost(live_results[path.name]) == (set(), 0), live_results[path.name]["checks"]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_static(path):
    number, lose, fails = declared(path)
    result = grade(LAB, number, path, "static").to_dict()
    assert failed_and_lost(result) == (fails, lose), result["checks"]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_live(path, live_results):
    number, lose, fails = declared(path)
    assert failed_and_lost(live_results[path.name]) == (fails, lose), live_results[path.name]["checks"]


def test_refused_chain_names_the_line():
    path = next(p for p in FIXTURES if "kube-chain" in p.name)
    result = grade(LAB, "1", path, "static")
    assert "line 4" in result.error and "KUBE-SERVICES" in result.error, result.error


# -- the walkthrough (last: it ran in the background meanwhile) -------------------------------------
def test_walkthrough_marks_all_found(walkthrough):
    out, err = walkthrough.communicate(timeout=300)
    assert walkthrough.returncode == 0, out[-4000:] + err[-2000:]
    assert "All 10 step(s) ran as expected." in out
