"""Read a node's `nft list ruleset` (or `nft list table ip kube-proxy`, or the kit's `add …`
form): tell it from iptables-save, refuse what is not kube-proxy's nftables table, parse it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab_runner.explain.dump import MAX_BYTES, DumpError
from lab_runner.ruleset.nft_model import NftRuleset
from lab_runner.ruleset.nft_names import TABLE
from lab_runner.ruleset.nft_parse import NftSyntaxError, parse_nft

# The first words of an nftables document's first statement; iptables-save starts with `*table`
# or `:chain` (after `#` comments), so one line tells the two apart.
NFT_STARTS = ("table", "add", "flush", "define", "include", "create", "insert", "delete")
SNIFF_BYTES = 1 << 16


@dataclass(frozen=True)
class NftDump:
    """A node's nftables rules as the kit's parser reads them, and the file's lines."""

    source: str
    ruleset: NftRuleset
    lines: tuple[str, ...]

    @property
    def has_counters(self) -> bool:
        """Some rule carries `counter packets N bytes M` (kube-proxy's own rules do not)."""
        return any("counter packets" in rule.text for table in self.ruleset.tables.values()
                   for chain in table.chains.values() for rule in chain.rules)


def looks_like_nft(path: str | Path) -> bool:
    """Whether the file's first statement is nftables text (anything else goes to dump.py,
    which names what is wrong with it: empty, binary, not iptables-save)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return False
    for line in head.split("\n"):
        words = line.split()
        if words and not words[0].startswith("#"):
            return words[0] in NFT_STARTS
    return False


def read_file(path: str | Path) -> NftDump:
    """Read the file at `path` as nftables text (see `read_text` for what is refused)."""
    source = str(path)
    try:
        data = Path(path).read_bytes()[:MAX_BYTES + 1]
    except OSError as exc:
        raise DumpError(source, f"cannot read it: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES or b"\0" in data:
        raise DumpError(source, "not one node's `nft list ruleset` (too big, or binary)")
    try:
        return read_text(data.decode("utf-8"), source)
    except UnicodeDecodeError as exc:
        raise DumpError(source, "not UTF-8 text: `nft list ruleset` writes text",
                        data[:exc.start].count(b"\n") + 1) from exc


def read_text(text: str, source: str = "<nft list ruleset>") -> NftDump:
    """Parse `text`; one DumpError (file and line) for text the nft reader refuses or a ruleset
    without kube-proxy's `table ip kube-proxy` and its `services` chain."""
    lines = tuple(text.split("\n"))
    try:
        ruleset = parse_nft(text)
    except NftSyntaxError as exc:
        raise DumpError(source, f"not nftables text as nft writes it: {exc.problem}",
                        exc.line_no, exc.line) from exc
    table = ruleset.tables.get(("ip", TABLE))
    if table is None:
        found = ", ".join(f"{family} {name}" for family, name in ruleset.tables) or "none"
        raise DumpError(source, f"no `table ip {TABLE}` (tables: {found}): kube-proxy in "
                                "nftables mode did not write these rules (iptables mode? take "
                                "`sudo nft list ruleset` on the node)")
    if "services" not in table.chains:
        raise DumpError(source, f"`table ip {TABLE}` has no `services` chain: not kube-proxy's "
                                "nftables table (or a listing cut short)", table.line_no)
    return NftDump(source, ruleset, lines)
