"""Characters and lengths iptables-restore reads otherwise than the kit would, refused by line.

iptables-restore splits a document at "\n" only and keeps every other character: a CRLF file's
`*nat\r` names a table 'nat\r' (refused), while Python's str.splitlines() would also break a line
at \x0b, \x0c, \x1c-\x1e, U+0085, U+2028 or U+2029 and so count lines, and read rules, otherwise.
The kit refuses all of these (and other control characters, and a byte order mark) in both
modes, so a line means one thing everywhere; lines are numbered as iptables-restore numbers them.
The lengths are iptables-restore 1.8.9's, measured with `unshare -n iptables-restore`.
"""

from __future__ import annotations

import re

from lab_runner.errors import SubmissionError
from lab_runner.ruleset.parse import split

MAX_LINE_BYTES = 10239  # a longer line is read in two pieces, the second refused as a rule
MAX_WORD_BYTES = 1023  # a longer word: "Parameter too long!"
# Control characters (C0 but tab and newline, DEL, C1), Unicode line and paragraph separators,
# and the byte order mark.
_REFUSED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]")
_NAMES = {"\r": "a carriage return (a Windows CRLF line ending)", "\x0b": "a vertical tab (\\x0b)",
          "\x0c": "a form feed (\\x0c)", "\x85": "a next-line character (U+0085)",
          "\u2028": "a Unicode line separator (U+2028)",
          "\u2029": "a Unicode paragraph separator (U+2029)",
          "\ufeff": "a byte order mark (U+FEFF)"}
# A line iptables-restore recognises by its first character only: with blanks in front it is
# read as a rule, and refused.
_LEADING = re.compile(r"^[ \t]+(?=[*:#]|COMMIT\b)")


def lines(text: str) -> list[str]:
    """The document's lines as iptables-restore numbers them (split at "\\n" only)."""
    return text.split("\n")


def refuse_unreadable(text: str, name: str) -> None:
    """Raise SubmissionError (file and line) for the first character or length iptables-restore
    would read otherwise than the kit, or refuse."""
    found = _REFUSED.search(text)
    if found:
        char = found.group()
        number = text.count("\n", 0, found.start()) + 1
        what = _NAMES.get(char, f"a control character (U+{ord(char):04X})")
        fix = ("save the file with Unix (LF) line endings, e.g. `dos2unix FILE`" if char == "\r"
               else "delete it (retype the line if you cannot see it)")
        raise SubmissionError(f"{name}, line {number}: {what}; iptables-restore reads it as part "
                              f"of the line, not as a line break or a blank: {fix}")
    for number, line in enumerate(lines(text), start=1):
        if len(line) > MAX_WORD_BYTES // 4 or not line.isascii():  # only then can it be too long
            _refuse_long(line, name, number)
        if line[:1] in " \t" and line and _LEADING.match(line):
            raise SubmissionError(f"{name}, line {number}: blanks before "
                                  f"`{line.strip()[:20]}`; iptables-restore recognises a *table, "
                                  ":chain, # comment or COMMIT line only at the start of the line")


def _refuse_long(line: str, name: str, number: int) -> None:
    data = line.encode()
    size = len(data)
    pieces = [data[at:at + MAX_LINE_BYTES] for at in range(0, size, MAX_LINE_BYTES)]
    if size > MAX_LINE_BYTES and not all(piece[:1] == b"#" for piece in pieces):
        # iptables-restore reads it in pieces; only pieces that each read as a comment pass.
        raise SubmissionError(f"{name}, line {number}: {size} bytes long; iptables-restore reads "
                              f"at most {MAX_LINE_BYTES} bytes of a line: split the rule")
    if line[:1] == "#":
        return  # a comment: its words are never parameters
    try:
        words = split(line)
    except ValueError:
        return  # the parser names the unbalanced quotes
    for word in words:
        if len(word.encode()) > MAX_WORD_BYTES:
            raise SubmissionError(f"{name}, line {number}: a word of {len(word.encode())} bytes "
                                  f"(`{word[:30]}…`); iptables-restore refuses a parameter longer "
                                  f"than {MAX_WORD_BYTES} bytes (\"Parameter too long\")")
