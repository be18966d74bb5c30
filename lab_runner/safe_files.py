"""Files and directories root creates or reads where others may write: explicit modes, no links followed.

    private_dir(path)        a directory only its owner can use (0700), created or checked
    make_dirs(path)          an output directory and its parents, made 0755 whatever the umask
    write_file(path, data)   a temporary file beside path, renamed over it: a link at path is
                             replaced, never followed, and a reader never sees half a file
    read_regular(path, n)    one open with O_NOFOLLOW | O_NONBLOCK, checked with fstat, read from
                             that descriptor: a link, FIFO or device is refused, never waited on
    read_below(root, rel, n) the same, reaching rel from root one directory at a time, no links

Every refusal is an UnsafePath naming the path and what to do.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from lab_runner.errors import EnvironmentProblem

NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(EnvironmentProblem):
    """A file or directory the kit will not act on: not its own, open to others, or a link."""


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """path as a directory of this user, writable by no one else; made (with `mode`) if missing.

    mkdir fails on anything already there, so a directory someone else made first is found by
    the check below and refused, never adopted.
    """
    try:
        os.mkdir(path, mode)
        os.chmod(path, mode)  # the umask may have taken bits away, or (umask 0) none
    except FileExistsError:
        pass
    check_own_dir(path)
    return path


def make_dirs(path: Path, mode: int = 0o755) -> Path:
    """path and its missing parents, each one made here set to exactly `mode` (umask or not)."""
    wanted = path = Path(path)
    missing = []
    while not path.exists() and not path.is_symlink() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
            os.chmod(directory, mode)
        except FileExistsError:
            pass  # made meanwhile by someone else: the caller's checks judge it
    return wanted


def check_own_dir(path: Path) -> None:
    """Refuse path unless it is a real directory owned by us that group and others cannot write."""
    if not hasattr(os, "geteuid"):
        return  # no owners to compare (native Windows): the docker backend's state only
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return  # nothing there yet: nothing to trust or distrust
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{path}: not a directory (a link or a file is there); the kit keeps its "
                         "state only in a directory it made. Remove it, or set KPLAB_STATE_DIR "
                         "to a directory of your own.")
    if info.st_uid != os.geteuid():
        raise UnsafePath(f"{path}: owned by uid {info.st_uid}, not by you (uid {os.geteuid()}): "
                         "someone else made it, so its contents cannot be trusted. Remove it, or "
                         "set KPLAB_STATE_DIR (or XDG_RUNTIME_DIR) to a directory of your own.")
    if info.st_mode & 0o022:
        raise UnsafePath(f"{path}: writable by group or others (mode "
                         f"{stat.S_IMODE(info.st_mode):04o}): anyone could plant files there. "
                         f"`chmod 700 {path}`, or remove it.")


def write_file(path: Path, data: bytes | str, mode: int = 0o644, *,
               follow_dir_link: bool = True) -> Path:
    """Write data to path through a fresh temporary file in the same directory, renamed into place.

    The temporary name is created with O_EXCL | O_NOFOLLOW, its mode set on the descriptor, and
    rename replaces whatever entry path is (a planted link included) without following it. The
    directory is opened once and used by descriptor; with follow_dir_link=False a directory that
    is itself a link is refused too (a directory the kit made inside one others may write).
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        directory = os.open(path.parent, flags | (0 if follow_dir_link else os.O_NOFOLLOW))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{path.parent}: not a plain directory (a link or a file is there): "
                             f"{path.name} was not written") from exc
        raise
    try:
        temp, fd = _create_temporary(directory, path.name, mode)
        try:
            try:
                os.fchmod(fd, mode)  # exactly mode, whatever the umask
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(temp, path.name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            _unlink_quietly(temp, directory)
            raise
    finally:
        os.close(directory)
    return path


def _create_temporary(directory: int, name: str, mode: int) -> tuple[str, int]:
    """(name, open descriptor) of a new file beside name: O_EXCL, so never one planted there."""
    for _ in range(100):
        temp = f".{name}.{os.urandom(4).hex()}.tmp"
        try:
            return temp, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, mode,
                                 dir_fd=directory)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {name}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(name: str, directory: int) -> None:
    try:
        os.unlink(name, dir_fd=directory)
    except OSError:
        pass


def read_regular(path: Path, limit: int, *, owner: int | None = None) -> bytes:
    """At most limit + 1 bytes of a regular file, opened once and never through a link.

    O_NONBLOCK keeps a FIFO from hanging the open; fstat on the open descriptor decides, so a
    file swapped after any earlier look is judged as what was actually opened. With `owner`,
    a file of another user is refused too. Raises UnsafePath, or OSError when it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | NOFOLLOW)
    return _read_open_file(fd, str(path), limit, owner)


def read_below(root: Path, relative: Path, limit: int) -> bytes:
    """read_regular for root/relative, where no component below root may be a link.

    Each directory is opened by descriptor from the one above it with O_NOFOLLOW, so a student's
    sub-directory swapped for a link after it was looked at is refused, not followed. root
    itself is the caller's (an instructor's directory) and may be reached through links.
    """
    parts = Path(relative).parts
    if not parts or any(part in ("", ".", "..") or "/" in part for part in parts):
        raise UnsafePath(f"{relative}: not a plain path below {root}")
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | NOFOLLOW, dir_fd=directory)
    finally:
        os.close(directory)
    return _read_open_file(fd, str(relative), limit, None)


def _read_open_file(fd: int, shown: str, limit: int, owner: int | None) -> bytes:
    """Judge the open descriptor by fstat, read at most limit + 1 bytes from it, close it."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{Path(shown).name}: not a regular file")
        if owner is not None and info.st_uid != owner:
            raise UnsafePath(f"{shown}: owned by uid {info.st_uid}, not {owner}: not read")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
