"""The command line without root: help that teaches, pure commands, and errors that say what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# No state directory of its own: labs others run on this machine (root's /run/kplab) stay unseen.
NO_RUNS_PARENT = tempfile.mkdtemp(prefix="kplab-cli-test-")
NO_RUNS = str(Path(NO_RUNS_PARENT) / "state")


@pytest.fixture(scope="module", autouse=True)
def no_runs_removed_afterwards():
    yield
    shutil.rmtree(NO_RUNS_PARENT, ignore_errors=True)


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab_runner", *args], capture_output=True,
                          text=True, cwd=ROOT, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                    "PYTHONPATH": str(ROOT), "COLUMNS": "200",
                                                    "KPLAB_STATE_DIR": NO_RUNS, **env})


def state_with_runs(tmp_path, *run_ids: str, lab: str = "lab-3-clusterip") -> str:
    """A state directory recording runs of `lab` that are up (owned by this live process)."""
    from lab_runner import runs

    state = tmp_path / "state"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPLAB_STATE_DIR", str(state))
        for run_id in run_ids:
            runs.RunRecord(run_id=run_id, lab_id=lab, lab_source=str(ROOT / "labs" / lab / "lab.yaml"),
                           state="up").save()
    return str(state)


def test_help_lists_the_commands_and_where_to_start():
    result = run("--help")
    assert result.returncode == 0
    for command in ("up", "down", "walk", "probe", "trace", "sample", "grade", "doctor", "clean"):
        assert f"  {command}" in result.stdout
    assert "sudo lab-runner up lab-3" in result.stdout


def test_rules_prints_the_seed_chains():
    result = run("rules", "lab-3")
    assert result.returncode == 0, result.stderr
    assert "-j KUBE-SVC-Q7IJ732UBZY4AJKA" in result.stdout
    assert "--probability 0.3333333333" in result.stdout


def test_rules_diff_is_semantic(tmp_path):
    same = tmp_path / "same.rules"
    same.write_text(run("rules", "lab-3").stdout.replace(" -d 10.104.5.205 ", " -d 10.104.5.205/32 "))
    assert run("rules", "lab-3", "--diff", str(same)).returncode == 0
    changed = tmp_path / "changed.rules"
    changed.write_text(same.read_text().replace("0.5000000000", "0.2500000000"))
    result = run("rules", "lab-3", "--diff", str(changed))
    assert result.returncode == 1
    assert "KUBE-SVC-Q7IJ732UBZY4AJKA" in result.stdout and "statistic" in result.stdout


def test_unknown_lab_lists_the_labs():
    result = run("rules", "lab-99")
    assert result.returncode == 1
    assert "lab-3-clusterip" in result.stderr


def test_kubectl_view_and_what_is_not_modelled():
    result = run("kubectl", "lab-3", "--", "-n", "stateful-apps", "get", "svc")
    assert result.returncode == 0 and "10.104.5.205" in result.stdout
    result = run("kubectl", "lab-3", "--", "apply", "-f", "x.yaml")
    assert result.returncode == 1 and "not modelled" in result.stderr


def test_exercises_are_listed_with_points():
    result = run("exercises", "lab-3")
    assert result.returncode == 0
    assert "Matching" in result.stdout and "Random selection" in result.stdout


def test_grade_with_out_alone_writes_result_json(tmp_path):
    """--out without a file format still writes a file: the terminal report alone left it empty."""
    answer = ROOT / "labs/lab-3-clusterip/solutions/ex3-random-selection.rules"
    result = run("grade", "lab-3", "-e", "3", str(answer), "--static", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    import json

    written = json.loads((tmp_path / "result.json").read_text())
    assert written["score"] == written["max_score"] > 0
    assert "report:" in result.stdout and result.stdout.rstrip().endswith("5 passed, 0 failed")


@pytest.mark.parametrize("args, field, form", [
    (["probe", "--to", "10.104.5.205:99999"], "--to", "1-65535"),
    (["probe", "--to", "999.1.1.1:80"], "--to", "IPv4 address"),
    (["probe", "--to", "10.104.5.205"], "--to", "IP:PORT[/tcp|/udp]"),
    (["trace", "--to", "10.104.5.205:0/tcp"], "--to", "1-65535"),
    (["sample", "--to", "10.104.5.205:8080/sctp"], "--to", "IP:PORT[/tcp|/udp]"),
    (["sample", "--service", "stateful-apps/my-app:http-svc", "--flows", "0"], "--flows", "1<=x"),
    (["conntrack", "--to", "10.104.5"], "--to", "IPv4 address"),
    (["up", "lab-3", "--cluster-cidr", "172.17.0.0/33"], "--cluster-cidr", "172.17.0.0/16"),
    (["rules", "lab-3", "--cluster-cidr", "172.17.0.0"], "--cluster-cidr", "PREFIX"),
])
def test_every_argument_is_checked_before_any_run_is_looked_up(tmp_path, args, field, form):
    """With two runs of lab-3 the run lookup would fail first: a bad value must be named instead,
    with its valid form, and never as a traceback from the probe agent."""
    state = state_with_runs(tmp_path, "3fa2c1", "4cb3d2")
    result = run(*args, KPLAB_STATE_DIR=state)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"Invalid value for '{field}'" in result.stderr and form in result.stderr
    assert "Traceback" not in result.stderr and "several runs" not in result.stderr


def test_kubectl_with_two_runs_asks_which_instead_of_showing_the_lab_file(tmp_path):
    state = state_with_runs(tmp_path, "3fa2c1", "4cb3d2")
    result = run("kubectl", "lab-3", "--", "get", "pods", KPLAB_STATE_DIR=state)
    assert result.returncode == 1 and result.stdout == ""
    assert "several runs match lab-3: 3fa2c1 (lab-3-clusterip), 4cb3d2 (lab-3-clusterip)" \
        in " ".join(result.stderr.split())
    result = run("kubectl", "lab-3", "--", "-A", "get", "pods")
    assert result.returncode == 0 and "my-app-7f569f66d9-dfrdh" in result.stdout, result.stderr


def test_exercise_text_is_wrapped_once_at_the_terminal_width():
    """A task wrapped in its file at ~95 columns, re-wrapped at 80, left one-word lines
    ("chains" alone) and hints whose second line started under the number."""
    result = run("exercises", "lab-3", "-e", "3", COLUMNS="80")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    prose = [line for line in lines if not line.startswith("    ")]  # verbatim: the rules format
    assert all(len(line) <= 80 for line in prose), [line for line in prose if len(line) > 80]
    assert "chains exist, but the rules that pick an endpoint are gone" in " ".join(lines)
    assert not [line for line in lines if line.strip() in ("chains", "pod.", "chain, so that")]
    hint = next(i for i, line in enumerate(lines) if line.startswith("  2. Rules are tried"))
    assert lines[hint + 1].startswith("     ") and lines[hint + 1].strip()  # under "Rules"


def test_list_items_and_commands_in_a_task_keep_their_shape():
    from lab_runner.views.text import blocks

    task = ("Write:\n  - the rule in KUBE-SERVICES that sends\n    the traffic on;\n"
            "  - the chain.\nThen\nmore.\n\n    lab-runner kubectl x -- get svc\n")
    assert [(b.kind, b.text) for b in blocks(task)] == [
        ("prose", "Write:"), ("item", "the rule in KUBE-SERVICES that sends the traffic on;"),
        ("item", "the chain."), ("prose", "Then more."), ("blank", ""),
        ("verbatim", "    lab-runner kubectl x -- get svc")]


def test_a_wrong_exercise_is_named_first_with_the_numbers_e_accepts():
    for args in (["grade", "lab-3", "-e", "9", "missing.rules", "--static"],
                 ["grade", "lab-3", "-e", "9", str(ROOT / "README.md"), "--static"],
                 ["exercises", "lab-3", "-e", "ex3-random"]):
        result = run(*args)
        said = " ".join(result.stderr.split())
        assert result.returncode == 1, said
        assert "-e takes one of: 1, 2, 3, 3v3, 3v5, 4, 5, 6" in said
        assert str(ROOT) not in said and "ex1-matching" not in said  # numbers, not install paths


def test_an_exercise_number_may_have_leading_zeros():
    answer = ROOT / "labs/lab-3-clusterip/solutions/ex3-random-selection.rules"
    result = run("grade", "lab-3", "-e", "03", str(answer), "--static")
    assert result.returncode == 0, result.stdout + result.stderr
    assert run("exercises", "lab-3", "-e", "03").stdout.startswith("─")
    missing = run("grade", "lab-3", "-e", "3", "missing.rules", "--static")
    assert missing.returncode == 2 and "'missing.rules': no such file" in missing.stderr


def test_a_mistyped_lab_gets_the_closest_one_suggested():
    result = run("up", "lab-33")
    assert result.returncode == 1
    assert "no lab called 'lab-33'; did you mean lab-3-clusterip?" in " ".join(result.stderr.split())
    assert "did you mean" not in run("rules", "lab-99").stderr  # as near lab-1 as lab-4: no guess


def test_file_formats_alone_still_end_with_the_summary_line(tmp_path):
    answer = ROOT / "labs/lab-3-clusterip/solutions/ex3-random-selection.rules"
    every = [arg for name in ("json", "junit", "gradescope", "prairielearn", "html")
             for arg in ("--format", name)]
    result = run("grade", "lab-3", "-e", "3", str(answer), "--static", *every, "--out",
                 str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == "5 passed, 0 failed"
    assert (tmp_path / "gradescope/results.json").is_file()
    assert (tmp_path / "prairielearn/results.json").is_file()


def test_every_command_help_ends_with_an_example():
    """Only 6 of 23 commands' --help showed one: each ends with a `lab-runner COMMAND` line."""
    from lab_runner.cli import COMMAND_MODULES, load_commands

    # every module of lab_runner/cli that defines commands is loaded, so none escapes this test
    defining = {p.stem for p in (ROOT / "lab_runner/cli").glob("*.py")
                if "@cli.command" in p.read_text() or "@cli.group" in p.read_text()}
    assert defining == set(COMMAND_MODULES)
    group = load_commands()
    assert {"explain", "import"} <= set(group.commands)
    assert len(group.commands) >= 25
    for name, command in group.commands.items():
        if command.hidden:
            continue
        shown = run(name, "--help", COLUMNS="100")
        assert shown.returncode == 0, shown.stderr
        body = shown.stdout.split("\nOptions:")[0].rstrip()
        last = body.split("\n\n")[-1]
        assert f"lab-runner {name}" in last, f"`{name} --help` ends without an example:\n{body}"
