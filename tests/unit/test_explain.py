"""`lab-runner explain`: real nodes' iptables-save read offline, checked against the kit's tracer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from lab_runner.explain.dump import DumpError, read_file, read_text
from lab_runner.explain.packet import Question, explain, marked_by
from lab_runner.explain.report import exact
from lab_runner.explain.services import find_services
from lab_runner.ruleset import tracer

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "fixtures" / "real-nodes"
GOLDEN = ROOT / "fixtures" / "golden"
OUTSIDE = "203.0.113.10"
NODES = sorted(REAL.glob("*.rules")) + [GOLDEN / "lab-3.v1.23.rules", GOLDEN / "lab-3.v1.30.rules",
                                        GOLDEN / "affinity.v1.30.rules", GOLDEN / "seven.v1.23.rules",
                                        GOLDEN / "multiport.v1.30.rules", GOLDEN / "udp.v1.30.rules"]


def cli(*args: str, columns: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab_runner", "explain", *args],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(ROOT)})


def shares(explanation) -> dict[str, Fraction]:
    out: dict[str, Fraction] = {}
    for fate in explanation.fates:
        key = f"{fate.dnat[0]}:{fate.dnat[1]}" if fate.dnat else "none"
        out[key] = out.get(key, Fraction(0)) + fate.probability
    return out


# -- explain agrees with the tracer ------------------------------------------------------------

@pytest.mark.parametrize("path", NODES, ids=lambda p: p.name)
def test_summary_shares_are_what_the_tracer_gives_a_new_connection(path):
    dump = read_file(path)
    ports = [p for p in find_services(dump.ruleset) if p.cluster_ip and p.endpoints]
    assert ports, f"{path.name}: no Service port with endpoints found"
    for port in ports:
        expected = {e.address: e.share for e in port.endpoints}
        assert sum(expected.values()) == 1
        # The tracer itself needs the output interface where a rule matches on it (-o).
        packet = tracer.Packet(OUTSIDE, port.cluster_ip, port.protocol, 40000, port.port,
                               in_interface="eth0", out_interface="eth0")
        direct = tracer.trace(dump.ruleset, packet).dnat_distribution()
        assert {f"{a}:{p}": share for (a, p), share in direct.items()} == expected, port.name
        answer = explain(dump, Question(port.cluster_ip, port.port, port.protocol))
        assert shares(answer) == expected, port.name
        assert answer.service == port.name


def test_explain_keeps_the_tracers_outcomes_and_the_files_rule_numbers():
    dump = read_file(REAL / "eks-v1.34.rules")
    answer = explain(dump, Question("192.168.0.174", 31248, node_ips=("192.168.0.174",)))
    packet = tracer.Packet(OUTSIDE, "192.168.0.174", "tcp", 40000, 31248, in_interface="eth0",
                           local_addresses=("192.168.0.174",))
    direct = tracer.trace(dump.ruleset, packet)
    assert sorted((o.probability, o.dnat, o.masquerade, o.verdict) for o in direct.fates()) == \
        sorted((f.probability, f.dnat, f.masquerade, f.verdict) for f in answer.fates)
    # The adapter traces a copy without KUBE-SERVICES' other destinations, yet the steps keep
    # their places in the file: the NodePort jump is KUBE-SERVICES' 7th rule, on line 127.
    step = next(s for s in answer.fates[0].path if s.chain == "KUBE-SERVICES")
    assert (step.number, step.rule.line_no) == (7, 127)
    assert {tuple(o.path) for o in direct.fates()} == {tuple(f.path) for f in answer.fates}


def test_the_big_node_is_pruned_to_the_same_answer():
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_explain import node_dump

    dump = read_text(node_dump(200, 3), "<200 services>")
    answer = explain(dump, Question("172.16.0.199", 80))
    direct = tracer.trace(dump.ruleset, tracer.Packet(OUTSIDE, "172.16.0.199", "tcp", 40000, 80,
                                                      in_interface="eth0"))
    assert {tuple(o.path) for o in direct.fates()} == {tuple(f.path) for f in answer.fates}
    assert len(find_services(dump.ruleset)) == 200


# -- what a learner reads --------------------------------------------------------------------

def test_summary_finds_every_service_of_a_real_node():
    ports = {(p.name, p.protocol): p for p in find_services(read_file(REAL / "eks-v1.34.rules")
                                                            .ruleset)}
    assert set(ports) == {("default/kubernetes:https", "tcp"), ("game-2048/service-2048", "tcp"),
                          ("kube-system/eks-extension-metrics-api:metrics-api", "tcp"),
                          ("kube-system/kube-dns:dns", "udp"), ("kube-system/kube-dns:dns-tcp", "tcp"),
                          ("kube-system/kube-dns:metrics", "tcp")}
    game = ports[("game-2048/service-2048", "tcp")]
    assert (game.cluster_ip, game.port, game.node_ports) == ("10.100.159.184", 80, [31248])
    assert [(e.address, e.share) for e in game.endpoints] == [
        ("192.168.2.92:80", Fraction(1, 2)), ("192.168.4.161:80", Fraction(1, 2))]


def test_a_service_without_kube_proxys_comments_is_found_by_its_rules(tmp_path):
    import re

    path = tmp_path / "no-comments.rules"
    path.write_text(re.sub(r'-m comment --comment ("[^"]*"|\S+) ', "", LAB3))
    [port] = find_services(read_file(path).ruleset)
    assert (port.name, port.cluster_ip, port.port) == ("KUBE-SVC-Q7IJ732UBZY4AJKA", "10.104.5.205",
                                                       8080)
    assert [e.address for e in port.endpoints] == ["172.17.0.2:80", "172.17.0.5:80",
                                                   "172.17.0.6:80", "172.17.0.7:80"]


def test_summary_reads_the_old_layout_affinity_local_policy_and_no_endpoints():
    ports = {p.name: p for p in find_services(read_file(REAL / "kubeadm-v1.20-docker.rules")
                                              .ruleset)}
    assert set(ports) == {"default/kubernetes:https", "default/nginx-ext", "default/web-empty:http",
                          "kube-system/kube-dns:dns"}
    assert "sessionAffinity ClientIP (10800 s)" in ports["default/kubernetes:https"].notes
    assert [e.address for e in ports["default/kubernetes:https"].endpoints] == ["192.168.49.2:6443"]
    nginx = ports["default/nginx-ext"]
    assert nginx.node_ports == [32204] and any("externalTrafficPolicy Local" in n for n in nginx.notes)
    empty = ports["default/web-empty:http"]
    assert (empty.cluster_ip, empty.port, empty.endpoints) == ("10.96.77.7", 80, [])
    assert any(n.startswith("has no endpoints: REJECT (line") for n in empty.notes)


OVERALL = REAL / "kube-proxy-test-overall.v1.28.rules"


def test_summary_reads_load_balancers_external_ips_node_ports_and_source_ranges():
    ports = {p.name: p for p in find_services(read_file(OVERALL).ruleset)}
    assert sorted(ports) == [f"ns{i}/svc{i}:p80" for i in range(1, 7)]
    svc2, svc5 = ports["ns2/svc2:p80"], ports["ns5/svc5:p80"]
    assert (svc2.external_ips, svc2.load_balancer_ips, svc2.node_ports) == \
        (["192.168.99.22:80"], ["1.2.3.4:80"], [3001])
    assert svc2.notes == ["has no local endpoints: DROP (lines 34, 35, 36)",
                          "externalTrafficPolicy Local (outside callers reach this node's "
                          "endpoints only)"]
    assert (svc5.load_balancer_ips, svc5.node_ports) == (["5.6.7.8:80"], [3002])
    assert svc5.notes == ["loadBalancerSourceRanges (KUBE-FW: other sources are dropped)"]
    assert [(e.address, e.share) for e in ports["ns4/svc4:p80"].endpoints] == [
        ("10.180.0.4:80", Fraction(1, 2)), ("10.180.0.5:80", Fraction(1, 2))]


# kube-proxy's own test conventions: pods 10.0.0.0/8, node 192.168.0.2, outside 203.0.113.x.
ETP_LOCAL = REAL / "kube-proxy-test-etp-local.v1.28.rules"
KUBE_PROXY_FLOWS = [  # (node, question, verdict, DNAT destinations, masqueraded, ending line)
    (OVERALL, Question("5.6.7.8", 80), "ACCEPT", {("10.180.0.3", 80)}, True, None),  # in range
    (OVERALL, Question("5.6.7.8", 80, src="203.0.113.200"), "DROP", {None}, False, 41),
    (OVERALL, Question("192.168.99.22", 80), "DROP", {None}, False, 34),  # Local, none here
    (OVERALL, Question("192.168.99.22", 80, src="10.0.0.2", in_interface="cni0"), "ACCEPT",
     {("10.180.0.2", 80)}, False, None),  # pods reach it through the cluster chain
    (OVERALL, Question("192.168.0.2", 3001), "DROP", {None}, False, 36),  # its NodePort too
    (OVERALL, Question("172.30.0.46", 80), "REJECT", {None}, False, 33),  # no endpoints
    (OVERALL, Question("192.168.99.33", 80), "ACCEPT", {("10.180.0.4", 80), ("10.180.0.5", 80)},
     True, None),
    (OVERALL, Question("192.168.0.2", 3003, local=True, node_ips=("192.168.0.2",)), "ACCEPT",
     {("10.180.0.3", 80)}, True, None),
    # TestExternalTrafficPolicyLocal's own packet-flow cases, as kube-proxy's test states them.
    (ETP_LOCAL, Question("172.30.0.41", 80, src="10.0.0.2", in_interface="cni0"), "ACCEPT",
     {("10.180.0.1", 80), ("10.180.2.1", 80)}, False, None),
    (ETP_LOCAL, Question("192.168.99.11", 80, src="203.0.113.2"), "ACCEPT",
     {("10.180.2.1", 80)}, False, None),
    (ETP_LOCAL, Question("1.2.3.4", 80, src="203.0.113.2"), "ACCEPT", {("10.180.2.1", 80)},
     False, None),
    (ETP_LOCAL, Question("192.168.0.2", 3001, src="203.0.113.2"), "ACCEPT",
     {("10.180.2.1", 80)}, False, None),
]


@pytest.mark.parametrize("flow", KUBE_PROXY_FLOWS, ids=lambda f: f"{f[0].stem}:{f[1].src or 'out'}"
                                                              f"->{f[1].dst}:{f[1].dport}")
def test_kube_proxys_own_services_of_every_kind(flow):
    node, question, verdict, destinations, masqueraded, ended = flow
    answer = explain(read_file(node), question)
    assert {f.verdict for f in answer.fates} == {verdict}
    assert {f.dnat for f in answer.fates} == destinations
    assert {f.masquerade for f in answer.fates} == {masqueraded}
    if ended is not None:
        assert {f.path[-1].rule.line_no for f in answer.fates} == {ended}
    assert answer.left_out == ()


def test_summary_names_the_local_endpoints_of_a_local_policy():
    [port] = find_services(read_file(ETP_LOCAL).ruleset)
    assert (port.external_ips, port.load_balancer_ips, port.node_ports) == \
        (["192.168.99.11:80"], ["1.2.3.4:80"], [3001])
    assert [e.address for e in port.endpoints] == ["10.180.0.1:80", "10.180.2.1:80"]
    assert port.notes == ["externalTrafficPolicy Local: outside callers reach only "
                          "10.180.2.1:80 (100 %) (KUBE-SVL-XPGD46QRK7WJZT7O)"]


def test_masquerade_says_which_rule_marked_it():
    answer = explain(read_file(REAL / "kit-lab-3-live.rules"),
                     Question("10.104.5.205", 8080, src="172.17.0.2", in_interface="docker0"))
    by_endpoint = {f.dnat: f for f in answer.fates}
    hairpin = by_endpoint[("172.17.0.2", 80)]
    other = by_endpoint[("172.17.0.5", 80)]
    # 172.17.0.2 is outside the cluster CIDR (10.244.0.0/16): KUBE-SVC marks every way; its own
    # endpoint's KUBE-SEP marks the hairpin too.
    assert [s.rule.line_no for s in marked_by(hairpin)] == [71, 65]
    assert [s.rule.line_no for s in marked_by(other)] == [71]
    assert hairpin.masquerade and other.masquerade


def test_no_endpoints_is_a_reject_named_by_its_comment():
    result = cli(str(REAL / "kubeadm-v1.20-docker.rules"), "--to", "10.96.77.7:80")
    assert result.returncode == 0, result.stderr
    assert 'REJECTED by line 108 (filter KUBE-SERVICES): "default/web-empty:http has no ' \
           'endpoints"' in " ".join(result.stdout.split())


def test_a_service_without_endpoints_agrees_with_the_tracer():
    dump = read_file(GOLDEN / "noendpoints.v1.23.rules")
    [port] = find_services(dump.ruleset)
    assert (port.name, port.cluster_ip, port.port, port.endpoints) == \
        ("default/api:http", "10.96.40.40", 80, [])
    answer = explain(dump, Question("10.96.40.40", 80))
    direct = tracer.trace(dump.ruleset, tracer.Packet(OUTSIDE, "10.96.40.40", "tcp", 40000, 80,
                                                      in_interface="eth0"))
    assert [(f.verdict, f.probability, f.path) for f in answer.fates] == \
        [(o.verdict, o.probability, o.path) for o in direct.fates()] == \
        [("REJECT", 1, answer.fates[0].path)]
    assert answer.fates[0].path[-1].rule.line_no == 16


def test_a_node_port_without_local_endpoints_is_dropped_by_the_marked_packet_rule():
    answer = explain(read_file(REAL / "kubeadm-v1.20-docker.rules"), Question("192.168.49.2", 32204))
    assert [(f.verdict, f.probability) for f in answer.fates] == [("DROP", 1)]
    assert answer.fates[0].path[-1].rule.line_no == 102
    assert any("192.168.49.2 is taken to be the node's own address" in a
               for a in answer.assumptions)
    assert any(s.rule is not None and s.rule.target == "KUBE-MARK-DROP"
               for s in answer.fates[0].path)


def test_rules_it_cannot_model_are_listed_with_their_line_not_guessed():
    answer = explain(read_file(REAL / "eks-v1.34.rules"),
                     Question("8.8.8.8", 443, src="192.168.2.92", in_interface="eni4d2fe644677"))
    said = [item.describe() for item in answer.left_out]
    assert said[0].startswith("line 83 (nat PREROUTING): CONNMARK --restore-mark is not modelled")
    assert said[1].startswith("line 90 (nat AWS-SNAT-CHAIN-0): -o vlan+")
    assert "assumes it does not match" in said[1]
    assert [f.verdict for f in answer.fates] == ["ACCEPT"] and answer.fates[0].dnat is None


def test_nfacct_only_counts_so_the_rule_it_sits_on_still_matches():
    dump = read_file(REAL / "eks-v1.34.rules")
    answer = explain(dump, Question("127.0.0.1", 31248, local=True, node_ips=("192.168.0.174",)))
    assert answer.left_out == ()
    lines = {s.rule.line_no for f in answer.fates for s in f.path}
    assert 94 in lines and 95 not in lines  # the localhost NodePort rule, with its nfacct
    step = next(s for s in answer.fates[0].path if s.rule.line_no == 94)
    assert step.rule is next(r for r in dump.ruleset.rules() if r.line_no == 94)  # as written
    assert "nfacct" in step.text and step.number == 1
    assert shares(answer) == {"192.168.2.92:80": Fraction(1, 2), "192.168.4.161:80": Fraction(1, 2)}


def test_an_ipset_match_is_named_with_its_line(tmp_path):
    text = LAB3.replace("-A FORWARD -m comment --comment \"kubernetes forwarding rules\"",
                        "-A FORWARD -m comment --comment \"cali:wUHhoiAYhphO9Mso\" -m set "
                        "--match-set cali40all-ipam-pools src -j ACCEPT\n"
                        "-A FORWARD -m comment --comment \"kubernetes forwarding rules\"", 1)
    path = tmp_path / "calico.rules"
    path.write_text(text)
    answer = explain(read_file(path), Question("10.104.5.205", 8080))
    [item] = answer.left_out
    assert item.describe() == ("line 17 (filter FORWARD): -m set is not modelled; the answer "
                               "assumes it does not match")
    assert len(answer.fates) == 4 and {f.verdict for f in answer.fates} == {"ACCEPT"}


def test_the_nodes_own_connection_goes_through_output():
    answer = explain(read_file(REAL / "kubeadm-v1.20-docker.rules"),
                     Question("10.96.0.1", 443, local=True, node_ips=("192.168.49.2",)))
    assert answer.packet.local and answer.packet.src == "192.168.49.2"
    assert shares(answer) == {"192.168.49.2:6443": 1}
    assert answer.fates[0].path[0].chain == "OUTPUT"


# -- fitting a terminal (issue 19: tables fit or wrap, names are never cut) ------------------

def _fits(result: subprocess.CompletedProcess, columns: int) -> list[str]:
    """The output's lines, checked against the width; each line's words, for whole-name checks."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    wide = [line for line in lines if len(line) > columns]
    assert not wide, f"lines wider than {columns} columns: {wide}"
    return lines


def _whole(names: set[str], lines: list[str]) -> None:
    words = {word for line in lines for word in line.split()}
    cut = sorted(name for name in names if name not in words)
    assert not cut, f"broken across lines (no line holds them whole): {cut}"


@pytest.mark.parametrize("columns", [80, 100])
@pytest.mark.parametrize("node", ["eks-v1.34.rules", "kubeadm-v1.20-docker.rules"])
def test_the_summary_never_cuts_a_service_name_or_an_address(node, columns):
    ports = find_services(read_file(REAL / node).ruleset)
    lines = _fits(cli(str(REAL / node), columns=columns), columns)
    _whole({p.name for p in ports} | {e.address for p in ports for e in p.endpoints} |
           {f"{p.cluster_ip}:{p.port}" for p in ports if p.cluster_ip}, lines)
    # Each endpoint sits under its own Service port, with its share beside it.
    dns = next(i for i, line in enumerate(lines) if line.split()[:2] == ["kube-system/kube-dns:dns",
                                                                          "udp"])
    assert [line.split()[:3] for line in lines[dns + 1:dns + 3]] == \
        [[a, "50", "%"] for a in sorted(e.address for p in ports if p.name ==
                                        "kube-system/kube-dns:dns" for e in p.endpoints)]


def test_an_external_or_load_balancer_address_stays_beside_its_kind_when_wrapped():
    lines = _fits(cli(str(OVERALL.relative_to(ROOT)), columns=60), 60)
    svc2 = lines.index("ns2/svc2:p80  tcp  172.30.0.42:80  node:3001")
    assert lines[svc2 + 1] == "      ext 192.168.99.22:80  lb 1.2.3.4:80"


@pytest.mark.parametrize("columns", [80, 100])
def test_the_steps_keep_chain_names_and_rule_words_whole(columns):
    path = REAL / "kit-lab-3-live.rules"
    lines = _fits(cli(str(path), "--to", "10.104.5.205:8080", "--from", "172.17.0.5", "--in",
                      "docker0", columns=columns), columns)
    answer = explain(read_file(path), Question("10.104.5.205", 8080, src="172.17.0.5",
                                               in_interface="docker0"))
    steps = [s for f in answer.fates for s in f.path]
    _whole({s.chain for s in steps} | {w for s in steps if s.rule for w in s.rule.spec.split()},
           lines)
    # A long sentence goes on under its own indent, not at column 0.
    said = next(i for i, line in enumerate(lines) if line.lstrip().startswith("masqueraded:"))
    assert lines[said + 1].startswith("    ") and "KUBE-POSTROUTING" in lines[said + 1]


def test_an_exact_share_of_many_digits_still_fits():
    dump = read_file(GOLDEN / "seven.v1.23.rules")
    port = find_services(dump.ruleset)[0]
    lines = _fits(cli("fixtures/golden/seven.v1.23.rules", "--to",
                      f"{port.cluster_ip}:{port.port}", columns=80), 80)
    # 38-digit numerators and denominators: under the 3-column indent, "N/D):" is 82 wide.
    fractions = {exact(f.probability) for f in explain(dump, Question(port.cluster_ip, port.port))
                 .fates}
    assert max(map(len, fractions)) > 75
    _whole(fractions, [line.replace("(", " ").replace(")", " ") for line in lines])


# -- counters and formats --------------------------------------------------------------------

def test_counters_from_iptables_save_c_are_shown_beside_the_rules():
    summary = cli(str(REAL / "kit-lab-3-live.rules"))
    assert ["172.17.0.5:80", "25", "%", "[114:4560]"] in [line.split() for line in
                                                         summary.stdout.splitlines()]
    traced = cli(str(REAL / "kit-lab-3-live.rules"), "--to", "10.104.5.205:8080", "--format",
                 "json")
    data = json.loads(traced.stdout)
    dnat = [s for f in data["fates"] for s in f["path"] if "DNAT" in s["rule"]]
    assert sorted(s["counters"][0] for s in dnat) == [93, 93, 100, 114]
    assert sum(Fraction(f["probability"]) for f in data["fates"]) == 1


def test_summary_json_narrowed_to_one_service():
    result = cli(str(REAL / "eks-v1.34.rules"), "--service", "kube-system/kube-dns",
                 "--format", "json")
    data = json.loads(result.stdout)
    assert [(s["name"], s["protocol"]) for s in data["services"]] == [
        ("kube-system/kube-dns:dns", "udp"), ("kube-system/kube-dns:dns-tcp", "tcp"),
        ("kube-system/kube-dns:metrics", "tcp")]
    assert data["services"][0]["endpoints"][0] == {
        "address": "192.168.11.99:53", "probability": "1/2", "percent": 50.0,
        "chain": "KUBE-SEP-CSVG4NHGS2XS6TPF", "line": 108, "counters": None}


# -- bad input ---------------------------------------------------------------------------------

LAB3 = (GOLDEN / "lab-3.v1.30.rules").read_text()
BAD = {
    "empty": ("", "empty: no rules in it"),
    "comments-only": ("# Generated by iptables-save\n\n", "empty: no rules in it"),
    "truncated": (LAB3[:LAB3.rindex("COMMIT")], "truncated: the table opened here has no COMMIT"),
    "cut-mid-rule": (LAB3[:LAB3.index('"stateful-apps/my-app:http-svc -> 172.17.0.5') + 12],
                     "truncated: the table opened here has no COMMIT"),
    "docker-only": ("*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n"
                    "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\nCOMMIT\n",
                    "no KUBE-SERVICES chain in the nat table"),
    "ip6tables": ("# Generated by ip6tables-save v1.8.9 on Fri\n*nat\nCOMMIT\n",
                  "ip6tables-save output: explain reads IPv4"),
    "ipv6-address": ("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d fd00:10:96::1/128 -p tcp "
                     "-j ACCEPT\nCOMMIT\n", "an IPv6 address"),
    "not-iptables": ("hello world\n", "not iptables-save text"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_gets_one_clear_error_naming_the_file(tmp_path, name):
    text, message = BAD[name]
    path = tmp_path / f"{name}.rules"
    path.write_text(text)
    with pytest.raises(DumpError) as caught:
        read_file(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    result = cli(str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error:") and message in " ".join(result.stderr.split())


def test_truncated_and_ipv6_errors_name_the_line(tmp_path):
    path = tmp_path / "cut.rules"
    path.write_text(LAB3[:LAB3.rindex("COMMIT")])
    with pytest.raises(DumpError) as caught:
        read_file(path)
    assert caught.value.line_no == LAB3.split("\n").index("*nat") + 1
    with pytest.raises(DumpError) as caught:
        read_text(BAD["ipv6-address"][0], "v6")
    assert str(caught.value).startswith("v6, line 3: ")


def test_a_binary_file_is_refused(tmp_path):
    path = tmp_path / "node.rules"
    path.write_bytes(b"*nat\n\x7fELF\x02\x01\x00\x00")
    result = cli(str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{path}, line 2: a binary file" in result.stderr
    latin = tmp_path / "latin.rules"
    latin.write_bytes(b"*nat\n-A X \xe9\n")
    with pytest.raises(DumpError, match="line 2: not UTF-8 text"):
        read_file(latin)


def test_an_unknown_service_lists_the_nodes_services():
    result = cli(str(REAL / "eks-v1.34.rules"), "--service", "kube-dns")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    said = " ".join(result.stderr.split())
    assert "no Service port 'kube-dns'" in said and said.endswith(", kube-system/kube-dns")


def test_a_missing_file_is_an_error_not_a_traceback(tmp_path):
    result = cli(str(tmp_path / "nope.rules"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot read it" in result.stderr
