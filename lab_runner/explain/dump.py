"""Read a node's `iptables-save` (or `-c`) output: refuse what it is not, then parse it leniently."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from lab_runner.errors import LabError
from lab_runner.ruleset.parse import Ruleset, RulesetSyntaxError, parse

# A bigger file is not a node's dump: 10,000 Services x 10 endpoints is about 50 MB.
MAX_BYTES = 1 << 30
# ip6tables output shows IPv6 addresses in its first rules already (KUBE-SERVICES, KUBE-SEP);
# looking further would cost a regular expression per line of a 400,000-line dump.
IPV6_LINES = 5000
# An IPv6 address as a rule's -s/-d value (with or without a prefix length).
_IPV6_OPTION = re.compile(r"(?:^|\s)(?:-s|-d|--source|--destination|--to-destination)\s+!?\s*"
                          r"\[?([0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(?:/\d+)?)")


class DumpError(LabError):
    """A file `explain` cannot read as a node's IPv4 iptables-save; names the file and line."""

    def __init__(self, source: str, problem: str, line_no: int | None = None, line: str = ""):
        self.source = source
        self.line_no = line_no
        where = source if line_no is None else f"{source}, line {line_no}"
        shown = f"\n    {line.strip()[:200]}" if line.strip() else ""
        super().__init__(f"{where}: {problem}{shown}")


@dataclass(frozen=True)
class Dump:
    """A node's rules as the kit's parser reads them, and the file's lines for showing."""

    source: str
    ruleset: Ruleset
    lines: tuple[str, ...]

    def line(self, number: int) -> str:
        return self.lines[number - 1].strip() if 0 < number <= len(self.lines) else ""

    @property
    def has_counters(self) -> bool:
        """Taken with `iptables-save -c`: its rules carry [packets:bytes]."""
        # -c writes counters on every rule, so the first rule says (a node has 100,000s).
        first = next(iter(self.ruleset.rules()), None)
        return first is not None and first.counters is not None


def read_file(path: str | Path) -> Dump:
    """Read and check the file at `path` (see `read_text` for what is refused)."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise DumpError(source, f"cannot read it: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise DumpError(source, f"larger than {MAX_BYTES >> 20} MB: not one node's iptables-save")
    if b"\0" in data:
        line_no = data[:data.index(b"\0")].count(b"\n") + 1
        raise DumpError(source, "a binary file (it has NUL bytes), not iptables-save text", line_no)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data[:exc.start].count(b"\n") + 1
        raise DumpError(source, "not UTF-8 text (a binary file?): iptables-save writes text",
                        line_no) from exc
    return read_text(text, source)


def read_text(text: str, source: str = "<iptables-save>") -> Dump:
    """Parse `text`, refusing with one DumpError: an empty file, ip6tables output, a truncated
    dump, text that is not iptables-save, or a ruleset kube-proxy did not write."""
    lines = tuple(text.split("\n"))
    if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        raise DumpError(source, "empty: no rules in it. Take the dump on the node with "
                                "`sudo iptables-save -c > node.rules` (iptables mode) or "
                                "`sudo nft list ruleset > node.nft` (nftables mode)")
    _refuse_ipv6(source, lines)
    try:
        ruleset = parse(text, source, check=False)
    except RulesetSyntaxError as exc:
        if "never committed" in exc.problem or _cut_short(lines, exc.line_no):
            raise DumpError(source, "truncated: the table opened here has no COMMIT line (was "
                                    "the file cut short? take the whole `iptables-save` output)",
                            exc.line_no, exc.line) from exc
        raise DumpError(source, f"not iptables-save text as iptables writes it: {exc.problem}",
                        exc.line_no, exc.line) from exc
    if not ruleset.tables:
        raise DumpError(source, "no `*table` line: not iptables-save output")
    if not ruleset.has_chain("nat", "KUBE-SERVICES"):
        tables = ", ".join(ruleset.tables)
        raise DumpError(source, f"no KUBE-SERVICES chain in the nat table (tables: {tables}): "
                                "kube-proxy in iptables mode did not write these rules (ipvs or "
                                "nftables mode, or another node?)")
    return Dump(source, ruleset, lines)


def _cut_short(lines: tuple[str, ...], line_no: int) -> bool:
    """Whether the bad line is the file's last, inside a table no COMMIT closed: a dump cut
    mid-rule."""
    if any(line.strip() for line in lines[line_no:]):
        return False
    before = [line.strip() for line in lines[:line_no - 1]]
    opened = max((i for i, line in enumerate(before) if line.startswith("*")), default=-1)
    return opened >= 0 and "COMMIT" not in before[opened:]


def _refuse_ipv6(source: str, lines: tuple[str, ...]) -> None:
    """ip6tables-save output: its addresses are IPv6. Checked on the first lines with an address."""
    for number, line in enumerate(lines[:IPV6_LINES], start=1):
        if "ip6tables" in line and line.startswith("#"):
            raise DumpError(source, "ip6tables-save output: explain reads IPv4 `iptables-save` "
                                    "only", number, line)
        if ":" not in line or not line.lstrip("[0123456789:] ").startswith("-A"):
            continue
        for found in _IPV6_OPTION.finditer(line):
            try:
                ipaddress.IPv6Network(found.group(1), strict=False)
            except ValueError:
                continue
            raise DumpError(source, "an IPv6 address: this is ip6tables-save output, and "
                                    "explain reads IPv4 `iptables-save` only", number, line)
