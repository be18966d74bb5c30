"""Prose written wrapped in a file (an exercise's task, its hints), re-flowed for the terminal."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

# A list item starts a line of its own: `- x`, `* x`, `1. x`, `2) x`.
LIST_ITEM = re.compile(r"(\s*)((?:[-*]|\d+[.)])\s+)")


@dataclass
class Block:
    """A paragraph (`words` joined from its lines), a list item, a verbatim line or a blank."""

    kind: str  # "prose", "item", "verbatim" or "blank"
    text: str = ""
    indent: str = ""  # an item's: the text before its marker
    marker: str = ""  # an item's: "- ", "1. "


def blocks(text: str) -> list[Block]:
    """The blocks of `text`: lines of a paragraph or of a list item are joined, so the terminal
    wraps them once at its own width (wrapping the file's lines again gives ragged lines).
    Other indented lines (code, rules, commands) are verbatim."""
    out: list[Block] = []
    for line in text.strip("\n").splitlines():
        last = out[-1] if out else None
        item = LIST_ITEM.match(line)
        if not line.strip():
            out.append(Block("blank"))
        elif item:
            out.append(Block("item", line[item.end():].strip(), item.group(1), item.group(2)))
        elif last and last.kind == "item" and len(line) - len(line.lstrip()) > len(last.indent):
            last.text += " " + line.strip()  # the item's next line, indented under its text
        elif line[:1].isspace():
            out.append(Block("verbatim", line))
        elif last and last.kind == "prose":
            last.text += " " + line.strip()
        else:
            out.append(Block("prose", line.strip()))
    return out


def fill(text: str, width: int, first: str = "", rest: str = "") -> str:
    """`text` wrapped at `width` after `first`, its other lines after `rest`; a word (a chain
    name, a path, an option) is never split."""
    return textwrap.fill(" ".join(text.split()), width=max(width, len(first) + 20),
                         initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False)


def print_reflowed(console: Console, text: str) -> None:
    """Print `text` at the console's width: prose and list items re-wrapped, verbatim lines as
    written (long ones left to the terminal, so a copied command stays one line)."""
    for block in blocks(text):
        if block.kind == "verbatim":
            console.print(Text(block.text), soft_wrap=True, highlight=False)
        elif block.kind == "blank":
            console.print()
        else:
            first = block.indent + block.marker
            console.print(Text(fill(block.text, console.width, first, " " * len(first))),
                          highlight=False)


def print_hanging(console: Console, label: str, text: str, indent: int = 2) -> None:
    """`label` then `text`, whose wrapped lines line up under its first word, not the label."""
    first = " " * indent + label + " "
    console.print(Text(fill(text, console.width, first, " " * len(first))), highlight=False)
