"""One sweep point per (mode, N): write the ruleset, change one endpoint, measure memory and the
first packet, each in fresh namespaces (topology.py) that are gone when the point is done.

What each figure is:
  up_s        build the model, the three namespaces and the listener, render and write the whole
              ruleset: a node coming up with N Services
  write_s     the whole ruleset into the empty node, as `up` writes it: iptables-restore in
              iptables mode (iptables-nft by default, iptables-legacy with variant="legacy"),
              nft_load's transactions in nftables mode
  partial_s   one endpoint of svc-0 moved, synced as kube-proxy does it: iptables-restore
              --noflush of the top-level chains plus that Service's chains; in nftables one
              transaction with that Service's chains flushed and written again (model.py)
  full_s      the endpoint moved back, the whole ruleset written again in one restore/transaction
  kernel_kib  growth of the kernel's Slab + VmallocUsed + Percpu (/proc/meminfo) across the write:
              the rules live in kernel memory, not in any process. System-wide, so other work on
              the machine adds noise of a few hundred KiB either way: read it at large N
  listing_kib the size of the ruleset as the kernel lists it (iptables-save / nft list table):
              deterministic, and what a person has to read
  first/last  first-packet latency (firstpacket.py) to svc-0 and to svc-(N-1): iptables checks
              KUBE-SERVICES rule by rule, so the last Service is reached after N rules; nftables
              looks the destination up in one verdict map
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from lab_runner.commands import Place, Runner
from lab_runner.ruleset import apply, nft_apply, nft_load
from lab_runner.ruleset.nft_render import render as render_nft
from lab_runner.ruleset.render import render as render_iptables
from lab_runner.scale import model
from lab_runner.scale.stats import Spread
from lab_runner.scale.topology import CLIENT_IFACE, CLIENT_IP, Topology, scale_topology

MODES = ("iptables", "nftables")
IPTABLES_PROFILE = "v1.34"
MEMINFO_FIELDS = ("Slab", "VmallocUsed", "Percpu")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Point:
    """The figures of one (mode, N) point; see the module docstring for what each one is."""

    mode: str
    services: int
    endpoints: int
    up_s: float
    write_s: float
    partial_s: float
    full_s: float | None
    kernel_kib: int
    listing_kib: float
    first: Spread
    last: Spread
    variant: str = "nft"  # iptables mode's backend: iptables-nft or iptables-legacy

    @property
    def ratio(self) -> float:
        """Last Service's median first-packet time over the first's."""
        return self.last.median / self.first.median if self.first.median else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "last_over_first": round(self.ratio, 3)}


def kernel_memory_kib(meminfo: str | None = None) -> int:
    """Slab + VmallocUsed + Percpu of /proc/meminfo, in KiB."""
    text = meminfo if meminfo is not None else Path("/proc/meminfo").read_text()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return sum(int(fields[name].split()[0]) for name in MEMINFO_FIELDS if name in fields)


class Mode:
    """How one proxy mode renders, writes, syncs and lists its ruleset."""

    def __init__(self, name: str, runner: Runner, variant: str = "nft"):
        if name not in MODES:
            raise ValueError(f"unknown mode {name!r}; the modes are: {', '.join(MODES)}")
        self.name, self.runner = name, runner
        apply.tool(variant, "iptables")  # refuses an unknown variant, naming the valid ones
        self.variant = variant

    def render(self, lab) -> str:
        if self.name == "iptables":
            return render_iptables(lab, IPTABLES_PROFILE)
        return render_nft(lab)

    def write(self, place: Place, document: str) -> None:
        if self.name == "iptables":
            apply.restore(self.runner, place, document, self.variant, noflush=False)
        else:
            nft_load.load(self.runner, place, document)

    def sync(self, place: Place, new: str, old: str, *, partial: bool) -> None:
        if self.name == "iptables":
            build = model.iptables_partial if partial else model.iptables_full
            apply.restore(self.runner, place, build(new, old, 0), self.variant, noflush=True)
        else:
            build = model.nft_partial if partial else model.nft_full
            nft_apply.apply(self.runner, place, build(new, old, 0))

    def listing(self, place: Place) -> str:
        if self.name == "iptables":
            return apply.save(self.runner, place, self.variant, counters=False)
        return nft_apply.save(self.runner, place)


def first_packet(topo: Topology, services: int, flows: int) -> tuple[Spread, Spread]:
    """Spreads of the first-packet time to svc-0 and to the last Service."""
    first = f"{model.vip(0)}:{model.SERVICE_PORT}"
    last = f"{model.vip(services - 1)}:{model.SERVICE_PORT}"
    argv = [sys.executable, "-m", "lab_runner.scale.firstpacket", "--iface", CLIENT_IFACE,
            "--src", CLIENT_IP, "--flows", str(flows), first, last]
    answer = json.loads(topo.runner.run(argv, topo.client, timeout=60 + flows).stdout)
    spreads = []
    for target in (first, last):
        if not answer[target]:
            raise RuntimeError(f"no answer from {target} in {flows} flows: the node's rules "
                               "do not reach the pods")
        spreads.append(Spread.of(answer[target], answer["lost"][target]))
    return spreads[0], spreads[1]


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return round(time.perf_counter() - started, 3)


def measure(mode_name: str, services: int, endpoints: int, flows: int, *, full_sync: bool = True,
            variant: str = "nft", runner: Runner | None = None,
            progress: Progress = lambda _: None) -> Point:
    """One sweep point, in its own namespaces (removed when it ends, however it ends)."""
    runner = runner or Runner()
    mode = Mode(mode_name, runner, variant)
    started = time.perf_counter()
    lab = model.build(services, endpoints)
    moved = model.move_endpoint(lab)
    label = f"{mode_name} N={services:,}"
    with scale_topology(runner) as topo:
        document = mode.render(lab)
        progress(f"{label}: writing {document.count(chr(10)):,} lines")
        before = kernel_memory_kib()
        write_s = _timed(lambda: mode.write(topo.node, document))
        grown = kernel_memory_kib() - before
        up_s = round(time.perf_counter() - started, 3)
        listing_kib = round(len(mode.listing(topo.node).encode()) / 1024, 1)
        progress(f"{label}: {flows} new connections to the first and to the last Service")
        first, last = first_packet(topo, services, flows)
        progress(f"{label}: one endpoint changed, partial sync")
        changed = mode.render(moved)
        partial_s = _timed(lambda: mode.sync(topo.node, changed, document, partial=True))
        full_s = None
        if full_sync:
            progress(f"{label}: the endpoint back, full sync")
            full_s = _timed(lambda: mode.sync(topo.node, document, changed, partial=False))
    return Point(mode_name, services, endpoints, up_s, write_s, partial_s, full_s, grown,
                 listing_kib, first, last, variant if mode_name == "iptables" else "")


def sweep(sizes: Sequence[int], endpoints: int, modes: Sequence[str], flows: int, *,
          full_sync_max: int | None = None, variant: str = "nft", runner: Runner | None = None,
          progress: Progress = lambda _: None) -> list[Point]:
    """Every (mode, N) point, modes taking turns at each N so a slow patch of the machine falls
    on both."""
    points = []
    for services in sizes:
        for mode_name in modes:
            full = full_sync_max is None or services <= full_sync_max
            points.append(measure(mode_name, services, endpoints, flows, full_sync=full,
                                  variant=variant, runner=runner, progress=progress))
    return points
