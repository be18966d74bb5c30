"""First-packet latency of new connections, timed by the kernel: SYN out -> SYN-ACK in on one link.

    python -m lab_runner.scale.firstpacket --iface eth0 --src 192.168.50.2 --flows 200 \
        --sport-base 20000 172.16.0.10:80 172.16.39.25:80        (inside the client namespace)

Each flow is a SYN from a raw socket with a source port never used before, so every one is a new
conntrack entry and walks the node's nat rules (only a connection's first packet does). One
packet socket on the client's link, with SO_TIMESTAMPNS, sees the SYN leave and the SYN-ACK come
back; both times are the kernel's (taken as the packet passes the link), so the interval is the
path through the node and the pod and back, without this process's scheduling in it. The client's
kernel has no socket for the flow and answers the SYN-ACK with a reset, which frees the pod's
half-open connection. Targets take turns, flow by flow, so a busy moment falls on all of them.

Prints one JSON object: {"target": [microseconds, …], …, "lost": {"target": n, …}}.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SYN, SYN_ACK, RST = 0x02, 0x12, 0x04
_TIMESPEC = struct.Struct("@qq")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's number; Python 3.11 lacks the name


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_segment(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    """A TCP SYN (an MSS option, as a real stack sends it), checksummed over the pseudo header."""
    options = struct.pack("!BBH", 2, 4, 1460)
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + len(options) // 4) << 4, SYN,
                         64240, 0, 0) + options
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(header))
    return header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]


def parse_frame(frame: bytes) -> tuple[int, int, int] | None:
    """(sport, dport, flags) of an Ethernet frame carrying IPv4/TCP, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 0x0F) * 4
    tcp = frame[14 + ihl:]
    if len(tcp) < 14:
        return None
    sport, dport = struct.unpack("!HH", tcp[:4])
    return sport, dport, tcp[13]


def _stamp(ancillary) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = _TIMESPEC.unpack(data[:_TIMESPEC.size])
            return sec * 1_000_000_000 + nsec
    return None


class Prober:
    """A raw socket to send SYNs and a packet socket on the link to time them."""

    def __init__(self, iface: str, src: str, timeout: float):
        self.src, self.timeout = src, timeout
        self.send_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        self.send_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # never read
        self.tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.tap.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.tap.bind((iface, 0))

    def close(self) -> None:
        self.send_sock.close()
        self.tap.close()

    def flow(self, dst: str, dport: int, sport: int) -> float | None:
        """Microseconds from the SYN leaving to its SYN-ACK (or a reset) arriving; None if none."""
        self.send_sock.sendto(syn_segment(self.src, dst, sport, dport, sport * 7919), (dst, 0))
        sent = None
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            self.tap.settimeout(left)
            try:
                frame, ancillary, _, address = self.tap.recvmsg(2048, 64)
            except socket.timeout:
                break
            seen = parse_frame(frame)
            if seen is None:
                continue
            stamp = _stamp(ancillary) or time.time_ns()
            if address[2] == PACKET_OUTGOING and seen[0] == sport and seen[2] == SYN:
                sent = stamp
            elif address[2] != PACKET_OUTGOING and seen[1] == sport and sent is not None \
                    and (seen[2] & SYN_ACK == SYN_ACK or seen[2] & RST):
                return (stamp - sent) / 1000
        return None


def run(targets: list[tuple[str, int]], flows: int, sport_base: int, prober: Prober,
        warmup: int = 5) -> dict:
    """`flows` new connections to each target, targets taking turns; a few first to warm up
    the neighbour entries and caches (not counted)."""
    samples: dict[str, list[float]] = {f"{d}:{p}": [] for d, p in targets}
    lost = {key: 0 for key in samples}
    sport = sport_base
    for i in range(warmup + flows):
        for dst, dport in targets:
            took = prober.flow(dst, dport, sport)
            sport += 1
            if i < warmup:
                continue
            if took is None:
                lost[f"{dst}:{dport}"] += 1
            else:
                samples[f"{dst}:{dport}"].append(round(took, 2))
    return {**samples, "lost": lost}


def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    socket.inet_aton(host)
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--src", required=True)
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--sport-base", type=int, default=20000)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("targets", nargs="+", type=_target)
    args = parser.parse_args(argv)
    if args.sport_base + (args.flows + 5) * len(args.targets) > 65535:
        parser.error("too many flows for the source ports above --sport-base")
    prober = Prober(args.iface, args.src, args.timeout)
    try:
        print(json.dumps(run(args.targets, args.flows, args.sport_base, prober)))
    finally:
        prober.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
