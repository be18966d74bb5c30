"""The probes against real namespaces (client → node with DNAT → pod), plus their pure helpers.

The tests in TestInMiniLab need root; the others (packet parsing, checksum patching,
correlation) run anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from lab_runner.commands import Place, Runner
from lab_runner.errors import CommandFailed
from lab_runner.probes.agent import SILENT_FIRST, _scapy_layers, burst_flow, flow_patcher
from lab_runner.probes.capture import _program, compile_filter, correlate, flow
from lab_runner.probes.launch import Capture, options_argv, probe_argv, probe_env, run_agent
from lab_runner.probes.minilab import MiniLab, mini_lab
from lab_runner.probes.wire import parse_ipv4, tcp_flags

VIP = MiniLab.VIP


@pytest.fixture(scope="module")
def tb():
    with mini_lab() as bed:
        yield bed


@pytest.fixture
def client(tb):
    runner = Runner()
    return lambda subcommand, **options: run_agent(runner, Place(tb.client), subcommand, **options)


def our_namespaces(run_id: str) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if run_id in line]


@pytest.mark.needs_root
class TestInMiniLab:
    def test_syn_to_the_virtual_ip_is_answered_by_the_virtual_ip(self, client):
        result = client("syn", dst=VIP, dport=80)
        assert result["answer"] == "syn-ack"
        # conntrack un-NATs the reply: the pod's SYN-ACK leaves the node as VIP:80.
        assert (result["src"], result["sport"]) == (VIP, 80)
        assert (result["dst"], result["dport"]) == (MiniLab.CLIENT_IP, result["probe"]["sport"])
        assert result["rtt_ms"] > 0

    def test_syn_with_a_chosen_source_port_uses_it(self, client):
        result = client("syn", dst=VIP, dport=80, sport=41000)
        assert result["probe"]["sport"] == 41000 and result["dport"] == 41000

    @pytest.mark.parametrize(("port", "answer", "source"), [
        (81, "rst", VIP),                       # DNAT to a pod port nobody listens on
        (82, "icmp", MiniLab.NODE_CLIENT_IP),   # REJECT in the node, as for a service with no endpoints
        (83, "none", None),                     # no rule: lost beyond the node
    ])
    def test_syn_to_other_ports(self, client, port, answer, source):
        result = client("syn", dst=VIP, dport=port, timeout=0.5)
        assert (result["answer"], result["src"]) == (answer, source)
        if answer == "icmp":
            assert result["icmp"] == {"type": 3, "code": 3}

    def test_http_reaches_the_pod_through_dnat_and_masquerade(self, client):
        result = client("http", dst=VIP, dport=80)
        assert (result["answer"], result["code"]) == ("reply", 200)
        body = result["body"]
        assert body["pod"] == MiniLab.POD_NAME
        assert (body["saw_dst"], body["saw_dport"]) == (MiniLab.POD_IP, 8080)
        assert body["saw_src"] == MiniLab.NODE_POD_IP  # masqueraded: the pod sees the node

    def test_tcp_echo_with_a_fixed_source_port(self, client):
        result = client("tcp", dst=VIP, dport=7, sport=41001)
        assert result["answer"] == "reply" and result["probe"]["sport"] == 41001
        assert result["body"]["saw_dport"] == 7007

    def test_udp_answer_and_silence(self, client):
        answered = client("udp", dst=VIP, dport=53)
        assert answered["answer"] == "reply" and answered["body"]["saw_dport"] == 5353
        assert client("udp", dst=VIP, dport=54, timeout=0.3)["answer"] == "none"

    def test_repeated_connections_stop_when_the_pods_named_answered(self, client):
        every = client("http", dst=VIP, dport=80, count=4)
        assert len(every) == 4 and len({r["probe"]["sport"] for r in every}) == 4  # 4 connections
        assert all(r["body"]["pod"] == MiniLab.POD_NAME for r in every)
        assert len(client("http", dst=VIP, dport=80, count=50, until_pods=MiniLab.POD_NAME)) == 1
        # A pod that never answers: all 5 are spent (fewer than the silent-first give-up).
        assert SILENT_FIRST > 5
        assert len(client("tcp", dst=VIP, dport=7, count=5, until_pods="web-0,web-1")) == 5
        synned = client("syn", dst=VIP, dport=80, count=3)  # crafted: one scapy start for all
        assert [r["answer"] for r in synned] == ["syn-ack"] * 3
        assert len({r["probe"]["sport"] for r in synned}) == 3
        # Nothing answers at all: it gives up after SILENT_FIRST silent connections.
        quiet = client("udp", dst=VIP, dport=54, timeout=0.2, count=50, until_pods="web-0")
        assert [r["answer"] for r in quiet] == ["none"] * SILENT_FIRST

    @pytest.mark.parametrize(("port", "answer"), [(81, "refused"), (82, "refused"), (83, "timeout")])
    def test_socket_failures_are_values(self, client, port, answer):
        assert client("http", dst=VIP, dport=port, timeout=0.3)["answer"] == answer

    @pytest.mark.parametrize(("proto", "port", "rule", "base"), [
        ("tcp", 8000, "burst", 20000), ("udp", 8053, "burst-udp", 30000)])
    def test_burst_walks_the_nat_table_once_per_flow(self, tb, client, proto, port, rule, base):
        before = tb.nat_counter(rule)
        result = client("burst", dst=VIP, dport=port, flows=5000, proto=proto, sport_base=base)
        assert result["sent"] == 5000 and result["sports"] == [base, base + 4999]
        # Everything sent has been through the node by the time sendto returned (veth delivers in
        # the sender's softirq), so the count is exact, not eventually so.
        assert tb.nat_counter(rule) - before == 5000
        assert result["flows_per_s"] > 0

    def test_capture_sees_the_dnated_syn_with_the_same_seq(self, tb, client):
        with Capture(Runner(), Place(tb.pod), MiniLab.POD_IFACE, "tcp port 8080") as cap:
            probe = client("syn", dst=VIP, dport=80)
            packets = cap.stop()
        seen = correlate(probe, packets)
        assert seen is not None, packets
        assert (seen["dst"], seen["dport"], seen["flags"]) == (MiniLab.POD_IP, 8080, "S")
        assert seen["src"] == MiniLab.NODE_POD_IP and seen["direction"] == "in"
        assert [p["flags"] for p in flow(seen, packets)] == ["S", "SA", "R"]

    def test_capture_correlates_socket_probes_by_nonce_and_burst_flows_by_seq(self, tb, client):
        with Capture(Runner(), Place(tb.pod), MiniLab.POD_IFACE, "tcp or udp") as cap:
            web = client("http", dst=VIP, dport=80)
            datagram = client("udp", dst=VIP, dport=53)
            bursted = client("burst", dst=VIP, dport=8000, flows=20, sport_base=24000)
            packets = cap.stop()
        web_packet = correlate(web, packets)
        assert web_packet["payload"].startswith("GET / HTTP/1.0") and web_packet["dport"] == 8080
        assert web_packet["sport"] == web["body"]["saw_sport"]
        assert correlate(datagram, packets)["sport"] == datagram["body"]["saw_sport"]
        flows = [correlate(burst_flow(bursted, i), packets) for i in range(20)]
        assert all(flows) and len({(p["src"], p["sport"]) for p in flows}) == 20

    def test_capture_ends_at_its_timeout_with_what_it_saw(self, tb):
        with Capture(Runner(), Place(tb.pod), MiniLab.POD_IFACE, "udp port 9", timeout=0.3) as cap:
            time.sleep(0.8)
            assert cap.proc.poll() == 0
            assert cap.stop() == []

    def test_misuse_exits_2_and_bad_filters_are_refused(self, tb, client):
        with pytest.raises(CommandFailed) as failed:
            client("burst", dst=VIP, dport=8000, flows=10, sport_base=65530)
        assert failed.value.rc == 2 and "do not fit" in failed.value.stderr
        with pytest.raises(ValueError, match="cannot compile filter"):  # compiled by the kit
            Capture(Runner(), Place(tb.pod), MiniLab.POD_IFACE, "tcp port nonsense")
        for option, value, why in (("--filter", "tcp port nonsense", "cannot compile filter"),
                                   ("--bpf", "2,6 0 0 0", "not a BPF program")):
            done = Runner().run(probe_argv("capture", "--iface", MiniLab.POD_IFACE, option, value),
                                Place(tb.pod), check=False, timeout=10)
            assert done.rc == 2 and why in done.stderr, done.stderr

    def test_a_filter_compiled_by_the_kit_filters_as_the_expression_does(self, tb, client):
        """--bpf (compiled once by the kit, the capture imports no scapy) and --filter (compiled
        in the namespace) keep the same packets: the probe's UDP datagram, not its TCP flows."""
        seen = {}
        for option, value in (("--filter", "udp"), ("--bpf", compile_filter("udp"))):
            argv = probe_argv("capture", "--iface", MiniLab.POD_IFACE, option, value, "--timeout", "5")
            proc = Runner().spawn(argv, Place(tb.pod), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=probe_env())
            assert proc.stdout.readline().strip() == "ready"
            client("udp", dst=VIP, dport=53)
            client("tcp", dst=VIP, dport=7)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=10)
            seen[option] = {p["proto"] for p in json.loads(out.splitlines()[-1])}
        assert seen == {"--filter": {"udp"}, "--bpf": {"udp"}}


def test_a_compiled_filter_is_the_kernels_array_of_instructions():
    text = compile_filter("tcp port 80")
    count, first = text.split(",")[:2]
    assert int(count) > 1 and first == "40 0 0 12"  # ldh [12]: the EtherType, as tcpdump -d shows
    assert len(_program(text)) == 8 * int(count)  # struct sock_filter: 8 bytes each
    for bad in ("3,6 0 0 0", "1,6 0 0", "x", ""):
        with pytest.raises(ValueError, match="not a BPF program"):
            _program(bad)


@pytest.mark.needs_root
def test_nothing_is_left_behind():
    runner = Runner()
    with mini_lab(runner) as bed:
        with Capture(runner, Place(bed.pod), MiniLab.POD_IFACE, "tcp") as cap:
            run_agent(runner, Place(bed.client), "syn", dst=VIP, dport=80)
        server = bed.server
    assert cap.proc is not None and cap.proc.returncode == 0
    assert bed.stragglers == [], "a probe or server outlived its caller"
    assert server is not None and server.returncode is not None
    assert not os.path.exists(f"/proc/{server.pid}/cmdline") or b"lab_runner" not in open(
        f"/proc/{server.pid}/cmdline", "rb").read()
    assert our_namespaces(bed.run_id) == []


# ---- no root needed ---------------------------------------------------------------------------

def scapy_packet(sport: int, seq: int, proto: str = "tcp") -> bytes:
    IP, TCP, UDP = _scapy_layers()
    if proto == "tcp":
        layer = TCP(sport=sport, dport=80, flags="S", seq=seq)
    else:
        layer = UDP(sport=sport, dport=53) / b"x"
    return bytes(IP(src="10.10.0.2", dst=VIP, id=0) / layer)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_patched_flows_equal_packets_scapy_builds(proto):
    packet, patch = flow_patcher(scapy_packet(20000, 7, proto), proto)
    for sport, seq in [(1, 0), (20001, 8), (65535, 0xFFFFFFFF), (33333, 123456789), (40000, 7)]:
        seq = seq if proto == "tcp" else 7
        patch(sport, seq)
        assert bytes(packet) == scapy_packet(sport, seq, proto)


def test_parse_ipv4_reads_tcp_and_an_icmp_quote():
    syn = parse_ipv4(scapy_packet(1234, 99))
    assert (syn["proto"], syn["sport"], syn["dport"], syn["seq"], syn["flags"]) == ("tcp", 1234, 80, 99, "S")
    from scapy.layers.inet import ICMP, IP
    quoting = IP(src="10.10.0.1", dst="10.10.0.2") / ICMP(type=3, code=3) / scapy_packet(1234, 99)
    error = parse_ipv4(bytes(quoting))
    assert error["icmp"]["quoted"] == {"src": "10.10.0.2", "dst": VIP, "proto": "tcp", "sport": 1234,
                                       "dport": 80, "seq": 99}
    assert tcp_flags(0x12) == "SA" and tcp_flags(0x14) == "RA"
    assert parse_ipv4(b"\x60" + b"\0" * 39) is None


def test_correlate_uses_seq_then_nonce_never_ports():
    packets = [
        {"proto": "tcp", "src": "10.244.0.1", "sport": 5, "dst": "10.244.0.2", "dport": 8080, "flags": "S",
         "seq": 41, "payload": ""},
        {"proto": "tcp", "src": "10.244.0.2", "sport": 8080, "dst": "10.244.0.1", "dport": 5, "flags": "SA",
         "seq": 41, "payload": ""},
        {"proto": "udp", "src": "10.244.0.1", "sport": 6, "dst": "10.244.0.2", "dport": 5353, "flags": None,
         "seq": None, "payload": "probe abc123\n"},
    ]
    assert correlate({"probe": {"seq": 41, "sport": 999}}, packets) is packets[0]
    assert correlate({"seq": 42}, packets) is None
    assert correlate({"probe": {"nonce": "abc123"}}, packets) is packets[2]
    assert correlate({"probe": {"sport": 5}}, packets) is None
    assert flow(packets[0], packets) == packets[:2]


def test_burst_flow_and_options_argv():
    result = {"sports": [100, 109], "seq_base": 0xFFFFFFFF, "proto": "tcp", "src": "a", "dst": "b", "dport": 1}
    assert burst_flow(result, 1)["seq"] == 0 and burst_flow(result, 1)["sport"] == 101
    with pytest.raises(IndexError):
        burst_flow(result, 10)
    assert options_argv(dst="1.2.3.4", sport_base=5, sport=None) == ["--dst", "1.2.3.4", "--sport-base", "5"]
