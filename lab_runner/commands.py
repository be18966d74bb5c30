"""The one way the kit runs a command, optionally inside a lab namespace; plus a fake for unit tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Sequence

from lab_runner.errors import CommandFailed


@dataclass(frozen=True)
class Place:
    """Where a command runs: a named network namespace, optionally with a process's UTS namespace.

    `netns=None` means the caller's own namespace (used only for tools that take the namespace
    as an argument, like `ip -n`); lab traffic is never sent from there.
    """

    netns: str | None = None
    uts_pid: int | None = None  # a pod's hostname lives in its app server's UTS namespace

    def prefix(self) -> list[str]:
        if self.netns is None:
            return []
        enter = ["ip", "netns", "exec", self.netns]
        if self.uts_pid is None:
            return enter
        # `ip netns exec` first: it also bind-mounts /etc/netns/<ns>/ (the lab's resolv.conf,
        # with no name service); nsenter --net alone left the host's, and `iptables -L` without
        # -n in the node waited 20 s on name lookups.
        return enter + ["nsenter", f"--uts=/proc/{self.uts_pid}/ns/uts"]

    def __str__(self) -> str:
        return self.netns or "the host"


HOST = Place()


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    place: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def check(self) -> "CommandResult":
        if self.rc != 0:
            raise CommandFailed(list(self.argv), self.rc, self.stdout, self.stderr, self.place)
        return self


class Runner:
    """Runs argv lists (never a shell string) in a Place; the only module that adds `ip netns exec`."""

    def run(self, argv: Sequence[str], place: Place = HOST, *, input: str | None = None,
            check: bool = True, timeout: float = 60) -> CommandResult:
        full = place.prefix() + list(argv)
        try:
            done = subprocess.run(full, input=input, capture_output=True, text=True,
                                  timeout=timeout, errors="replace")
        except FileNotFoundError as exc:
            raise CommandFailed(full, 127, "", f"{exc.filename}: command not found", str(place)) from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(full, 124, "", f"timed out after {timeout:g} s", str(place)) from exc
        result = CommandResult(tuple(full), done.returncode, done.stdout, done.stderr, str(place))
        return result.check() if check else result

    def spawn(self, argv: Sequence[str], place: Place = HOST, **popen_kwargs) -> subprocess.Popen:
        """Start a long-running process in a place; the caller tracks and stops it."""
        return subprocess.Popen(place.prefix() + list(argv), **popen_kwargs)


@dataclass
class FakeRunner(Runner):
    """Records every call and answers from a script: {first words of argv: CommandResult fields}."""

    answers: dict[tuple[str, ...], tuple[int, str, str]] = field(default_factory=dict)
    calls: list[tuple[Place, tuple[str, ...], str | None]] = field(default_factory=list)

    def run(self, argv, place=HOST, *, input=None, check=True, timeout=60):
        self.calls.append((place, tuple(argv), input))
        rc, out, err = (0, "", "")
        for key, answer in self.answers.items():
            if tuple(argv[: len(key)]) == key:
                rc, out, err = answer
                break
        result = CommandResult(tuple(place.prefix() + list(argv)), rc, out, err, str(place))
        return result.check() if check else result

    def spawn(self, argv, place=HOST, **popen_kwargs):
        raise NotImplementedError("FakeRunner does not start processes")
