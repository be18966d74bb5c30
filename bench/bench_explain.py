"""Benchmark: `lab-runner explain` on a node of 10,000 Services x 10 endpoints (100,000 endpoints).

The dump is the kit's own render (v1.30 rules, large-cluster mode: no per-endpoint comments) of
a generated model, written to a temporary file and explained by the command itself, once with
`--to` (the last Service port, so KUBE-SERVICES is read to its end) and once as a summary (text
and JSON). Each run is a fresh process: its CPU time (user + system), wall time and peak memory
(ru_maxrss) are printed next to the targets (explain --to < 2 s, summary < 5 s, memory < 1 GB).
The verdict goes by CPU time: on a machine shared with other work (the kit's is, with tests
running beside it) wall time measures the neighbours as much as the command.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout
sys.path.insert(0, str(ROOT / "bench"))

SERVICES, ENDPOINTS = 10_000, 10
TARGETS = {"explain --to": 2.0, "summary (text)": 5.0, "summary (json)": 5.0}
MEMORY_TARGET_MB = 1024


def node_dump(services: int, endpoints: int) -> str:
    """The iptables-save text of a node with `services` ClusterIP Services of `endpoints` each."""
    from bench_rules import build_model

    from lab_runner.ruleset.render import render

    return render(build_model(services, endpoints), "v1.30")


def timed(args: list[str]) -> tuple[float, float, float]:
    """CPU seconds, wall seconds and peak resident MB of one `lab-runner explain` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lab_runner", "explain", *args], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    # ru_maxrss of the children is the largest child so far: the runs go from small to large.
    return cpu, wall, after.ru_maxrss / 1024


def main() -> int:
    text = node_dump(SERVICES, ENDPOINTS)
    last = 10 + SERVICES - 1  # build_model gives Service s the address 172.16.0.0 + 10 + s
    vip = f"172.16.{last >> 8}.{last & 255}"
    with tempfile.TemporaryDirectory(prefix="kplab-bench-explain-") as tmp:
        path = Path(tmp) / "node.rules"
        path.write_text(text)
        print(f"node: {SERVICES:,} services x {ENDPOINTS} endpoints, "
              f"{text.count(chr(10)):,} lines, {len(text) / 1e6:.0f} MB", flush=True)
        runs = {"explain --to": [str(path), "--to", f"{vip}:80"],
                "summary (text)": [str(path)],
                "summary (json)": [str(path), "--format", "json"]}
        failed = False
        for name, args in runs.items():
            cpu, wall, megabytes = timed(args)
            ok = cpu < TARGETS[name] and megabytes < MEMORY_TARGET_MB
            failed |= not ok
            print(f"{name:16} {cpu:5.2f} s CPU, {wall:5.2f} s wall (target {TARGETS[name]:g} s)"
                  f"   peak {megabytes:4.0f} MB (target {MEMORY_TARGET_MB} MB)   "
                  f"{'ok' if ok else 'OVER'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
