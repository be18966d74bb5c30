"""The registry of running labs: one JSON record per run id under the state directory.

Every name the kit creates carries `kplab-<run id>-`, so a record is a convenience (which lab,
which processes) and never the only way to find what a run made: `clean` also works after a
SIGKILL that left no record behind.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab_runner import PREFIX
from lab_runner.errors import RunNotFound


def state_root() -> Path:
    """/run/kplab for root; a per-user directory otherwise (a docker run needs no root)."""
    if os.environ.get("KPLAB_STATE_DIR"):
        return Path(os.environ["KPLAB_STATE_DIR"])
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid == 0:
        return Path(f"/run/{PREFIX}")
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / (f"{PREFIX}-{uid}" if uid is not None else PREFIX)


def netns_name(run_id: str, role: str, name: str = "") -> str:
    """`kplab-<run>-node-minikube`, `kplab-<run>-pod-<pod>`, `kplab-<run>-net`."""
    return f"{PREFIX}-{run_id}-{role}" + (f"-{name}" if name else "")


def run_id_of(netns: str) -> str | None:
    parts = netns.split("-")
    return parts[1] if len(parts) >= 3 and parts[0] == PREFIX and len(parts[1]) == 6 else None


@dataclass
class TrackedProcess:
    """A process the kit started; the start time guards against killing a recycled pid."""

    pid: int
    role: str
    start_ticks: int

    def alive(self) -> bool:
        return process_start_ticks(self.pid) == self.start_ticks


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
        return state_root() / self.run_id / "run.json"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(self.path)  # atomic: a reader never sees half a record

    @classmethod
    def load(cls, run_id: str) -> "RunRecord":
        path = state_root() / run_id / "run.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RunNotFound(f"no record for run {run_id} ({exc})") from exc
        data["processes"] = [TrackedProcess(**p) for p in data.get("processes", [])]
        return cls(**data)


def new_run_id() -> str:
    """A fresh run id, reserved by creating its state directory (mkdir is atomic).

    KPLAB_RUN_ID asks for a given id: the docker backend gives the lab inside a node container
    the run id of the host's record, so a run id means the same run on both sides.
    """
    root = state_root()
    root.mkdir(parents=True, exist_ok=True)
    requested = os.environ.get("KPLAB_RUN_ID")
    if requested:
        (root / requested).mkdir()
        return requested
    while True:
        run_id = secrets.token_hex(3)
        try:
            (root / run_id).mkdir()
            return run_id
        except FileExistsError:
            continue


def list_runs() -> list[RunRecord]:
    records = []
    root = state_root()
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if (entry / "run.json").is_file():
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
    raise RunNotFound(f"several runs match {which or '(any)'}: {listing}; name one by its run id")
