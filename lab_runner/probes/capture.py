"""Pod-side capture: print `ready`, record matching packets until stopped, print them as one JSON list.

    python -m lab_runner.probes.capture --iface eth0 [--filter EXPR | --bpf PROGRAM] [--timeout S]
                                        [--count N]

Stops on SIGTERM, SIGINT, the timeout (default 60 s) or after --count packets, then prints one
JSON list of packets: {time, direction ("in"/"out"), proto, src, sport, dst, dport, flags, seq,
ack, len, payload}. Only IPv4 is recorded; anything else the filter lets through is skipped.

An AF_PACKET socket with a kernel BPF filter (compiled by libpcap through scapy: here from
--filter, or beforehand in the kit's process with compile_filter() and given as --bpf) does the
capturing: it is created unbound, given its filter, and only then bound to the interface, so not
one unfiltered packet is queued before `ready` is printed.

`correlate(probe, packets)` finds a probe's packet on the far side of NAT; see its docstring.
"""

from __future__ import annotations

import argparse
import ctypes
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


def open_capture(iface: str, program: str = "") -> socket.socket:
    """An AF_PACKET socket on `iface` that already filters with `program` (a compile_filter()
    result; empty: everything)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing yet
    try:
        if program:
            _attach_filter(sock, program, iface)
        sock.bind((iface, ETH_P_ALL))
    except BaseException:
        sock.close()
        raise
    return sock


SIOCGIFHWADDR = 0x8927


def compile_filter(expression: str) -> str:
    """A tcpdump expression compiled by libpcap (through scapy) for Ethernet links, written as
    `tcpdump -ddd` writes a program on one line: "N,code jt jf k,…". The kit compiles once in its
    own process and hands the program to every capture, which then needs no scapy (a capture
    starts in 0.1 s instead of 0.3 s, one per pod and probe); ValueError when it does not compile."""
    from scapy.arch.common import compile_filter as pcap_compile
    from scapy.arch.common import free_filter
    from scapy.error import Scapy_Exception

    try:
        program = pcap_compile(expression, linktype=DLT_EN10MB)
    except (Scapy_Exception, ImportError) as exc:
        raise ValueError(f"cannot compile filter {expression!r}: {exc}") from exc
    try:
        insns = [program.bf_insns[i] for i in range(program.bf_len)]
        return ",".join([str(len(insns))] + [f"{i.code} {i.jt} {i.jf} {i.k & 0xFFFFFFFF}"
                                             for i in insns])
    finally:
        free_filter(program)


def _program(text: str) -> bytes:
    """A compile_filter() program as the kernel's array of struct sock_filter."""
    try:
        count, *insns = text.split(",")
        words = [tuple(int(w) for w in insn.split()) for insn in insns]
        if int(count) != len(words) or not words or any(len(w) != 4 for w in words):
            raise ValueError
        return b"".join(struct.pack("HBBI", *w) for w in words)
    except (ValueError, struct.error):
        raise ValueError(f"not a BPF program (\"N,code jt jf k,…\"): {text[:60]!r}") from None


def _attach_filter(sock: socket.socket, program: str, iface: str) -> None:
    """Attach a compile_filter() program (compiled for Ethernet) to `sock`."""
    # The link type as this socket's namespace sees it (/sys shows whoever mounted it).
    request = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", iface.encode()))
    link_type = struct.unpack_from("H", request, 16)[0]
    if link_type not in ETHERNET_LIKE:
        raise ValueError(f"{iface} is not an Ethernet-like link (ARPHRD {link_type})")
    code = _program(program)
    insns = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}: the kernel copies the
    # instructions during setsockopt, so the buffer only has to outlive the call.
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(insns))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


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


def capture(iface: str, program: str = "", timeout: float = 60.0, count: int = 0, snap: int = 256,
            ready: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Capture until SIGTERM / SIGINT, timeout or `count` packets; call `ready()` once capturing.
    `program` is a compile_filter() result (empty: every packet)."""
    packets: list[dict[str, Any]] = []
    # A signal only writes a byte to this socketpair (set_wakeup_fd), which wakes the select:
    # nothing is interrupted half-way, so no packet is lost between recvfrom and the list.
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    with open_capture(iface, program) as sock, wake_r, wake_w:
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
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--filter", default="", help="a tcpdump expression (compiled here, with scapy)")
    given.add_argument("--bpf", default="", help="a compiled program, as compile_filter() writes it "
                                                 "(`tcpdump -ddd` on one line: N,code jt jf k,…)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--count", type=int, default=0, help="stop after this many packets (0: no limit)")
    parser.add_argument("--snap", type=int, default=256, help="payload bytes kept per packet")
    args = parser.parse_args(argv)

    def announce() -> None:
        print("ready", flush=True)

    try:
        program = compile_filter(args.filter) if args.filter else args.bpf
        packets = capture(args.iface, program, args.timeout, args.count, args.snap, ready=announce)
    except (ValueError, OSError) as exc:
        print(f"capture: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 3
    print(json.dumps(packets), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
