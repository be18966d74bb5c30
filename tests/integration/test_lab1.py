"""Lab 1 (pods on a node): the walkthrough's marks, and the wiring exercise graded live and static.

Every wrong answer in fixtures/submissions/lab-1/ is named `ex<N>-<mistake>.lose-<points>.ip` and
starts with `# fails: check-id, …`: graded live and static it must fail exactly those checks and
lose exactly those points, and the model behind static mode must give every command the same exit
status and message as the kernel did.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab_runner.errors import SubmissionError
from lab_runner.grading import exercise as exercises
from lab_runner.grading import wiring
from wrong_answers import (ROOT, declared, env, exercise_of, failed_and_lost, grade_live,
                           lab_fixtures)

LAB = "lab-1"
FIXTURES = sorted((ROOT / "fixtures" / "submissions" / "lab-1").glob("ex*.ip"))
SOLUTIONS = sorted((ROOT / "labs" / "lab-1-pods" / "solutions").glob("ex*.ip"))
LIVE_JOBS = 3


# `walk LAB --check` runs in the background while every answer is graded live.
walkthrough, live_results = lab_fixtures(LAB, FIXTURES + SOLUTIONS, jobs=LIVE_JOBS)


# -- the exercise ----------------------------------------------------------------------------------
def test_every_check_is_failed_by_some_fixture():
    for ex in exercises.all_exercises(LAB):
        failed = set().union(*(declared(p)[2] for p in FIXTURES if declared(p)[0] == ex.number))
        assert {c.id for c in ex.checks} <= failed, f"exercise {ex.number}: no fixture fails " \
            f"{sorted({c.id for c in ex.checks} - failed)}"


def test_fixtures_declare_what_they_lose():
    for path in FIXTURES:
        ex_number, lose, fails = declared(path)
        ex = exercises.find(LAB, ex_number)
        assert fails <= {c.id for c in ex.checks}, f"{path.name}: unknown check ids"
        assert lose == sum(ex.check(c).points for c in fails), f"{path.name}: the name says lose-{lose}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_full_marks_static(path):
    result = wiring.grade(LAB, exercise_of(path), path, "static")
    assert not result.error and result.score == result.max_score, result.to_dict()


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_full_marks_live(path, live_results):
    failed, lost = failed_and_lost(live_results[path.name])
    assert not failed and lost == 0, live_results[path.name]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_static(path):
    ex, lose, fails = declared(path)
    result = wiring.grade(LAB, ex, path, "static").to_dict()
    assert failed_and_lost(result) == (fails, lose), result["checks"]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_live(path, live_results):
    ex, lose, fails = declared(path)
    assert failed_and_lost(live_results[path.name]) == (fails, lose), live_results[path.name]["checks"]


@pytest.mark.parametrize("path", FIXTURES + SOLUTIONS, ids=lambda p: p.name)
def test_model_agrees_with_the_kernel_command_by_command(path, live_results):
    ex = declared(path)[0] if path in FIXTURES else exercise_of(path)
    static = wiring.grade(LAB, ex, path, "static").to_dict()
    live = live_results[path.name]
    as_ran = lambda r: [(c["line"], c["ok"], c["message"]) for c in r["evidence"].get("commands", [])]  # noqa: E731
    assert as_ran(static) == as_ran(live)


MUTATIONS = [
    "ip -n pod link set eth0 down", "ip -n node link set veth-x7vq4 down",
    "ip -n node link set veth-x7vq4 nomaster", "ip -n pod link set eth0 netns node",
    "ip -n pod route add 10.96.0.0/12 via 10.244.0.1", "ip -n pod route add default dev eth0",
    "ip -n pod addr add 10.244.0.5/16 dev eth0", "ip -n node link del veth-x7vq4",
    "ip -n pod route add 10.244.0.1/32 dev eth0", "ip -n pod route add default via 10.244.0.5",
    "ip netns add pod", "ip -n pod link del eth0",
]


def _mutants(count: int, seed: int) -> list[list[str]]:
    solution = [line for line in SOLUTIONS[0].read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    rng, out = random.Random(seed), []
    for _ in range(count):
        lines = list(solution)
        for _ in range(rng.randint(1, 3)):
            choice = rng.random()
            if choice < 0.3:
                lines.pop(rng.randrange(len(lines)))
            elif choice < 0.6:
                i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(rng.randrange(len(lines) + 1), rng.choice(MUTATIONS))
        out.append(lines)
    return out


def test_model_agrees_with_the_kernel_on_mutated_answers(tmp_path):
    """A few seeded variations of the reference answer (commands dropped, swapped, added)."""
    paths = []
    for i, lines in enumerate(_mutants(4, seed=20240601)):
        path = tmp_path / f"mutant-{i}.ip"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    with ThreadPoolExecutor(max_workers=LIVE_JOBS) as pool:
        lives = list(pool.map(lambda p: grade_live(LAB, p, "1"), paths))
    for path, live in zip(paths, lives):
        static = wiring.grade(LAB, "1", path, "static").to_dict()
        ran = lambda r: [(c["line"], c["ok"], c["message"]) for c in r["evidence"]["commands"]]  # noqa: E731
        assert ran(static) == ran(live), path.read_text()
        decided = {c["id"]: c["status"] for c in static["checks"] if c["status"] != "undecidable"}
        assert decided == {c["id"]: c["status"] for c in live["checks"] if c["id"] in decided}, \
            path.read_text()


def test_the_wiring_grader_runs_on_its_own():
    """`python -m lab_runner.grading.wiring` grades without `lab-runner` (static: no lab)."""
    answer = SOLUTIONS[0]
    done = subprocess.run([sys.executable, "-m", "lab_runner.grading.wiring", LAB, str(answer), "-e",
                           exercise_of(answer), "--static", "--json"], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["score"] == result["max_score"] > 0, done.stderr


# -- the submission is data: refusals, with the file and line ----------------------------------------
def _refusal(tmp_path, text: str) -> str:
    path = tmp_path / "answer.ip"
    path.write_text(text)
    ex = exercises.find(LAB, 1)
    with pytest.raises(SubmissionError) as info:
        wiring.read(path, ex, wiring.load_spec(ex))
    return str(info.value)


@pytest.mark.parametrize("line, why", [
    ("ip -n pod addr add 10.244.0.5/24 dev eth0; reboot", "shell syntax"),
    ("ip -n pod addr add 10.244.0.5/24 dev eth0 && true", "shell syntax"),
    ("bash -c 'ip link'", "only `ip` commands"),
    ("ip link set eth0 up", "say where"),
    ("ip -n host link set eth0 up", "unknown namespace"),
    ("ip -n node link set cni0 down", "the bridge"),
    ("ip -n node link del veth9d33fb2", "another pod's veth"),
    ("ip -n node addr add 10.244.0.5/24 dev cni0", "addresses go in the pod's namespace"),
    ("ip -n pod addr add 10.244.0.2/24 dev eth0", "belongs to web-5d8f7c9b6-k2xq7"),
    ("ip -n pod addr add 192.168.49.7/24 dev eth0", "not an address of node node-a's pod subnet"),
    ("ip -n pod addr add 10.244.0.5/24 dev lo", "lo keeps 127.0.0.1"),
    ("ip -n node route add default via 10.244.0.1", "routes go in the pod's namespace"),
    ("ip -n pod route add default via 10.244.0.1 onlink", "nothing else"),
    ("ip -n node link set veth-x master eth0", "the only master"),
    ("ip -n node link set veth-x master cni0 up", "one change per"),
    ("ip netns add node", "ip netns add pod"),
    ("ip -n pod link add eth0 type dummy", "only veth pairs"),
    ("ip -b batch.txt", "is not accepted"),
])
def test_refused_with_file_and_line(tmp_path, line, why):
    message = _refusal(tmp_path, f"# my answer\nip netns add pod\n{line}\n")
    assert "answer.ip, line 3:" in message and why in message, message


def test_a_wiring_file_is_plain_text_and_named_without_its_directories(tmp_path):
    assert _refusal(tmp_path, "ip netns add pod\n\x00\n") == (
        "answer.ip, line 2: binary data (a NUL byte); a submission is a text file of `ip` commands")
    assert _refusal(tmp_path, "ip netns add pod\n\x1b[31m\n").startswith(
        "answer.ip, line 2: control characters")
    assert _refusal(tmp_path, "#" * 9000).startswith("answer.ip: more than 8192 bytes")


def test_every_command_runs_inside_a_lab_namespace():
    ex = exercises.find(LAB, 1)
    spec = wiring.load_spec(ex)
    submission = wiring.from_bytes(SOLUTIONS[0].read_bytes(), "solution", ex, spec)
    real = {"node": "kplab-abc123-node-node-a", "pod": "kplab-abc123-pod-web-5d8f7c9b6-x7vq4"}
    for command in submission.commands:
        argv = command.argv(real)
        assert argv[0] == "ip"
        if command.op == "netns-add":
            assert argv[1:] == ["netns", "add", real["pod"]]
        else:
            assert argv[1:3] == ["-n", real[command.ns]]
        assert all(word not in ("node", "pod") for word in argv), argv  # every name mapped


# -- the walkthrough (last: it ran in the background meanwhile) -------------------------------------
def test_walkthrough_marks_all_found(walkthrough):
    out, err = walkthrough.communicate(timeout=300)
    assert walkthrough.returncode == 0, out[-4000:] + err[-2000:]
    assert "All 8 step(s) ran as expected." in out
