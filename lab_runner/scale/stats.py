"""Summaries of latency samples: median and the p10/p90 spread (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the two nearest ranks (numpy's default)."""
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0..100")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """Median and p10/p90 of one target's first-packet times (microseconds), and how many."""

    p10: float
    median: float
    p90: float
    count: int
    lost: int = 0

    @classmethod
    def of(cls, samples: Sequence[float], lost: int = 0) -> "Spread":
        return cls(round(percentile(samples, 10), 2), round(percentile(samples, 50), 2),
                   round(percentile(samples, 90), 2), len(samples), lost)
