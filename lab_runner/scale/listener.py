"""The sweep's pods: one TCP listener in the pods namespace, answering on every endpoint address.

    python -m lab_runner.scale.listener --port 8080      (inside the pods namespace)

The namespace routes the whole cluster CIDR as `local`, so a socket bound to 0.0.0.0 owns every
endpoint address at once. The kernel answers a SYN with a SYN-ACK by itself; the prober's side
resets the half-open connection, so nothing piles up. Prints `ready` once listening.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", args.port))
        server.listen(4096)
        print("ready", flush=True)
        while True:  # a handshake that does complete (a real client) is closed at once
            conn, _ = server.accept()
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
