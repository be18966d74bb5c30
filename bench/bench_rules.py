"""Benchmark: the kit's render -> apply -> read-back of big synthetic rulesets, beside a bare restore.

    sudo .venv/bin/python bench/bench_rules.py          (or `sudo make bench`, which runs every bench)

For 1,000 services x 10 endpoints and 10,000 x 10 (one pod per endpoint, profile v1.23), each step
runs in its own child process, timed from inside (no interpreter start-up, model build or file I/O):

    render     lab_runner.ruleset.render.render
    apply      lab_runner.ruleset.apply.restore(..., noflush=False) into a fresh scratch namespace,
               as LiveLab.install_rules does (CPU: Python's and the iptables-restore it runs)
    bare       `ip netns exec NS iptables-<variant>-restore < document` into another fresh namespace
    read-back  Snapshot.parse of that namespace's `iptables-save -c`: how the kit reads the node's
               rules and counters back (parse(check=False): a rule's matches are read when asked for)
    checked    parse(document) with check=True, as a submission is read: every rule's matches read
               and checked at once (shown for reference; not part of the apply path)

overhead = (render + read-back + apply - bare) / bare on CPU time, against the target < 25 %.
apply and bare runs alternate, so a slow patch of the machine falls on both. Peak RSS is GNU
time's %M of the step's process tree (for apply: the larger of Python and the restore); without
/usr/bin/time it is an upper bound (a forked child inherits its parent's high-water mark).
Scratch namespaces are kplab-<6 hex>-bench, deleted in `finally`; the host's own is not touched.
"""

from __future__ import annotations

import gc
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from lab_runner.model import ContainerPort, Lab, Node, Pod, Service, ServicePort  # noqa: E402
from lab_runner.ruleset.apply import tool  # noqa: E402
from lab_runner.runs import netns_name  # noqa: E402

SIZES = ((1_000, 10, 7), (10_000, 10, 1))  # services, endpoints per service, runs (median of)
VARIANTS = ("nft", "legacy")
TARGET = 0.25
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
EMPTY = "*mangle\nCOMMIT\n*filter\nCOMMIT\n*nat\nCOMMIT\n"


def build_model(services: int, endpoints: int) -> Lab:
    """`services` ClusterIP services, each selecting its own `endpoints` ready pods."""
    bridge, vips = ipaddress.IPv4Interface("10.0.0.1/8"), ipaddress.IPv4Network("172.16.0.0/12")
    web, pods, svcs = (ContainerPort(8080, "TCP", "web"),), [], []
    for s in range(services):
        labels = {"app": f"svc-{s}"}
        pods += [Pod(f"svc-{s}-{e}", "bench", "bench", bridge.ip + 1 + s * endpoints + e, labels, web)
                 for e in range(endpoints)]
        svcs.append(Service("bench", f"svc-{s}", vips.network_address + 10 + s,
                            (ServicePort(80, "TCP", "http", "web"),), selector=labels))
    return Lab(id="bench", title="bench", cluster_cidr=bridge.network, service_cidr=vips,
               node_network=ipaddress.IPv4Network("192.168.49.0/24"), pods=tuple(pods),
               nodes=(Node("bench", "cbr0", bridge, ipaddress.IPv4Address("192.168.49.2")),),
               services=tuple(svcs))


def child(step: str, *args: str) -> dict:
    """One step in this (child) process: its wall and CPU seconds, the restore's CPU included."""
    if step == "render":
        from lab_runner.ruleset.render import render
        lab = build_model(int(args[0]), int(args[1]))
        call = lambda: render(lab, "v1.23")  # noqa: E731
    elif step == "checked":
        from lab_runner.ruleset.parse import parse
        text = Path(args[0]).read_text()
        call = lambda: parse(text, args[0])  # noqa: E731
    elif step == "read-back":
        from lab_runner.ruleset.counters import Snapshot
        text = Path(args[0]).read_text()
        call = lambda: Snapshot.parse(text, args[0])  # noqa: E731
    else:
        from lab_runner.commands import Place, Runner
        from lab_runner.ruleset.apply import restore
        text = Path(args[0]).read_text()
        call = lambda: restore(Runner(), Place(args[1]), text, args[2], noflush=False)  # noqa: E731

    def cpu() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime

    wall, start = time.perf_counter(), cpu()
    out = call()
    gc.collect(0)  # the young collection a step may leave to its caller (parse does) is its cost
    result = {"wall": time.perf_counter() - wall, "cpu": cpu() - start}
    if step == "render":
        Path(args[2]).write_text(out)
    return result


def measured(argv: list[str], stdin: Path | None = None) -> tuple[dict, int]:
    """Run argv: its JSON answer, or its own wall and CPU when it prints none; its peak RSS."""
    with tempfile.NamedTemporaryFile("r") as rss_file, open(stdin or os.devnull, "rb") as given:
        full = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv] if GNU_TIME else argv
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        done = subprocess.run(full, stdin=given, capture_output=True)
        wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]!r}")
        rss = int(rss_file.read().split()[-1]) if GNU_TIME else after.ru_maxrss
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return json.loads(done.stdout) if done.stdout.strip() else {"wall": wall, "cpu": cpu}, rss


@contextmanager
def scratch_netns(variant: str):
    """A fresh namespace kplab-<6 hex>-bench; emptied (the kernel frees the rules now, not during
    the next timed step) and deleted whatever happens."""
    name = netns_name(secrets.token_hex(3), "bench")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "exec", name, tool(variant, "iptables-restore")],
                       input=EMPTY, text=True, capture_output=True)
        subprocess.run(["ip", "netns", "del", name])
        time.sleep(0.3)


def step(runs: int, argv) -> tuple[float, float, int]:
    """Median wall and CPU seconds and max peak RSS of `runs` runs of a step without a namespace."""
    return summary([measured(argv) for _ in range(runs)])


def restores(runs: int, services: int, variant: str, doc: Path, saved: Path, me: list[str]):
    """apply and bare, alternating, each in a fresh namespace (the restore is checked: one
    KUBE-SERVICES rule per service + 1); the last apply's `iptables-save -c` is kept in `saved`."""
    applied, bare = [], []
    for _ in range(runs):
        for results, argv, stdin in ((applied, [*me, "apply", str(doc)], None),
                                     (bare, ["ip", "netns", "exec"], doc)):
            with scratch_netns(variant) as netns:
                full = [*argv, netns, variant] if stdin is None else \
                    [*argv, netns, tool(variant, "iptables-restore")]
                results.append(measured(full, stdin))
                rules = subprocess.run(["ip", "netns", "exec", netns, tool(variant, "iptables"),
                                        "-t", "nat", "-S", "KUBE-SERVICES"],
                                       capture_output=True, text=True)
                if rules.stdout.count("\n-A ") != services + 1:
                    raise SystemExit(f"{variant}: the restore did not load ({rules.stderr.strip()})")
                if stdin is None:
                    saved.write_text(subprocess.run(
                        ["ip", "netns", "exec", netns, tool(variant, "iptables-save"), "-c"],
                        capture_output=True, text=True, check=True).stdout)
    return summary(applied), summary(bare)


def summary(results: list[tuple[dict, int]]) -> tuple[float, float, int]:
    return (statistics.median(t["wall"] for t, _ in results),
            statistics.median(t["cpu"] for t, _ in results), max(rss for _, rss in results))


def row(label: str, wall: str, cpu: str, rss: str = "", note: str = "") -> None:
    print(f"  {label:<32} {wall:>8} {cpu:>8} {rss:>9}  {note}".rstrip(), flush=True)


def show(label: str, figures: tuple[float, float, int], note: str = "") -> None:
    rss = f"{figures[2] / 1024:,.0f} MB" + ("" if GNU_TIME else " (upper bound)")
    row(label, f"{figures[0]:.2f} s", f"{figures[1]:.2f} s", rss, note)


def bench_size(services: int, endpoints: int, runs: int, tmp: Path) -> None:
    me, doc = [sys.executable, str(Path(__file__).resolve()), "child"], tmp / f"{services}.rules"
    print(f"\n{services:,} services x {endpoints} endpoints ({services * endpoints:,} pods, v1.23), "
          f"median of {runs}", flush=True)
    row("step", "wall", "cpu", "peak RSS")
    render = step(runs, [*me, "render", str(services), str(endpoints), str(doc)])
    text = doc.read_text()
    show("render", render, f"{text.count(chr(10)):,} lines, {len(text) / 2**20:.1f} MiB")
    show("checked parse (for reference)", step(runs, [*me, "checked", str(doc)]),
         "as a submission is read: not on the apply path")
    for variant in VARIANTS:
        saved = tmp / f"{services}.{variant}.saved"
        apply, bare = restores(runs, services, variant, doc, saved, me)
        show(f"apply {variant} (noflush=False)", apply)
        show(f"bare iptables-{variant}-restore", bare)
        back = step(runs, [*me, "read-back", str(saved)])
        show(f"read-back {variant} (save -c)", back, f"{saved.read_text().count(chr(10)):,} lines")
        r, p, a = render[1] / bare[1], back[1] / bare[1], (apply[1] - bare[1]) / bare[1]
        row(f"overhead {variant}", "", f"{r + p + a:.0%}", "",
            f"target < {TARGET:.0%}: {'met' if r + p + a < TARGET else 'NOT met'} (render {r:.0%} "
            f"+ read-back {p:.0%} + apply-bare {a:+.0%})")


def main() -> int:
    if sys.argv[1:2] == ["child"]:
        print(json.dumps(child(*sys.argv[2:])))
        return 0
    if os.geteuid() != 0:
        print("bench_rules: needs root (it restores into scratch namespaces): `sudo make bench`")
        return 3
    started = time.perf_counter()
    print(f"rules: the kit's render -> apply -> read-back vs a bare iptables-restore ({os.cpu_count()} "
          f"CPUs, python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f})")
    with tempfile.TemporaryDirectory(prefix="kplab-bench-") as tmp:
        for services, endpoints, runs in SIZES:
            bench_size(services, endpoints, runs, Path(tmp))
    print(f"\n  total {time.perf_counter() - started:.0f} s (load at the end {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
