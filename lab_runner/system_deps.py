"""The system packages the kit needs (system-packages.txt), and which of them this machine lacks.

Runs with the standard library alone, as `python3 lab_runner/system_deps.py missing|packages
[--tests]`: the Makefile asks it before any virtual environment exists. `--tests` means the
packages only the test suite needs (lines "#test: …"), which `make test-deps` installs.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

LIST = Path(__file__).with_name("system-packages.txt")
# Debian keeps administrators' tools in sbin, which an ordinary user's PATH often lacks: the tools
# are there all the same, so look in both.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
TEST_ONLY = "#test:"  # a comment to every other reader of the list


@dataclass(frozen=True)
class Provision:
    """One thing a package gives the kit: `cmd:ip`, `lib:pcap`, `py:venv`, `file:/etc/…`."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    def where(self) -> str | None:
        """Where this machine has it, or None."""
        if self.kind == "cmd":
            if self.name.startswith("/"):
                return self.name if os.access(self.name, os.X_OK) else None
            return find_tool(self.name)
        if self.kind == "lib":
            return ctypes.util.find_library(self.name)
        if self.kind == "py":
            spec = importlib.util.find_spec(self.name)
            return (spec.origin or self.name) if spec else None
        if self.kind == "file":
            return self.name if os.path.isfile(self.name) else None
        raise ValueError(f"{LIST.name}: unknown kind {self.kind!r} in {self}")


@dataclass(frozen=True)
class Package:
    name: str
    provides: tuple[Provision, ...]
    test_only: bool = False

    def missing(self) -> list[Provision]:
        return [p for p in self.provides if p.where() is None]


def find_tool(name: str) -> str | None:
    """A program on PATH, or in the sbin directories where Debian installs iproute2 and iptables."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def packages(path: Path = LIST, *, tests: bool = False) -> list[Package]:
    """The packages the kit needs, or with tests=True those only its tests need; a malformed
    line is named with its number."""
    return [p for p in every_package(path) if p.test_only == tests]


def every_package(path: Path = LIST) -> list[Package]:
    """The whole list, read."""
    found = []
    for number, line in enumerate(path.read_text().split("\n"), start=1):
        test_only = line.startswith(TEST_ONLY)
        words = line.removeprefix(TEST_ONLY).split("#", 1)[0].split()
        if not words:
            continue
        provisions = []
        for word in words[1:]:
            kind, sep, name = word.partition(":")
            if not sep or kind not in ("cmd", "lib", "py", "file") or not name:
                raise ValueError(f"{path.name}, line {number}: {word!r} is not kind:name "
                                 "(kinds: cmd, lib, py, file)")
            provisions.append(Provision(kind, name))
        if not provisions:
            raise ValueError(f"{path.name}, line {number}: package {words[0]} says nothing it "
                             "provides")
        found.append(Package(words[0], tuple(provisions), test_only))
    return found


def missing_packages(tests: bool = False) -> list[Package]:
    return [p for p in packages(tests=tests) if p.missing()]


def provider(kind: str, name: str) -> str | None:
    """The package that provides `kind:name`, for messages that say what to install."""
    for package in every_package():
        if Provision(kind, name) in package.provides:
            return package.name
    return None


def main(argv: list[str]) -> int:
    args = argv[1:]
    if args[:1] not in (["packages"], ["missing"]) or args[1:] not in ([], ["--tests"]):
        print(f"usage: {argv[0]} packages|missing [--tests]", file=sys.stderr)
        return 2
    tests = args[1:] == ["--tests"]
    chosen = packages(tests=tests) if args[0] == "packages" else missing_packages(tests)
    print(" ".join(p.name for p in chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
