"""The caller's side of the probes: start them inside a lab namespace and read back their JSON."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from lab_runner.commands import Place, Runner
from lab_runner.errors import CommandFailed, EnvironmentProblem, LabError

# The directory holding the lab_runner package: `python -m` must find it inside the namespace
# even when the kit runs from a checkout rather than an installed copy.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def probe_argv(module: str, *args: str) -> list[str]:
    """argv that runs lab_runner.probes.<module> with this interpreter."""
    return [sys.executable, "-m", f"lab_runner.probes.{module}", *args]


def options_argv(**options: Any) -> list[str]:
    """{'sport_base': 20000} -> ['--sport-base', '20000']; None values are left out."""
    argv: list[str] = []
    for key, value in options.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def probe_env() -> dict[str, str]:
    """This environment, with the package's directory on PYTHONPATH for `python -m` in a namespace."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": _PACKAGE_ROOT + (os.pathsep + path if path else "")}


def _failed(argv: list[str], rc: int, out: str, err: str, place: Place) -> LabError:
    if rc == 3:  # the probes' exit code for "this machine cannot do it" (no raw sockets, …)
        return EnvironmentProblem(f"{' '.join(argv)} in {place}: {err.strip()}")
    return CommandFailed(argv, rc, out, err, str(place))


def run_agent(runner: Runner, place: Place, subcommand: str, *, wait: float = 60.0,
              **options: Any) -> dict[str, Any]:
    """Run one agent probe in `place` and return its JSON result; `options` become its flags.

    run_agent(runner, Place(client_ns), "syn", dst="10.96.0.10", dport=80, timeout=1)
    `wait` bounds the whole process (start-up included); `timeout` is the probe's own.
    """
    argv = probe_argv("agent", subcommand, *options_argv(**options))
    proc = runner.spawn(argv, place, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=probe_env())
    try:
        out, err = proc.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise CommandFailed(argv, 124, out, f"timed out after {wait:g} s", str(place)) from None
    if proc.returncode != 0:
        raise _failed(argv, proc.returncode, out, err, place)
    try:
        return json.loads(out)
    except ValueError as exc:
        raise CommandFailed(argv, 0, out, f"agent printed no JSON: {exc}", str(place)) from exc


class Capture:
    """A running capture in a namespace: `with Capture(...) as cap:` … `packets = cap.stop()`.

    Entering waits until the capture prints `ready`, so packets sent after that are seen.
    Leaving stops it (SIGTERM, then SIGKILL after a grace period) if `stop()` was not called.
    """

    def __init__(self, runner: Runner, place: Place, iface: str, bpf: str = "", *,
                 timeout: float = 60.0, ready_within: float = 10.0):
        self.runner, self.place = runner, place
        # Compiled here, once per expression (ValueError if it does not compile): the capture
        # in the namespace then attaches it without importing scapy.
        program = _compiled(bpf) if bpf else None
        self.argv = probe_argv("capture", *options_argv(iface=iface, bpf=program, timeout=timeout))
        self.ready_within = ready_within
        self.proc: subprocess.Popen | None = None
        self.packets: list[dict[str, Any]] | None = None

    def __enter__(self) -> "Capture":
        self.proc = self.runner.spawn(self.argv, self.place, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=probe_env())
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.ready_within
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.proc.stdout], [], [], left)
            if readable:
                line = self.proc.stdout.readline()
                if line.strip() == "ready":
                    return self
                break  # EOF or something unexpected: the capture did not start
        self._halt()
        out, err = self.proc.communicate()
        raise _failed(self.argv, self.proc.returncode or 1, out, err or "capture never said ready", self.place)

    def stop(self, grace: float = 5.0) -> list[dict[str, Any]]:
        """Stop capturing and return the packets seen."""
        assert self.proc is not None, "capture was not started"
        if self.packets is not None:
            return self.packets
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            self._halt()
            out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise _failed(self.argv, self.proc.returncode, out, err, self.place)
        self.packets = json.loads(out)
        return self.packets

    def _halt(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __exit__(self, *exc_info: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except (LabError, ValueError):
                self._halt()


@lru_cache(maxsize=64)
def _compiled(expression: str) -> str:
    from lab_runner.probes.capture import compile_filter

    return compile_filter(expression)
