"""The docker backend for real: the node is a container on a Docker engine, the lab runs inside it.

The engine is the one DOCKER_HOST (or the default socket) names; where none answers, this module
starts a private one, which changes nothing on the host (dockerd with --bridge=none
--iptables=false --ip-masq=false --ip-forward=false, its data, exec root, socket and key in a
temporary directory), and stops it and removes its files at the end. The node image is built when
the engine lacks it (its base from `debootstrap`, as no registry may be reachable). In CI,
.ci/docker.sh sets up the engine and the image and sets KPLAB_REQUIRE_DOCKER=1: there a skip is a
failure. Commands name their run (run id, or KPLAB_RUN): other labs may be up on the machine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lab_runner.backends import docker as backend
from lab_runner.backends.netns import node_ns
from lab_runner.runs import RunRecord, list_runs

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = sorted((ROOT / "labs/lab-3-clusterip/solutions").glob("ex*.rules"))
SVC_CHAIN = "KUBE-SVC-Q7IJ732UBZY4AJKA"
REQUIRED = os.environ.get("KPLAB_REQUIRE_DOCKER") == "1"
# The same flags as .ci/docker.sh: no bridge, no iptables rules, no ip_forward on the host.
DOCKERD_FLAGS = ["--iptables=false", "--ip6tables=false", "--ip-masq=false", "--ip-forward=false",
                 "--bridge=none"]


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"KPLAB_REQUIRE_DOCKER=1, but {reason}", pytrace=False)
    pytest.skip(reason)


def cli(*args: str, env: dict | None = None, timeout: float = 300, **kwargs):
    return subprocess.run([sys.executable, "-m", "lab_runner", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout,
                          **kwargs)


# -- the engine and the image ------------------------------------------------------------------------
class PrivateEngine:
    """A dockerd of our own, confined to a temporary directory; stop() leaves nothing behind."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="kplab-dockerd-", dir="/tmp"))
        self.host = f"unix://{self.dir}/docker.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        config = self.dir / "daemon.json"  # the engine's key in here, not in /etc/docker
        config.write_text(json.dumps({"deprecated-key-path": str(self.dir / "key.json")}))
        self.log = open(self.dir / "dockerd.log", "w")
        self.proc = subprocess.Popen(
            ["dockerd", "--config-file", str(config), "--data-root", str(self.dir / "data"),
             "--exec-root", str(self.dir / "exec"), "-H", self.host,
             "--pidfile", str(self.dir / "dockerd.pid"), *DOCKERD_FLAGS],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            if subprocess.run(["docker", "-H", self.host, "version"], capture_output=True).returncode == 0 \
                    if shutil.which("docker") else (self.dir / "docker.sock").exists():
                return
            time.sleep(0.3)
        log = (self.dir / "dockerd.log").read_text()[-2000:]
        self.stop()
        unavailable(f"the private Docker engine did not start:\n{log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True,
                                text=True).stdout.split()
        for target in sorted((m for m in mounts if m.startswith(str(self.dir))), reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def processes(self) -> list[str]:
        """Processes still running from this engine's directories (dockerd, containerd, shims)."""
        out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if str(self.dir) in line and "ps -eo" not in line]


def _reachable() -> bool:
    backend._client = None
    try:
        backend.engine()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def engine():
    """A reachable engine for this module; DOCKER_HOST is set for the commands the tests run."""
    saved = os.environ.get("DOCKER_HOST")
    private = None
    if not _reachable():
        if os.environ.get("CI") and not REQUIRED:
            pytest.skip("CI runs the docker tests from .ci/docker.sh, which starts the engine")
        if os.geteuid() != 0 or not shutil.which("dockerd"):
            unavailable("no Docker engine answers (DOCKER_HOST or the default socket) and none can "
                        "be started here (needs root and dockerd: apt-get install docker.io)")
        private = PrivateEngine()
        private.start()
        os.environ["DOCKER_HOST"] = private.host
        if not _reachable():
            private.stop()
            unavailable(f"the private engine at {private.host} does not answer the SDK")
    try:
        yield backend.engine()
    finally:
        backend._client = None
        if private:
            leftovers = _engine_leftovers(private.host)
            private.stop()
            left = private.processes()
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        if private:
            assert not leftovers, f"the tests left these on the engine: {leftovers}"
            assert not left, f"engine processes remain after its stop: {left}"


def _engine_leftovers(host: str) -> list[str]:
    import docker

    client = docker.DockerClient(base_url=host)
    found = [f"container {c.name}" for c in client.containers.list(all=True)]
    found += [f"network {n.name}" for n in client.networks.list() if n.name not in ("host", "none")]
    found += [f"dangling image {i.short_id}" for i in client.images.list(filters={"dangling": True})]
    client.close()
    return found


@pytest.fixture(scope="module")
def image(engine):
    """The node image: the engine's, or built now (from KPLAB_BASE, else a debootstrap base)."""
    name = backend.image_name()
    if backend.has_image(name):
        yield name
        return
    built = _build_image(engine, name)
    yield name
    for tag in built:
        engine.images.remove(tag, force=True)


def _build_image(client, name: str) -> list[str]:
    made = []
    base = os.environ.get("KPLAB_BASE", "")
    if not base:
        try:  # where a registry answers, the Dockerfile's default base
            client.images.pull("debian", "bookworm-slim")
            base, made = "debian:bookworm-slim", ["debian:bookworm-slim"]
        except Exception:
            pass
    if not base or not backend.has_image(base):
        if not (shutil.which("debootstrap") and os.geteuid() == 0):
            unavailable(f"no image {name} and no base to build it from (set KPLAB_BASE to a "
                        "Debian bookworm image on the engine, or apt-get install debootstrap)")
        base = "kplab-base:bookworm"
        with tempfile.TemporaryDirectory(prefix="kplab-rootfs-") as tmp:
            rootfs, tar = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
            done = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs),
                                   os.environ.get("KPLAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")],
                                  capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                unavailable(f"debootstrap failed (no Debian mirror?): {done.stderr[-500:]}")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
            client.api.import_image_from_file(str(tar), repository="kplab-base", tag="bookworm")
        made.append(base)
    # As .ci/docker.sh passes them, `$(cat /usr/local/share/ca-certificates/*.crt)`.
    folder = Path("/usr/local/share/ca-certificates")
    certs = "".join(p.read_text() for p in sorted(folder.glob("*.crt"))).rstrip("\n")
    client.images.build(path=str(ROOT), tag=name, network_mode="host", forcerm=True, rm=True,
                        buildargs={"BASE": base, "EXTRA_CA_CERTS": certs})
    return [name, *made]


@pytest.fixture(scope="module")
def docker_run(image) -> RunRecord:
    """lab-3 up with the docker backend for the whole module; `down` at the end."""
    result = cli("up", "lab-3", "--backend", "docker")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = re.search(r"as run (\w+)", result.stdout).group(1)
    [run] = [r for r in list_runs() if r.run_id == run_id]
    yield run
    down = cli("down", run_id)
    assert down.returncode == 0, down.stderr


def on(run: RunRecord) -> dict[str, str]:
    """The environment that names this run to every command (other labs may be up)."""
    return {"KPLAB_RUN": run.run_id}


# -- the tests ---------------------------------------------------------------------------------------
def test_doctor_reports_the_engine_and_its_version(engine):
    result = cli("doctor", env={"COLUMNS": "200"})
    version = engine.version()["Version"]
    line = next((l for l in result.stdout.splitlines() if "docker engine" in l), "")
    assert " ok " in f" {line} " and f"Docker {version}" in line, result.stdout


def test_node_container_is_labelled_unprivileged_and_has_no_network(engine, docker_run):
    info = engine.api.inspect_container(docker_run.container)
    assert info["Name"] == f"/kplab-{docker_run.run_id}-node"
    assert info["Config"]["Labels"]["kplab"] == "1"
    assert info["Config"]["Labels"]["kplab.run"] == docker_run.run_id
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none" and not host["Privileged"]
    assert set(host["CapAdd"]) == {"NET_ADMIN", "NET_RAW", "SYS_ADMIN"}
    assert host["MaskedPaths"] == [] and host["ReadonlyPaths"] == []  # systempaths=unconfined
    # The container's own namespace holds only lo: the lab's links are in namespaces inside it.
    links = engine.containers.get(docker_run.container).exec_run(["ip", "-o", "link"]).output.decode()
    assert [l.split(":")[1].strip() for l in links.splitlines()] == ["lo"]
    assert docker_run.backend == "docker" and docker_run.state == "up"


def test_status_shows_the_docker_run(docker_run):
    result = cli("status", env={"COLUMNS": "200"})
    line = next(l for l in result.stdout.splitlines() if docker_run.run_id in l)
    assert "docker" in line and "container running" in line and "orphaned" not in line


def test_exec_passes_output_and_exit_code_through(docker_run):
    result = cli("exec", "--lab", docker_run.run_id, "dfrdh", "--", "hostname")
    assert result.returncode == 0 and result.stdout.strip() == "my-app-7f569f66d9-dfrdh", result.stderr
    result = cli("exec", "--lab", docker_run.run_id, "node", "--", "sh", "-c",
                 "echo to-stdout; echo to-stderr >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "to-stdout\n", "to-stderr\n")


def test_output_streams_live(docker_run):
    proc = subprocess.Popen([sys.executable, "-m", "lab_runner", "exec", "--lab", docker_run.run_id,
                             "node", "--", "sh", "-c", "echo first; sleep 4; echo second"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    started = time.monotonic()
    first = proc.stdout.readline()
    seen_after = time.monotonic() - started
    rest, _ = proc.communicate(timeout=60)
    assert (first, rest, proc.returncode) == ("first\n", "second\n", 0)
    assert seen_after < 3.5, f"the first line came after {seen_after:.1f} s, with the last"


@pytest.mark.skipif(not shutil.which("docker"), reason="testinfra's docker:// needs the docker CLI")
def test_same_rules_on_both_backends_through_testinfra(docker_run, lab3):
    """testinfra's iptables module on the node of each backend (docker:// for the container)."""
    node = lab3.model.nodes[0].name
    in_container = backend.node_host(docker_run, node_ns(docker_run.run_id, node))
    on_host = backend.node_host(lab3.run, node_ns(lab3.run.run_id, node))
    chains = ["KUBE-SERVICES", SVC_CHAIN, "KUBE-MARK-MASQ", "KUBE-POSTROUTING"]
    chains += [r.split()[-1] for r in on_host.iptables.rules("nat", SVC_CHAIN) if "-j KUBE-SEP-" in r]
    assert len(chains) == 8
    for chain in chains:
        assert in_container.iptables.rules("nat", chain) == on_host.iptables.rules("nat", chain), chain
    assert in_container.iptables.rules("filter", "KUBE-FORWARD") == \
        on_host.iptables.rules("filter", "KUBE-FORWARD")
    assert in_container.sysctl("net.ipv4.ip_forward") == 1


def test_probe_and_trace_show_the_path(docker_run):
    probe = cli("probe", docker_run.run_id, "--to", "10.104.5.205:8080/tcp", "--http")
    assert probe.returncode == 0 and "answered by my-app-7f569f66d9-" in probe.stdout, probe.stderr
    assert "DNAT to 172.17.0." in probe.stdout
    trace = cli("trace", docker_run.run_id, "--to", "10.104.5.205:8080/tcp")
    assert trace.returncode == 0, trace.stderr
    assert re.search(r"KUBE-SVC-Q7IJ732UBZY4AJKA .*JUMP → KUBE-SEP-", trace.stdout), trace.stdout


def test_syn_probe_sees_what_the_pod_saw(docker_run):
    """A crafted SYN: the pod's view comes from a capture on the pods' eth0 inside the container."""
    probe = cli("probe", docker_run.run_id, "--to", "10.104.5.205:8080/tcp")
    assert probe.returncode == 0, probe.stderr
    assert "SYN-ACK from 10.104.5.205:8080" in probe.stdout and "from the capture" in probe.stdout


@pytest.mark.skipif(not shutil.which("docker"), reason="a shell in the container needs the docker CLI")
def test_ssh_is_a_shell_in_the_node(docker_run):
    result = cli("ssh", docker_run.run_id, input="hostname\nexit 3\n")
    assert result.returncode == 3 and result.stdout.strip() == "minikube", result.stderr


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_reference_solution_grades_the_same_on_both_backends(docker_run, solution, tmp_path):
    """In the container (the submission copied in, the report out) and with the netns backend."""
    reports = {}
    for where, env in (("docker", on(docker_run)),
                       ("netns", {"KPLAB_STATE_DIR": str(tmp_path / "state")})):  # no docker run
        out = tmp_path / where
        lab = docker_run.run_id if where == "docker" else "lab-3"  # a grader enters a run by id
        result = cli("grade", lab, "--exercise", solution.stem, str(solution.relative_to(ROOT)),
                     "--format", "json", "--out", str(out), env=env, timeout=600)
        assert result.returncode == 0, f"{where}: {result.stdout}{result.stderr}"
        [report] = out.glob("*.json")
        data = json.loads(report.read_text())
        reports[where] = {c["id"]: c["status"] for c in data["checks"]}
    assert reports["docker"] == reports["netns"]
    assert set(reports["docker"].values()) == {"passed"}


def test_walkthrough_check_passes_in_the_container(docker_run):
    result = cli("walk", "lab-3", "--check", env=on(docker_run), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "ran as expected" in result.stdout


def test_nftables_mode_in_the_container(image):
    """`up --backend docker --proxy-mode nftables`: the node container holds kube-proxy's nftables
    table and no KUBE-* iptables chains; probe, trace and status work on it as on the netns
    backend."""
    result = cli("up", "lab-3", "--backend", "docker", "--proxy-mode", "nftables")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = re.search(r"as run (\w+)", result.stdout).group(1)
    try:
        assert "(nftables, profile v1.34" in result.stdout, result.stdout
        [run] = [r for r in list_runs() if r.run_id == run_id]
        assert run.backend == "docker" and run.proxy_mode == "nftables"
        status = cli("status", env={"COLUMNS": "200"})
        assert re.search(rf"{run_id}.*nftables v1\.34", status.stdout), status.stdout
        table = cli("exec", "--lab", run_id, "node", "--", "nft", "list", "table", "ip", "kube-proxy")
        assert table.returncode == 0 and "map service-ips" in table.stdout, table.stderr
        assert "numgen random mod 4 vmap" in table.stdout, table.stdout
        saved = cli("exec", "--lab", run_id, "node", "--", "iptables-save")
        assert saved.returncode == 0 and "KUBE-" not in saved.stdout, saved.stdout
        probe = cli("probe", run_id, "--to", "10.104.5.205:8080/tcp", "--http")
        assert probe.returncode == 0 and "answered by my-app-7f569f66d9-" in probe.stdout, \
            probe.stdout + probe.stderr
        assert "rules the packet met (nft monitor trace" in probe.stdout, probe.stdout
        trace = cli("trace", run_id, "--to", "10.104.5.205:8080/tcp")
        assert trace.returncode == 0 and "-> 172.17.0." in trace.stdout, trace.stdout + trace.stderr
    finally:
        down = cli("down", run_id)
    assert down.returncode == 0, down.stderr
    assert run_id not in cli("status").stdout


def test_an_unreachable_engine_is_named():
    result = cli("up", "lab-3", "--backend", "docker", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 3
    assert "no Docker engine reachable at unix:///nonexistent.sock" in result.stderr.replace("\n", " ")


def test_interrupted_up_leaves_nothing(engine, image):
    proc = subprocess.Popen([sys.executable, "-m", "lab_runner", "up", "lab-3", "--backend", "docker"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before = {r.run_id for r in list_runs()}
    run_id = _wait_for_new_container(engine, proc, before)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if run_id is None or proc.returncode == 0:  # it finished first: then down must remove it
        cli("down", run_id) if run_id else None
    else:
        assert proc.returncode == 130, err
    assert not backend._kit_containers(engine, run_id=run_id)
    assert run_id not in {r.run_id for r in list_runs()}


def test_clean_removes_only_the_kits_leftovers(engine, image, docker_run):
    stranger = engine.containers.create(image, ["sleep", "60"], name=f"not-kplab-{secrets.token_hex(3)}",
                                        network_mode="none")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "lab_runner", "up", "lab-3", "--backend",
                                 "docker"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        run_id = _wait_for_new_container(engine, proc, {r.run_id for r in list_runs()})
        proc.kill()  # SIGKILL: no teardown; the record says "starting" and its owner is gone
        proc.communicate(timeout=30)
        assert run_id and backend._kit_containers(engine, run_id=run_id)
        result = cli("clean")
        assert result.returncode == 0, result.stderr
        assert f"removed run {run_id}" in result.stdout
        assert f"kept run {docker_run.run_id}" in result.stdout
        assert not backend._kit_containers(engine, run_id=run_id)
        stranger.reload()  # still there: it does not carry the kit's label
        assert engine.api.inspect_container(docker_run.container)["State"]["Running"]
    finally:
        stranger.remove(force=True)


def test_forwarding_is_only_for_docker_runs(lab3):
    """Host commands and netns runs stay on the host; only the chosen run's argv is rewritten."""
    from lab_runner.cli import cli as group
    from lab_runner.cli import lifecycle  # noqa: F401  (registers the commands)

    exec_cmd = group.commands["exec"]
    parent = group.make_context("lab-runner", ["exec"], resilient_parsing=True)
    assert backend.forward(parent, "status", group.commands["status"], []) is None
    assert backend.forward(parent, "exec", exec_cmd, ["--lab", lab3.run.run_id, "node", "--",
                                                      "true"]) is None
    assert backend._replace_arg(["--out=r", "x", "r"], "r", "/io/out0") == ["--out=/io/out0", "x", "r"]
    assert backend._replace_arg(["-e", "1", "a.rules"], "a.rules", "/io/in/0/a.rules") == \
        ["-e", "1", "/io/in/0/a.rules"]


def _wait_for_new_container(engine, proc, before: set[str]) -> str | None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for c in backend._kit_containers(engine):
            run_id = c.labels.get("kplab.run")
            if run_id not in before and c.status == "running":
                return run_id
        time.sleep(0.05)
    return None


def _bytecode_dirs() -> set[str]:
    """__pycache__ folders in the checkout (the container mounts it; root would own new ones)."""
    return {str(p.relative_to(ROOT)) for p in ROOT.rglob("__pycache__")
            if ".venv" not in p.relative_to(ROOT).parts}


def _composes() -> list[list[str]]:
    found = []
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        found.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    return found


@pytest.mark.parametrize("compose", _composes() or [None], ids=lambda c: " ".join(c) if c else "none")
def test_compose_runs_the_walkthrough_and_the_reference_solutions(engine, image, compose):
    """`docker compose run --rm lab make lab-3`, then every reference solution graded inside."""
    if compose is None:
        unavailable("neither `docker compose` nor `docker-compose` is installed")
    if image != "kplab-node":
        pytest.skip("docker-compose.yml names the image kplab-node")
    project = f"kplab-test-{secrets.token_hex(3)}"
    base = [*compose, "-p", project, "-f", str(ROOT / "docker-compose.yml"), "run", "--rm", "-T", "lab"]
    env = {**os.environ, "COLUMNS": "120"}
    bytecode_before = _bytecode_dirs()
    try:
        walk = subprocess.run([*base, "make", "lab-3"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        assert walk.returncode == 0, walk.stdout[-3000:] + walk.stderr[-3000:]
        assert "ran as expected" in walk.stdout
        grades = " && ".join(f"lab-runner grade lab-3 --exercise {s.stem} {s.relative_to(ROOT)}"
                             for s in SOLUTIONS)
        graded = subprocess.run([*base, "sh", "-c", grades], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=900)
        assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
        assert graded.stdout.count(", 0 failed") == len(SOLUTIONS)
        new = sorted(_bytecode_dirs() - bytecode_before)
        assert not new, f"the container wrote bytecode into the mounted checkout: {new[:5]}"
    finally:
        left = engine.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
        for container in left:
            container.remove(force=True)
    assert not left, f"compose left containers: {[c.name for c in left]}"
