"""`clean`: remove what crashed runs left behind, recognised only by the kit's prefix and a run id.

Only names of the kit's own shape are acted on (runs.KIT_NAME, runs.RUN_ID); an entry of the state
directory with any other name is left alone, and nothing outside the state directory, /run/netns
and /etc/netns is ever removed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from lab_runner.backends.netns import NetnsBackend, list_netns
from lab_runner.runs import (RunRecord, is_kit_name, list_runs, run_dir, run_id_of, state_root,
                             valid_run_id)


@dataclass
class CleanReport:
    removed_runs: list[str] = field(default_factory=list)
    kept_runs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def clean(*, everything: bool = False, backend: NetnsBackend | None = None,
          netns: bool = True) -> CleanReport:
    """Remove orphaned runs (or, with everything=True, every run of the kit).

    An orphan is a run that never finished starting, a `with` block whose process died, a run
    directory whose record is missing or refused, or scratch namespaces (doctor's, a minilab's)
    left for more than a minute. Namespaces of a lab recorded in another state directory are left
    alone (see _ours) unless everything=True.
    Docker runs: node containers with the kit's label whose run is gone or orphaned
    (backends/docker.py). netns=False (no root) looks at docker runs only.
    """
    from lab_runner.backends import docker

    backend = backend or NetnsBackend()
    report = CleanReport()
    records = {r.run_id: r for r in list_runs()}
    docker_runs = {rid: r for rid, r in records.items() if r.backend == "docker"}
    ns_runs = {rid for rid in map(run_id_of, list_netns()) if rid}
    removed, kept, problems = docker.clean(docker_runs, everything=everything)
    report.removed_runs += removed
    report.kept_runs += kept
    report.problems += problems
    if not netns:
        return report
    for run_id in sorted((set(records) - set(docker_runs)) | ns_runs):
        record = records.get(run_id)
        if record is not None and not everything and not record.orphaned():
            report.kept_runs.append(run_id)
            continue
        if record is None and not everything and _young_namespaces(run_id):
            continue  # a scratch namespace of a running test or `doctor`: not a leftover yet
        if record is None and not everything and not _ours(run_id):
            continue  # a lab recorded in another state directory (another user's, a test's)
        record = record or RunRecord(run_id=run_id, lab_id="?", lab_source="")
        report.problems += backend.destroy(record)
        shutil.rmtree(run_dir(run_id), ignore_errors=True)
        report.removed_runs.append(run_id)
    # Run directories without a valid record (an `up` killed before its first save, or a record
    # refused as tampered with): what they made is found by run id, as above.
    root = state_root()
    if root.is_dir():
        for entry in root.iterdir():
            if not valid_run_id(entry.name) or entry.name in records or entry.name in ns_runs:
                continue  # not the kit's name, or a run dealt with above
            if entry.is_dir() and not entry.is_symlink():
                if everything or not _recent(entry):
                    shutil.rmtree(entry, ignore_errors=True)
                    report.removed_runs.append(entry.name)
        try:
            root.rmdir()
        except OSError:
            pass
    _remove_stale_netns_etc(report)
    return report


def _remove_stale_netns_etc(report: CleanReport) -> None:
    """/etc/netns/kplab-<run>-… folders whose namespace is gone (a run killed mid-teardown)."""
    from lab_runner.backends import netns

    if not netns.NETNS_ETC.is_dir():
        return
    present = set(netns.list_netns())  # every namespace there is, whoever's run it is
    for folder in netns.NETNS_ETC.iterdir():
        if is_kit_name(folder.name) and folder.name not in present:
            shutil.rmtree(folder, ignore_errors=True)


SCRATCH_ROLES = {"doctor", "client", "node", "pod"}  # doctor's and minilab's record-less names


def _ours(run_id: str) -> bool:
    """Whether namespaces of run_id without a valid record are this state directory's leftovers.

    A lab's run directory is made before its first namespace, so a lab of this state directory
    always has one here; a lab without one was started with another state directory and is not
    this clean's to judge (`clean --all` removes every run of the kit). Scratch namespaces
    (`kplab-<id>-doctor`, a minilab's `-client`/`-node`/`-pod`) never have a record: they are
    everyone's leftovers once old.
    """
    if (state_root() / run_id).is_dir():
        return True
    return all(ns.split("-", 2)[2] in SCRATCH_ROLES for ns in list_netns()
               if run_id_of(ns) == run_id)


def _young_namespaces(run_id: str, seconds: float = 60.0) -> bool:
    """Record-less namespaces younger than a minute belong to something still running."""
    from pathlib import Path

    return any(_recent(Path("/run/netns") / ns, seconds) for ns in list_netns()
               if run_id_of(ns) == run_id)


def _recent(path, seconds: float = 30.0) -> bool:
    """A run directory this young may belong to an `up` that is still starting: leave it."""
    import time

    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False
