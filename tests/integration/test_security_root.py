"""Issue 13 as root, against an ordinary user (`nobody`, through setpriv): each test is an attack
that worked before the fix (tests/unit/test_security.py holds the ones that need no root; the
two files need different names, as test modules of directories without __init__.py). Every test keeps its state in a directory of its own
(KPLAB_STATE_DIR) and acts only on what it made; test_zz_host_untouched proves the host unchanged.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from lab_runner import cleanup
from lab_runner.backends import docker, netns
from lab_runner.runs import process_start_ticks, run_id_of
from tests.unit.test_security import mode, umask_zero  # noqa: F401  (umask_zero: a fixture)

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
# nobody cannot reach root's own Python (under /root); Debian's python3 is the same 3.11.
NOBODY_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "COLUMNS": "200",
              "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}"}

pytestmark = pytest.mark.skipif(shutil.which("setpriv") is None or not Path("/usr/bin/python3")
                                .exists(), reason="needs setpriv and /usr/bin/python3")


def as_nobody(*argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AS_NOBODY, *argv], capture_output=True, text=True, cwd="/",
                          env={**NOBODY_ENV, **env}, timeout=120)


def lab_runner_as_nobody(*args: str, **env: str) -> subprocess.CompletedProcess:
    return as_nobody("/usr/bin/python3", "-m", "lab_runner", *args, **env)


def lab_runner(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab_runner", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env})


@pytest.fixture
def open_dir(tmp_path_factory):
    """A directory nobody can reach (0755 parent), so a mode the kit forgets shows."""
    folder = tmp_path_factory.mktemp("kplab-sec")
    folder.chmod(0o755)
    for parent in folder.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o755)
    return folder


def planted_record(folder: Path, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"run_id": folder.name, "lab_id": "lab-3-clusterip", "lab_source": "",
            "owner_pid": 1 << 22, "owner_ticks": 1, "state": "starting", **fields}
    (folder / "run.json").write_text(json.dumps(data))


# -- 1. what root makes, nobody can change --------------------------------------------------------
def test_state_records_and_tool_shims_are_roots_alone_with_umask_zero(open_dir, monkeypatch,
                                                                      umask_zero):
    from lab_runner.lab import LiveLab

    state = open_dir / "state"
    monkeypatch.setenv("KPLAB_STATE_DIR", str(state))
    with LiveLab.up("lab-3") as lab:
        run_dir = state / lab.run.run_id
        shim = run_dir / "bin" / "iptables"
        assert (mode(state), mode(run_dir), mode(run_dir / "bin")) == (0o700, 0o700, 0o700)
        assert (mode(run_dir / "run.json"), mode(shim)) == (0o600, 0o755)
        etc = Path("/etc/netns") / lab.run.namespaces[0]
        assert (mode(etc), mode(etc / "resolv.conf")) == (0o755, 0o644)
        attack = as_nobody("sh", "-c", f"echo 'id > /tmp/pwned' > {shim}")
        assert attack.returncode != 0, "nobody replaced root's iptables shim"
        assert as_nobody("sh", "-c", f"echo x > {run_dir / 'run.json'}").returncode != 0
        assert "v1." in lab.exec("node", ["iptables", "-V"], check=True).stdout


# -- 1. a state directory someone else controls is refused ---------------------------------------
def test_nobodys_predictable_tmp_state_made_first_by_someone_else_is_refused(open_dir):
    tmp = open_dir / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    planted = tmp / f"kplab-{NOBODY}"  # the name nobody's kit would use without XDG_RUNTIME_DIR
    planted_record(planted / "abc123", state="up", owner_pid=os.getpid(),
                   owner_ticks=process_start_ticks(os.getpid()), lab_id="planted-lab")
    for path in (planted, planted / "abc123"):
        path.chmod(0o777)
    result = lab_runner_as_nobody("status", TMPDIR=str(tmp))
    assert result.returncode != 0 and "planted-lab" not in result.stdout, result.stdout
    assert "owned by uid 0, not by you" in result.stderr, result.stderr


def test_root_refuses_a_state_directory_another_user_owns_or_can_write(open_dir):
    state = open_dir / "state"
    planted_record(state / "abc123", state="up", owner_pid=os.getpid(),
                   owner_ticks=process_start_ticks(os.getpid()), lab_id="planted-lab")
    os.chown(state, NOBODY, NOBODY)
    state.chmod(0o700)
    result = lab_runner("status", KPLAB_STATE_DIR=str(state))
    assert result.returncode == 3 and "planted-lab" not in result.stdout, result.stdout
    assert f"owned by uid {NOBODY}, not by you" in result.stderr
    os.chown(state, 0, 0)
    state.chmod(0o777)
    result = lab_runner("clean", KPLAB_STATE_DIR=str(state))
    assert result.returncode == 3 and "writable by group or others" in result.stderr
    assert (state / "abc123" / "run.json").exists()


# -- 2. a planted record runs nothing, kills nothing, deletes nothing -----------------------------
def test_a_planted_record_makes_clean_run_kill_and_delete_nothing(tmp_path, monkeypatch):
    state = tmp_path / "state"
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    (victim_dir / "precious").write_text("keep me\n")
    tag = secrets.token_hex(3)
    victim_ns, injected_ns = f"kptest-{tag}-victim", f"kptest-{tag}-injected"
    subprocess.run(["ip", "netns", "add", victim_ns], check=True)
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    monkeypatch.setenv("KPLAB_STATE_DIR", str(state))
    # clean looks at this test's run ids only: never at namespaces of anyone else's labs.
    real_list = netns.list_netns
    monkeypatch.setattr(cleanup, "list_netns",
                        lambda: [ns for ns in real_list() if run_id_of(ns) == "abc123"])
    monkeypatch.setattr(docker, "clean", lambda records, everything: ([], [], []))
    try:
        planted_record(state / "abc123", run_id="../victim", namespaces=[
            victim_ns, f"kplab-abc123-x\nnetns add {injected_ns}"],
            processes=[{"pid": victim.pid, "role": "app:x",
                        "start_ticks": process_start_ticks(victim.pid)}])
        state.chmod(0o700)
        cleanup.clean(everything=True)
        names = set(real_list())
        assert injected_ns not in names, "a name in the record ran another ip command"
        assert victim_ns in names, "a namespace that is not the kit's was deleted"
        assert victim.poll() is None, "a process the record named was killed"
        assert (victim_dir / "precious").exists(), "a directory outside the state was removed"
        assert not (state / "abc123").exists()  # the kit's own run directory: removed
    finally:
        victim.kill()
        victim.wait()
        for ns in (victim_ns, injected_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# -- 4. a link planted in --out never redirects root's write ------------------------------------------
def test_links_nobody_plants_in_out_never_redirect_roots_reports(open_dir, tmp_path):
    victim = tmp_path / "victim"  # root's own file, which nobody cannot even read
    victim.write_text("precious\n")
    solution = ROOT / "labs" / "lab-3-clusterip" / "solutions" / "ex1-matching.rules"
    out, batch_out = open_dir / "out", open_dir / "batch-out"
    for folder in (out, batch_out):
        folder.mkdir()
        folder.chmod(0o777)  # a shared output directory
        for name in ("result.json", "gradebook.csv"):
            assert as_nobody("ln", "-s", str(victim), str(folder / name)).returncode == 0
    assert as_nobody("ln", "-s", str(tmp_path), str(batch_out / "alice")).returncode == 0
    one = lab_runner("grade", "lab-3", "-e", "1", str(solution), "--static", "--format", "json",
                     "--out", str(out))
    assert one.returncode in (0, 1), one.stderr
    submissions = open_dir / "submissions"
    submissions.mkdir()
    shutil.copy(solution, submissions / "alice.rules")
    many = lab_runner("grade", "lab-3", "-e", "1", str(submissions), "--static",
                      "--out", str(batch_out))
    assert many.returncode in (0, 1), many.stderr
    assert victim.read_text() == "precious\n", "root wrote through a planted link"
    assert not (out / "result.json").is_symlink() and not (batch_out / "gradebook.csv").is_symlink()
    assert json.loads((out / "result.json").read_text())["exercise"] == "1"
    assert not (tmp_path / "result.json").exists(), "a report went through the linked directory"
