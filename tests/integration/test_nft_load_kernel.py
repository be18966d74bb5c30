"""nft_load leaves the kernel with the very table one `nft -f` of the same document does.

300 services x 10 endpoints (the bench's model), each load into a fresh namespace
kplab-nftload-<6 hex>, deleted afterwards; the host's namespace is not touched.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab_runner.commands import Place, Runner
from lab_runner.ruleset import nft_apply, nft_load
from lab_runner.ruleset.nft_render import render

pytestmark = pytest.mark.needs_root

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_rules import build_model  # noqa: E402  (the benches' synthetic N-service model)


@contextmanager
def scratch():
    name = f"kplab-nftload-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield Place(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def test_split_load_lists_the_same_table_as_one_shot():
    document = render(build_model(300, 10))
    assert len(nft_load.split(document)) == 3  # else this would not test the split at all
    runner = Runner()
    with scratch() as one, scratch() as split:
        nft_apply.apply(runner, one, document)
        nft_load.load(runner, split, document)
        expected, got = nft_apply.save(runner, one), nft_apply.save(runner, split)
    assert expected.count("numgen random mod 10 vmap") == 300
    assert got == expected


def test_a_rejected_line_is_named_in_the_whole_document():
    document = render(build_model(3, 2))
    bad = document.replace("dnat to", "dnat too", 1)
    wrong = bad.split("\n").index(next(l for l in bad.split("\n") if "dnat too" in l)) + 1
    with scratch() as place, pytest.raises(nft_apply.NftApplyFailed) as failed:
        nft_load.load(Runner(), place, bad)
    assert failed.value.line_no == wrong
