"""Benchmark: render -> parse -> apply of big synthetic rulesets, against a bare iptables-restore.

    sudo .venv/bin/python bench/bench_rules.py          (or `sudo make bench`, which runs every bench)

Two in-memory lab models (1,000 services x 10 endpoints and 10,000 x 10, one pod per endpoint on a
10.0.0.0/8 bridge, services in 172.16.0.0/12) go through the kit's pipeline:

    render   lab_runner.ruleset.render.render: the kit's own, and with an indexed endpoint lookup
    parse    lab_runner.ruleset.parse.parse of the rendered document
    apply    lab_runner.ruleset.apply.restore into a fresh scratch namespace: as the kit calls it
             (--noflush) and, for nft, with noflush=False
    bare     `iptables-<variant>-restore < document` into another fresh scratch namespace

overhead = (render + parse + apply - bare) / bare, against the target < 25 %, on wall time and on
CPU time (user + system of the processes doing the step: much less sensitive to other load).

Every step runs in its own child process, so each peak RSS belongs to that step alone (GNU time's
%M when /usr/bin/time exists; see `run_measured`). Scratch namespaces are named
kplab-<6 hex>-bench and deleted in `finally`; nothing is added to the host's own namespace.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# Runnable from a checkout as `python bench/bench_rules.py`, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab_runner.model import ContainerPort, Endpoint, Lab, Node, Pod, Service, ServicePort  # noqa: E402
from lab_runner.runs import netns_name  # noqa: E402

SIZES = ((1_000, 10), (10_000, 10))
VARIANTS = ("nft", "legacy")
TARGET_OVERHEAD = 0.25
# The kit's render scans every pod for every service port (O(services x pods)): 10,000 x 10 would
# take about 20 minutes, so above this many services it is estimated from the smaller size.
KIT_RENDER_MAX_SERVICES = 2_000
# iptables-nft-restore --noflush (the kit's default) grows quadratically with the document
# (1,000 x 10: ~6-10 s, 2,000 x 10: ~55 s): estimated, not run, when the estimate exceeds this.
NOFLUSH_MAX_SECONDS = 120.0
RUNS = {1_000: 3}  # repeats of the fast restores per size (median); 10,000 x 10: once
SETTLE_SECONDS = 0.5
BRIDGE = ipaddress.IPv4Interface("10.0.0.1/8")
SERVICE_CIDR = ipaddress.IPv4Network("172.16.0.0/12")
HERE = Path(__file__).resolve()


# -- the synthetic model ---------------------------------------------------------------------------

def build_model(services: int, endpoints: int) -> Lab:
    """`services` ClusterIP services, each selecting its own `endpoints` ready pods."""
    node = Node("bench", "cbr0", BRIDGE, ipaddress.IPv4Address("192.168.49.2"))
    first_pod = int(BRIDGE.ip) + 1
    first_vip = int(SERVICE_CIDR.network_address) + 10
    web = (ContainerPort(8080, "TCP", "web"),)
    pods, svcs = [], []
    for s in range(services):
        labels = {"app": f"svc-{s}"}
        for e in range(endpoints):
            ip = ipaddress.IPv4Address(first_pod + s * endpoints + e)
            pods.append(Pod(name=f"svc-{s}-{e}", namespace="bench", node="bench", ip=ip,
                            labels=labels, ports=web))
        svcs.append(Service("bench", f"svc-{s}", ipaddress.IPv4Address(first_vip + s),
                            (ServicePort(80, "TCP", "http", "web"),), selector=labels))
    return Lab(id="bench", title="bench", cluster_cidr=BRIDGE.network, service_cidr=SERVICE_CIDR,
               node_network=ipaddress.IPv4Network("192.168.49.0/24"), nodes=(node,),
               pods=tuple(pods), services=tuple(svcs))


_INDEX: dict[int, dict[tuple[str, str, str], list[Pod]]] = {}


def indexed_endpoints_for(lab: Lab, service: Service, port: ServicePort) -> list[Endpoint]:
    """lab_runner.endpoints.endpoints_for with pods indexed by (namespace, label, value) once.

    Same result, same order (pods in lab order, then the stable "ip:port" sort), but a port only
    looks at the pods carrying its rarest selector label instead of at every pod of the lab.
    """
    from lab_runner.endpoints import resolve_target_port, selects

    index = _INDEX.get(id(lab))
    if index is None:
        index = {}
        for pod in lab.pods:
            for key, value in pod.labels.items():
                index.setdefault((pod.namespace, key, value), []).append(pod)
        _INDEX[id(lab)] = index
    if not service.selector:
        return []
    candidates = min((index.get((service.namespace, k, v), []) for k, v in service.selector.items()),
                     key=len)
    found = []
    for pod in candidates:
        if pod.ready and selects(service, pod):
            number = resolve_target_port(port, pod)
            if number is not None:
                found.append(Endpoint(pod=pod.name, ip=pod.ip, port=number, node=pod.node))
    return sorted(found, key=lambda e: e.address)


# -- child processes: one step each, timed from inside (no interpreter start-up) -------------------

@contextmanager
def stopwatch(result: dict, children: bool = False) -> Iterator[None]:
    """Put the block's wall and CPU seconds (this process, plus waited-for children) in result."""
    def cpu() -> float:
        own = time.process_time()
        if not children:
            return own
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own + usage.ru_utime + usage.ru_stime

    wall, start_cpu = time.perf_counter(), cpu()
    yield
    result["seconds"] = time.perf_counter() - wall
    result["cpu"] = cpu() - start_cpu


def child_render(services: int, endpoints: int, mode: str, out: str) -> dict:
    """Build the model, render it (the kit's way or indexed), write the document to `out`."""
    from lab_runner.ruleset import render as render_module

    started = time.perf_counter()
    lab = build_model(services, endpoints)
    result: dict = {"build_seconds": time.perf_counter() - started}
    if mode == "indexed":
        render_module.endpoints_for = indexed_endpoints_for  # in this child process only
    with stopwatch(result):
        document = render_module.render(lab, "v1.23")
    Path(out).write_text(document)
    return {**result, "lines": document.count("\n"), "bytes": len(document.encode())}


def child_parse(path: str) -> dict:
    from lab_runner.ruleset.parse import parse

    document = Path(path).read_text()
    result: dict = {}
    with stopwatch(result):
        ruleset = parse(document, path)
    return {**result, "rules": sum(1 for _ in ruleset.rules())}


def child_apply(path: str, netns: str, variant: str, flush: str) -> dict:
    """The kit's apply.restore into `netns` (its default --noflush unless flush == "flush")."""
    from lab_runner.commands import Place, Runner
    from lab_runner.ruleset.apply import restore

    document = Path(path).read_text()
    result: dict = {}
    with stopwatch(result, children=True):
        restore(Runner(), Place(netns), document, variant, noflush=flush != "flush")
    # This process's own peak (the iptables-restore child's is what the bare run shows).
    return {**result, "python_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


CHILDREN = {"render": child_render, "parse": child_parse, "apply": child_apply}


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_rules.py child")
    parser.add_argument("step", choices=sorted(CHILDREN))
    parser.add_argument("args", nargs="*")
    args = parser.parse_args(argv)
    values = [int(a) if a.isdigit() else a for a in args.args]
    print(json.dumps(CHILDREN[args.step](*values)))


# -- running and measuring processes ---------------------------------------------------------------

@dataclass
class Measured:
    """A finished process: exit code, output, wall and CPU seconds, peak RSS (KiB)."""

    rc: int
    stdout: str
    stderr: str
    seconds: float
    cpu: float
    rss_kb: int


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
RSS_NOTE = "" if GNU_TIME else " (upper bound)"


def run_measured(argv: list[str], stdin_path: Path | None = None) -> Measured:
    """Run argv; wall time, CPU time and peak RSS of that process alone (wait4, not accumulated).

    A process forked from this Python process keeps the RSS high-water mark of the image it was
    forked from, even after exec: Linux folds the old mm's peak into ru_maxrss. GNU time forks
    the command from its own small image, so its %M is the command's own; without it the figure
    is only an upper bound.
    """
    with tempfile.NamedTemporaryFile("r", prefix="kplab-bench-rss-") as rss_file, \
            tempfile.TemporaryFile() as err_file:
        full = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv] if GNU_TIME else argv
        stdin = stdin_path.open("rb") if stdin_path else subprocess.DEVNULL
        try:
            started = time.perf_counter()
            proc = subprocess.Popen(full, stdin=stdin, stdout=subprocess.PIPE, stderr=err_file)
            assert proc.stdout is not None
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
        finally:
            if stdin_path:
                stdin.close()
        proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
        rss = usage.ru_maxrss
        if GNU_TIME:
            lines = [line for line in rss_file.read().splitlines() if line.strip().isdigit()]
            rss = int(lines[-1]) if lines else rss
    return Measured(proc.returncode, out.decode(errors="replace"), err, seconds,
                    usage.ru_utime + usage.ru_stime, rss)


def run_child(*args: str | int) -> tuple[dict, int]:
    """Run one step in a fresh interpreter; its JSON and its peak RSS."""
    done = run_measured([sys.executable, str(HERE), "child", *map(str, args)])
    if done.rc != 0:
        raise RuntimeError(f"child step {args} failed with exit code {done.rc}: {done.stderr[-2000:]}")
    return json.loads(done.stdout), done.rss_kb


def tool(variant: str, name: str) -> str:
    from lab_runner.ruleset.apply import tool as kit_tool

    return kit_tool(variant, name)


EMPTY_TABLES = "*mangle\nCOMMIT\n*filter\nCOMMIT\n*nat\nCOMMIT\n"


@contextmanager
def scratch_netns(variant: str) -> Iterator[str]:
    """A fresh, empty namespace kplab-<6 hex>-bench, emptied and deleted whatever happens.

    Deleting a namespace that holds 100,000s of rules frees them in kernel workqueues, which
    would steal CPU from the next timed restore: the tables are emptied first, then a pause.
    """
    name = netns_name(secrets.token_hex(3), "bench")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "exec", name, tool(variant, "iptables-restore")],
                       input=EMPTY_TABLES, text=True, capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)
        time.sleep(SETTLE_SECONDS)


def check_loaded(netns: str, variant: str, services: int, what: str) -> None:
    """KUBE-SERVICES must hold one rule per service plus the nodeports rule: the restore loaded."""
    out = subprocess.run(["ip", "netns", "exec", netns, tool(variant, "iptables"), "-t", "nat",
                          "-S", "KUBE-SERVICES"], capture_output=True, text=True, check=True).stdout
    loaded = sum(1 for line in out.splitlines() if line.startswith("-A "))
    if loaded != services + 1:
        raise SystemExit(f"{variant} {what}: KUBE-SERVICES holds {loaded} rules, expected "
                         f"{services + 1}")


# -- the steps ------------------------------------------------------------------------------------

@dataclass
class Timing:
    """Wall and CPU seconds of one step; `estimated` when extrapolated rather than run."""

    wall: float
    cpu: float
    estimated: bool = False

    @classmethod
    def of(cls, result: dict) -> "Timing":
        return cls(result["seconds"], result["cpu"])

    @classmethod
    def median(cls, runs: list["Timing"]) -> "Timing":
        return cls(statistics.median(t.wall for t in runs), statistics.median(t.cpu for t in runs))

    def scaled(self, factor: float) -> "Timing":
        return Timing(self.wall * factor, self.cpu * factor, True)


@dataclass
class Rendered:
    kit: Timing  # the kit's render, measured or estimated
    indexed: Timing
    document: Path


def render_steps(services: int, endpoints: int, workdir: Path,
                 smaller: dict[str, tuple[int, Timing, Timing]]) -> Rendered:
    """Render with indexed endpoints (always) and the kit's way (when it finishes in time)."""
    pods = services * endpoints
    indexed_path = workdir / f"indexed-{services}.rules"
    result, rss = run_child("render", services, endpoints, "indexed", indexed_path)
    indexed = Timing.of(result)
    if services > KIT_RENDER_MAX_SERVICES and "render" in smaller:
        small_pods, kit_small, indexed_small = smaller["render"]
        scan = (pods / small_pods) ** 2  # the pod scan grows with services x pods
        kit = Timing(indexed.wall + (kit_small.wall - indexed_small.wall) * scan,
                     indexed.cpu + (kit_small.cpu - indexed_small.cpu) * scan, True)
        show("render, kit (endpoints_for per port)", kit, "",
             "estimated, not run: it scans every pod for every service port")
    else:
        kit_path = workdir / f"kit-{services}.rules"
        kit_result, kit_rss = run_child("render", services, endpoints, "kit", kit_path)
        kit = Timing.of(kit_result)
        if kit_path.read_bytes() != indexed_path.read_bytes():
            raise SystemExit("the indexed render differs from the kit's: the bench is wrong")
        smaller["render"] = (pods, kit, indexed)
        show("render, kit (endpoints_for per port)", kit, mb(kit_rss))
    show("render, indexed endpoints", indexed, mb(rss),
         "same document as the kit's" if not kit.estimated else "")
    print(f"    model build {result['build_seconds']:.2f} s (not counted); document "
          f"{result['lines']:,} lines, {result['bytes'] / 2**20:.1f} MiB", flush=True)
    return Rendered(kit, indexed, indexed_path)


def apply_once(document: Path, variant: str, services: int, flush: str) -> tuple[Timing, int]:
    """apply.restore into a fresh namespace: its timing and the Python child's peak RSS."""
    with scratch_netns(variant) as netns:
        result, _ = run_child("apply", document, netns, variant, flush)
        check_loaded(netns, variant, services, f"apply.restore ({flush})")
    return Timing.of(result), result["python_rss_kb"]


def bare_once(document: Path, variant: str, services: int) -> tuple[Timing, int]:
    """`ip netns exec NS iptables-<variant>-restore < document` into a fresh namespace."""
    with scratch_netns(variant) as netns:
        done = run_measured(["ip", "netns", "exec", netns, tool(variant, "iptables-restore")],
                            document)
        if done.rc != 0:
            raise SystemExit(f"bare {variant} restore failed ({done.rc}): {done.stderr[:500]}")
        check_loaded(netns, variant, services, "bare restore")
    return Timing(done.seconds, done.cpu), done.rss_kb


@dataclass
class Applied:
    kit: Timing  # apply.restore as LiveLab.install_rules calls it (--noflush)
    fixed: Timing  # apply.restore(noflush=False) for nft; the kit's own call for legacy
    bare: Timing
    python_rss_kb: int
    bare_rss_kb: int


def apply_steps(document: Path, variant: str, services: int, runs: int,
                smaller: dict[str, tuple[int, Timing, Timing]]) -> Applied:
    """The kit's apply and a bare restore, `runs` times each (alternating which goes first).

    For nft the kit's --noflush is slow (quadratic): it runs once, or is estimated from the
    smaller size, and apply.restore(noflush=False) is measured as the fixed variant. For legacy
    --noflush costs nothing, so the kit's own call is the only one.
    """
    python_rss = bare_rss = 0
    kit_slow: Timing | None = None
    if variant == "nft":
        key = f"noflush-{variant}"
        if key in smaller and smaller[key][1].wall * (services / smaller[key][0]) ** 2 > NOFLUSH_MAX_SECONDS:
            kit_slow = smaller[key][1].scaled((services / smaller[key][0]) ** 2)
        else:
            kit_slow, python_rss = apply_once(document, variant, services, "noflush")
            smaller[key] = (services, kit_slow, kit_slow)
    mode = "flush" if variant == "nft" else "noflush"
    applies, bares = [], []
    for run in range(runs):
        for step in (("apply", "bare") if run % 2 == 0 else ("bare", "apply")):
            if step == "apply":
                timing, rss = apply_once(document, variant, services, mode)
                applies.append(timing)
                python_rss = max(python_rss, rss)
            else:
                timing, rss = bare_once(document, variant, services)
                bares.append(timing)
                bare_rss = max(bare_rss, rss)
    fixed = Timing.median(applies)
    return Applied(kit_slow or fixed, fixed, Timing.median(bares), python_rss, bare_rss)


# -- the table --------------------------------------------------------------------------------------

def mb(kb: int) -> str:
    return f"{kb / 1024:,.0f} MB{RSS_NOTE}" if kb else ""


def seconds(value: float, estimated: bool) -> str:
    return f"{'~' if estimated else ''}{value:,.2f} s"


def show(step: str, timing: Timing, memory: str = "", note: str = "") -> None:
    row(step, seconds(timing.wall, timing.estimated), seconds(timing.cpu, timing.estimated),
        memory, note + (" (estimated, not run)" if timing.estimated and not note else ""))


def row(step: str, wall: str, cpu: str, memory: str = "", note: str = "") -> None:
    print(f"  {step:<46} {wall:>12} {cpu:>12} {memory:>9}  {note}".rstrip(), flush=True)


def overhead(render: Timing, parse: Timing, apply: Timing, bare: Timing) -> tuple[float, float]:
    """(render + parse + apply - bare) / bare, on wall time and on CPU time."""
    def one(pick) -> float:
        return (pick(render) + pick(parse) + pick(apply) - pick(bare)) / pick(bare)

    return one(lambda t: t.wall), one(lambda t: t.cpu)


def show_overhead(label: str, values: tuple[float, float], estimated: bool) -> None:
    mark = "~" if estimated else ""
    verdicts = "/".join("ok" if v < TARGET_OVERHEAD else "ABOVE" for v in values)
    row(f"overhead, {label}", f"{mark}{values[0] * 100:,.0f} %", f"{mark}{values[1] * 100:,.0f} %",
        "", f"target < {TARGET_OVERHEAD:.0%}: {verdicts} (wall/cpu)")


def bench_size(services: int, endpoints: int, workdir: Path,
               smaller: dict[str, tuple[int, Timing, Timing]]) -> None:
    pods = services * endpoints
    runs = RUNS.get(services, 1)
    print(f"\n{services:,} services x {endpoints} endpoints ({pods:,} pods, profile v1.23; restores "
          f"into fresh namespaces, median of {runs})", flush=True)
    row("step", "wall", "cpu", "peak RSS")
    rendered = render_steps(services, endpoints, workdir, smaller)
    result, parse_rss = run_child("parse", rendered.document)
    parsed = Timing.of(result)
    show("parse", parsed, mb(parse_rss), f"{result['rules']:,} rules")
    for variant in VARIANTS:
        applied = apply_steps(rendered.document, variant, services, runs, smaller)
        if variant == "nft":
            show("apply nft, apply.restore (kit: --noflush)", applied.kit,
                 "" if applied.kit.estimated else mb(applied.python_rss_kb),
                 "quadratic: estimated from the smaller size, not run" if applied.kit.estimated
                 else "as LiveLab.install_rules calls it")
            show("apply nft, apply.restore(noflush=False)", applied.fixed, mb(applied.python_rss_kb))
        else:
            show("apply legacy, apply.restore (kit: --noflush)", applied.fixed,
                 mb(applied.python_rss_kb))
        show(f"bare iptables-{variant}-restore", applied.bare, mb(applied.bare_rss_kb))
        show_overhead(f"{variant}, kit as is", overhead(rendered.kit, parsed, applied.kit, applied.bare),
                      rendered.kit.estimated or applied.kit.estimated)
        show_overhead(f"{variant}, indexed render" + (", no --noflush" if variant == "nft" else ""),
                      overhead(rendered.indexed, parsed, applied.fixed, applied.bare), False)
        zero = Timing(0.0, 0.0)
        # LiveLab.install_rules itself does not parse: render + apply is the kit's install path.
        show_overhead(f"{variant}, indexed render + apply, no parse",
                      overhead(rendered.indexed, zero, applied.fixed, applied.bare), False)
        show_overhead(f"{variant}, apply step alone", overhead(zero, zero, applied.fixed, applied.bare),
                      False)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
        return 0
    if os.geteuid() != 0:
        print("bench_rules: needs root (it restores into scratch network namespaces); "
              "run `sudo make bench`")
        return 3
    started = time.perf_counter()
    print(f"rules: render -> parse -> apply vs a bare iptables-restore ({os.cpu_count()} CPUs, "
          f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}); "
          f"overhead = (render + parse + apply - bare) / bare")
    smaller: dict[str, tuple[int, Timing, Timing]] = {}
    with tempfile.TemporaryDirectory(prefix="kplab-bench-") as tmp:
        for services, endpoints in SIZES:
            bench_size(services, endpoints, Path(tmp), smaller)
    print(f"\n  total {time.perf_counter() - started:.0f} s (load average at the end "
          f"{os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
