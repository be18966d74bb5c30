"""Issue 13 without root: state modes, record validation, signalling, opening once, report writes,
docker labels and forwarding. Each test is an attack that worked before the fix."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab_runner import runs, safe_files
from lab_runner.errors import RunNotFound, SubmissionError
from lab_runner.grading import batch, formats
from lab_runner.grading.results import CheckResult, GradeResult
from lab_runner.grading.text_file import read_limited


@pytest.fixture
def state(tmp_path, monkeypatch):
    """A private state root for the test (KPLAB_STATE_DIR); never /run/kplab."""
    root = tmp_path / "state"
    monkeypatch.setenv("KPLAB_STATE_DIR", str(root))
    monkeypatch.delenv("KPLAB_RUN_ID", raising=False)
    monkeypatch.delenv("KPLAB_RUN", raising=False)
    return root


@pytest.fixture
def umask_zero():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def plant(root: Path, run_id: str, **fields) -> Path:
    """A record file written the way an attacker would, bypassing the kit."""
    data = {"run_id": run_id, "lab_id": "lab-3", "lab_source": "", "owner_pid": 1 << 22,
            "owner_ticks": 1, "state": "starting", **fields}
    folder = root / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(data))
    os.chmod(root, 0o700)
    return folder


# -- 1. modes and the state directory ---------------------------------------------------------------
def test_state_run_dir_and_record_have_explicit_modes_even_with_umask_zero(state, umask_zero):
    run_id = runs.new_run_id()
    record = runs.RunRecord(run_id=run_id, lab_id="lab-3", lab_source="")
    record.save()
    assert mode(state) == 0o700
    assert mode(state / run_id) == 0o700
    assert mode(state / run_id / "run.json") == 0o600


def test_a_state_directory_others_can_write_is_refused_loudly(state):
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(safe_files.UnsafePath, match=r"writable by group or others.*chmod 700"):
        runs.list_runs()
    with pytest.raises(safe_files.UnsafePath):
        runs.new_run_id()


def test_a_state_directory_that_is_a_link_is_refused(state, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    state.symlink_to(elsewhere)
    with pytest.raises(safe_files.UnsafePath, match="not a directory"):
        runs.state_root()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs another owner: chown needs root")
def test_a_state_directory_of_another_user_is_refused(state):
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    with pytest.raises(safe_files.UnsafePath, match="owned by uid 65534, not by you"):
        runs.list_runs()


def test_without_xdg_the_tmp_directory_is_only_used_when_this_user_made_it(tmp_path, monkeypatch):
    monkeypatch.delenv("KPLAB_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(os, "getuid", lambda: 4242)  # not root: the per-user directory
    monkeypatch.setattr(runs.tempfile, "gettempdir", lambda: str(tmp_path))
    planted = tmp_path / "kplab-4242"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)  # made first by someone else, open to all
    with pytest.raises(safe_files.UnsafePath):
        runs.list_runs()


# -- 2. records are validated -----------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../victim", "ABCDEF", "abc12", "abc1234", "abc12\n", ""])
def test_run_ids_outside_the_pattern_are_refused(state, bad):
    with pytest.raises(RunNotFound, match="not a run id"):
        runs.run_dir(bad)


@pytest.mark.parametrize("fields, why", [
    ({"run_id": "../../victim"}, "run_id"),
    ({"namespaces": ["kplab-abc123-net\nnetns exec kplab-abc123-net sh -c id"]}, "namespaces"),
    ({"namespaces": ["someone-elses-ns"]}, "namespaces"),
    ({"namespaces": ["kplab-fedcba-net"]}, "namespaces"),  # a kit name, but another run's
    ({"processes": [{"pid": "1; rm -rf /", "role": "x", "start_ticks": 1}]}, "processes"),
    ({"container": "someone-elses-container"}, "container"),
    ({"backend": "shell"}, "backend"),
    ({"proxy_mode": "ipvs"}, "proxy_mode"),
    ({"proxy_mode": ["nftables"]}, "proxy_mode"),
    ({"path": "/etc"}, "unknown fields"),
])
def test_a_record_breaking_the_rules_is_refused_as_a_whole(state, fields, why):
    folder = plant(state, "abc123")
    data = json.loads((folder / "run.json").read_text())
    data.update(fields)
    (folder / "run.json").write_text(json.dumps(data))
    with pytest.raises(RunNotFound, match=why):
        runs.RunRecord.load("abc123")
    assert runs.list_runs() == []


def test_a_valid_record_loads_and_its_path_is_derived_from_the_run_id(state):
    plant(state, "abc123", namespaces=["kplab-abc123-net", "kplab-abc123-pod-my-app-1.x"])
    record = runs.RunRecord.load("abc123")
    assert record.path == state / "abc123" / "run.json"


def test_the_proxy_mode_is_kept_and_a_record_from_before_it_reads_as_iptables(state):
    plant(state, "abc123")  # written before records had proxy_mode
    assert runs.RunRecord.load("abc123").proxy_mode == "iptables"
    plant(state, "def456", proxy_mode="nftables")
    assert runs.RunRecord.load("def456").proxy_mode == "nftables"


def test_a_record_that_is_a_link_is_not_read(state, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"run_id": "abc123", "lab_id": "x", "lab_source": ""}))
    (state / "abc123").mkdir(parents=True)
    state.chmod(0o700)
    (state / "abc123" / "run.json").symlink_to(other)
    with pytest.raises(RunNotFound):
        runs.RunRecord.load("abc123")


def test_names_that_could_be_two_words_never_become_namespace_names():
    from lab_runner.errors import LabError

    assert runs.netns_name("abc123", "pod", "my-app-7f569f66d9-dfrdh") == \
        "kplab-abc123-pod-my-app-7f569f66d9-dfrdh"
    for bad in ("a\nnetns add x", "a b", "../x", "a/b"):
        with pytest.raises(LabError, match="cannot name a namespace"):
            runs.netns_name("abc123", "pod", bad)
    assert runs.run_id_of("kplab-abc123-net") == "abc123"
    assert runs.run_id_of("kplab-../../-net") is None
    assert runs.run_id_of("kplab-abc123-net\nnetns del x") is None


class RecordingRunner:
    """A Runner that runs nothing and remembers each argv and input."""

    def __init__(self):
        self.calls = []

    def run(self, argv, place=None, *, input=None, check=True, timeout=None):
        from lab_runner.commands import CommandResult

        self.calls.append((list(argv), input))
        return CommandResult(list(argv), 0, "", "")


def test_destroy_passes_only_this_runs_kit_names_as_arguments(monkeypatch):
    from lab_runner.backends import netns

    present = ["kplab-abc123-net", "kplab-abc123-pod-a", "kplab-fedcba-net", "victim"]
    monkeypatch.setattr(netns, "list_netns", lambda: list(present))
    monkeypatch.setattr(netns, "NETNS_ETC", Path("/nonexistent-kplab-test"))
    runner = RecordingRunner()
    record = runs.RunRecord(run_id="abc123", lab_id="x", lab_source="", namespaces=[
        "kplab-abc123-net", "kplab-abc123-x\nnetns exec kplab-abc123-net sh -c id", "victim",
        "kplab-fedcba-net"])
    netns.NetnsBackend(runner).destroy(record)
    assert all(input is None for _, input in runner.calls), "nothing goes to ip as text"
    deleted = sorted(argv[-1] for argv, _ in runner.calls)
    assert deleted == ["kplab-abc123-net", "kplab-abc123-pod-a"]
    assert all(argv[:3] == ["ip", "netns", "del"] for argv, _ in runner.calls)


def test_destroy_of_a_run_id_outside_the_pattern_touches_nothing(monkeypatch):
    from lab_runner.backends import netns

    monkeypatch.setattr(netns, "list_netns", lambda: ["kplab-abc123-net"])
    runner = RecordingRunner()
    problems = netns.NetnsBackend(runner).destroy(
        runs.RunRecord(run_id="../x", lab_id="x", lab_source=""))
    assert runner.calls == [] and "not a run id" in problems[0]


def test_a_started_process_outside_the_runs_namespaces_is_never_signalled(monkeypatch):
    from lab_runner.backends import netns

    victim = subprocess.Popen(["sleep", "30"])
    try:
        ticks = runs.process_start_ticks(victim.pid)
        record = runs.RunRecord(run_id="abc123", lab_id="x", lab_source="", processes=[
            runs.TrackedProcess(victim.pid, "app:x", ticks)])  # its real start time
        monkeypatch.setattr(netns, "list_netns", lambda: [])
        netns.NetnsBackend(RecordingRunner()).destroy(record)
        time.sleep(0.1)
        assert victim.poll() is None, "a process in no namespace of the run was killed"
    finally:
        victim.kill()
        victim.wait()


def test_a_process_in_the_runs_namespace_with_its_start_time_is_signalled():
    from lab_runner.backends import netns

    proc = subprocess.Popen(["sleep", "30"])
    try:
        info = os.stat(f"/proc/{proc.pid}/ns/net")  # stands for the run's namespace
        tracked = runs.TrackedProcess(proc.pid, "app:x", runs.process_start_ticks(proc.pid))
        netns._terminate([runs.TrackedProcess(proc.pid, "app:x", tracked.start_ticks + 1)],
                         {(info.st_dev, info.st_ino)})
        assert proc.poll() is None, "a recycled pid (another start time) was signalled"
        netns._terminate([tracked], {(info.st_dev, info.st_ino)})  # reaps it, being our child
        assert runs.process_start_ticks(proc.pid) != tracked.start_ticks, "it still runs"
    finally:
        proc.kill()
        proc.wait()


# -- 3. submissions are opened once -----------------------------------------------------------------
def test_a_submission_swapped_for_a_link_before_the_open_is_refused(tmp_path, monkeypatch):
    """The racer wins every time: the file becomes a link to a secret just before any open (and
    just after any look at it). Opened once with O_NOFOLLOW, the secret never leaks."""
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET root-only first line\n")
    submission = tmp_path / "answer.rules"
    submission.write_text("*nat\nCOMMIT\n")

    def swap():
        if not submission.is_symlink():
            submission.unlink()
            submission.symlink_to(secret)

    real_open, real_is_file = os.open, Path.is_file

    def racing_open(path, *args, **kwargs):
        if str(path) == str(submission):
            swap()
        return real_open(path, *args, **kwargs)

    def racing_is_file(self):
        answer = real_is_file(self)
        if self == submission:
            swap()  # after the check, before the open
        return answer

    monkeypatch.setattr(os, "open", racing_open)
    monkeypatch.setattr(Path, "is_file", racing_is_file)
    with pytest.raises(SubmissionError, match="not a regular file") as caught:
        read_limited(submission, 1000)
    assert "TOPSECRET" not in str(caught.value)


def test_a_fifo_submission_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "answer.rules"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(SubmissionError, match="not a regular file"):
        read_limited(fifo, 1000)
    assert time.monotonic() - started < 2


def test_a_student_directory_swapped_for_a_link_after_discovery_is_refused(tmp_path):
    """The batch grades a private copy read one directory at a time: `bob/` becoming a link to
    a directory holding a file of the same name never lets the grader read that file."""
    submissions, secret = tmp_path / "submissions", tmp_path / "secret"
    (submissions / "bob").mkdir(parents=True)
    (submissions / "bob" / "answer.rules").write_text("*nat\nCOMMIT\n")
    secret.mkdir()
    (secret / "answer.rules").write_text("TOPSECRET\n")
    [entry] = batch.discover(submissions)
    (submissions / "bob" / "answer.rules").unlink()
    (submissions / "bob").rmdir()
    (submissions / "bob").symlink_to(secret)  # the swap, after discovery
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    copy, why = batch._private_copy(entry, submissions.resolve(), scratch, 1000)
    assert copy is None and "symbolic link" in why
    assert list(scratch.iterdir()) == []


def test_the_grader_reads_a_private_copy_of_what_was_discovered(tmp_path):
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    (submissions / "alice.rules").write_text("*nat\nCOMMIT\n")
    [entry] = batch.discover(submissions)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    copy, why = batch._private_copy(entry, submissions.resolve(), scratch, 1000)
    assert why == "" and copy.name == "alice.rules" and copy.read_text() == "*nat\nCOMMIT\n"
    assert mode(copy) == 0o600 and mode(copy.parent) == 0o700


# -- 4. report files never follow a planted link ---------------------------------------------------
def result() -> GradeResult:
    return GradeResult(lab="lab-3", exercise="3", exercise_title="t", submission="a.rules",
                       mode="static", checks=[CheckResult("c1", "one", 1, 1, "passed", "ok")])


@pytest.mark.parametrize("name", ["json", "junit", "gradescope", "prairielearn", "html"])
def test_a_link_planted_where_a_report_goes_is_replaced_not_followed(tmp_path, name, umask_zero):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / formats.FILE_NAMES[name]).symlink_to(victim)
    [written] = formats.write(result(), name, out)
    assert victim.read_text() == "precious\n"
    assert not written.is_symlink() and mode(written) == 0o644
    assert [p.name for p in out.iterdir()] == [formats.FILE_NAMES[name]], "no temporary left"


def test_the_gradebook_replaces_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "gradebook.csv").symlink_to(victim)
    row = batch.Row("alice", "alice.rules", 1, 1, 1, 0, "", "alice")
    batch.write_gradebook([row], tmp_path / "gradebook.csv")
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "gradebook.csv").read_text().splitlines()[1].startswith("alice,")


def test_a_per_student_directory_that_became_a_link_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "alice").symlink_to(elsewhere)
    with pytest.raises(safe_files.UnsafePath, match="not a plain directory"):
        formats.write(result(), "json", tmp_path / "alice", follow_dir_link=False)
    assert list(elsewhere.iterdir()) == []


def test_output_directories_get_explicit_modes(tmp_path, umask_zero):
    formats.write(result(), "json", tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o755


# -- 5. docker: only this user's labelled containers ------------------------------------------------
class FakeContainer:
    def __init__(self, cid, labels, status="running"):
        self.id, self.labels, self.status = cid, labels, status
        self.attrs = {"Created": "2000-01-01T00:00:00Z"}


class FakeEngine:
    """What the kit asks of the Docker SDK: list by label (the engine's filter), remove by id."""

    def __init__(self, containers):
        self.all = containers
        self.removed = []
        self.containers = self
        self.api = self

    def list(self, all, filters, ignore_removed):
        wanted = dict(f.split("=", 1) for f in filters["label"])
        return [c for c in self.all if all and all_match(c.labels, wanted)]

    def remove_container(self, cid, force):
        self.removed.append(cid)


def all_match(labels, wanted):
    return all(labels.get(k) == v for k, v in wanted.items())


@pytest.fixture
def engine(state, monkeypatch):
    pytest.importorskip("docker")
    from lab_runner.backends import docker as backend

    ours = {**backend.owner_labels(), backend.LABEL: "1"}
    fake = FakeEngine([
        FakeContainer("c-ours", {**ours, backend.RUN_LABEL: "abc123"}, "exited"),
        FakeContainer("c-other-uid", {**ours, backend.UID_LABEL: "1001",
                                      backend.RUN_LABEL: "abc123"}),
        FakeContainer("c-other-state", {**ours, backend.STATE_LABEL: "/run/kplab-elsewhere",
                                        backend.RUN_LABEL: "def456"}),
        FakeContainer("c-no-kit-label", {backend.RUN_LABEL: "abc123"}),
    ])
    monkeypatch.setattr(backend, "engine", lambda: fake)
    return fake


def test_docker_destroy_never_removes_a_container_by_the_records_id_alone(engine):
    from lab_runner.backends import docker as backend

    record = runs.RunRecord(run_id="abc123", lab_id="lab-3", lab_source="", backend="docker",
                            container="c-other-uid")
    assert backend.destroy(record) == []
    assert engine.removed == ["c-ours"]


def test_a_command_never_enters_a_container_only_because_a_record_names_it(engine):
    from lab_runner.backends import docker as backend
    from lab_runner.errors import LabError

    foreign = runs.RunRecord(run_id="def456", lab_id="lab-3", lab_source="", backend="docker",
                             container="c-other-state", state="up")
    with pytest.raises(LabError, match="no node container of yours"):
        backend._own_container(engine, foreign)
    ours = runs.RunRecord(run_id="abc123", lab_id="lab-3", lab_source="", backend="docker",
                          container="c-other-uid", state="up")
    assert backend._own_container(engine, ours) == "c-ours"


def test_docker_clean_removes_only_this_users_containers_of_this_state(engine):
    from lab_runner.backends import docker as backend

    removed, _, problems = backend.clean({}, everything=True)
    assert problems == [] and removed == ["abc123"]
    assert engine.removed == ["c-ours"]


def test_new_node_containers_carry_the_uid_and_state_labels(state):
    from lab_runner.backends import docker as backend

    labels = backend.owner_labels()
    assert labels[backend.UID_LABEL] == str(os.getuid())
    assert labels[backend.STATE_LABEL] == str(state)


# -- 6. forwarding only for a named, live docker run ----------------------------------------------
@pytest.fixture
def forwarded(state, monkeypatch):
    """The CLI with every command; returns a function: argv -> the run forwarded to, or None."""
    import click

    from lab_runner import cli as cli_module
    from lab_runner.backends import docker as backend

    for module in ("lifecycle", "inspect_cmds", "walk_cmds", "evidence_cmds", "grade_cmds",
                   "cluster_cmds"):
        __import__(f"lab_runner.cli.{module}")
    calls = []
    monkeypatch.setattr(backend, "run_in_container",
                        lambda run, name, command, params, args: calls.append((run.run_id, args)) or 0)
    monkeypatch.setattr(backend, "engine", lambda: pytest.fail("the engine was asked"))

    def forward(*argv):
        calls.clear()
        ctx = click.Context(cli_module.cli)
        name, command, rest = click.Group.resolve_command(cli_module.cli, ctx, list(argv))
        code = backend.forward(ctx, name, command, rest)
        return calls[0] if code is not None else None
    return forward


def docker_run(run_id: str, **fields) -> runs.RunRecord:
    record = runs.RunRecord(run_id=run_id, lab_id="lab-3-clusterip", lab_source="",
                            backend="docker", state="up", **fields)
    runs.ensure_state_root()
    runs.private_dir(runs.run_dir(run_id))
    record.save()
    return record


def test_static_work_is_never_forwarded_into_a_docker_run(forwarded, tmp_path):
    docker_run("abc123")
    answer = tmp_path / "a.rules"
    answer.write_text("*nat\nCOMMIT\n")
    assert forwarded("grade", "lab-3", "-e", "3", str(answer), "--static") is None
    assert forwarded("grade", "lab-3", "-e", "3", str(answer)) is None
    assert forwarded("exercises", "lab-3") is None
    assert forwarded("rules", "lab-3") is None
    assert forwarded("rules", "abc123") is None


def test_a_new_command_taking_a_lab_stays_on_the_host(forwarded, monkeypatch):
    """Forwarding is opted into by name: a command added later (autograder, …) is never steered
    into a container because it takes a LAB and a docker run of that lab is up."""
    import click

    from lab_runner import cli as cli_module

    docker_run("abc123")
    monkeypatch.setitem(cli_module.cli.commands, "bundle",
                        click.Command("bundle", params=[click.Argument(["lab"])]))
    assert forwarded("bundle", "lab-3") is None
    assert forwarded("bundle", "abc123") is None


def test_static_work_never_reads_the_state_directory(forwarded, state, tmp_path):
    docker_run("abc123")
    state.chmod(0o777)  # refused by any command that reads records
    answer = tmp_path / "a.rules"
    answer.write_text("*nat\nCOMMIT\n")
    assert forwarded("grade", "lab-3", "-e", "3", str(answer), "--static") is None
    assert forwarded("rules", "lab-3") is None
    with pytest.raises(safe_files.UnsafePath):
        forwarded("counters", "lab-3")


def test_a_command_naming_the_users_docker_run_is_forwarded(forwarded, tmp_path):
    docker_run("abc123")
    answer = tmp_path / "a.rules"
    answer.write_text("*nat\nCOMMIT\n")
    assert forwarded("counters", "lab-3")[0] == "abc123"
    assert forwarded("counters", "abc123")[0] == "abc123"
    run_id, args = forwarded("grade", "abc123", "-e", "3", str(answer))
    assert run_id == "abc123" and args[0] == "lab-3-clusterip"  # the lab, inside


def test_a_stale_docker_record_never_steers_or_blocks_a_command(forwarded):
    docker_run("abc123", owner_pid=1 << 22)  # its `up` died before the lab was up
    stale = runs.RunRecord.load("abc123")
    stale.state = "starting"
    stale.save()
    assert forwarded("counters", "lab-3") is None
    assert forwarded("counters", "abc123") is None


# -- issue 14: batch rows for every entry ---------------------------------------------------------
def test_hidden_entries_get_a_gradebook_row_with_the_reason(tmp_path):
    for name in ("..rules", ".alice.rules", "bob.rules"):
        (tmp_path / name).write_text("*nat\nCOMMIT\n")
    entries = {e.file: e for e in batch.discover(tmp_path)}
    assert set(entries) == {"..rules", ".alice.rules", "bob.rules"}
    assert entries["bob.rules"].path is not None
    for hidden in ("..rules", ".alice.rules"):
        assert entries[hidden].path is None and "hidden" in entries[hidden].refusal
        assert entries[hidden].report and not entries[hidden].report.startswith(".")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
