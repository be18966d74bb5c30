"""`lab-runner explain` on nftables rules: a real kernel's `nft list ruleset` and kube-proxy's
golden documents, read offline and checked against nft_tracer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from lab_runner.explain.dump import DumpError
from lab_runner.explain.nft_dump import looks_like_nft, read_file, read_text
from lab_runner.explain.nft_packet import explain
from lab_runner.explain.nft_report import marked_by
from lab_runner.explain.nft_services import find_services
from lab_runner.explain.packet import Question
from lab_runner.ruleset import nft_tracer

ROOT = Path(__file__).resolve().parents[2]
LIVE = ROOT / "fixtures" / "real-nodes" / "kit-lab-7-live.nft"
GOLDEN = sorted((ROOT / "fixtures" / "golden" / "nftables").glob("*.expected"))
OUTSIDE = "203.0.113.10"
VIP, PODS = "10.104.5.205", ("172.17.0.2", "172.17.0.5", "172.17.0.6", "172.17.0.7")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab_runner", "explain", *args],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "120", "PYTHONPATH": str(ROOT)})


def shares(answer) -> dict[str, Fraction]:
    return {key: share for key, share in answer.dnat_shares().items()}


# -- lab 7's listing from a real kernel -------------------------------------------------------

def test_the_live_listing_names_lab_7s_service_port_with_four_quarters():
    ports = find_services(read_file(LIVE))
    assert [(p.name, p.protocol, p.cluster_ip, p.port) for p in ports] == [
        ("stateful-apps/my-app:http-svc", "tcp", VIP, 8080)]
    assert [(e.address, e.share) for e in ports[0].endpoints] == \
        [(f"{pod}:80", Fraction(1, 4)) for pod in PODS]
    assert ports[0].chain.startswith("service-") and not ports[0].notes
    said = cli(str(LIVE))
    assert said.returncode == 0, said.stderr
    assert f"stateful-apps/my-app:http-svc  tcp  {VIP}:8080" in said.stdout
    assert said.stdout.count("  25 %") == 4


def test_a_new_connection_from_outside_has_four_ways_of_a_quarter_each():
    answer = explain(read_file(LIVE), Question(VIP, 8080, "tcp"))
    assert answer.service == "stateful-apps/my-app:http-svc"
    assert [(f.dnat, f.probability, f.verdict, f.masquerade) for f in answer.fates] == \
        [((pod, 80), Fraction(1, 4), "ACCEPT", True) for pod in PODS]
    # Marked in the service chain (the caller is outside 10.244.0.0/16), masqueraded after.
    lines = LIVE.read_text().split("\n")
    for fate in answer.fates:
        assert [lines[s.line - 1].strip() for s in marked_by(fate)] == \
            [f"ip daddr {VIP} ip saddr != 10.244.0.0/16 jump mark-for-masquerade"]
        assert fate.path[-1].text == "masquerade fully-random"
    said = cli(str(LIVE), "--to", f"{VIP}:8080")
    assert said.returncode == 0, said.stderr
    assert said.stdout.count("25 % (exactly 1/4): DNAT to 172.17.0.") == 4
    assert "Verdict: accepted, DNATed to 4 endpoint(s)" in said.stdout


def test_a_pod_to_itself_is_marked_by_its_endpoint_chain():
    answer = explain(read_file(LIVE), Question(VIP, 8080, "tcp", src="172.17.0.5",
                                               in_interface="docker0"))
    itself = next(f for f in answer.fates if f.dnat == ("172.17.0.5", 80))
    assert any(s.text == "ip saddr 172.17.0.5 jump mark-for-masquerade" and
               s.chain.startswith("endpoint-") for s in marked_by(itself))
    others = [f for f in answer.fates if f is not itself]
    assert all(not any(s.chain.startswith("endpoint-") for s in marked_by(f)) for f in others)
    # A caller inside the cluster CIDR is not marked by the service chain: only hairpin is.
    inside = explain(read_file(LIVE), Question(VIP, 8080, "tcp", src="10.244.0.9",
                                               in_interface="docker0"))
    assert [f.masquerade for f in inside.fates] == [False] * 4


def test_another_port_of_the_cluster_ip_is_rejected_with_kube_proxys_reason():
    said = cli(str(LIVE), "--to", f"{VIP}:9999")
    assert said.returncode == 0, said.stderr
    assert ('Verdict: REJECTED by line 112 (kube-proxy cluster-ips-check): "Reject traffic to '
            'invalid ports of ClusterIPs"') in " ".join(said.stdout.split())
    assert "Service: (no kube-proxy Service on the way)" in said.stdout


def test_counters_in_a_listing_are_shown_with_their_rules(tmp_path):
    path = tmp_path / "counted.nft"
    counted = "tcp counter packets 7 bytes 420 dnat to 172.17.0.6:80"
    path.write_text(LIVE.read_text().replace("tcp dnat to 172.17.0.6:80", counted))
    dump = read_file(path)
    assert dump.has_counters and not read_file(LIVE).has_counters
    counted = {e.address: e.counters for e in find_services(dump)[0].endpoints}
    assert (counted["172.17.0.6:80"].packets, counted["172.17.0.6:80"].bytes) == (7, 420)
    said = json.loads(cli(str(path), "--to", f"{VIP}:8080", "--format", "json").stdout)
    steps = [s for f in said["fates"] for s in f["path"] if s["counters"]]
    assert [s["counters"] for s in steps] == [[7, 420]]


# -- kube-proxy's golden documents -------------------------------------------------------------

def _service_ports():
    for path in [LIVE, *GOLDEN]:
        for port in find_services(read_file(path)):
            if port.cluster_ip and port.endpoints:
                yield pytest.param(path, port, id=f"{path.name}-{port.name}")


@pytest.mark.parametrize(("path", "port"), list(_service_ports()))
def test_summary_shares_are_nft_tracers_for_every_service_port(path, port):
    dump = read_file(path)
    expected = {e.address: e.share for e in port.endpoints}
    assert sum(expected.values()) == 1
    packet = nft_tracer.Packet(OUTSIDE, port.cluster_ip, port.protocol, 40000, port.port,
                               in_interface="eth0")
    direct = nft_tracer.trace(dump.ruleset, packet).dnat_distribution()
    assert {f"{a}:{p}": share for (a, p), share in direct.items()} == expected
    answer = explain(dump, Question(port.cluster_ip, port.port, port.protocol))
    assert shares(answer) == expected and answer.service == port.name


def test_every_golden_document_has_its_service_ports():
    found = {path.name: {p.name for p in find_services(read_file(path))} for path in GOLDEN}
    assert found["overall-full.v1.34.expected"] == {f"ns{i}/svc{i}:p80" for i in (1, 2, 4, 5, 6)}
    assert found["overall-svc3.v1.34.expected"] == {"ns3/svc3:p80"}
    assert "ns2/svc2:p8080" in found["repeated-add-service.v1.34.expected"]


def test_node_ports_external_addresses_affinity_and_no_endpoints_in_a_golden_document():
    path = ROOT / "fixtures" / "golden" / "nftables" / "overall-full.v1.34.expected"
    ports = {p.name: p for p in find_services(read_file(path))}
    svc2, svc5, svc6 = ports["ns2/svc2:p80"], ports["ns5/svc5:p80"], ports["ns6/svc6:p80"]
    assert svc2.node_ports == [3001] and set(svc2.external_ips) == {"192.168.99.22:80",
                                                                    "1.2.3.4:80"}
    assert any(n.startswith("has no local endpoints: DROP at node port 3001") for n in svc2.notes)
    assert svc5.node_ports == [3002] and any("sessionAffinity ClientIP (10800s)" in n
                                             for n in svc5.notes)
    assert any("loadBalancerSourceRanges" in n for n in svc5.notes)
    assert svc6.cluster_ip == "172.30.0.46" and not svc6.endpoints
    assert svc6.notes == ["has no endpoints: REJECT at 172.30.0.46:80 (no-endpoint-services)"]
    # svc2's NodePort has no local endpoint: an outside caller is dropped, as kube-proxy means.
    dropped = explain(read_file(path), Question("192.168.0.2", 3001, "tcp"))
    assert [(f.verdict, f.probability) for f in dropped.fates] == [("DROP", 1)]
    assert any("192.168.0.2 is taken to be the node's own address" in a
               for a in dropped.assumptions)
    rejected = explain(read_file(path), Question("172.30.0.46", 80, "tcp"))
    assert [f.verdict for f in rejected.fates] == ["REJECT"]


def test_a_node_port_reaches_its_endpoint():
    path = ROOT / "fixtures" / "golden" / "nftables" / "overall-svc3.v1.34.expected"
    assert find_services(read_file(path))[0].node_ports == [3003]
    said = cli(str(path), "--to", "192.168.0.2:3003", "--format", "json")
    assert said.returncode == 0, said.stderr
    answer = json.loads(said.stdout)
    assert answer["service"] == "ns3/svc3:p80" and answer["packet"]["node_addresses"] == \
        ["192.168.0.2"]
    assert [(f["probability"], f["dnat"], f["masqueraded"]) for f in answer["fates"]] == \
        [("1", "10.180.0.3:80", True)]


def test_json_round_trip_of_both_answers():
    summary = json.loads(cli(str(LIVE), "--format", "json").stdout)
    port = find_services(read_file(LIVE))[0]
    [service] = summary["services"]
    assert (service["name"], service["cluster_ip"], service["port"], service["chain"]) == \
        (port.name, port.cluster_ip, port.port, port.chain)
    assert [(e["address"], e["probability"], e["line"]) for e in service["endpoints"]] == \
        [(e.address, "1/4", e.line_no) for e in port.endpoints]
    answer = explain(read_file(LIVE), Question(VIP, 8080, "tcp", src="172.17.0.5",
                                               in_interface="docker0"))
    said = json.loads(cli(str(LIVE), "--to", f"{VIP}:8080", "--from", "172.17.0.5",
                          "--in", "docker0", "--format", "json").stdout)
    assert [(f["dnat"], Fraction(f["probability"]), f["masqueraded"]) for f in said["fates"]] == \
        [(f"{f.dnat[0]}:{f.dnat[1]}", f.probability, f.masquerade) for f in answer.fates]
    assert [[s["line"] for s in f["path"]] for f in said["fates"]] == \
        [[s.line for s in f.path] for f in answer.fates]
    assert said["verdict"] == "accepted, DNATed to 4 endpoint(s)"


# -- what is and is not an nftables listing ----------------------------------------------------

def test_iptables_dumps_still_go_to_the_iptables_reader():
    real = ROOT / "fixtures" / "real-nodes"
    assert not any(looks_like_nft(p) for p in real.glob("*.rules"))
    assert all(looks_like_nft(p) for p in [LIVE, *GOLDEN])


def test_a_rule_the_tracer_does_not_model_is_left_out_and_named(tmp_path):
    other = ("table ip other {\n\tchain pre {\n\t\ttype filter hook prerouting priority -200; "
             "policy accept;\n\t\tmeta skuid 0 accept\n\t}\n}\n")
    path = tmp_path / "node.nft"
    path.write_text(other + LIVE.read_text())
    answer = explain(read_file(path), Question(VIP, 8080, "tcp"))
    assert [(i.rule.line_no, i.rule.chain) for i in answer.left_out] == [(4, "pre")]
    assert shares(answer) == {f"{pod}:80": Fraction(1, 4) for pod in PODS}
    said = cli(str(path), "--to", f"{VIP}:8080")
    assert "Not modelled" in said.stdout and "line 4 (other pre)" in said.stdout


BAD = {
    "no-kube-proxy-table": ("table ip filter {\n\tchain x {\n\t}\n}\n",
                            "no `table ip kube-proxy` (tables: ip filter)"),
    "no-services-chain": ("table ip kube-proxy {\n\tchain masquerading {\n\t}\n}\n",
                          "line 1: `table ip kube-proxy` has no `services` chain"),
    "cut-short": (LIVE.read_text()[:LIVE.read_text().index("\tchain masquerading")],
                  "not nftables text as nft writes it: end of text inside an open block"),
    "empty": ("\n", "empty: no rules in it"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_gets_one_clear_error_naming_the_file(tmp_path, name):
    text, message = BAD[name]
    path = tmp_path / f"{name}.nft"
    path.write_text(text)
    result = cli(str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    said = " ".join(result.stderr.split())
    assert said.startswith(f"error: {path}") and message in said, said


def test_a_parse_error_names_the_line():
    with pytest.raises(DumpError) as caught:
        read_text("table ip kube-proxy {\n\tchain services {\n\t\tip daddr vmap\n\t}\n}\n", "n")
    assert caught.value.line_no == 3 and str(caught.value).startswith("n, line 3: ")
