"""The docker backend: the lab's node is a container, as kind and minikube run Kubernetes nodes.

The kit runs inside the node container and makes the pods and clients there as network namespaces
of the container's own (the netns backend, unchanged). On the host a docker run is a run record
(backend "docker", the container's id) and a container; every command on such a run is the same
`lab-runner` argv run inside the container:

    host                                        engine (DOCKER_HOST honoured: unix, tcp, ssh://)
    lab-runner up lab-3 --backend docker   ->   kplab-<run>-node   labels kplab=1, kplab.run=<run>
                                                  --network none, NET_ADMIN NET_RAW SYS_ADMIN
                                                  └─ lab-runner up lab-3   (same run id inside)
    lab-runner probe|exec|grade|walk … lab-3 ->   lab-runner probe|exec|grade|walk … lab-3
                                                  output streamed live, exit code passed through,
                                                  input files copied in, output directories out
    lab-runner down lab-3                  ->   the container removed; its namespaces go with it

Only containers carrying the kit's labels and naming this user (`kplab.uid`), this machine
(`kplab.host`) and this state directory (`kplab.state`) are ever removed: an engine is shared by
every user of its socket, and a record's container id alone proves nothing. The Docker SDK is
imported only when a docker run is used, so the CLI starts fast without it.

A command is forwarded into a container only when it is one that acts on a running lab
(RUN_COMMANDS) and names a docker run that is up: by run id, or by the lab of the user's only
such run. Static work (`rules` without --apply, `grade --static`, `exercises` and every command
not listed) is never forwarded, and `grade` only when its LAB is a docker run's id.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable

from lab_runner import PREFIX
from lab_runner.errors import EnvironmentProblem, LabError, RunNotFound
from lab_runner.model import Lab
from lab_runner.runs import (RunRecord, find_run, list_runs, new_run_id, run_dir, state_root,
                             valid_run_id)

LABEL, RUN_LABEL, LAB_LABEL, HOST_LABEL = PREFIX, f"{PREFIX}.run", f"{PREFIX}.lab", f"{PREFIX}.host"
UID_LABEL, STATE_LABEL = f"{PREFIX}.uid", f"{PREFIX}.state"
DEFAULT_IMAGE = "kplab-node"
KIT_DIR = "/kit"  # the kit inside the image (Dockerfile)
INNER_STATE = f"/run/{PREFIX}"  # the state root of the kit inside the container (it runs as root)
IO_DIR = f"/tmp/{PREFIX}-io"  # where submissions are copied in and reports are written
CAPABILITIES = ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]
SECURITY_OPT = ["seccomp=unconfined", "apparmor=unconfined"]
# Commands that act on a running lab: on a docker run they run in its node container. Every
# other command (up, down, status, clean, exercises, autograder, any new one) runs on the host:
# forwarding is opted into by name, never implied by a run that happens to exist.
RUN_COMMANDS = {"exec", "shell", "ssh", "iptables", "probe", "trace", "sample", "counters",
                "conntrack", "kubectl", "scale", "readiness", "terminate", "delete-pod", "walk", "rules"}
# A grader builds a lab of its own: it enters a docker run's container only when named by run id.
RUN_ID_COMMANDS = {"grade"}
RECORDLESS_GRACE = 60.0  # a labelled container without a record, younger than this, is left alone

_client = None


# -- the engine -----------------------------------------------------------------------------------
def engine():
    """A Docker SDK client for the engine DOCKER_HOST names (ssh:// through the `ssh` command)."""
    global _client
    if _client is not None:
        return _client
    try:
        import docker
    except ImportError as exc:
        raise EnvironmentProblem("the docker backend needs the Docker SDK for Python: "
                                 "pip install docker (or `make venv`)") from exc
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    try:  # the API version is asked for at once: an engine that does not answer fails here
        client = docker.from_env(timeout=60, use_ssh_client=where.startswith("ssh://"))
    except Exception as exc:  # DockerException, and the ssh or socket errors beneath it
        raise EnvironmentProblem(
            f"no Docker engine reachable at {where} ({exc}). Start Docker (Docker Desktop, or "
            "`sudo systemctl start docker`), or set DOCKER_HOST (unix://, tcp:// or ssh://)."
        ) from exc
    _client = client
    return client


def describe_engine() -> str:
    """`Docker 20.10.24 (API 1.41) at unix:///…`; raises EnvironmentProblem when none answers."""
    client = engine()
    version = client.version()
    return (f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}, "
            f"{version.get('Os', '?')}/{version.get('Arch', '?')}) at "
            f"{os.environ.get('DOCKER_HOST') or 'the default socket'}")


def image_name() -> str:
    return os.environ.get("KPLAB_IMAGE") or DEFAULT_IMAGE


def has_image(name: str) -> bool:
    import docker

    try:
        engine().images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def container_name(run_id: str) -> str:
    return f"{PREFIX}-{run_id}-node"


# -- up and down ----------------------------------------------------------------------------------
def up(model: Lab, lab: str, *, iptables_variant: str = "nft", profile: str | None = None,
       cluster_cidr: str | None = None, image: str | None = None,
       proxy_mode: str | None = None) -> RunRecord:
    """Create and start the node container, then build the lab inside it (kube-proxy's mode:
    proxy_mode, else the lab file's); on any failure nothing remains (the record is saved first,
    so even a SIGKILL leaves something `clean` can find)."""
    client = engine()
    image = image or image_name()
    if not has_image(image):
        raise EnvironmentProblem(
            f"no image {image!r} on the engine: build it with `docker build -t {image} .` in the "
            "kit's directory (or `docker compose build`); see README, \"Without root: Docker\"")
    run = RunRecord(run_id=new_run_id(), lab_id=model.id, lab_source=model.source,
                    backend="docker", iptables=iptables_variant, profile=profile or model.profile,
                    cluster_cidr=cluster_cidr, proxy_mode=proxy_mode or model.proxy_mode)
    run.save()
    try:
        run.container = _create_node(client, image, run, model)
        run.save()
        client.api.start(run.container)
        inner_lab = _copy_in(client, run.container, {lab: Path(lab)}, f"{IO_DIR}/lab").get(lab, lab)
        argv = ["lab-runner", "up", inner_lab, "--iptables", iptables_variant]
        argv += ["--profile", profile] if profile else []
        argv += ["--cluster-cidr", cluster_cidr] if cluster_cidr else []
        argv += ["--proxy-mode", proxy_mode] if proxy_mode else []
        output: list[bytes] = []
        rc = _exec(client, run.container, argv, {"KPLAB_RUN_ID": run.run_id},
                   lambda out, err: output.append(out or err or b""))  # the lab copy stays
        if rc != 0:
            text = b"".join(output).decode(errors="replace").strip()
            raise LabError(f"the lab did not come up in node container {container_name(run.run_id)}"
                           f" (exit {rc}):\n{text}")
        run.state = "up"
        run.save()
    except BaseException:  # Ctrl-C and SIGTERM included
        destroy(run)
        raise
    return run


def _create_node(client, image: str, run: RunRecord, model: Lab) -> str:
    host_config = client.api.create_host_config(
        network_mode="none",  # its own empty network namespace; the lab's are made inside it
        cap_add=CAPABILITIES, security_opt=SECURITY_OPT, init=True)
    # `--security-opt systempaths=unconfined` is understood by the docker CLI, not the engine: it
    # means these two empty lists (a writable /proc/sys for the lab's sysctls).
    host_config["MaskedPaths"] = []
    host_config["ReadonlyPaths"] = []
    labels = {LABEL: "1", RUN_LABEL: run.run_id, LAB_LABEL: run.lab_id, **owner_labels()}
    created = client.api.create_container(
        image, command=["sleep", "infinity"], name=container_name(run.run_id),
        hostname=model.nodes[0].name if model.nodes else None, labels=labels,
        host_config=host_config, working_dir=KIT_DIR)
    return created["Id"]


def destroy(run: RunRecord) -> list[str]:
    """Remove the run's container (and with it every namespace and process of the lab) and its
    record; returns what could not be removed."""
    try:
        client = engine()
    except EnvironmentProblem as exc:
        return [f"run {run.run_id}: its container was not removed: {exc}"]
    import docker

    problems = []
    # Only containers whose labels name this user and state; the record's container id is not
    # proof (a record could name anyone's container), so it is never removed by id alone.
    ids = {c.id for c in _kit_containers(client, run_id=run.run_id)}
    for container_id in ids:
        try:
            client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            problems.append(f"container {container_id[:12]} of run {run.run_id}: {exc}")
    if not problems:
        _forget(run.run_id)
    return problems


def _forget(run_id: str) -> None:
    shutil.rmtree(run_dir(run_id), ignore_errors=True)
    try:
        state_root().rmdir()  # the state root, once no run is left in it
    except OSError:
        pass


def owner_labels() -> dict[str, str]:
    """The labels that say whose a node container is: this machine, this user, this state root."""
    uid = os.getuid() if hasattr(os, "getuid") else -1
    return {HOST_LABEL: socket.gethostname(), UID_LABEL: str(uid),
            STATE_LABEL: str(state_root())}


def _kit_containers(client, run_id: str | None = None) -> list:
    """Containers of this user's runs (of one run, if given); never any other container.

    The engine filters by label, and every label is checked again here: all must match.
    """
    wanted = {LABEL: "1", **owner_labels(), **({RUN_LABEL: run_id} if run_id else {})}
    found = client.containers.list(all=True, ignore_removed=True,
                                   filters={"label": [f"{k}={v}" for k, v in wanted.items()]})
    return [c for c in found
            if all((c.labels or {}).get(key) == value for key, value in wanted.items())]


def states() -> dict[str, str] | None:
    """The node container's state per run id (running, exited, …); None when no engine answers."""
    try:
        return {c.labels.get(RUN_LABEL, "?"): c.status for c in _kit_containers(engine())}
    except EnvironmentProblem:
        return None


def clean(records: dict[str, RunRecord], *,
          everything: bool) -> tuple[list[str], list[str], list[str]]:
    """Remove the node containers of crashed docker runs, or of every run with everything=True.

    Only containers whose labels name the kit, this machine, this user and this state root are
    looked at (_kit_containers). A run is a leftover when its record is gone or orphaned, or its
    container no longer runs.
    Returns (removed run ids, kept run ids, problems).
    """
    removed, kept, problems = [], [], []
    docker_records = {rid: r for rid, r in records.items() if r.backend == "docker"}
    try:
        client = engine()
    except EnvironmentProblem as exc:
        if docker_records:
            problems.append(f"docker runs {', '.join(sorted(docker_records))} not checked: {exc}")
        return removed, kept, problems
    containers = {}
    for c in _kit_containers(client):
        if valid_run_id(c.labels.get(RUN_LABEL)):
            containers[c.labels[RUN_LABEL]] = c
    for run_id in sorted(set(containers) | set(docker_records)):
        record, container = docker_records.get(run_id), containers.get(run_id)
        if not everything and _keep(record, container):
            if record is not None:
                kept.append(run_id)
            continue
        record = record or RunRecord(run_id=run_id, lab_id="?", lab_source="", backend="docker")
        trouble = destroy(record)
        problems += trouble
        if not trouble:
            removed.append(run_id)
    return removed, kept, problems


def _keep(record: RunRecord | None, container) -> bool:
    """Not a leftover: an `up` still starting, or a lab that is up and whose container runs."""
    if record is None:  # made by an `up` that has not written its record yet?
        return container is not None and _age(container) < RECORDLESS_GRACE
    if record.orphaned():
        return False
    running = container is not None and container.status == "running"
    return record.state != "up" or running


def _age(container) -> float:
    from datetime import datetime

    created = container.attrs.get("Created", "")
    try:  # the engine writes nanoseconds; fromisoformat takes microseconds
        stamp = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return float("inf")
    return time.time() - stamp.timestamp()


# -- running commands in the node container -------------------------------------------------------
def forward(parent, name: str, command, args: list[str]) -> int | None:
    """Run `lab-runner NAME ARGS` in the node container when it acts on a docker run.

    Returns the exit code, or None when the command is not for a docker run (the host runs it).
    The run must be named: a run id, or the LAB (or --lab) of the user's only running lab, as
    `find_run` says, and it must be a docker run that is up (a stale or half-made record is never
    a reason to forward). Static work is never forwarded (see the module docstring). Asking for
    a command's help is answered on the host.
    """
    if name not in RUN_COMMANDS | RUN_ID_COMMANDS:
        return None
    import click

    try:  # the command's own parser, as click will use it: `exec node -- ls -h` is no help
        ctx = command.make_context(name, list(args), parent=parent, resilient_parsing=True)
        _, _, order = command.make_parser(ctx).parse_args(list(args))
    except click.ClickException:
        return None
    if command.get_help_option(ctx) in order or "lab" not in ctx.params:
        return None
    if _static(name, ctx.params):
        return None  # decided before any record is read: static work never depends on them
    run = forward_target(name, ctx.params, [r for r in list_runs() if _forwardable(r)])
    if run is None:
        return None
    if name == "grade":  # inside, the lab is named as a lab: the run id named the container
        args = _replace_arg(list(args), run.run_id, run.lab_id)
    return run_in_container(run, name, command, ctx.params, list(args))


def _static(name: str, params: dict) -> bool:
    """Work on lab files alone: `grade --static`, `rules` without --apply."""
    return bool(params.get("static")) or (name == "rules" and not params.get("apply_"))


def forward_target(name: str, params: dict, docker_runs: list[RunRecord]) -> RunRecord | None:
    """The docker run (of docker_runs, those that are up) a command names, or None."""
    if not docker_runs:
        return None
    which = params.get("lab")
    if name == "grade":  # a grader builds a lab of its own: only a run id names a container
        named = [r for r in docker_runs if r.run_id == which]
        return named[0] if named else None
    try:
        run = find_run(which)
    except RunNotFound:
        return None
    return run if _forwardable(run) else None


def _forwardable(run: RunRecord) -> bool:
    """A docker run that is up: a record left half-made or orphaned is never forwarded to."""
    return run.backend == "docker" and run.state == "up" and not run.orphaned()


def run_in_container(run: RunRecord, name: str, command, params: dict, args: list[str]) -> int:
    client = engine()
    container = _own_container(client, run)
    io_dir = f"{IO_DIR}/{secrets.token_hex(4)}"
    host_args = list(args)
    args, outputs = _guarded(run, lambda: _translate_paths(client, container, command, params,
                                                            args, io_dir))
    # What the command prints names the container's copies; show the host's paths instead.
    renames = [(new.encode(), old.encode()) for new, old in zip(args, host_args) if new != old]
    env = {"KPLAB_RUN": run.run_id}
    if sys.stdout.isatty():
        env.update(FORCE_COLOR="1", COLUMNS=str(shutil.get_terminal_size().columns))
    elif os.environ.get("COLUMNS"):
        env["COLUMNS"] = os.environ["COLUMNS"]
    argv = ["lab-runner", name, *args]
    interactive = name in ("shell", "ssh") or (
        name in ("exec", "walk") and sys.stdin.isatty() and sys.stdout.isatty())
    if interactive and shutil.which("docker"):
        return _exec_cli(container, argv, env)
    if name in ("shell", "ssh"):
        raise EnvironmentProblem(
            f"a shell in a docker run needs the docker command-line client: install it, or "
            f"`docker exec -it {container_name(run.run_id)} lab-runner {name}`")
    # The copies go when the command ends; reports once they are copied out.
    scratch = f"{io_dir}/in" if outputs else io_dir
    rc = _guarded(run, lambda: _exec(client, container, argv, env, lambda out, err: _write_live(
        _renamed(out, renames), _renamed(err, renames)), scratch=scratch))
    if outputs:
        for inner, host in outputs:
            _copy_out(client, container, inner, host)
        _exec(client, container, ["true"], {}, lambda out, err: None, scratch=io_dir)
    return rc


def _own_container(client, run: RunRecord) -> str:
    """The id of the run's node container, found by its labels (this user's, this state's): a
    command never enters a container only because a record names it."""
    found = _kit_containers(client, run_id=run.run_id)
    if not found:
        raise LabError(f"run {run.run_id}: no node container of yours carries its labels on the "
                       f"engine at {os.environ.get('DOCKER_HOST') or 'the default socket'}; "
                       "`lab-runner clean` removes the stale record")
    return found[0].id


def _guarded(run: RunRecord, action: Callable):
    """action(), with the engine's answers about a missing or stopped container said plainly."""
    import docker

    try:
        return action()
    except docker.errors.NotFound as exc:
        if "container" not in str(exc).lower():
            raise
        raise LabError(f"run {run.run_id}: its node container {container_name(run.run_id)} is gone "
                       f"from the engine at {os.environ.get('DOCKER_HOST') or 'the default socket'}"
                       f"; `lab-runner clean` removes the stale record") from None
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        raise LabError(f"run {run.run_id}: its node container is not running; "
                       f"`lab-runner down {run.run_id}` removes it") from None


# The command runs in the background of a small sh that records its pid (for Ctrl-C) and, when it
# ends, removes its pid file and the scratch directory, all within the one exec.
WRAPPER = ('pid=$0; scratch=$1; shift; mkdir -p "${pid%/*}"; "$@" & echo $! > "$pid"; '
           'wait $!; rc=$?; rm -rf "$pid" $scratch; exit $rc')


def _exec(client, container: str, argv: list[str], env: dict[str, str],
          sink: Callable[[bytes | None, bytes | None], None], *, scratch: str = "") -> int:
    """Run argv in the container, handing output chunks to sink as they come; returns the exit code.

    Ctrl-C (or SIGTERM) here is passed on as SIGTERM to the command inside, which then cleans up
    as it does on a terminal (the kit treats SIGTERM like Ctrl-C); a second one kills it.
    """
    pidfile = f"{IO_DIR}/{secrets.token_hex(4)}.pid"
    api = client.api
    exec_id = api.exec_create(container, ["sh", "-c", WRAPPER, pidfile, scratch, *argv],
                              environment=env, workdir=KIT_DIR)["Id"]
    timeout, api.timeout = api.timeout, None  # a quiet command is not a dead one
    try:
        stream = api.exec_start(exec_id, stream=True, demux=True)
    finally:
        api.timeout = timeout

    def signal_inside(name: str) -> None:
        kill = api.exec_create(container, ["sh", "-c", f'kill -{name} "$(cat "$0")"', pidfile])
        api.exec_start(kill["Id"])

    try:
        for out, err in stream:
            sink(out, err)
    except KeyboardInterrupt:
        signal_inside("TERM")
        try:
            _wait_exec(api, exec_id, 30)
        except KeyboardInterrupt:
            signal_inside("KILL")
        raise
    code = _wait_exec(api, exec_id, 10)
    return 1 if code is None else int(code)


def _wait_exec(api, exec_id: str, seconds: float) -> int | None:
    """The exec's exit code once it has ended (None if it still runs after seconds)."""
    deadline = time.monotonic() + seconds
    while True:
        info = api.exec_inspect(exec_id)
        if not info.get("Running"):
            return info.get("ExitCode")
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def _renamed(data: bytes | None, renames: list[tuple[bytes, bytes]]) -> bytes | None:
    for inner, host in renames:
        data = data.replace(inner, host) if data else data
    return data


def _write_live(out: bytes | None, err: bytes | None) -> None:
    for data, stream in ((out, sys.stdout), (err, sys.stderr)):
        if data:
            stream.buffer.write(data)
            stream.flush()


def _exec_cli(container: str, argv: list[str], env: dict[str, str]) -> int:
    """An interactive command (a shell) through `docker exec -it`: the SDK has no terminal."""
    cli = ["docker", "exec", "-i"] + (["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else [])
    for key, value in env.items():
        cli += ["-e", f"{key}={value}"]
    cli += ["-w", KIT_DIR, container, *argv]
    return subprocess.call(cli)


# -- files in and out -----------------------------------------------------------------------------
def _translate_paths(client, container: str, command, params: dict, args: list[str],
                     io_dir: str) -> tuple[list[str], list[tuple[str, Path]]]:
    """Copy the command's input files into the container and point its output directories there.

    Inputs are the `lab` argument when it is a path on this machine and every click.Path argument
    that exists; outputs are the directory options (`--out DIR`), copied back after the command.
    """
    import click

    inputs: dict[str, Path] = {}
    outputs: list[tuple[str, Path]] = []
    for param in command.params:
        value = params.get(param.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        for text in values:
            if not isinstance(text, str) or not text:
                continue
            is_path = isinstance(param.type, click.Path)
            if is_path and not param.type.file_okay and not param.type.exists:
                inner = f"{io_dir}/out{len(outputs)}"
                outputs.append((inner, Path(text)))
                args = _replace_arg(args, text, inner)
            elif (is_path or param.name == "lab") and Path(text).exists():
                inputs[text] = Path(text)
    copied = _copy_in(client, container, inputs, f"{io_dir}/in", make=[o for o, _ in outputs])
    for text, inner in copied.items():
        args = _replace_arg(args, text, inner)
    return args, outputs


def _replace_arg(args: list[str], value: str, new: str) -> list[str]:
    """The argv with the (first) token carrying value replaced: `value` or `--opt=value`."""
    out, done = [], False
    for token in args:
        if not done and token == value:
            token, done = new, True
        elif not done and token.startswith("-") and token.endswith("=" + value):
            token, done = token[: -len(value)] + new, True
        out.append(token)
    return out


def _copy_in(client, container: str, paths: dict[str, Path], inner_dir: str, *,
             make: list[str] = ()) -> dict[str, str]:
    """Copy host files or directories into the container under inner_dir, in one archive; also
    create the (empty) directories in make. Returns {argument: path inside the container}."""
    paths = {text: path for text, path in paths.items() if path.exists()}
    if not paths and not make:
        return {}
    buffer, result = io.BytesIO(), {}
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for i, (text, path) in enumerate(paths.items()):
            name = path.resolve().name or "root"
            arcname = f"{inner_dir.lstrip('/')}/{i}/{name}"
            tar.add(str(path), arcname=arcname, filter=_portable)
            result[text] = "/" + arcname
        for directory in make:
            info = tarfile.TarInfo(directory.lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
    client.api.put_archive(container, "/", buffer.getvalue())
    return result


def _portable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _copy_out(client, container: str, inner: str, host: Path) -> None:
    """Copy a directory's contents out of the container into host (created if needed)."""
    import docker

    try:
        chunks, _ = client.api.get_archive(container, inner)
    except docker.errors.NotFound:
        return
    host.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r") as tar:
        members = []
        for member in tar.getmembers():
            _, _, rest = member.name.partition("/")  # the archive's top is the directory itself
            if not rest or rest.startswith("/") or ".." in Path(rest).parts:
                continue
            if not (member.isfile() or member.isdir()):
                continue  # reports are files and directories; nothing else leaves the container
            member.name = rest
            members.append(member)
        tar.extractall(host, members=members, **_data_filter())


def _data_filter() -> dict:
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


# -- testinfra ------------------------------------------------------------------------------------
def node_host(run: RunRecord, node_ns: str):
    """A testinfra host for a lab node of either backend: its commands (and so host.iptables, with
    the run's iptables variant) run in the node's network namespace, on this machine for a netns
    run, or inside the node container through testinfra's docker:// backend for a docker run."""
    import testinfra
    from testinfra.backend.docker import DockerBackend
    from testinfra.backend.local import LocalBackend

    if run.backend == "docker":
        base, spec = DockerBackend, _own_container(engine(), run)  # by its labels, not its name
        shims = f"{INNER_STATE}/{run.run_id}/bin"
    else:
        base, spec = LocalBackend, "local"
        shims = str(run.path.parent / "bin")
    path = f"{shims}:/opt/{PREFIX}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    class InNode(base):  # type: ignore[misc, valid-type]
        def get_command(self, command: str, *args: str) -> str:
            inner = super().get_command(command, *args)
            return self.quote("ip netns exec %s env PATH=%s /bin/sh -c %s", node_ns, path, inner)

    return testinfra.host.Host(InNode(spec) if base is DockerBackend else InNode())
