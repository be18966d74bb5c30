"""Benchmark: loading kube-proxy's nftables table for N services x 10 endpoints, and why it is slow.

    sudo .venv/bin/python bench/bench_nft_scale.py            (N = 100, 1,000, 3,000; < 60 s)
    sudo NFT_SCALE_FULL=1 .venv/bin/python bench/bench_nft_scale.py   (adds 10,000: ~7 min)

Each load goes into a fresh namespace kplab-nftscale-<6 hex>, deleted in `finally`; the host's
own is not touched. Wall, user and sys seconds are the loading processes' (`nft`), from
getrusage of the children. Variants of nft_render's document:

    one-shot    the document as is, one `nft -f` (one transaction), as nft_apply.apply does
    nft_load    nft_load.load: the same document as transactions (anonymous-set rules and
                elements after the rest); the listing is checked equal to one-shot's
    jump        one-shot, `jump` instead of `goto` in the numgen vmaps (a different ruleset)
    no-vmap     one-shot, each `numgen … vmap { … }` replaced by `numgen random mod n == 0 goto
                <first endpoint>`: same chains and jumps, no anonymous set (a different ruleset)

What it showed (nft 1.0.6, kernel 6.18, 2 cores, single runs):

    services  one-shot        nft_load   jump     no-vmap
       1,000   0.9 s (0.6 sys)   0.6 s     0.9 s    0.4 s
       3,000   5.5 s (4.7 sys)   2.4 s     5.3 s    1.4 s
      10,000  112 s (110 sys)    15 s       -        -

one-shot grows ~N² and is almost all sys time; `jump` is no better than `goto`, and no-vmap (the
same chains and jumps, no anonymous set) is linear: the cost is the anonymous sets, not the
kernel's check of the jump graph. An anonymous set costs time that grows with what the same
transaction has already queued (3,000 vmap rules after 33,000 chain adds: 2.7 s sys; with those
chains committed first: 0.5 s), so nft_load's split gives the same table much faster. The rest
grows with the anonymous sets already in the table (batches of 2,000: 0.7 s sys the first, 2.4 s
the fifth) and no ordering removes it. `nft` optimises nothing unless given -o, so there is no
flag to turn off.
"""

from __future__ import annotations

import os
import re
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from bench_rules import build_model  # noqa: E402
from lab_runner.commands import Place, Runner  # noqa: E402
from lab_runner.ruleset import nft_apply, nft_load  # noqa: E402
from lab_runner.ruleset.nft_render import render  # noqa: E402

SIZES = (100, 1_000, 3_000) + ((10_000,) if os.environ.get("NFT_SCALE_FULL") else ())
ENDPOINTS = 10
_VMAP = re.compile(r"numgen random mod (\d+) vmap \{ 0 : goto (\S+?) [,}].*$", re.M)


def variants(document: str) -> dict[str, str]:
    return {"jump": document.replace(": goto endpoint-", ": jump endpoint-"),
            "no-vmap": _VMAP.sub(r"numgen random mod \1 == 0 goto \2", document)}


def timed(load, runner: Runner, document: str) -> tuple[list[float], str]:
    """Load into a fresh namespace: [wall, user, sys] of the loading children, and the listing."""
    place = Place(f"kplab-nftscale-{secrets.token_hex(3)}")
    subprocess.run(["ip", "netns", "add", place.netns], check=True)
    try:
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        load(runner, place, document)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
        listing = nft_apply.save(runner, place)
    finally:
        subprocess.run(["ip", "netns", "del", place.netns], check=False)
    return [wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime], listing


def main() -> int:
    runner = Runner()
    print(f"{'services':>8} {'lines':>7} {'variant':<9} {'wall s':>7} {'user s':>7} {'sys s':>7}")
    same = True
    for size in SIZES:
        document = render(build_model(size, ENDPOINTS))
        rows = {"one-shot": timed(nft_apply.apply, runner, document),
                "nft_load": timed(nft_load.load, runner, document)}
        same &= rows["one-shot"][1] == rows["nft_load"][1]
        for name, text in variants(document).items():
            rows[name] = timed(nft_apply.apply, runner, text)
        for name, (figures, _) in rows.items():
            print(f"{size:>8} {document.count(chr(10)):>7} {name:<9} "
                  + " ".join(f"{x:7.2f}" for x in figures), flush=True)
    print("nft_load's listing equals one-shot's at every size:", same)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
