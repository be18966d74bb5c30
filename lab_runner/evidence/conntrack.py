"""The node's conntrack table: original and reply tuples, i.e. the NAT mapping the kernel keeps."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab_runner.commands import CommandResult

TUPLE = re.compile(r"src=(\S+) dst=(\S+)(?: sport=(\d+) dport=(\d+))?")


@dataclass(frozen=True)
class Tuple:
    src: str
    dst: str
    sport: int | None
    dport: int | None

    def __str__(self) -> str:
        if self.sport is None:
            return f"{self.src} -> {self.dst}"
        return f"{self.src}:{self.sport} -> {self.dst}:{self.dport}"


@dataclass(frozen=True)
class Entry:
    """One connection: what the caller sent (original) and what the reply must look like (reply)."""

    proto: str
    state: str
    original: Tuple
    reply: Tuple
    line: str

    @property
    def dnat_to(self) -> str:
        """Where the connection really goes: the reply's source is the chosen pod."""
        return f"{self.reply.src}:{self.reply.sport}" if self.reply.sport else self.reply.src

    @property
    def masqueraded_as(self) -> str | None:
        """The source the pod sees, when it is not the caller's own address."""
        return self.reply.dst if self.reply.dst != self.original.src else None

    @property
    def dnat(self) -> bool:
        return (self.reply.src, self.reply.sport) != (self.original.dst, self.original.dport)

    def describe(self) -> str:
        where = f"DNAT to {self.dnat_to}" if self.dnat else "no DNAT"
        text = f"{self.proto} {self.original}  ⇒  {where}"
        if self.masqueraded_as:
            text += f", masqueraded as {self.masqueraded_as}:{self.reply.dport}"
        return text + f"  (reply: {self.reply})"


def parse(text: str) -> list[Entry]:
    """Parse `conntrack -L` lines (any order of fields); lines without two tuples are skipped."""
    entries = []
    for line in text.splitlines():
        tuples = [Tuple(m[0], m[1], int(m[2]) if m[2] else None, int(m[3]) if m[3] else None)
                  for m in TUPLE.findall(line)]
        words = line.split()
        if len(tuples) < 2 or not words:
            continue
        state = next((w for w in words[3:5] if w.isupper() and "=" not in w), "")
        entries.append(Entry(words[0], state, tuples[0], tuples[1], line.strip()))
    return entries


def list_command(proto: str | None = None, orig_dst: str | None = None,
                 orig_sport: int | None = None) -> list[str]:
    argv = ["conntrack", "-L"]
    if proto:
        argv += ["-p", proto]
    if orig_dst:
        argv += ["--orig-dst", orig_dst]
    if orig_sport is not None:
        argv += ["--orig-port-src", str(orig_sport)]
    return argv


def from_result(result: CommandResult) -> list[Entry]:
    # conntrack exits 1 with "0 flow entries" on an empty match: that is an empty answer.
    return parse(result.stdout)
