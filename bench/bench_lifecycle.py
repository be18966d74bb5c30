"""Benchmark: `up` and `down` of lab-3 with the netns backend, median of several runs."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from lab_runner.lab import LiveLab  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
TARGET_UP, TARGET_DOWN = 1.0, 0.5


def main() -> None:
    ups, downs = [], []
    for _ in range(RUNS):
        start = time.perf_counter()
        lab = LiveLab.start("lab-3")
        ups.append(time.perf_counter() - start)
        start = time.perf_counter()
        lab.down()
        downs.append(time.perf_counter() - start)
    up, down = statistics.median(ups), statistics.median(downs)
    print(f"lifecycle (lab-3, netns, {RUNS} runs): up median {up:.3f} s "
          f"(min {min(ups):.3f}, max {max(ups):.3f}; target < {TARGET_UP} s) | "
          f"down median {down:.3f} s (min {min(downs):.3f}, max {max(downs):.3f}; "
          f"target < {TARGET_DOWN} s)")


if __name__ == "__main__":
    main()
