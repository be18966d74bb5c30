"""The registry of running labs: one JSON record per run id under the state directory.

Every name the kit creates carries `kplab-<run id>-`, so a record is a convenience (which lab,
which processes) and never the only way to find what a run made: `clean` also works after a
SIGKILL that left no record behind.

Root acts on records, so nothing in one is taken on trust: the state directory must be the
user's own and closed to others (checked on every use), a run id is six lowercase hex digits, a
record's namespaces must be kit names of its own run id, and every path is derived from the run
id, never read from the record. A record that breaks these rules is refused as a whole.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab_runner import PREFIX
from lab_runner.errors import AmbiguousRun, LabError, RunNotFound
from lab_runner.safe_files import check_own_dir, private_dir, read_regular, write_file

RUN_ID = re.compile(r"[0-9a-f]{6}")
# What may follow `kplab-<run id>-` in a name the kit makes: no space, newline, slash or quote.
NAME_TAIL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")
KIT_NAME = re.compile(rf"{PREFIX}-([0-9a-f]{{6}})-{NAME_TAIL.pattern}")
PROXY_MODES = ("iptables", "nftables")  # as lab_file's kubeProxy.mode
RECORD_LIMIT = 1 << 20  # bytes: a record lists namespaces and pids, never more than this


def state_root() -> Path:
    """/run/kplab for root; a per-user directory otherwise (a docker run needs no root).

    Checked on every call: a directory that is a link, another user's, or writable by group or
    others is refused (safe_files.UnsafePath), KPLAB_STATE_DIR included. Without
    XDG_RUNTIME_DIR the per-user name in /tmp is predictable, so it is only ever used when this
    user made it (mkdir never adopts an existing one; see ensure_state_root).
    """
    if os.environ.get("KPLAB_STATE_DIR"):
        root = Path(os.environ["KPLAB_STATE_DIR"])
    else:
        uid = os.getuid() if hasattr(os, "getuid") else None
        if uid == 0:
            root = Path(f"/run/{PREFIX}")
        else:
            base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
            root = Path(base) / (f"{PREFIX}-{uid}" if uid is not None else PREFIX)
    check_own_dir(root)
    return root


def ensure_state_root() -> Path:
    """The state root, made 0700 if missing (whatever the umask) and checked either way."""
    root = state_root()
    root.parent.mkdir(parents=True, exist_ok=True)
    return private_dir(root)


def valid_run_id(run_id: object) -> bool:
    return isinstance(run_id, str) and RUN_ID.fullmatch(run_id) is not None


def run_dir(run_id: str) -> Path:
    """The run's own directory, derived from a checked run id: always directly in the state root."""
    if not valid_run_id(run_id):
        raise RunNotFound(f"{run_id!r} is not a run id (six lowercase hex digits, as "
                          "`lab-runner status` shows them)")
    return state_root() / run_id


def netns_name(run_id: str, role: str, name: str = "") -> str:
    """`kplab-<run>-node-minikube`, `kplab-<run>-pod-<pod>`, `kplab-<run>-net`.

    The name goes to `ip` as an argument and to /etc/netns as a folder: a lab's name that could
    be more than one word or a path is refused here.
    """
    full = f"{PREFIX}-{run_id}-{role}" + (f"-{name}" if name else "")
    if not is_kit_name(full, run_id):
        raise LabError(f"{full!r} cannot name a namespace: a pod, node or client name may hold "
                       "letters, digits, '.', '_' and '-' only (fix it in lab.yaml)")
    return full


def is_kit_name(name: object, run_id: str | None = None) -> bool:
    """A name the kit makes: `kplab-<6 hex>-<word>` (of run_id, when given)."""
    match = KIT_NAME.fullmatch(name) if isinstance(name, str) else None
    return match is not None and (run_id is None or match.group(1) == run_id)


def run_id_of(netns: str) -> str | None:
    match = KIT_NAME.fullmatch(netns)
    return match.group(1) if match else None


@dataclass
class TrackedProcess:
    """A process the kit started; the start time guards against killing a recycled pid."""

    pid: int
    role: str
    start_ticks: int

    def alive(self) -> bool:
        return self.pid > 1 and process_start_ticks(self.pid) == self.start_ticks


def process_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts from after the command name, which may contain spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class RunRecord:
    """What one run made: enough for status, exec and down from another process."""

    run_id: str
    lab_id: str
    lab_source: str
    backend: str = "netns"
    iptables: str = "nft"
    profile: str = "v1.23"
    proxy_mode: str = "iptables"  # kube-proxy's mode: iptables or nftables (older records: iptables)
    cluster_cidr: str | None = None  # set when the run overrides the lab's cluster CIDR
    created: float = field(default_factory=time.time)
    owner_pid: int = field(default_factory=os.getpid)
    owner_ticks: int = field(default_factory=lambda: process_start_ticks(os.getpid()) or 0)
    namespaces: list[str] = field(default_factory=list)
    processes: list[TrackedProcess] = field(default_factory=list)
    pod_pids: dict[str, int] = field(default_factory=dict)
    container: str | None = None  # the docker backend's node container (its id)
    pods: list[dict] | None = None  # the pods now, once scaling or re-creating changed them
    state: str = "starting"  # "up" once fully built
    transient: bool = False  # True inside `with LiveLab.up()`: gone when its owner is gone

    def orphaned(self) -> bool:
        """Left behind by a crash: never finished starting, or a `with` block whose process died."""
        owner_alive = process_start_ticks(self.owner_pid) == self.owner_ticks
        return not owner_alive and (self.state != "up" or self.transient)

    @property
    def path(self) -> Path:
        return run_dir(self.run_id) / "run.json"

    def save(self) -> None:
        ensure_state_root()
        private_dir(self.path.parent)
        # A temporary file renamed into place: a reader never sees half a record; 0600 always.
        write_file(self.path, json.dumps(asdict(self), indent=1), 0o600)

    @classmethod
    def load(cls, run_id: str) -> "RunRecord":
        path = run_dir(run_id) / "run.json"
        try:
            owner = os.geteuid() if hasattr(os, "geteuid") else None  # native Windows: no owners
            data = json.loads(read_regular(path, RECORD_LIMIT, owner=owner))
        except (OSError, ValueError, LabError) as exc:
            raise RunNotFound(f"no record for run {run_id} ({exc})") from exc
        problem = record_problem(data, run_id)
        if problem:
            raise RunNotFound(f"the record of run {run_id} ({path}) is refused: {problem}; "
                              "`lab-runner clean` removes what the run made by its run id")
        data["processes"] = [TrackedProcess(**p) for p in data.get("processes", [])]
        return cls(**data)


def record_problem(data: object, run_id: str) -> str:
    """Why a record read from disk may not be acted on ("" when it may): field by field."""
    if not isinstance(data, dict):
        return "not a JSON object"
    unknown = set(data) - {f for f in RunRecord.__dataclass_fields__}
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    if data.get("run_id") != run_id:
        return f"run_id {data.get('run_id')!r} is not its directory's name {run_id}"
    if data.get("backend", "netns") not in ("netns", "docker"):
        return f"backend {data.get('backend')!r} is neither netns nor docker"
    if data.get("proxy_mode", "iptables") not in PROXY_MODES:
        return f"proxy_mode {data.get('proxy_mode')!r} is neither {' nor '.join(PROXY_MODES)}"
    names = data.get("namespaces", [])
    if not isinstance(names, list) or not all(is_kit_name(n, run_id) for n in names):
        return f"namespaces must all be named {PREFIX}-{run_id}-…: {names!r}"
    processes = data.get("processes", [])
    if not isinstance(processes, list) or not all(
            isinstance(p, dict) and set(p) == {"pid", "role", "start_ticks"}
            and _is_int(p["pid"]) and _is_int(p["start_ticks"]) and isinstance(p["role"], str)
            for p in processes):
        return "processes must be a list of {pid, role, start_ticks}"
    pod_pids = data.get("pod_pids", {})
    if not isinstance(pod_pids, dict) or not all(_is_int(v) for v in pod_pids.values()):
        return "pod_pids must map pod names to pids"
    if not all(_is_int(data.get(k, 0)) for k in ("owner_pid", "owner_ticks")):
        return "owner_pid and owner_ticks must be whole numbers"
    container = data.get("container")
    if container is not None and not (isinstance(container, str)
                                      and re.fullmatch(r"[0-9a-f]{12,64}", container)):
        return f"container {container!r} is not a container id"
    return ""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def new_run_id() -> str:
    """A fresh run id, reserved by creating its state directory (mkdir is atomic).

    KPLAB_RUN_ID asks for a given id: the docker backend gives the lab inside a node container
    the run id of the host's record, so a run id means the same run on both sides.
    """
    requested = os.environ.get("KPLAB_RUN_ID")
    if requested:
        run_dir(requested)  # refuses anything but a run id
    for _ in range(100):
        run_id = requested or secrets.token_hex(3)
        root = ensure_state_root()
        try:
            _make_run_dir(root / run_id)
            return journal(run_id)
        except FileExistsError:
            if requested:
                raise
        except FileNotFoundError:
            # The state root went between ensure_state_root and mkdir: another process's last
            # run was taken down and removed it (LiveLab.down). Make it again and retry.
            continue
    raise LabError(f"could not reserve a run id in {state_root()}: it keeps disappearing")


def scratch_run_id() -> str:
    """A run id for record-less scratch namespaces (doctor's probe, a probe minilab)."""
    return journal(secrets.token_hex(3))


def journal(run_id: str) -> str:
    """Append run_id to the file KPLAB_RUN_JOURNAL names, if set, and return it.

    The test suite sets it so that, on a machine others share, it checks for leftovers among
    the runs it made itself (subprocesses included) and never blames another user's lab.
    """
    path = os.environ.get("KPLAB_RUN_JOURNAL")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, f"{run_id}\n".encode())
        finally:
            os.close(fd)
    return run_id


def _make_run_dir(path: Path) -> None:
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)  # whatever the umask


def list_runs() -> list[RunRecord]:
    """Every valid record in the state root; a refused or unreadable one is left out (see
    `clean`, which goes by run id)."""
    records = []
    root = state_root()
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if valid_run_id(entry.name) and (entry / "run.json").is_file():
                try:
                    records.append(RunRecord.load(entry.name))
                except RunNotFound:
                    continue
    return sorted(records, key=lambda r: r.created)


def find_run(which: str | None) -> RunRecord:
    """A run by run id, or the only run of a lab (`lab-3`), or the only run there is."""
    runs = list_runs()
    if which:
        exact = [r for r in runs if r.run_id == which]
        if exact:
            return exact[0]
        matching = [r for r in runs if r.lab_id == which or r.lab_id.startswith(which + "-")]
    else:
        matching = runs
    # A crash's leftover is named only by its run id: it never makes a lab's name ambiguous.
    matching = [r for r in matching if not r.orphaned()]
    # A walkthrough runs `lab-runner … lab-3` for its own run: it names that run in KPLAB_RUN.
    preferred = [r for r in matching if r.run_id == os.environ.get("KPLAB_RUN")]
    if preferred:
        return preferred[0]
    if len(matching) == 1:
        return matching[0]
    if not matching:
        what = f" for {which!r}" if which else ""
        raise RunNotFound(f"no running lab{what}. Start one with `lab-runner up {which or 'lab-3'}`"
                          " (`lab-runner status` lists what runs).")
    listing = ", ".join(f"{r.run_id} ({r.lab_id})" for r in matching)
    raise AmbiguousRun(f"several runs match {which or '(any)'}: {listing}; name one by its run id")
