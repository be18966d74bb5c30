"""Apply an `nft -f` document to one namespace atomically, and read kube-proxy's table back."""

from __future__ import annotations

import re

from lab_runner.commands import Place, Runner
from lab_runner.errors import RestoreFailed
from lab_runner.ruleset.apply import excerpt
from lab_runner.ruleset.nft_names import TABLE

APPLY_TIMEOUT = 900.0  # as iptables-restore's: a large document on a busy machine
# nft's own error format: `/dev/stdin:3:22-28: Error: Could not process rule: …`.
_ERROR_AT = re.compile(r":(\d+):\d+(?:-\d+)?: Error:")


class NftApplyFailed(RestoreFailed):
    """`nft -f` refused a document; nothing of it was applied (one transaction). Carries the
    first line nft named, with its neighbours, like apply.RestoreFailed."""


def apply(runner: Runner, place: Place, document: str) -> None:
    """One `nft -f -`: all of the document is applied, or (on any error) none of it."""
    argv = ["nft", "-f", "-"]
    result = runner.run(argv, place, input=document, check=False, timeout=APPLY_TIMEOUT)
    if result.ok:
        return
    line_no = offending_line(result.stderr)
    raise NftApplyFailed(list(result.argv), result.rc, result.stdout, result.stderr, str(place),
                         line_no, excerpt(document, line_no) if line_no else "")


def offending_line(stderr: str) -> int | None:
    """The first line of the document nft complains about, if it names one."""
    match = _ERROR_AT.search(stderr)
    return int(match.group(1)) if match else None


def save(runner: Runner, place: Place, *, handles: bool = False, table: str = TABLE) -> str:
    """`nft list table ip kube-proxy` (the kernel's listing; `-a` adds `# handle N`)."""
    argv = ["nft"] + (["-a"] if handles else []) + ["list", "table", "ip", table]
    return runner.run(argv, place).stdout


def has_table(runner: Runner, place: Place, table: str = TABLE) -> bool:
    return runner.run(["nft", "list", "table", "ip", table], place, check=False).ok
