"""Benchmark: labs 5, 6 and 7 (issues 16 and 17): `up` of each (target < 1.5 s; labs 5 and 6
have two nodes, lab 7 runs kube-proxy's nftables mode) and the live grade of each exercise's
reference answer (target < 5 s), medians of several runs. `bench_labs_5_to_7.py [RUNS] [LAB…]`."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

from lab_runner.grading import exercise as exercises  # noqa: E402
from lab_runner.grading.grade import grade  # noqa: E402
from lab_runner.lab import LiveLab  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
LABS = sys.argv[2:] or ["lab-5", "lab-6", "lab-7"]
TARGET_UP, TARGET_GRADE = 1.5, 5.0


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _line(what: str, seconds: list[float], target: float) -> str:
    median = statistics.median(seconds)
    verdict = "ok" if median < target else "OVER TARGET"
    return (f"{what}: median {median:.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f}; "
            f"target < {target} s: {verdict})")


def main() -> int:
    over = False
    for lab in LABS:
        over |= bench_lab(lab)
    return 1 if over else 0


def bench_lab(lab: str) -> bool:
    """Print the lab's figures; True where one is over its target (or not full marks)."""
    ups = []
    for _ in range(RUNS):
        labs = []
        ups.append(_timed(lambda: labs.append(LiveLab.start(lab))))
        labs[0].down()
    print(_line(f"up {lab} (netns, {RUNS} runs)", ups, TARGET_UP), flush=True)
    over = statistics.median(ups) >= TARGET_UP
    for ex in exercises.all_exercises(lab):
        [answer] = (ex.directory.parent.parent / "solutions").glob(f"{ex.slug}.*")  # .rules, .nft
        scores: list[tuple[float, float]] = []
        seconds = [_timed(lambda: scores.append(_score(lab, ex.number, answer)))
                   for _ in range(RUNS)]
        full = all(got == top for got, top in scores)
        print(_line(f"{lab}: live grade of exercise {ex.number}'s reference answer ({RUNS} runs, "
                    f"{'full marks every time' if full else 'NOT FULL MARKS'})", seconds,
                    TARGET_GRADE), flush=True)
        over |= statistics.median(seconds) >= TARGET_GRADE or not full
    return over


def _score(lab: str, number: str, answer: Path) -> tuple[float, float]:
    result = grade(lab, number, answer, "live")
    return result.score, result.max_score


if __name__ == "__main__":
    sys.exit(main())
