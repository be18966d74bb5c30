"""`python -m lab_runner` and the `lab-runner` command: interruptible from the first instant.

Ctrl-C or SIGTERM while the command's modules still load (click and rich take ~0.15 s) says
"interrupted" and exits 130, as it does once the command runs; nothing has been made yet then.
"""

import os
import signal
import sys


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def main() -> None:
    if sys.version_info < (3, 11):
        sys.stderr.write(f"error: lab-runner needs Python 3.11 or newer; this is "
                         f"{sys.version.split()[0]} ({sys.executable}). Without a newer Python "
                         "(macOS ships 3.9), run the labs in Docker: docker compose run --rm lab\n")
        sys.exit(3)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            from lab_runner.cli import main as cli_main

            cli_main()
        finally:
            # The command is over: a signal from here on could only cut its exit short (CPython
            # restores the default action while it shuts down, and the process would die by it).
            # One landing before these two lines take effect is caught just below.
            _ignore_signals()
    except BaseException as exc:
        # Python wraps an exception raised while a class is made (a Ctrl-C landing in a
        # dataclass's __set_name__ as its module loads) in a RuntimeError: its cause tells.
        if isinstance(exc, SystemExit) or not _interrupt_caused(exc):
            raise  # the command's own exit (after its own "interrupted", if any) stands
        _ignore_signals()
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        # Not sys.exit: an interrupt inside an import can leave CPython set to re-raise SIGINT
        # on itself at exit (exit status -2). Every `finally` has run; the kit has no atexit work.
        os._exit(130)


def _interrupt_caused(exc: BaseException | None) -> bool:
    """Whether exc is a KeyboardInterrupt or was caused by one (through __cause__/__context__)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    main()
