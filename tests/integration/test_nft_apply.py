"""The nftables document loads into a real kernel with `nft -f`, and really DNATs a connection.

Each test makes its own empty network namespace (kplab-nfttest-<6 hex>, and -client when it
needs a caller from outside) and removes it; nothing touches the host's namespace. Lab 3's model
is rendered in both profiles, and kube-proxy's TestOverallNFTablesRules models (node ports,
external IPs, load balancers with source ranges, externalTrafficPolicy Local).
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from lab_runner import lab_file
from lab_runner.ruleset.nft_render import PROFILES, render

pytestmark = pytest.mark.needs_root

ROOT = Path(__file__).resolve().parents[2]
LAB3 = lab_file.load(ROOT / "labs" / "lab-3-clusterip" / "lab.yaml")
NFT_GOLDEN = ROOT / "fixtures" / "golden" / "nftables"


@pytest.fixture
def netns():
    name = f"kplab-nfttest-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        in_netns(name, ["ip", "link", "set", "lo", "up"])
        yield name
    finally:
        for ns in (f"{name}-client", name):  # the client namespace, if the test made one
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def in_netns(netns: str, argv: list[str], stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, text=True,
                          capture_output=True, timeout=60)
    if check:
        assert done.returncode == 0, f"{' '.join(argv)} failed in {netns}: {done.stderr}"
    return done


def load(netns: str, document: str, check: bool = True) -> subprocess.CompletedProcess:
    return in_netns(netns, ["nft", "-f", "-"], stdin=document, check=check)


def declared(document: str, kind: str) -> set[str]:
    return {line.split()[4] for line in document.splitlines()
            if line.startswith(f"add {kind} ip kube-proxy ")}


def listed(ruleset: str, kind: str) -> set[str]:
    return set(re.findall(rf"^\t{kind} (\S+) {{", ruleset, re.MULTILINE))


@pytest.mark.parametrize("profile", PROFILES)
def test_lab3_loads_with_nft_and_the_kernel_lists_every_object(netns, profile):
    document = render(LAB3, profile)
    load(netns, document)
    ruleset = in_netns(netns, ["nft", "list", "ruleset"]).stdout
    assert "table ip kube-proxy {" in ruleset
    for kind in ("chain", "set", "map"):
        assert listed(ruleset, kind) == declared(document, kind), kind
    # The four endpoint chains of the seed's Service, with kube-proxy's names.
    assert len([c for c in listed(ruleset, "chain") if c.startswith("endpoint-")]) == 4
    assert "numgen random mod 4 vmap" in ruleset


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("model", ["overall-full", "overall-svc3"])
def test_node_ports_external_ips_and_firewalls_load_and_are_listed(netns, model, profile):
    document = render(lab_file.load(NFT_GOLDEN / f"{model}.yaml"), profile)
    load(netns, document)
    ruleset = in_netns(netns, ["nft", "list", "ruleset"]).stdout
    for kind in ("chain", "set", "map"):
        assert listed(ruleset, kind) == declared(document, kind), kind
    assert re.search(r"^\t\tip daddr @nodeport-ips meta l4proto \. th dport vmap "
                     r"@service-nodeports$", ruleset, re.MULTILINE)
    assert any(c.startswith("external-") for c in listed(ruleset, "chain"))


@pytest.mark.parametrize("profile", PROFILES)
def test_match_all_nodeport_addresses_load_with_fib(netns, profile):
    document = render(lab_file.load(NFT_GOLDEN / "overall-svc3.yaml"), profile,
                      nodeport_addresses="all")
    load(netns, document)
    ruleset = in_netns(netns, ["nft", "list", "ruleset"]).stdout
    assert "nodeport-ips" not in listed(ruleset, "set")
    assert re.search(r"^\t\tfib daddr type local ip daddr != 127\.0\.0\.0/8 meta l4proto \. "
                     r"th dport vmap @service-nodeports$", ruleset, re.MULTILINE), ruleset


def test_a_base_chain_cannot_change_priority_in_place_but_replace_can(netns):
    # Why kube-proxy deletes its base chains once at start-up, and why the kit's replace=True
    # deletes the table: the kernel refuses a new priority for an existing base chain.
    load(netns, render(LAB3, "v1.33"))
    refused = load(netns, render(LAB3, "v1.34"), check=False)
    assert refused.returncode != 0 and "Operation not supported" in refused.stderr
    load(netns, render(LAB3, "v1.34", replace=True))
    chains = listed(in_netns(netns, ["nft", "list", "ruleset"]).stdout, "chain")
    assert "filter-output-pre-dnat" in chains and "filter-output-post-dnat" not in chains


# One process of the node connects to the ClusterIP again and again; the four endpoint
# addresses are the node's own, so a listener on :80 says which one each connection reached.
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(128); s.settimeout(20)
print("ready", flush=True)
for _ in range(int(sys.argv[1])):
    c, _ = s.accept(); c.sendall(c.getsockname()[0].encode()); c.close()
"""
CLIENT = """
import socket, sys
def connect(port, timeout=2.0):
    try:
        c = socket.create_connection(("10.104.5.205", port), timeout=timeout)
        return c.recv(100).decode() or "empty"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return type(exc).__name__
for _ in range(int(sys.argv[1])):
    print(connect(8080))
print(connect(8081))
"""


@pytest.mark.parametrize("profile", PROFILES)
def test_connections_to_the_cluster_ip_are_dnatted_to_every_endpoint(netns, profile):
    in_netns(netns, ["ip", "link", "add", "kp0", "type", "veth", "peer", "name", "kp1"])
    for link in ("kp0", "kp1"):
        in_netns(netns, ["ip", "link", "set", link, "up"])
    for last in (2, 5, 6, 7):  # lab 3's pod addresses, here the node's own
        in_netns(netns, ["ip", "addr", "add", f"172.17.0.{last}/32", "dev", "kp0"])
    in_netns(netns, ["ip", "route", "add", str(LAB3.service_cidr), "dev", "kp0"])
    load(netns, render(LAB3, profile))

    flows = 60  # each endpoint missed by all 60: 4 * 0.75**60, about 1e-7
    server = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER,
                               str(flows)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        answers = in_netns(netns, [sys.executable, "-c", CLIENT, str(flows)]).stdout.split()
    finally:
        server.kill()
        server.wait()
    reached = Counter(answers[:-1])
    assert set(reached) == {"172.17.0.2", "172.17.0.5", "172.17.0.6", "172.17.0.7"}, reached
    # Another port of the same ClusterIP: cluster-ips-check rejects it (a TCP reset).
    assert answers[-1] == "refused"


NODE_PORT = 30080
NODE_IP, CLIENT_IP = "192.168.49.2", "192.168.49.1"
CALLER = """
import socket, sys
for _ in range(int(sys.argv[1])):
    with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3) as c:
        print(c.recv(100).decode())
"""


def test_a_connection_to_the_node_port_from_outside_is_dnatted_to_an_endpoint(netns):
    # Lab 3's Service as type NodePort: a client on the node's network connects to the node's
    # IP (nodeport-ips) and port; service-nodeports sends it through external- (masquerade
    # mark) and service- to an endpoint (the node's own addresses here, as above).
    port = replace(LAB3.services[0].ports[0], node_port=NODE_PORT)
    lab = replace(LAB3, services=(replace(LAB3.services[0], type="NodePort", ports=(port,)),))
    document = render(lab, "v1.34")
    assert f"add element ip kube-proxy nodeport-ips {{ {NODE_IP} }}" in document
    in_netns(netns, ["ip", "link", "add", "kp0", "type", "veth", "peer", "name", "kp1"])
    for link in ("kp0", "kp1"):
        in_netns(netns, ["ip", "link", "set", link, "up"])
    for last in (2, 5, 6, 7):
        in_netns(netns, ["ip", "addr", "add", f"172.17.0.{last}/32", "dev", "kp0"])
    client = f"{netns}-client"
    subprocess.run(["ip", "netns", "add", client], check=True)
    in_netns(netns, ["ip", "link", "add", "kpc0", "type", "veth", "peer", "name", "eth0",
                     "netns", client])
    in_netns(netns, ["ip", "addr", "add", f"{NODE_IP}/24", "dev", "kpc0"])
    in_netns(netns, ["ip", "link", "set", "kpc0", "up"])
    for argv in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "eth0", "up"],
                 ["ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0"]):
        in_netns(client, argv)
    load(netns, document)

    flows = 20  # some endpoint may get none of 20 (4 * 0.75**20, about 0.01): only DNAT is asked
    server = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER,
                               str(flows)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        answers = in_netns(client, [sys.executable, "-c", CALLER, str(flows), NODE_IP,
                                    str(NODE_PORT)]).stdout.split()
    finally:
        server.kill()
        server.wait()
    # Nothing listens on the node port itself: every answer came through a DNAT to an endpoint.
    assert len(answers) == flows and set(answers) <= {"172.17.0.2", "172.17.0.5", "172.17.0.6",
                                                      "172.17.0.7"}, answers
    listing = in_netns(netns, ["nft", "list", "map", "ip", "kube-proxy", "service-nodeports"])
    assert f"tcp . {NODE_PORT} : goto external-" in listing.stdout
