"""Apply an iptables-restore document to one namespace atomically, and read the tables back."""

from __future__ import annotations

import re

from lab_runner.commands import Place, Runner
from lab_runner.errors import EnvironmentProblem, RestoreFailed

VARIANTS = ("nft", "legacy")
CONTEXT_LINES = 2
RESTORE_TIMEOUT = 900.0


def tool(variant: str, name: str) -> str:
    """`iptables-nft-restore`, `iptables-legacy-save`, `iptables-nft`, … for a variant."""
    if variant not in VARIANTS:
        raise EnvironmentProblem(f"unknown iptables variant {variant!r}; choose one of: "
                                 f"{', '.join(VARIANTS)}")
    base, _, suffix = name.partition("-")
    return f"{base}-{variant}" + (f"-{suffix}" if suffix else "")


def restore(runner: Runner, place: Place, document: str, variant: str = "nft",
            *, noflush: bool = True) -> None:
    """One iptables-restore call: all of the document is applied, or (on any error) none of it."""
    argv = [tool(variant, "iptables-restore")] + (["--noflush"] if noflush else [])
    # 10,000 services take iptables-nft ~20 s, and much longer on a busy machine.
    result = runner.run(argv, place, input=document, check=False, timeout=RESTORE_TIMEOUT)
    if result.ok:
        return
    line_no = _offending_line(result.stderr, document)
    raise RestoreFailed(list(result.argv), result.rc, result.stdout, result.stderr, str(place),
                        line_no, excerpt(document, line_no) if line_no else "")


def save(runner: Runner, place: Place, variant: str = "nft", *, counters: bool = True,
         table: str | None = None) -> str:
    argv = [tool(variant, "iptables-save")] + (["-c"] if counters else [])
    if table:
        argv += ["-t", table]
    return runner.run(argv, place).stdout


def excerpt(document: str, line_no: int, around: int = CONTEXT_LINES) -> str:
    """The offending line with its neighbours, numbered, the culprit marked (as kube-proxy logs it)."""
    lines = document.split("\n")  # numbered as iptables-restore numbers them
    first, last = max(1, line_no - around), min(len(lines), line_no + around)
    return "\n".join(f"{'>' if n == line_no else ' '} {n:5d}  {lines[n - 1]}"
                     for n in range(first, last + 1))


def _offending_line(stderr: str, document: str) -> int | None:
    match = re.search(r"line:? (\d+)", stderr)
    if not match:
        return None
    line_no = int(match.group(1))
    lines = document.split("\n")  # numbered as iptables-restore numbers them
    # iptables-nft reports a bad rule at the table's COMMIT; point at the rule it complains about.
    if 0 < line_no <= len(lines) and lines[line_no - 1].strip() == "COMMIT":
        named = re.search(r"[Cc]hain '([^']+)'|target `([^']+)'", stderr)
        if named:
            word = named.group(1) or named.group(2)
            for n in range(line_no - 1, 0, -1):
                if re.search(rf"-[jg] {re.escape(word)}\b", lines[n - 1]):
                    return n
    return line_no
