"""The renderer against its frozen golden files (change detectors: fixtures/golden/PROVENANCE.md)
and the seed's facts; test_golden_kube_proxy.py holds the evidence from kube-proxy's own tests."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from pathlib import Path

import pytest

from lab_runner import lab_file
from lab_runner.model import Pod
from lab_runner.ruleset.compare import compare
from lab_runner.ruleset import names as n
from lab_runner.ruleset.parse import parse
from lab_runner.ruleset.render import probability, render

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
DOCUMENTS = sorted(GOLDEN.glob("*.rules"))
SVC = "KUBE-SVC-Q7IJ732UBZY4AJKA"
SEPS = ["KUBE-SEP-TWZJG7ZWZYI5EC7J", "KUBE-SEP-LCP7KINQA756A5JS", "KUBE-SEP-XCVGJ5SWPGOUASPD",
        "KUBE-SEP-56377YKM7VKGGV6C"]


def golden(path: Path):
    name, profile = re.fullmatch(r"(.+)\.(v1\.\d+)\.rules", path.name).groups()
    return lab_file.load(GOLDEN / f"{name}.yaml"), profile


@pytest.fixture(scope="module")
def lab3():
    return lab_file.load("lab-3")


def svc_rules(doc: str) -> list[str]:
    return [line for line in doc.splitlines() if line.startswith(f"-A {SVC} ")]


def test_every_required_golden_case_exists():
    stems = {p.name for p in DOCUMENTS}
    for needed in ("lab-3.v1.23", "lab-3.v1.30", "multiport.v1.30", "unnamed.v1.23", "udp.v1.30",
                   "noendpoints.v1.23", "seven.v1.23", "affinity.v1.23",
                   "affinity.v1.30"):
        assert f"{needed}.rules" in stems


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_render_matches_golden(document):
    lab, profile = golden(document)
    rendered = render(lab, profile)
    result = compare(document.read_text(), rendered)
    assert result.equal, result.text
    assert rendered == document.read_text()  # same order and spelling too, as kube-proxy writes


def test_real_lab_3_renders_its_golden_copy(lab3):
    for profile in ("v1.23", "v1.30"):
        assert render(lab3, profile) == (GOLDEN / f"lab-3.{profile}.rules").read_text()


def test_seed_chain_names(lab3):
    doc = render(lab3)
    for chain in [SVC, *SEPS]:
        assert f":{chain} - [0:0]" in doc


def test_seed_probabilities_and_last_rule(lab3):
    rules = svc_rules(render(lab3))
    picks = [r for r in rules if "KUBE-SEP-" in r]
    assert [re.search(r"--probability (\S+)", r).group(1) if "--probability" in r else None
            for r in picks] == ["0.2500000000", "0.3333333333", "0.5000000000", None]
    assert [r.rsplit(" ", 1)[1] for r in picks] == SEPS
    assert "statistic" not in picks[-1]


def test_seed_masquerade_rule_is_first_in_the_service_chain(lab3):
    first = parse(render(lab3)).chain("nat", SVC).rules[0]
    assert first.target == "KUBE-MARK-MASQ"
    assert first.option("s") == (True, "10.244.0.0/16")
    assert first.option("d") == (False, "10.104.5.205")
    assert first.match("tcp").args == ("--dport", "8080")
    assert "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" in first.text


def test_kube_services_jump_and_nodeports_last(lab3):
    rules = parse(render(lab3)).chain("nat", "KUBE-SERVICES").rules
    assert rules[0].text == ('-A KUBE-SERVICES -m comment --comment "stateful-apps/my-app:http-svc '
                             'cluster IP" -m tcp -p tcp -d 10.104.5.205 --dport 8080 -j ' + SVC)
    assert rules[-1].target == "KUBE-NODEPORTS"
    assert rules[-1].match("addrtype").args == ("--dst-type", "LOCAL")


def test_endpoint_comments_differ_by_profile(lab3):
    old = svc_rules(render(lab3, "v1.23"))[1]
    new = svc_rules(render(lab3, "v1.30"))[1]
    assert "--comment stateful-apps/my-app:http-svc -m statistic" in old
    assert '--comment "stateful-apps/my-app:http-svc -> 172.17.0.2:80"' in new


def test_seps_masquerade_hairpin_then_dnat(lab3):
    sep = parse(render(lab3)).chain("nat", SEPS[0])
    assert [(r.option("s"), r.target, r.target_args) for r in sep.rules] == [
        ((False, "172.17.0.2"), "KUBE-MARK-MASQ", ()),
        (None, "DNAT", ("--to-destination", "172.17.0.2:80"))]


def test_postrouting_and_mark_masq(lab3):
    ruleset = parse(render(lab3))
    post = [r.spec for r in ruleset.chain("nat", "KUBE-POSTROUTING").rules]
    assert post == ["-m mark ! --mark 0x00004000/0x00004000 -j RETURN",
                    "-j MARK --xor-mark 0x00004000",
                    '-m comment --comment "kubernetes service traffic requiring SNAT" '
                    "-j MASQUERADE --random-fully"]
    assert [r.spec for r in ruleset.chain("nat", "KUBE-MARK-MASQ").rules] == [
        "-j MARK --or-mark 0x00004000"]


def test_profile_defaults_to_the_lab_and_unknown_is_refused(lab3):
    assert render(lab3) == render(lab3, "v1.23")
    assert render(lab3.with_changes(profile="v1.30")) == render(lab3, "v1.30")
    with pytest.raises(ValueError, match="v1.23, v1.30"):
        render(lab3, "v1.99")


@pytest.mark.parametrize("profile", ["v1.23", "v1.30"])
def test_without_base_jumps_builtins_stay_untouched(lab3, profile):
    ruleset = parse(render(lab3, profile, base_jumps=False))
    assert "mangle" not in ruleset.tables
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            assert not (chain.builtin and chain.rules), f"{table.name} {chain.name} has rules"
            assert chain.name != "KUBE-PROXY-CANARY"
    full = parse(render(lab3, profile))
    for table in ("filter", "nat"):
        kube = [c for c in full.table(table).chains.values()
                if not c.builtin and c.name not in ("KUBE-PROXY-CANARY", "KUBE-MARK-DROP")]
        for chain in kube:
            assert [r.spec for r in ruleset.chain(table, chain.name).rules] == \
                [r.spec for r in chain.rules]


def test_base_jumps_follow_prepend_order(lab3):
    ruleset = parse(render(lab3, "v1.30"))
    assert [r.target for r in ruleset.chain("filter", "INPUT").rules] == [
        "KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"]
    assert [r.target for r in ruleset.chain("filter", "FORWARD").rules] == [
        "KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"]
    assert [r.target for r in ruleset.chain("nat", "PREROUTING").rules] == ["KUBE-SERVICES"]
    assert [r.target for r in ruleset.chain("nat", "POSTROUTING").rules] == ["KUBE-POSTROUTING"]
    for table in ("mangle", "filter", "nat"):
        assert ruleset.has_chain(table, "KUBE-PROXY-CANARY")


# Written by hand from kube-proxy's iptablesJumpChains (and, v1.28+, iptablesKubeletJumpChains):
# proxier.go in martinkennelly/kubernetes 75de5e20b328 (v1.23 generation) and kevinhehc/k8s-1.28
# 804fd5efd0f7. syncProxyRules ensures each with EnsureRule(Prepend, ...) in list order, so a
# built-in chain ends up holding its jumps in reverse list order; args are extraArgs, then the
# comment (v1.28 leaves out an empty one), then -j.
_NEW = "-m conntrack --ctstate NEW"
_EXT, _SVC = '"kubernetes externally-visible service portals"', '"kubernetes service portals"'
_LBF = '"kubernetes load balancer firewall"'
KUBE_PROXY_JUMPS = {
    "v1.23": [
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        f"-A INPUT {_NEW} -m comment --comment {_EXT} -j KUBE-EXTERNAL-SERVICES",
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        f"-A FORWARD {_NEW} -m comment --comment {_SVC} -j KUBE-SERVICES",
        f"-A FORWARD {_NEW} -m comment --comment {_EXT} -j KUBE-EXTERNAL-SERVICES",
        f"-A OUTPUT {_NEW} -m comment --comment {_SVC} -j KUBE-SERVICES",
        f"-A PREROUTING -m comment --comment {_SVC} -j KUBE-SERVICES",
        f"-A OUTPUT -m comment --comment {_SVC} -j KUBE-SERVICES",
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    ],
    "v1.30": [
        "-A INPUT -j KUBE-FIREWALL",
        f"-A INPUT {_NEW} -m comment --comment {_LBF} -j KUBE-PROXY-FIREWALL",
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        f"-A INPUT {_NEW} -m comment --comment {_EXT} -j KUBE-EXTERNAL-SERVICES",
        f"-A FORWARD {_NEW} -m comment --comment {_LBF} -j KUBE-PROXY-FIREWALL",
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        f"-A FORWARD {_NEW} -m comment --comment {_SVC} -j KUBE-SERVICES",
        f"-A FORWARD {_NEW} -m comment --comment {_EXT} -j KUBE-EXTERNAL-SERVICES",
        "-A OUTPUT -j KUBE-FIREWALL",
        f"-A OUTPUT {_NEW} -m comment --comment {_LBF} -j KUBE-PROXY-FIREWALL",
        f"-A OUTPUT {_NEW} -m comment --comment {_SVC} -j KUBE-SERVICES",
        f"-A PREROUTING -m comment --comment {_SVC} -j KUBE-SERVICES",
        f"-A OUTPUT -m comment --comment {_SVC} -j KUBE-SERVICES",
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    ],
}


@pytest.mark.parametrize("profile", ["v1.23", "v1.30"])
def test_base_jumps_are_kube_proxy_s_jump_chains(lab3, profile):
    builtin = re.compile(r"-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ")
    document = render(lab3, profile)
    assert [line for line in document.splitlines() if builtin.match(line)] == \
        KUBE_PROXY_JUMPS[profile]
    # v1.23's iptablesEnsureChains: an empty nat KUBE-MARK-DROP (kubelet fills it); gone by v1.28.
    nat = document.split("*nat\n", 1)[1]
    assert (":KUBE-MARK-DROP - [0:0]" in nat) == (profile == "v1.23")
    assert "-A KUBE-MARK-DROP" not in nat


def test_no_endpoints_rejects_in_filter_and_has_no_service_chain():
    lab, profile = golden(GOLDEN / "noendpoints.v1.23.rules")
    ruleset = parse(render(lab, profile))
    reject = ruleset.chain("filter", "KUBE-SERVICES").rules
    assert [(r.target, r.match("comment").args[1]) for r in reject] == [
        ("REJECT", "default/api:http has no endpoints")]
    assert not [c for c in ruleset.table("nat").chains if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))]
    assert [r.target for r in ruleset.chain("nat", "KUBE-SERVICES").rules] == ["KUBE-NODEPORTS"]


def test_cluster_cidr_drives_the_masquerade_rule(lab3):
    moved = lab3.with_changes(cluster_cidr=ipaddress.ip_network("172.16.0.0/12"))
    assert "! -s 172.16.0.0/12 -j KUBE-MARK-MASQ" in svc_rules(render(moved))[0]


def test_probability_is_gos_ten_decimals():
    assert [probability(n) for n in (2, 3, 6, 7)] == [
        "0.5000000000", "0.3333333333", "0.1666666667", "0.1428571429"]


def test_large_cluster_mode_drops_endpoint_comments(lab3):
    template = lab3.pods[0]
    pods = tuple(Pod(name=f"p{i}", namespace=template.namespace, node=template.node,
                     ip=ipaddress.ip_address("172.17.0.0") + 10 + i, labels=template.labels,
                     ports=template.ports) for i in range(1001))
    doc = render(lab3.with_changes(pods=pods))
    rules = svc_rules(doc)
    assert "cluster IP" in rules[0]
    assert all("--comment" not in r for r in rules[1:])
    assert len(rules) == 1002


# -- beyond ClusterIP (issue 16); kube-proxy's own documents are in test_golden_kube_proxy.py ----
KUBE_PROXY = GOLDEN / "kube-proxy"
TWO_NODES = """\
id: t
title: two nodes
profile: v1.30
clusterCIDR: 10.244.0.0/16
nodes:
  - {name: a, bridge: {name: cni0, address: 10.244.0.1/24}}
  - {name: b, bridge: {name: cni0, address: 10.244.1.1/24}}
pods:
  - {name: web-a, namespace: ns, node: a, ip: 10.244.0.2, labels: {app: web}}
  - {name: web-b, namespace: ns, node: b, ip: 10.244.1.2, labels: {app: web}}
services:
  - namespace: ns
    name: web
    selector: {app: web}
    clusterIP: 10.96.0.10
    internalTrafficPolicy: Local
    type: LoadBalancer
    loadBalancerIPs: [203.0.113.10]
    loadBalancerSourceRanges: [192.168.49.0/24]
    ports: [{name: p, port: 80, nodePort: 30080}]
"""


def nat_rules(doc: str, chain: str) -> list[str]:
    return [line for line in doc.splitlines() if line.startswith(f"-A {chain} ")]


def test_v1_34_adds_only_the_localhost_node_port_counters_to_v1_30():
    lab = lab_file.load(KUBE_PROXY / "overall-v134.yaml")
    old = render(lab, "v1.30").splitlines()
    new = render(lab, "v1.34").splitlines()
    added = [line for line in new if line not in old]
    assert added and all("-d 127.0.0.0/8" in line and "localhost_nps_accepted_pkts" in line
                         for line in added)
    assert [line for line in old if line not in new] == []
    # Each comes right before its node port's own rule, as kube-proxy writes them.
    for line in added:
        assert new[new.index(line) + 1] == line.replace(" -d 127.0.0.0/8", "").replace(
            " -m nfacct --nfacct-name localhost_nps_accepted_pkts", "")


def test_nfacct_matches_only_where_the_node_has_nfacct():
    lab = lab_file.load(KUBE_PROXY / "overall-v134.yaml")
    without = render(lab.with_changes(nfacct=False), "v1.34")
    assert "nfacct" not in without
    invalid = "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name " \
              "ct_state_invalid_dropped_pkts -j DROP"
    assert invalid in render(lab, "v1.30").splitlines()
    assert invalid in render(lab, "v1.34").splitlines()
    assert "nfacct" not in render(lab_file.load("lab-3").with_changes(nfacct=True), "v1.23")


def test_masquerade_all_drops_the_outsiders_condition(lab3):
    for profile in ("v1.23", "v1.30", "v1.34"):
        doc = render(lab3.with_changes(masquerade_all=True), profile)
        [masq] = [r for r in nat_rules(doc, SVC) if r.endswith("-j KUBE-MARK-MASQ")]
        assert "! -s" not in masq and '"stateful-apps/my-app:http-svc cluster IP"' in masq
        assert masq.replace(" -j KUBE-MARK-MASQ", " ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ") in \
            render(lab3, profile)


def test_the_v1_23_profile_refuses_services_it_does_not_render():
    lab = lab_file.parse(TWO_NODES)
    with pytest.raises(ValueError, match="ns/web needs profile v1.30 or later"):
        render(lab, "v1.23")


def test_each_node_renders_its_own_local_endpoints():
    lab = lab_file.parse(TWO_NODES)
    svl = n.local_service_chain("ns/web:p", "tcp")
    for node, pod_ip in (("a", "10.244.0.2"), ("b", "10.244.1.2")):
        doc = render(lab, node=node)
        [pick] = [r for r in nat_rules(doc, svl) if "KUBE-SEP-" in r]
        assert f'"ns/web:p -> {pod_ip}:80"' in pick
    assert render(lab) == render(lab, node="a")
    with pytest.raises(ValueError, match="no node 'c'; the nodes are: a, b"):
        render(lab, node="c")


def test_source_ranges_holding_the_node_ip_also_admit_the_load_balancer_ip():
    """proxier.go: a node's own request to its LB IP comes back with the LB IP as source."""
    lab = lab_file.parse(TWO_NODES)  # node a is 192.168.49.2, inside 192.168.49.0/24
    fw, ext = n.firewall_chain("ns/web:p", "tcp"), n.external_chain("ns/web:p", "tcp")
    comment = '-m comment --comment "ns/web:p loadbalancer IP"'
    assert nat_rules(render(lab), fw) == [
        f"-A {fw} {comment} -s 192.168.49.0/24 -j {ext}",
        f"-A {fw} {comment} -s 203.0.113.10 -j {ext}",
        f'-A {fw} -m comment --comment "other traffic to ns/web:p will be dropped by '
        'KUBE-PROXY-FIREWALL"']
    outside = lab.with_changes(services=(replace(lab.services[0], source_ranges=(
        ipaddress.IPv4Network("198.51.100.0/24"),)),))
    assert len(nat_rules(render(outside), fw)) == 2


@pytest.mark.parametrize("local_pod", [True, False], ids=["local-endpoint", "no-local-endpoint"])
def test_both_policies_local_on_an_external_port_still_writes_the_cluster_chain(local_pod):
    """kube-proxy's UsesClusterEndpoints: a port reachable from outside needs its Cluster
    endpoints even with internal and external policy Local, because KUBE-EXT sends pods and the
    node to KUBE-SVC. Before, the render jumped to a KUBE-SVC chain it never declared (and
    iptables-restore refused the whole document)."""
    lab = lab_file.load(KUBE_PROXY / "etp-local.yaml")
    svc = replace(lab.services[0], internal_traffic_policy="Local")
    pods = lab.pods if local_pod else tuple(p for p in lab.pods if p.node != "test-node")
    lab = lab.with_changes(services=(svc,), pods=pods)
    text = render(lab, "v1.30", node="test-node")
    ruleset = parse(text, "both-local")  # check=True: every jump target must be declared
    svc_chain = n.service_chain("ns1/svc1:p80", "tcp")
    nat = ruleset.tables["nat"].chains
    assert svc_chain in nat
    assert any(r.target == svc_chain for r in nat[n.external_chain("ns1/svc1:p80", "tcp")].rules)
    # the Cluster chain reaches the endpoint on the other node too
    remote = n.endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80")
    assert any(r.target == remote for r in nat[svc_chain].rules)
