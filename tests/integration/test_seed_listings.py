"""With lab-3 up, the node's `iptables -L` listings are the seed's, line by line (counters aside)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seed"
LISTINGS = sorted(SEED.glob("iptables-*.txt"))
COUNTERS = re.compile(r"^\s*\d+[KMG]?\s+\d+[KMG]?\s")


def normalise(line: str) -> str:
    """Counters aside; and the reference count of KUBE-MARK-MASQ, which counts every service of
    the seed's whole cluster (21 there), not only the one this lab models."""
    line = COUNTERS.sub("<counters> ", line.rstrip())
    return re.sub(r"\(\d+ references\)", "(N references)", line)


@pytest.mark.parametrize("listing", LISTINGS, ids=lambda p: p.stem.removeprefix("iptables-"))
def test_listing_matches_the_seed(lab3, listing):
    command, *expected = listing.read_text().splitlines()
    argv = shlex.split(command.removeprefix("# "))
    result = lab3.exec("node", ["sh", "-c", " ".join(shlex.quote(a) if a != "|" else a
                                                     for a in argv)], check=True)
    got = [normalise(line) for line in result.stdout.splitlines()]
    assert got == [normalise(line) for line in expected]


def test_the_comparison_can_fail(lab3):
    """A rule out of place is caught: swap two endpoint rules and the listing no longer matches."""
    listing = SEED / "iptables-KUBE-SVC-Q7IJ732UBZY4AJKA.txt"
    expected = [normalise(line) for line in listing.read_text().splitlines()[1:]]
    got = lab3.exec("node", ["iptables", "-t", "nat", "-L", "KUBE-SVC-Q7IJ732UBZY4AJKA", "-v"],
                    check=True).stdout.splitlines()
    got[3], got[4] = got[4], got[3]
    assert [normalise(line) for line in got] != expected
