"""A submitted file read as bounded plain text; every refusal names the file and, if it can, the line."""

from __future__ import annotations

import errno
from pathlib import Path

from lab_runner.errors import SubmissionError
from lab_runner.safe_files import UnsafePath, read_regular


def read_limited(path: str | Path, limit: int) -> tuple[str, bytes]:
    """(the file's name, at most `limit` + 1 of its bytes) of a regular file, never a link.

    The file is opened once (O_NOFOLLOW, O_NONBLOCK) and judged by fstat on that descriptor, so
    nothing can be swapped in between a look and the read (safe_files.read_regular).
    Messages name the file alone, never the instructor's directories.
    """
    name = Path(path).name
    try:
        return name, read_regular(Path(path), limit)  # never more, even if the file grows
    except UnsafePath as exc:
        raise SubmissionError(f"{name}: not a regular file (links and directories are refused)"
                              ) from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR):  # ELOOP: a link (O_NOFOLLOW)
            raise SubmissionError(f"{name}: not a regular file (links and directories are "
                                  "refused)") from exc
        raise SubmissionError(f"{name}: cannot be read ({exc.strerror})") from exc


def decode(raw: bytes, name: str, limit: int, kind: str = "a text file") -> str:
    """The text of a submission: at most `limit` bytes of UTF-8 without NUL bytes or control
    characters (tab and CR aside). `kind` says what the file should be, for the NUL message."""
    if len(raw) > limit:
        raise SubmissionError(f"{name}: more than {limit} bytes, the limit for a submission")
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise SubmissionError(f"{name}, line {line}: binary data (a NUL byte); a submission is "
                              f"{kind}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SubmissionError(f"{name}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                              f"at offset {exc.start})") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if any(ord(c) < 32 and c not in "\t\r" for c in line):
            raise SubmissionError(f"{name}, line {number}: control characters are not allowed")
    return text
