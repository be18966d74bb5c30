"""Probe agent: run inside a lab namespace, send one kind of probe, print its JSON result.

    python -m lab_runner.probes.agent syn   --dst IP --dport N [--sport N] [--timeout S]
    python -m lab_runner.probes.agent http  --dst IP --dport N [--sport N] [--timeout S] [--path /]
    python -m lab_runner.probes.agent tcp   --dst IP --dport N [--sport N] [--timeout S]
    python -m lab_runner.probes.agent udp   --dst IP --dport N [--sport N] [--timeout S]
    python -m lab_runner.probes.agent burst --dst IP --dport N --flows N [--proto tcp|udp]
                                            [--sport-base N] [--rate FLOWS_PER_S]

syn, http, tcp and udp take `--count N [--until-pods POD,…] [--budget S]`: up to N new
connections, one after the other, printed as one JSON list; it stops early once each pod named
has answered (http, tcp, udp: the pod's app says who it is), after six tries when nothing
answers at all, or when S seconds (default 10) are spent. A grader uses it to see every branch
of a Service's random choice in one process.

"No answer" is a result ({"answer": "none"} or "timeout"), never an error. Misuse exits 2
(argparse); a machine that cannot open raw sockets exits 3 with the reason on stderr.

Every result carries "probe": the 5-tuple sent, plus what identifies the probe on the far side
of NAT: "seq" (the TCP ISN, unchanged by DNAT and masquerade) for crafted SYNs, "nonce" (a token
in the payload) for socket probes. `lab_runner.probes.capture.correlate` uses them.

scapy is imported only by the subcommands that craft packets (syn, burst): even trimmed it costs
~0.27 s (scapy.all: ~0.8 s), several times what the rest of the agent takes to start.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any, Callable

from lab_runner.probes.wire import ones_complement_add, parse_ipv4

Result = dict[str, Any]


def _scapy_layers() -> tuple[Any, Any, Any]:
    """IP, TCP, UDP from scapy, skipping the routing-table loads we never use.

    The kernel routes our raw sockets; scapy's own routes would only cost ~60 ms to read (and go
    stale if the process ever changed namespace).
    """
    from scapy.config import conf
    conf.route_autoload = False
    conf.route6_autoload = False
    from scapy.layers.inet import IP, TCP, UDP
    return IP, TCP, UDP


def _source_for(dst: str, dport: int) -> str:
    """The address the kernel would send from to reach dst: a UDP connect does the route lookup."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((dst, dport))
        return s.getsockname()[0]


def _random_isn() -> int:
    return int.from_bytes(os.urandom(4), "big")


def _nonce() -> str:
    return os.urandom(6).hex()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# ---- syn: one crafted SYN, and whatever answers it ----------------------------------------------

def syn(dst: str, dport: int, sport: int | None = None, timeout: float = 1.0) -> Result:
    """Send one crafted SYN (random ISN) and report the SYN-ACK, RST or ICMP error it drew.

    The kernel has no socket for this connection, so it answers the SYN-ACK with a RST. We let it:
    the RST tears down the server's half-open connection and closes the node's conntrack entry at
    once, whereas dropping it (a rule in the client namespace) would leave the server
    retransmitting SYN-ACKs for a minute and the entry hanging in SYN_RECV.
    """
    IP, TCP, _ = _scapy_layers()
    src = _source_for(dst, dport)
    # Holding the port bound keeps the kernel from giving it to another connection meanwhile.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind((src, sport or 0))
    sport = holder.getsockname()[1]
    isn = _random_isn()
    packet = bytes(IP(src=src, dst=dst, id=0) /
                   TCP(sport=sport, dport=dport, flags="S", seq=isn, window=64240, options=[("MSS", 1460)]))
    probe = {"proto": "tcp", "src": src, "sport": sport, "dst": dst, "dport": dport, "seq": isn}
    # Raw sockets get a copy of every inbound TCP / ICMP packet; open them before sending.
    with holder, _raw(socket.IPPROTO_TCP) as tcp_in, _raw(socket.IPPROTO_ICMP) as icmp_in, \
            _raw(socket.IPPROTO_RAW) as out:
        sent_at = time.perf_counter()
        out.sendto(packet, (dst, 0))
        reply, at = _await(
            [tcp_in, icmp_in], sent_at + timeout,
            lambda p: _answers_syn(p, sport, isn))
    result: Result = {"answer": "none", "src": None, "sport": None, "dst": None, "dport": None,
                      "probe": probe, "rtt_ms": None}
    if reply is None:
        return result
    result.update(src=reply["src"], dst=reply["dst"], rtt_ms=_ms(at - sent_at))
    if reply["proto"] == "icmp":
        result.update(answer="icmp", icmp={"type": reply["icmp"]["type"], "code": reply["icmp"]["code"]})
    else:
        result.update(answer="syn-ack" if "S" in reply["flags"] else "rst",
                      sport=reply["sport"], dport=reply["dport"], flags=reply["flags"])
    return result


def _raw(proto: int) -> socket.socket:
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    except PermissionError as exc:
        raise _NeedsRoot("raw sockets need root or CAP_NET_RAW in the namespace") from exc


def _answers_syn(packet: Result, sport: int, isn: int) -> bool:
    """A SYN-ACK or RST acknowledging our ISN, or an ICMP error quoting our SYN.

    The reply's source is not part of the match: when un-NAT fails the answer comes from the pod's
    own address, and the result should show that rather than miss the reply.
    """
    if packet["proto"] == "tcp":
        return (packet["dport"] == sport and packet["ack"] == (isn + 1) & 0xFFFFFFFF
                and ("R" in packet["flags"] or "S" in packet["flags"]))
    if packet["proto"] == "icmp" and packet["icmp"]["type"] in (3, 11):  # unreachable, time exceeded
        quoted = packet["icmp"]["quoted"]
        return bool(quoted) and quoted["proto"] == "tcp" and quoted["sport"] == sport and quoted["seq"] == isn
    return False


def _await(sockets: list[socket.socket], deadline: float,
           wanted: Callable[[Result], bool]) -> tuple[Result | None, float]:
    while (left := deadline - time.perf_counter()) > 0:
        ready, _, _ = select.select(sockets, [], [], left)
        for sock in ready:
            data = sock.recv(65535)
            at = time.perf_counter()
            packet = parse_ipv4(data)
            if packet is not None and wanted(packet):
                return packet, at
    return None, 0.0


# ---- http / tcp / udp: real sockets, the kernel's own TCP -------------------------------------

def http(dst: str, dport: int, sport: int | None = None, timeout: float = 2.0, path: str = "/") -> Result:
    """GET `path` over HTTP/1.0; the status line and the pod app's JSON body, or what went wrong."""
    nonce = _nonce()
    request = (f"GET {path} HTTP/1.0\r\nHost: {dst}:{dport}\r\nX-Probe-Id: {nonce}\r\n"
               f"User-Agent: kplab-agent\r\n\r\n").encode()
    result, data = _exchange(socket.SOCK_STREAM, dst, dport, sport, timeout, request, nonce, b"")
    if result["answer"] == "reply":
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status.split(" ", 2)
        result.update(status=status, code=int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None,
                      body=_json_or_text(body))
    return result


def tcp(dst: str, dport: int, sport: int | None = None, timeout: float = 2.0) -> Result:
    """Connect, send one line, read one line back (the pod echo app answers with its JSON)."""
    nonce = _nonce()
    result, data = _exchange(socket.SOCK_STREAM, dst, dport, sport, timeout,
                             f"probe {nonce}\n".encode(), nonce, b"\n")
    if result["answer"] == "reply":
        line = data.split(b"\n", 1)[0]
        result.update(line=line.decode("utf-8", "replace"), body=_json_or_text(line))
    return result


def udp(dst: str, dport: int, sport: int | None = None, timeout: float = 2.0) -> Result:
    """Send one datagram and wait for one back; silence is {"answer": "none"}."""
    nonce = _nonce()
    result, data = _exchange(socket.SOCK_DGRAM, dst, dport, sport, timeout,
                             f"probe {nonce}\n".encode(), nonce, b"")
    if result["answer"] == "reply":
        result["body"] = _json_or_text(data)
    elif result["answer"] == "timeout":
        result["answer"] = "none"
    return result


_SILENT = ("none", "timeout")  # the answers that are no answer


# Silent first connections after which `repeated` gives up. A pod whose own hairpin is dropped
# meets silence on a quarter of its connections: after 3 it stopped one time in 64 and a check
# saw "no connection reached a pod" (CI, twice in one run); after 6, one time in 4,096.
SILENT_FIRST = 6


def repeated(probe: Callable[..., Result], count: int, until_pods: frozenset[str] = frozenset(),
             budget: float = 10.0, **options: Any) -> list[Result]:
    """`probe(**options)` up to `count` times, each a new connection (see the module's docstring
    for when it stops early)."""
    results: list[Result] = []
    waiting = set(until_pods)
    deadline = time.monotonic() + budget
    while len(results) < count and time.monotonic() < deadline:
        result = probe(**options)
        results.append(result)
        body = result.get("body")
        if isinstance(body, dict):
            waiting.discard(body.get("pod"))
        if until_pods and not waiting:
            break
        if len(results) >= SILENT_FIRST and all(r["answer"] in _SILENT for r in results):
            break  # nothing answers at all: trying on only waits out more timeouts
    return results


_ANSWER_FOR_ERRNO = {
    errno.ECONNREFUSED: "refused",  # RST to our SYN, or ICMP port unreachable
    errno.ECONNRESET: "reset",
    errno.EPIPE: "reset",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.ETIMEDOUT: "timeout",
}


def _exchange(kind: int, dst: str, dport: int, sport: int | None, timeout: float,
              request: bytes, nonce: str, until: bytes) -> tuple[Result, bytes]:
    """Connect, send, read until `until` (or EOF / one datagram); errors become answers."""
    proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
    deadline = time.perf_counter() + timeout
    data = b""
    with socket.socket(socket.AF_INET, kind) as sock:
        if sport:
            # Binding the source port makes the 5-tuple known in advance; REUSEADDR lets a port
            # whose last connection is in TIME_WAIT be bound again.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", sport))
        started = time.perf_counter()
        answer = "reply"
        connect_ms = None
        try:
            sock.settimeout(timeout)
            sock.connect((dst, dport))
            connect_ms = _ms(time.perf_counter() - started)
            sock.sendall(request)
            while True:
                sock.settimeout(max(deadline - time.perf_counter(), 0.001))
                chunk = sock.recv(65536)
                data += chunk
                if kind == socket.SOCK_DGRAM or not chunk or (until and until in data):
                    break
        except TimeoutError:
            answer = "timeout" if not data else "reply"
        except OSError as exc:
            if exc.errno not in _ANSWER_FOR_ERRNO:
                raise
            answer = _ANSWER_FOR_ERRNO[exc.errno]
        elapsed = time.perf_counter() - started
        src, port = sock.getsockname()
    if src == "0.0.0.0":  # a connect that failed early may leave the socket unbound
        src = _source_for(dst, dport)
    probe = {"proto": proto, "src": src, "sport": port or None, "dst": dst, "dport": dport, "nonce": nonce}
    return {"answer": answer, "probe": probe, "connect_ms": connect_ms, "rtt_ms": _ms(elapsed)}, data


def _json_or_text(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace").strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---- burst: many new flows, as fast as one raw socket goes ------------------------------------

_SPORT, _UDP_SUM, _TCP_SEQ, _TCP_SUM = 20, 26, 24, 36  # byte offsets behind a 20-byte IP header


def flow_patcher(template: bytes, proto: str) -> tuple[bytearray, Callable[[int, int], None]]:
    """A copy of a scapy-built first packet and `patch(sport, seq)` that turns it into another flow.

    Only the source port (and the TCP ISN) change, so the transport checksum is fixed
    incrementally (RFC 1624) instead of building the packet again: ~40x cheaper than scapy.
    The IP header checksum is the kernel's job (IPPROTO_RAW always fills it in).
    """
    packet = bytearray(template)
    is_tcp = proto == "tcp"
    checksum_at = _TCP_SUM if is_tcp else _UDP_SUM
    old_sport = struct.unpack_from("!H", packet, _SPORT)[0]
    old_seq = struct.unpack_from("!I", packet, _TCP_SEQ)[0] if is_tcp else 0
    old_sum = struct.unpack_from("!H", packet, checksum_at)[0]
    # The sum over everything that never changes: the template's, minus its port and ISN words.
    fixed = ones_complement_add(~old_sum & 0xFFFF, ~old_sport & 0xFFFF,
                                ~(old_seq >> 16) & 0xFFFF, ~old_seq & 0xFFFF)
    pack_into = struct.pack_into

    def patch(sport: int, seq: int = 0) -> None:
        total = fixed + sport
        if is_tcp:
            total += (seq >> 16) + (seq & 0xFFFF)
            pack_into("!I", packet, _TCP_SEQ, seq)
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        pack_into("!H", packet, _SPORT, sport)
        # A UDP checksum of 0 means "none", so a computed 0 is sent as 0xFFFF (RFC 768).
        pack_into("!H", packet, checksum_at, (~total & 0xFFFF) or (0 if is_tcp else 0xFFFF))

    return packet, patch


def burst(dst: str, dport: int, flows: int, proto: str = "tcp", sport_base: int = 20000,
          rate: float = 0.0) -> Result:
    """Send `flows` first packets, each a new 5-tuple, through one raw socket.

    Only a connection's first packet walks the nat table, so every sample of the random endpoint
    choice needs its own source port. Flow i uses sport `sport_base + i` and, for TCP, ISN
    `seq_base + i`, so each flow stays recognisable after masquerade rewrites its port
    (`burst_flow` gives flow i's probe for `correlate`).

    Replies: each SYN-ACK draws a RST from this namespace's kernel (no socket owns the flow),
    which closes the flow on the server and in conntrack; UDP replies draw rate-limited ICMP
    port-unreachables. `rate` > 0 paces the sending if the far side cannot keep up.
    """
    if flows < 1 or sport_base < 1 or sport_base + flows - 1 > 65535:
        raise ValueError(f"source ports {sport_base}..{sport_base + flows - 1} do not fit in 1..65535")
    IP, TCP, UDP = _scapy_layers()
    src = _source_for(dst, dport)
    seq_base = _random_isn()
    if proto == "tcp":
        layer = TCP(sport=sport_base, dport=dport, flags="S", seq=seq_base, window=64240)
    else:
        layer = UDP(sport=sport_base, dport=dport) / b"kplab burst\n"
    packet, patch = flow_patcher(bytes(IP(src=src, dst=dst, id=0) / layer), proto)

    out = _raw(socket.IPPROTO_RAW)
    try:
        out.setsockopt(socket.SOL_SOCKET, 32, 4 << 20)  # SO_SNDBUFFORCE: root may exceed wmem_max
    except OSError:
        pass
    retries = 0
    target = (dst, 0)
    send = out.sendto
    started = time.perf_counter()
    with out:
        i = 0
        while i < flows:
            patch(sport_base + i, (seq_base + i) & 0xFFFFFFFF)
            try:
                send(packet, target)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:  # a full queue: wait for it to drain, send again
                    raise
                retries += 1
                time.sleep(0.0005)
                continue
            i += 1
            if rate > 0 and i % 64 == 0:
                ahead = i / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
    seconds = time.perf_counter() - started
    return {"sent": flows, "seconds": round(seconds, 6), "flows_per_s": round(flows / seconds, 1),
            "sports": [sport_base, sport_base + flows - 1], "proto": proto, "src": src, "dst": dst,
            "dport": dport, "seq_base": seq_base if proto == "tcp" else None, "retries": retries}


def burst_flow(result: Result, i: int) -> Result:
    """Flow i of a burst result, shaped like a probe for `capture.correlate`."""
    first, last = result["sports"]
    if not 0 <= i <= last - first:
        raise IndexError(f"burst had {last - first + 1} flows, no flow {i}")
    seq = None if result["seq_base"] is None else (result["seq_base"] + i) & 0xFFFFFFFF
    return {"proto": result["proto"], "src": result["src"], "sport": first + i,
            "dst": result["dst"], "dport": result["dport"], "seq": seq}


# ---- command line -------------------------------------------------------------------------------

class _NeedsRoot(Exception):
    """Raw sockets refused: an environment problem, reported on stderr with exit code 3."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab_runner.probes.agent",
                                     description="Send one probe from this namespace; print one JSON result.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, timeout in (("syn", 1.0), ("http", 2.0), ("tcp", 2.0), ("udp", 2.0), ("burst", None)):
        sub = commands.add_parser(name)
        sub.add_argument("--dst", required=True)
        sub.add_argument("--dport", type=int, required=True)
        if timeout is not None:
            sub.add_argument("--sport", type=int)
            sub.add_argument("--timeout", type=float, default=timeout)
    commands.choices["http"].add_argument("--path", default="/")
    for name in ("syn", "http", "tcp", "udp"):
        sub = commands.choices[name]
        sub.add_argument("--count", type=int, help="up to this many connections; prints a list")
        sub.add_argument("--until-pods", type=lambda text: frozenset(filter(None, text.split(","))),
                         default=frozenset(), metavar="POD,…",
                         help="with --count: stop once each of these pods has answered")
        sub.add_argument("--budget", type=float, default=10.0,
                         help="with --count: seconds to spend at most (default 10)")
    bursting = commands.choices["burst"]
    bursting.add_argument("--flows", type=int, required=True)
    bursting.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    bursting.add_argument("--sport-base", type=int, default=20000)
    bursting.add_argument("--rate", type=float, default=0.0, help="flows per second; 0 = as fast as possible")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k != "command"}
    run = {"syn": syn, "http": http, "tcp": tcp, "udp": udp, "burst": burst}[args.command]
    count, until_pods, budget = (options.pop(k, None) for k in ("count", "until_pods", "budget"))
    try:
        if count is not None:
            if count < 1:
                raise ValueError("--count must be at least 1")
            result: Any = repeated(run, count, until_pods or frozenset(), budget, **options)
        else:
            result = run(**options)
    except _NeedsRoot as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 3
    except ValueError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
