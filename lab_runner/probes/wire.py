"""Read and patch the IPv4 / TCP / UDP / ICMP header fields the probes care about (struct, no scapy)."""

from __future__ import annotations

import socket
import struct
from typing import Any

TCP_FLAG_LETTERS = "FSRPAUEC"  # bit 0 (FIN) first: the same letters and order scapy prints
PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp", socket.IPPROTO_ICMP: "icmp"}


def tcp_flags(bits: int) -> str:
    """'SA' for a SYN-ACK, 'R' for a bare RST, 'RA' for the RST that refuses a SYN."""
    return "".join(letter for i, letter in enumerate(TCP_FLAG_LETTERS) if bits & (1 << i))


def parse_ipv4(data: bytes) -> dict[str, Any] | None:
    """The fields of one IPv4 packet, or None when it is not IPv4 or is cut short.

    Keys: src, dst, proto ('tcp', 'udp', 'icmp' or the number), sport, dport, flags, seq, ack
    (None where the protocol has no such field), icmp (type/code and the quoted packet's header,
    for ICMP errors) and payload (the transport payload).
    """
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    total = struct.unpack_from("!H", data, 2)[0]
    proto = data[9]
    packet: dict[str, Any] = {
        "src": socket.inet_ntoa(data[12:16]), "dst": socket.inet_ntoa(data[16:20]),
        "proto": PROTO_NAMES.get(proto, proto), "sport": None, "dport": None,
        "flags": None, "seq": None, "ack": None, "len": total,
    }
    body = data[ihl:total] if total >= ihl else data[ihl:]
    if proto == socket.IPPROTO_TCP and len(body) >= 20:
        sport, dport, seq, ack, offset, bits = struct.unpack_from("!HHIIBB", body)
        packet.update(sport=sport, dport=dport, seq=seq, ack=ack, flags=tcp_flags(bits))
        packet["payload"] = body[(offset >> 4) * 4:]
    elif proto == socket.IPPROTO_UDP and len(body) >= 8:
        sport, dport = struct.unpack_from("!HH", body)
        packet.update(sport=sport, dport=dport, payload=body[8:])
    elif proto == socket.IPPROTO_ICMP and len(body) >= 8:
        packet["icmp"] = {"type": body[0], "code": body[1], "quoted": _quoted(body[8:])}
        packet["payload"] = body[8:]
    else:
        packet["payload"] = body
    return packet


def _quoted(data: bytes) -> dict[str, Any] | None:
    """The header an ICMP error quotes: RFC 792 guarantees the IP header plus 8 bytes of transport."""
    if len(data) < 28 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    quoted = {"src": socket.inet_ntoa(data[12:16]), "dst": socket.inet_ntoa(data[16:20]),
              "proto": PROTO_NAMES.get(data[9], data[9]), "sport": None, "dport": None, "seq": None}
    if data[9] in (socket.IPPROTO_TCP, socket.IPPROTO_UDP) and len(data) >= ihl + 8:
        quoted["sport"], quoted["dport"] = struct.unpack_from("!HH", data, ihl)
        if data[9] == socket.IPPROTO_TCP:
            quoted["seq"] = struct.unpack_from("!I", data, ihl + 4)[0]
    return quoted


def ones_complement_add(*words: int) -> int:
    """Sum 16-bit words the way the Internet checksum does (end-around carry)."""
    total = sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total
