"""Benchmark: the whole lab-3 walkthrough, non-interactive and checked, up and down included.

    python bench/bench_walkthrough.py [RUNS]      (default 3)

Times `python -m lab_runner walk lab-3 --check` end to end (a fresh process each time, as
`make test` runs it) and prints the transcript length of one run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
TARGET = 20.0
COMMAND = ["walk", "lab-3", "--check"]


def main() -> int:
    if os.geteuid() != 0:
        print("bench_walkthrough: needs root (it builds network namespaces); run `sudo make bench`")
        return 3
    env = dict(os.environ, PYTHONPATH=str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"]
                                                   if os.environ.get("PYTHONPATH") else ""),
               COLUMNS="120")
    walls, lines, failed = [], [], 0
    for _ in range(RUNS):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "lab_runner", *COMMAND], cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
        walls.append(time.perf_counter() - started)
        lines.append(len((done.stdout + done.stderr).splitlines()))
        if done.returncode != 0:
            failed += 1
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            print(f"  walk exited {done.returncode}; its last lines:\n{tail}", flush=True)
    median = statistics.median(walls)
    verdict = "FAILED" if failed else "ok" if median < TARGET else "OVER TARGET"
    print(f"  {'walk lab-3 --check (up, every step, down)':<48} {median:>15.1f} s  median of {RUNS} "
          f"(min {min(walls):.1f}, max {max(walls):.1f}); target < {TARGET:g} s: {verdict}")
    print(f"  {'transcript length (one run)':<48} {lines[0]:>13} lines  "
          f"(all runs: {', '.join(map(str, lines))}); {failed} of {RUNS} runs failed their checks")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
