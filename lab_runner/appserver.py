"""The pod's app: answers each TCP/HTTP request or UDP datagram with its pod name and what it saw.

Started by the backend inside the pod's network namespace and a fresh UTS namespace
(`unshare --uts`), so the hostname it sets is the pod's own, as in a container. The answer is
one JSON object: {"pod", "saw_src", "saw_sport", "saw_dst", "saw_dport", "proto"}; the source it
saw is how a student sees masquerading from the pod's side. Standard library only: it must
start in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading


def answer(pod: str, proto: str, src: tuple, dst: tuple) -> bytes:
    return json.dumps({"pod": pod, "saw_src": src[0], "saw_sport": src[1], "saw_dst": dst[0],
                       "saw_dport": dst[1], "proto": proto}).encode()


def serve_tcp(sock: socket.socket, pod: str, http: bool) -> None:
    while True:
        conn, peer = sock.accept()
        threading.Thread(target=handle_tcp, args=(conn, peer, pod, http), daemon=True).start()


def handle_tcp(conn: socket.socket, peer: tuple, pod: str, http: bool) -> None:
    """An HTTP request gets one answer and the connection closes (HTTP/1.0); anything else is
    answered line after line on the same connection, so a held connection shows its pod."""
    with conn:
        conn.settimeout(120.0)
        body = answer(pod, "tcp", peer, conn.getsockname()) + b"\n"
        try:
            request = conn.recv(4096)
            if http and request[:4] in (b"GET ", b"HEAD", b"POST", b"PUT "):
                head = (f"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\nX-Pod: {pod}\r\n\r\n").encode()
                conn.sendall(head + body)
                return
            while request:
                conn.sendall(body)
                request = conn.recv(4096)
        except OSError:
            pass


def serve_udp(sock: socket.socket, pod: str) -> None:
    port = sock.getsockname()[1]
    while True:
        _, ancillary, _, peer = sock.recvmsg(2048, socket.CMSG_SPACE(12))
        # IP_PKTINFO carries the address the datagram was really sent to (after DNAT).
        dst = next((socket.inet_ntoa(data[8:12]) for level, kind, data in ancillary
                    if level == socket.IPPROTO_IP and kind == IP_PKTINFO), "?")
        sock.sendto(answer(pod, "udp", peer, (dst, port)), peer)


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pod", required=True, help="pod name, also set as the hostname")
    parser.add_argument("--ip", default="0.0.0.0", help="the pod's address (for messages)")
    parser.add_argument("--tcp", type=int, action="append", default=[], help="TCP port to serve")
    parser.add_argument("--udp", type=int, action="append", default=[], help="UDP port to serve")
    parser.add_argument("--plain", action="store_true", help="answer TCP without an HTTP header")
    args = parser.parse_args(argv)
    try:
        socket.sethostname(args.pod)
    except OSError as exc:  # without a UTS namespace of its own it must not rename the machine
        print(f"cannot set hostname: {exc}", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threads = []
    for port in args.tcp:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(512)
        threads.append(threading.Thread(target=serve_tcp, args=(s, args.pod, not args.plain),
                                        daemon=True))
    for port in args.udp:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        s.bind(("0.0.0.0", port))
        threads.append(threading.Thread(target=serve_udp, args=(s, args.pod), daemon=True))
    for t in threads:
        t.start()
    # Tell the backend we listen, then let go of the pipe so the lab outlives the command.
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
