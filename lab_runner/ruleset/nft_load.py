"""Load a large `nft -f` document as a few transactions: the same table, loaded much faster.

Why (bench/bench_nft_scale.py, nft 1.0.6, kernel 6.18): each anonymous set (the per-service
`numgen random mod N vmap { … }`) costs the kernel time that grows with the objects already queued
in the same transaction, so one transaction of N services costs ~N² (3,000 services x 10
endpoints: 5.5 s, 4.7 s of it sys; 10,000: 112 s, 110 s sys, 1.1 GB). 3,000 such rules after
their 33,000 chains in one transaction: 2.7 s sys; the chains committed first: 0.1 s + 0.5 s.
Queuing the rules that hold an anonymous set in transactions of their own, after every chain, set
and plain rule is committed, keeps that queue short (3,000: 2.4 s; 10,000: 15 s) and gives a
byte-identical `nft list table`. What is left grows with the anonymous sets already in the
table (2,000 more cost 0.7 s sys with none there, 2.4 s with 8,000): no split removes that part.

The price: the load is not atomic. If a later transaction fails, the earlier ones stay applied,
so this is for filling a node that starts empty (`up`), where a failure tears the node down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab_runner.commands import Place, Runner
from lab_runner.ruleset.apply import excerpt
from lab_runner.ruleset.nft_apply import APPLY_TIMEOUT, NftApplyFailed, offending_line

BATCH = 2_000  # anonymous-set rules per transaction (10,000 x 10: 2,000/5,000/10,000 -> 15/14/17 s)
_RULE = re.compile(r"add rule \S+ \S+ (\S+) ")


class NftLoadFailed(NftApplyFailed):
    """`nft -f` refused one of load's transactions: that one was not applied, the ones before
    it were (the message says how many)."""

    def __init__(self, *args, committed: int):
        super().__init__(*args)
        self.committed = committed
        said = f"nothing of this transaction was applied; the {committed} before it were"
        self.args = (self.args[0].replace("nothing was applied", said),)


@dataclass(frozen=True)
class Transaction:
    """One `nft -f` input: its lines and their line numbers (1-based) in the whole document."""

    lines: tuple[str, ...]
    numbers: tuple[int, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _anonymous_set(line: str) -> bool:
    """A rule holding `{ … }` inline: nft makes an anonymous set (or map) for it."""
    return line.startswith("add rule ") and " { " in line


def split(document: str, batch: int = BATCH) -> list[Transaction]:
    """The document as transactions that, applied in order, leave the same table: everything
    but anonymous-set rules and elements; the anonymous-set rules (and any later rule of their
    chain, so each chain keeps its order) in batches; the elements. A document with a command
    other than `add` after its first rule (delete, flush, insert, …) stays one transaction."""
    head: list[tuple[int, str]] = []
    deferred: list[tuple[int, str]] = []
    elements: list[tuple[int, str]] = []
    late_chains: set[str] = set()
    seen_rule = False
    for number, line in enumerate(document.split("\n"), start=1):
        if not line.strip():
            continue
        if line.startswith("add element "):
            elements.append((number, line))
            continue
        rule = _RULE.match(line)
        if rule is None:
            if seen_rule and not line.startswith("add "):
                return [_transaction(list(enumerate(document.rstrip("\n").split("\n"), 1)))]
            head.append((number, line))
            continue
        seen_rule = True
        chain = rule.group(1)
        if chain in late_chains or _anonymous_set(line):
            late_chains.add(chain)
            deferred.append((number, line))
        else:
            head.append((number, line))
    parts = [head] + [deferred[i:i + batch] for i in range(0, len(deferred), batch)] + [elements]
    return [_transaction(part) for part in parts if part]


def _transaction(numbered: list[tuple[int, str]]) -> Transaction:
    return Transaction(tuple(line for _, line in numbered), tuple(n for n, _ in numbered))


def load(runner: Runner, place: Place, document: str, batch: int = BATCH) -> None:
    """Apply the document's transactions in order; on an error, raise NftLoadFailed naming
    the line of the whole document (the transactions before it stay applied)."""
    for committed, part in enumerate(split(document, batch)):
        result = runner.run(["nft", "-f", "-"], place, input=part.text, check=False,
                            timeout=APPLY_TIMEOUT)
        if result.ok:
            continue
        local = offending_line(result.stderr)
        line_no = part.numbers[local - 1] if local and local <= len(part.numbers) else None
        raise NftLoadFailed(list(result.argv), result.rc, result.stdout, result.stderr,
                            str(place), line_no, excerpt(document, line_no) if line_no else "",
                            committed=committed)
