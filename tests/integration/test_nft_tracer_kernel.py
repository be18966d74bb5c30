"""The nftables tracer's exact shares against the kernel's choices, and the kernel's own listings.

Each test makes its own namespaces (kplab-nfttest-<6 hex>, and -client beside it) and removes
them in `finally`; nothing touches the host's namespace. Lab 3's nftables render is loaded into
the node namespace; its four endpoint addresses are the node's own, so one listener on :80 says
which endpoint each new connection was DNATed to, and which source address it saw.

The listings under fixtures/nftables-listings/ are this kernel's `nft list ruleset` of the
renders: the test checks they are still what the kernel prints (set KPLAB_UPDATE_LISTINGS=1 to
rewrite them), so the unit tests read the kernel's own form.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from lab_runner import lab_file
from lab_runner.probes.stats import gof, sample_size
from lab_runner.ruleset.nft_parse import parse_nft
from lab_runner.ruleset.nft_render import render
from lab_runner.ruleset.nft_tracer import Packet, trace

pytestmark = pytest.mark.needs_root

ROOT = Path(__file__).resolve().parents[2]
LISTINGS = ROOT / "fixtures" / "nftables-listings"
LAB3 = lab_file.load(ROOT / "labs" / "lab-3-clusterip" / "lab.yaml")
OVERALL = lab_file.load(ROOT / "fixtures" / "golden" / "nftables" / "overall.yaml")
VIP = "10.104.5.205"
ENDPOINTS = ("172.17.0.2", "172.17.0.5", "172.17.0.6", "172.17.0.7")
NODE_IP, CLIENT_IP = "192.168.49.2", "192.168.49.1"
ALPHA = 1e-6
# New connections per caller: enough that one endpoint twice as likely as each other one (a
# numgen vmap listing it twice: 0.4, 0.2, 0.2, 0.2) fails the test at ALPHA with power 0.9999.
FLOWS = sample_size(dict.fromkeys("abcd", Fraction(1, 4)),
                    {"a": Fraction(2, 5), "b": Fraction(1, 5), "c": Fraction(1, 5),
                     "d": Fraction(1, 5)}, alpha=ALPHA)


def run(argv: list[str], netns: str | None = None, stdin: str | None = None) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run(prefix + argv, input=stdin, text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(argv)} failed in {netns}: {done.stderr}"
    return done.stdout


@pytest.fixture
def node():
    """An empty node namespace; the test's client namespace (if it makes one) goes with it."""
    name = f"kplab-nfttest-{secrets.token_hex(3)}"
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "link", "set", "lo", "up"], name)
        yield name
    finally:
        for ns in (f"{name}-client", name):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def check_listing(fixture: str, listing: str) -> None:
    path = LISTINGS / fixture
    if os.environ.get("KPLAB_UPDATE_LISTINGS") == "1":
        path.write_text(listing)
    assert path.read_text() == listing, f"the kernel now lists {fixture} differently"


@pytest.mark.parametrize(("lab", "profile", "fixture"), [
    (LAB3, "v1.34", "lab-3.v1.34"), (LAB3, "v1.33", "lab-3.v1.33"),
    (OVERALL, "v1.34", "overall.v1.34")])
def test_the_kernel_lists_what_the_fixtures_hold_and_it_traces_like_the_render(
        node, lab, profile, fixture):
    document = render(lab, profile)
    run(["nft", "-f", "-"], node, stdin=document)
    listing = run(["nft", "list", "ruleset"], node)
    check_listing(f"{fixture}.txt", listing)
    if fixture == "lab-3.v1.34":
        check_listing(f"{fixture}.handles.txt", run(["nft", "-a", "list", "ruleset"], node))
    service = lab.services[0]
    packet = Packet("192.168.99.1", str(service.cluster_ip), "tcp", 40000,
                    service.ports[0].port, in_interface="eth0", out_interface="eth1",
                    local_addresses=(str(lab.nodes[0].ip),))
    ours, kernels = trace(parse_nft(document), packet), trace(parse_nft(listing), packet)
    assert kernels.distribution() == ours.distribution()


# Answers each connection with "the address it reached, the address it came from".
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(256); s.settimeout(30)
print("ready", flush=True)
for _ in range(int(sys.argv[1])):
    c, peer = s.accept(); c.sendall(f"{c.getsockname()[0]} {peer[0]}".encode()); c.close()
"""
CALLER = """
import socket, sys
for _ in range(int(sys.argv[1])):
    try:
        with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3) as c:
            print(c.recv(100).decode())
    except ConnectionRefusedError:
        print("refused")
"""


def endpoints_on_the_node(node: str) -> None:
    """Lab 3's pod addresses as the node's own (on a veth), the service CIDR routed there."""
    run(["ip", "link", "add", "kp0", "type", "veth", "peer", "name", "kp1"], node)
    for link in ("kp0", "kp1"):
        run(["ip", "link", "set", link, "up"], node)
    for address in ENDPOINTS:
        run(["ip", "addr", "add", f"{address}/32", "dev", "kp0"], node)
    run(["ip", "route", "add", str(LAB3.service_cidr), "dev", "kp0"], node)


def link_client(node: str) -> str:
    """A client namespace on the node's network, routing the service CIDR via the node."""
    client = f"{node}-client"
    run(["ip", "netns", "add", client])
    run(["ip", "link", "add", "kpc0", "netns", node, "type", "veth", "peer", "name", "eth0",
         "netns", client])
    run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", "kpc0"], node)
    run(["ip", "link", "set", "kpc0", "up"], node)
    # A node forwards (the kit's nodes do): else a packet for a ClusterIP port without a
    # Service is dropped at routing, before the forward hook that rejects it.
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], node)
    for argv in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "eth0", "up"],
                 ["ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0"],
                 ["ip", "route", "add", str(LAB3.service_cidr), "via", NODE_IP]):
        run(argv, client)
    return client


def test_new_connections_spread_as_the_tracer_says_from_the_node_and_a_client(node):
    endpoints_on_the_node(node)
    client = link_client(node)
    ruleset = parse_nft(render(LAB3, "v1.34"))
    run(["nft", "-f", "-"], node, stdin=render(LAB3, "v1.34"))

    server = subprocess.Popen(["ip", "netns", "exec", node, sys.executable, "-c", SERVER,
                               str(2 * FLOWS)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        answers = {caller: run([sys.executable, "-c", CALLER, str(FLOWS), VIP, "8080"], ns)
                   .split("\n")[:-1] for caller, ns in (("node", node), ("client", client))}
        other_port = run([sys.executable, "-c", CALLER, "1", VIP, "8081"], client).split()
    finally:
        server.kill()
        server.wait()

    local = (NODE_IP, *ENDPOINTS)
    packets = {"node": Packet(NODE_IP, VIP, "tcp", 40000, 8080, local_addresses=local),
               "client": Packet(CLIENT_IP, VIP, "tcp", 40000, 8080, in_interface="kpc0",
                                local_addresses=local)}
    for caller, packet in packets.items():
        result = trace(ruleset, packet)
        expected = {dnat[0]: share for dnat, share in result.dnat_distribution().items()}
        assert expected == {address: 1 / 4 for address in ENDPOINTS}
        reached = Counter(answer.split()[0] for answer in answers[caller])
        test = gof(reached, expected, alpha=ALPHA)
        assert sum(reached.values()) == FLOWS and test.passed, (caller, reached, test)
        # Who the endpoint saw. The client's own address: its packets are delivered on the
        # node, past no postrouting hook, and the tracer says no masquerade. The node's
        # packets leave by lo with one of the node's addresses, masqueraded or not.
        seen = {answer.split()[1] for answer in answers[caller]}
        if caller == "client":
            assert seen == {CLIENT_IP} and not any(o.masquerade for o in result.outcomes)
        else:
            assert seen <= set(local) and all(o.masquerade for o in result.outcomes), seen
    # A port the Service lacks: the tracer's REJECT (cluster-ips-check) is a refused connection.
    (rejected,) = trace(ruleset, replace(packets["client"], dport=8081)).outcomes
    assert rejected.verdict == "REJECT" and other_port == ["refused"]


def test_a_listed_affinity_entry_is_followed_by_the_tracer_and_the_kernel(node):
    # Lab 3's Service with sessionAffinity ClientIP: after one connection the kernel's affinity
    # set holds the caller's address (listed with `timeout … expires …`); read back, the tracer
    # sends that caller's next connections to the same endpoint only, as the kernel does.
    sticky = replace(LAB3, services=(replace(LAB3.services[0], session_affinity="ClientIP"),))
    endpoints_on_the_node(node)
    run(["nft", "-f", "-"], node, stdin=render(sticky, "v1.34"))
    later = 30
    server = subprocess.Popen(["ip", "netns", "exec", node, sys.executable, "-c", SERVER,
                               str(1 + later)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        first = run([sys.executable, "-c", CALLER, "1", VIP, "8080"], node).split()
        listing = run(["nft", "list", "ruleset"], node)
        answers = run([sys.executable, "-c", CALLER, str(later), VIP, "8080"], node).split("\n")
    finally:
        server.kill()
        server.wait()
    reached, caller = first
    table = parse_nft(listing).table("ip", "kube-proxy")
    entries = {name: [e.key for e in s.elements] for name, s in table.sets.items()
               if name.startswith("affinity-")}
    assert sorted(entries.values()) == [[], [], [], [(caller,)]], entries
    assert "expires" in listing
    packet = Packet(caller, VIP, "tcp", 40001, 8080, local_addresses=(NODE_IP, *ENDPOINTS))
    assert trace(parse_nft(listing), packet).dnat_distribution() == {(reached, 80): 1}
    assert {answer.split()[0] for answer in answers[:-1]} == {reached}
