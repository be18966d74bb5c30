"""Pod-side capture: print `ready`, record matching packets until stopped, print them as one JSON list.

    python -m lab_runner.probes.capture --iface eth0 [--filter "BPF"] [--timeout S] [--count N]

Stops on SIGTERM, SIGINT, the timeout (default 60 s) or after --count packets, then prints one
JSON list of packets: {time, direction ("in"/"out"), proto, src, sport, dst, dport, flags, seq,
ack, len, payload}. Only IPv4 is recorded; anything else the filter lets through is skipped.

An AF_PACKET socket with a kernel BPF filter (compiled by scapy through libpcap) does the
capturing: it is created unbound, given its filter, and only then bound to the interface, so not
one unfiltered packet is queued before `ready` is printed.

`correlate(probe, packets)` finds a probe's packet on the far side of NAT; see its docstring.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import select
import signal
import socket
import struct
import sys
import time
from typing import Any, Callable, Mapping, Sequence

from lab_runner.probes.wire import parse_ipv4

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
DLT_EN10MB = 1
ETHERNET_LIKE = {1, 772}  # ARPHRD_ETHER (veth, bridge) and ARPHRD_LOOPBACK both carry Ethernet headers


def correlate(probe: Mapping[str, Any], packets: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The captured packet that belongs to a probe (an agent result or its "probe" part), or None.

    Addresses and ports cannot be used: DNAT rewrites the destination and masquerade (with
    --random-fully) the source address and port. What survives both:
      - for crafted SYNs (syn, and flow i of a TCP burst with seq = seq_base + i): the TCP ISN,
        so the match is the SYN (without ACK) whose seq equals the probe's;
      - for socket probes (http, tcp, udp): the kernel picks the ISN, so the agent puts a nonce in
        the payload (X-Probe-Id header, or the line / datagram sent) and the match is the first
        packet whose payload holds it. `flow()` then gives the rest of that connection.
    Arrival order is not used: with concurrent traffic it pairs the wrong packets silently.
    """
    wanted = probe.get("probe", probe)
    if wanted.get("seq") is not None:
        for packet in packets:
            if (packet.get("proto") == "tcp" and packet.get("seq") == wanted["seq"]
                    and "S" in (packet.get("flags") or "") and "A" not in packet["flags"]):
                return packet
        return None
    nonce = wanted.get("nonce")
    if nonce:
        for packet in packets:
            if nonce in (packet.get("payload") or ""):
                return packet
    return None


def flow(packet: Mapping[str, Any], packets: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every captured packet of the same connection as `packet`, both directions, in order."""
    ends = {(packet["src"], packet["sport"]), (packet["dst"], packet["dport"])}
    return [p for p in packets if p.get("proto") == packet.get("proto")
            and {(p["src"], p["sport"]), (p["dst"], p["dport"])} == ends]


def open_capture(iface: str, bpf: str = "") -> socket.socket:
    """An AF_PACKET socket on `iface` that already filters with `bpf` (empty: everything)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing yet
    try:
        if bpf:
            _attach_filter(sock, bpf, iface)
        sock.bind((iface, ETH_P_ALL))
    except BaseException:
        sock.close()
        raise
    return sock


SIOCGIFHWADDR = 0x8927


def _attach_filter(sock: socket.socket, bpf: str, iface: str) -> None:
    """Compile a filter expression for an Ethernet link with libpcap and attach it to `sock`."""
    from scapy.arch.common import compile_filter, free_filter
    from scapy.error import Scapy_Exception
    from scapy.libs.structures import sock_fprog
    # The link type as this socket's namespace sees it (/sys shows whoever mounted it).
    request = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", iface.encode()))
    link_type = struct.unpack_from("H", request, 16)[0]
    if link_type not in ETHERNET_LIKE:
        raise ValueError(f"{iface} is not an Ethernet-like link (ARPHRD {link_type})")
    try:
        program = compile_filter(bpf, linktype=DLT_EN10MB)
    except (Scapy_Exception, ImportError) as exc:
        raise ValueError(f"cannot compile filter {bpf!r}: {exc}") from exc
    try:
        # The kernel copies the instructions during setsockopt, so they can be freed right after.
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, sock_fprog(program.bf_len, program.bf_insns))
    finally:
        free_filter(program)


def record(data: bytes, address: tuple, at: float, snap: int) -> dict[str, Any] | None:
    """One Ethernet frame as a JSON-ready dict, or None when it does not carry IPv4."""
    if len(data) < 14 or int.from_bytes(data[12:14], "big") != ETH_P_IP:
        return None
    packet = parse_ipv4(data[14:])
    if packet is None:
        return None
    payload = packet.pop("payload", b"")
    packet.update(time=round(at, 6), direction="out" if address[2] == PACKET_OUTGOING else "in",
                  payload=payload[:snap].decode("utf-8", "replace"))
    return packet


def capture(iface: str, bpf: str = "", timeout: float = 60.0, count: int = 0, snap: int = 256,
            ready: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Capture until SIGTERM / SIGINT, timeout or `count` packets; call `ready()` once capturing."""
    packets: list[dict[str, Any]] = []
    # A signal only writes a byte to this socketpair (set_wakeup_fd), which wakes the select:
    # nothing is interrupted half-way, so no packet is lost between recvfrom and the list.
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    with open_capture(iface, bpf) as sock, wake_r, wake_w:
        previous_fd = signal.set_wakeup_fd(wake_w.fileno())
        previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            if ready:
                ready()
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0 and not (count and len(packets) >= count):
                readable, _, _ = select.select([sock, wake_r], [], [], left)
                if wake_r in readable:
                    break
                if readable:
                    _take(sock, packets, snap)
        finally:
            signal.set_wakeup_fd(previous_fd)
            for s, handler in previous.items():
                signal.signal(s, handler)
        # Packets already queued when the stop came were seen by the kernel in time: keep them.
        sock.setblocking(False)
        while not (count and len(packets) >= count):
            try:
                _take(sock, packets, snap)
            except BlockingIOError:
                break
    return packets


def _take(sock: socket.socket, packets: list[dict[str, Any]], snap: int) -> None:
    data, address = sock.recvfrom(65535)
    packet = record(data, address, time.time(), snap)
    if packet is not None:
        packets.append(packet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab_runner.probes.capture",
                                     description="Capture IPv4 packets on one interface; print them as JSON.")
    parser.add_argument("--iface", required=True)
    parser.add_argument("--filter", default="", help="a tcpdump / BPF expression")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--count", type=int, default=0, help="stop after this many packets (0: no limit)")
    parser.add_argument("--snap", type=int, default=256, help="payload bytes kept per packet")
    args = parser.parse_args(argv)

    def announce() -> None:
        print("ready", flush=True)

    try:
        packets = capture(args.iface, args.filter, args.timeout, args.count, args.snap, ready=announce)
    except (ValueError, OSError) as exc:
        print(f"capture: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 3
    print(json.dumps(packets), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
