"""The renderer against kube-proxy's own test outputs: evidence that does not come from the kit.

fixtures/golden/kube-proxy/NAME.yaml describes the services of a kube-proxy unit test
(pkg/proxy/iptables/proxier_test.go); NAME.PROFILE.expected holds that test's expected lines for
them (each file's header says which test and what was left out). NAME-handwritten cases hold
rules written by hand from kube-proxy's proxier.go where no test covers the ground (UDP, two
ports, four and seven endpoints); their headers give the derivation. The kit's document for the
model must hold exactly those chains with exactly those rules, once three differences of the
test's fake proxier are taken into account: its marks are written 0x4000 (a real kube-proxy
writes %#08x, 0x00004000), its fake iptables has no --random-fully, and the canary chains and
the jumps from built-in chains are made outside the restored document.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab_runner import lab_file
from lab_runner.ruleset.render import render

CASES = Path(__file__).resolve().parents[2] / "fixtures" / "golden" / "kube-proxy"
EXPECTED = sorted(CASES.glob("*.expected"))
# kube-proxy's tests sort these chains' rules by service name (sortIPTablesRules).
SORTED_CHAINS = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"}


def tables(document: str) -> dict[str, dict[str, list[str]]]:
    """{table: {chain: [rules in order]}}, every declared chain present, comments dropped."""
    result: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in document.splitlines():
        if line.startswith("*"):
            current = result.setdefault(line[1:], {})
        elif line.startswith(":"):
            current.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            current.setdefault(line.split()[1], []).append(line)
    return result


def as_the_fake_proxier_writes(document: str) -> str:
    document = document.replace("0x00004000", "0x4000").replace(" --random-fully", "")
    return "\n".join(line for line in document.splitlines() if "KUBE-PROXY-CANARY" not in line)


def comparable(chain: str, rules: list[str]) -> list[str]:
    return sorted(rules) if chain in SORTED_CHAINS else rules


@pytest.mark.parametrize("expected", EXPECTED, ids=[p.name for p in EXPECTED])
def test_the_kit_writes_what_kube_proxy_s_own_tests_expect(expected):
    name, profile = re.fullmatch(r"(.+)\.(v1\.\d+)\.expected", expected.name).groups()
    lab = lab_file.load(CASES / f"{name}.yaml")
    assert lab.profile == profile
    ours = tables(as_the_fake_proxier_writes(render(lab, profile, base_jumps=False)))
    theirs = tables(expected.read_text())
    for table, chains in theirs.items():
        mine = {c: r for c, r in ours[table].items()}
        assert sorted(mine) == sorted(chains), f"{table}: chains differ"
        for chain, rules in chains.items():
            assert comparable(chain, mine[chain]) == comparable(chain, rules), f"{table} {chain}"


def header(path: Path) -> str:
    return " ".join(line[2:] for line in path.read_text().split("\n*", 1)[0].splitlines())


def test_every_kube_proxy_case_has_its_model_and_a_source():
    assert {p.name.split(".")[0] for p in EXPECTED} == {
        "overall", "affinity", "basic", "terminating", "itp-cluster", "itp-cluster-v123",
        "terminating-v123", "noendpoints-v123", "udp-handwritten", "multiport-handwritten",
        "seven-handwritten", "lab3-handwritten", "overall-ext", "overall-lb", "etp-local",
        "overall-v134", "overall-lb-v134", "itp-local", "itp-local-none", "terminating-local",
        "terminating-fallback", "terminating-remote", "masquerade-all-handwritten"}
    assert "proxier_test.go" in (CASES / "cluster-ip-general.yaml").read_text()
    for expected in EXPECTED:
        text = header(expected)
        if "-handwritten." in expected.name:
            # A hand-written case names the source it was derived from, at a commit.
            assert re.search(r"Written by hand from pkg/proxy/iptables/proxier\.go in \S+/\S+ at "
                             r"[0-9a-f]{12}\b", text), expected.name
        else:
            assert re.search(r"(proxier|rules)_test\.go", text), expected.name
        # 2bb4b1042dfd is a v1.6-era proxier_test.go, without the tests these cases come from.
        assert "2bb4b1042dfd" not in text + (CASES / f"{expected.name.split('.')[0]}.yaml").read_text()


# Single-port hand-written cases are written in the order syncProxyRules writes its buffers, so
# the whole document is deterministic: v1.23 writes KUBE-SEP chains before KUBE-SVC and the
# KUBE-SVC masquerade rule before the KUBE-SERVICES jump; v1.28-v1.30 the other way round.
IN_WRITE_ORDER = ["seven-handwritten.v1.23.expected", "lab3-handwritten.v1.30.expected",
                  "masquerade-all-handwritten.v1.30.expected"]


@pytest.mark.parametrize("name", IN_WRITE_ORDER)
def test_the_kit_writes_in_kube_proxy_s_order(name):
    stem, profile = re.fullmatch(r"(.+)\.(v1\.\d+)\.expected", name).groups()
    ours = as_the_fake_proxier_writes(render(lab_file.load(CASES / f"{stem}.yaml"), profile,
                                             base_jumps=False)).splitlines()
    theirs = [line for line in (CASES / name).read_text().splitlines()
              if not line.startswith("#")]
    assert ours == theirs


# TestClusterIPGeneral's packet-flow cases (SCTP left out): source, destination, port, protocol,
# the endpoints kube-proxy's rules send it to ("" : none) and whether it is masqueraded.
FLOWS = [
    ("simple clusterIP", "10.180.0.2", "172.30.0.41", 80, "tcp", "10.180.0.1:80", False),
    ("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "tcp", "10.180.0.1:80", True),
    ("clusterIP with multiple endpoints", "10.180.0.2", "172.30.0.42", 80, "tcp",
     "10.180.0.1:80, 10.180.2.1:80", False),
    ("clusterIP with TargetPort", "10.180.0.2", "172.30.0.42", 443, "tcp",
     "10.180.0.1:8443, 10.180.2.1:8443", False),
    ("clusterIP with TCP and SCTP on same port (TCP)", "10.180.0.2", "172.30.0.42", 53, "tcp",
     "10.180.0.1:5353, 10.180.2.1:5353", False),
    ("TCP-only port does not match UDP traffic", "10.180.0.2", "172.30.0.42", 80, "udp", "", False),
    ("svc1 does not accept svc2's ports", "10.180.0.2", "172.30.0.41", 443, "tcp", "", False),
]


@pytest.fixture(scope="module")
def general():
    from lab_runner.ruleset.parse import parse

    lab = lab_file.load(CASES / "cluster-ip-general.yaml")
    return parse(render(lab, lab.profile))


@pytest.mark.parametrize("name, src, dst, dport, protocol, output, masq", FLOWS,
                         ids=[f[0] for f in FLOWS])
def test_packets_go_where_kube_proxy_s_flow_tests_say(general, name, src, dst, dport, protocol,
                                                      output, masq):
    from lab_runner.ruleset.tracer import Packet, trace

    packet = Packet(src, dst, protocol, 40000, dport, in_interface="cni0", out_interface="cni0",
                    local_addresses=("10.180.255.254",))
    result = trace(general, packet)
    reached = sorted(f"{ip}:{port}" for ip, port in
                     (key for key, p in result.dnat_distribution().items() if key and p))
    assert ", ".join(reached) == output
    if output:
        assert {o.masquerade for o in result.outcomes if o.dnat} == {masq}


def test_provenance_says_where_every_golden_file_came_from():
    provenance = (CASES.parent / "PROVENANCE.md").read_text()
    derived, _, detectors = provenance.partition("## Made with the renderer")
    for expected in EXPECTED:
        assert f"| `{expected.name.removesuffix('.expected')}` |" in derived, expected.name
    for rules in sorted(CASES.parent.glob("*.rules")):
        row = re.search(rf"^\| `{re.escape(rules.name)}` \| (.+) \|$", detectors, re.M)
        assert row, f"{rules.name} has no row in PROVENANCE.md"
        # A change detector is kept only where independent evidence covers the same ground.
        assert "kube-proxy/" in row.group(1) or "seed" in row.group(1), rules.name


# The packet-flow cases of kube-proxy's tests for what lies beyond ClusterIP (rules_test.go,
# danwinship/kubernetes 07fb8ceb0fc1), through the kit's tracer on the kit's document for the
# same model: case, source, destination, port, endpoints reached ("DROP": dropped) and whether
# masqueraded. testNodeIP is 192.168.0.2, testExternalClient 203.0.113.2.
BEYOND_FLOWS = [
    ("etp-local", "pod to cluster IP hits both endpoints", "10.0.0.2", "172.30.0.41", 80,
     "10.180.0.1:80, 10.180.2.1:80", False),
    ("etp-local", "external to external IP hits only local endpoint, unmasqueraded",
     "203.0.113.2", "192.168.99.11", 80, "10.180.2.1:80", False),
    ("etp-local", "external to LB IP hits only local endpoint, unmasqueraded", "203.0.113.2",
     "1.2.3.4", 80, "10.180.2.1:80", False),
    ("etp-local", "external to NodePort hits only local endpoint, unmasqueraded", "203.0.113.2",
     "192.168.0.2", 3001, "10.180.2.1:80", False),
    ("itp-local", "pod to ClusterIP hits only local endpoint", "10.0.0.2", "172.30.1.1", 80,
     "10.0.1.1:80", False),
    ("itp-local-none", "no endpoints", "10.0.0.2", "172.30.1.1", 80, "DROP", False),
    ("terminating-local", "pod to clusterIP", "10.0.0.2", "172.30.1.1", 80,
     "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", False),
    ("terminating-local", "external to LB", "203.0.113.2", "1.2.3.4", 80,
     "10.0.1.1:80, 10.0.1.2:80", False),
    ("terminating-fallback", "pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, "10.0.1.5:80",
     False),
    ("terminating-fallback", "external to LB", "203.0.113.2", "1.2.3.4", 80,
     "10.0.1.2:80, 10.0.1.3:80", False),
    ("terminating-remote", "pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, "10.0.1.5:80", False),
    ("terminating-remote", "external to LB, no locally-usable endpoints", "203.0.113.2",
     "1.2.3.4", 80, "DROP", False),
]


@pytest.mark.parametrize("case, name, src, dst, dport, output, masq", BEYOND_FLOWS,
                         ids=[f"{f[0]}: {f[1]}" for f in BEYOND_FLOWS])
def test_beyond_cluster_ip_packets_go_where_kube_proxy_s_flow_tests_say(case, name, src, dst,
                                                                       dport, output, masq):
    from lab_runner.ruleset.parse import parse
    from lab_runner.ruleset.tracer import Packet, trace

    lab = lab_file.load(CASES / f"{case}.yaml")
    pod = src.startswith("10.")
    packet = Packet(src, dst, "tcp", 40000, dport, in_interface="cni0" if pod else "eth0",
                    local_addresses=("192.168.0.2",))
    result = trace(parse(render(lab, lab.profile)), packet)
    if output == "DROP":
        assert {o.verdict for o in result.outcomes} == {"DROP"}
        return
    reached = sorted(f"{ip}:{port}" for ip, port in
                     (key for key, p in result.dnat_distribution().items() if key and p))
    assert ", ".join(reached) == output
    assert {o.masquerade for o in result.outcomes if o.dnat} == {masq}
