"""The nftables renderer against kube-proxy's own nftables tests, and kube-proxy's names.

fixtures/golden/nftables/NAME.yaml models the services of a test in
pkg/proxy/nftables/proxier_test.go; NAME.PROFILE.expected holds that test's expected lines (its
header names the test, the commit and what was left out). kube-proxy compares its fake nftables'
Dump() with them after sortNFTablesTransaction (helpers_test.go): blank and `#` lines dropped,
lines ordered by object kind, then object name, rules of a chain kept in their order, other lines
of one object sorted. The kit's document is compared the same way, once its mark is written as
the fake proxier's ("0x4000"; a real kube-proxy writes %#08x, "0x00004000").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab_runner import lab_file
from lab_runner.ruleset import nft_names
from lab_runner.ruleset.nft_render import PROFILES, render

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "fixtures" / "golden" / "nftables"
EXPECTED = sorted(CASES.glob("*.expected"))
KIND_ORDER = {"table": 10, "chain": 9, "rule": 8, "set": 7, "map": 6, "element": 5}


def kube_proxy_sorted(document: str) -> list[str]:
    """sortNFTablesTransaction: the order kube-proxy's tests compare nftables dumps in."""
    lines = [line for line in document.splitlines() if line and not line.startswith("#")]

    def key(indexed: tuple[int, str]) -> tuple:
        index, line = indexed
        words = line.split(" ")
        kind, name = words[1], words[4]
        # Rules of one chain keep their order; other lines of one object sort by text.
        return (-KIND_ORDER.get(kind, 0), name, index if kind == "rule" else line)

    return [line for _, line in sorted(enumerate(lines), key=key)]


def as_the_fake_proxier_writes(document: str) -> str:
    return document.replace("0x00004000", "0x4000")


@pytest.mark.parametrize("expected", EXPECTED, ids=[p.name for p in EXPECTED])
def test_the_kit_writes_what_kube_proxy_s_nftables_tests_expect(expected):
    name, profile = re.fullmatch(r"(.+)\.(v1\.\d+)\.expected", expected.name).groups()
    lab = lab_file.load(CASES / f"{name}.yaml")
    ours = kube_proxy_sorted(as_the_fake_proxier_writes(render(lab, profile)))
    theirs = kube_proxy_sorted(expected.read_text())
    assert ours == theirs


def test_every_case_has_a_model_and_names_its_source():
    assert {p.name for p in EXPECTED} == {
        "overall.v1.34.expected", "overall-full.v1.34.expected", "overall-svc3.v1.34.expected",
        "repeated-add-service.v1.34.expected", "repeated-add-endpoint.v1.34.expected"}
    for expected in EXPECTED:
        header = expected.read_text().split("add table", 1)[0]
        assert "proxier_test.go" in header and "81810de635aa" in header
        assert (CASES / (expected.name.split(".")[0] + ".yaml")).exists()


def test_the_sort_keeps_rule_order_and_sorts_the_rest():
    document = "\n".join([
        "add rule ip kube-proxy b second", "add element ip kube-proxy s { 2 }",
        "# a comment", "add rule ip kube-proxy a only", "add rule ip kube-proxy b first",
        "", "add element ip kube-proxy s { 1 }", "add chain ip kube-proxy b"])
    assert kube_proxy_sorted(document) == [
        "add chain ip kube-proxy b", "add rule ip kube-proxy a only",
        "add rule ip kube-proxy b second", "add rule ip kube-proxy b first",
        "add element ip kube-proxy s { 1 }", "add element ip kube-proxy s { 2 }"]


# Chain and set names that kube-proxy's TestOverallNFTablesRules and TestSyncProxyRulesRepeated
# expect (proxier_test.go at 81810de635aa), and proxier.go's own examples.
SERVICE_CHAINS = [
    (("ns1", "svc1", "tcp", "p80"), "service-ULMVA6XW-ns1/svc1/tcp/p80"),
    (("ns2", "svc2", "tcp", "p80"), "service-42NFTM6N-ns2/svc2/tcp/p80"),
    (("ns3", "svc3", "tcp", "p80"), "service-4AT6LBPK-ns3/svc3/tcp/p80"),
    (("ns4", "svc4", "tcp", "p80"), "service-LAUZTJTB-ns4/svc4/tcp/p80"),
    (("ns5", "svc5", "tcp", "p80"), "service-HVFWP5L3-ns5/svc5/tcp/p80"),
    (("ns2", "svc2", "TCP", "p8080"), "service-MHHHYRWA-ns2/svc2/tcp/p8080"),
]
ENDPOINT_CHAINS = [
    (("ns1", "svc1", "tcp", "p80", "10.180.0.1:80"),
     "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"),
    (("ns2", "svc2", "tcp", "p80", "10.180.0.2:80"),
     "endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80"),
    (("ns3", "svc3", "tcp", "p80", "10.180.0.3:80"),
     "endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80"),
    (("ns4", "svc4", "tcp", "p80", "10.180.0.4:80"),
     "endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80"),
    (("ns4", "svc4", "tcp", "p80", "10.180.0.5:80"),
     "endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80"),
    (("ns2", "svc2", "tcp", "p8080", "10.0.2.1:8080"),
     "endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080"),
    (("ns3", "svc3", "tcp", "p80", "10.0.3.3:80"),
     "endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80"),
]


@pytest.mark.parametrize("args, chain", SERVICE_CHAINS, ids=[c for _, c in SERVICE_CHAINS])
def test_service_chain_names(args, chain):
    assert nft_names.service_chain(*args) == chain


@pytest.mark.parametrize("args, chain", ENDPOINT_CHAINS, ids=[c for _, c in ENDPOINT_CHAINS])
def test_endpoint_chain_names(args, chain):
    assert nft_names.endpoint_chain(*args) == chain


def test_the_other_per_service_names_share_the_hash():
    assert (nft_names.external_chain("ns2", "svc2", "tcp", "p80")
            == "external-42NFTM6N-ns2/svc2/tcp/p80")
    assert (nft_names.firewall_chain("ns5", "svc5", "tcp", "p80")
            == "firewall-HVFWP5L3-ns5/svc5/tcp/p80")
    assert (nft_names.affinity_set("ns5", "svc5", "tcp", "p80", "10.180.0.3:80")
            == "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80")


def test_an_unnamed_port_is_an_empty_last_part_whether_none_or_empty():
    assert nft_names.service_port_base("ns1", "svc1", "tcp", "") == \
        nft_names.service_port_base("ns1", "svc1", "tcp", None)


def test_names_longer_than_240_are_cut_with_dots_after_the_hash():
    name = "n" * 63 + "/" + "s" * 63 + "/tcp/" + "p" * 63 + "__" + "1" * 60 + "/80"
    cut = nft_names.hash_and_truncate(name)
    assert len(cut) == 240 and cut.endswith("...") and cut[8:10] == "-n"
    assert len(nft_names.hash_and_truncate("ns1/svc1/tcp/p80")) == 8 + 1 + 16


def test_the_seed_service_in_nftables_mode():
    lab = lab_file.load(ROOT / "labs" / "lab-3-clusterip" / "lab.yaml")
    document = render(lab)
    chain = "service-" + nft_names.service_port_base("stateful-apps", "my-app", "tcp", "http-svc")
    assert (f"add element ip kube-proxy service-ips {{ 10.104.5.205 . tcp . 8080 : goto {chain} }}"
            in document)
    pick = [line for line in document.splitlines() if "numgen" in line]
    assert len(pick) == 1 and " mod 4 vmap " in pick[0]
    # Endpoints in "ip:port" order, as in iptables mode: .2, .5, .6, .7.
    assert re.findall(r"__172\.17\.0\.(\d)/80", pick[0]) == ["2", "5", "6", "7"]
    assert (f"add rule ip kube-proxy {chain} ip daddr 10.104.5.205 ip saddr != 10.244.0.0/16 "
            "jump mark-for-masquerade") in document
    assert "dnat to 172.17.0.2:80" in document
    assert "add element ip kube-proxy nodeport-ips { 192.168.49.2 }" in document


def declared_before_use(document: str) -> list[str]:
    """Names a line uses (a chain it jumps to, a set or map it looks up) before they exist."""
    declared, problems = set(), []
    for line in document.splitlines():
        words = line.split()
        if words[:2] in (["add", "chain"], ["add", "set"], ["add", "map"]):
            declared.add(words[4])
        elif words[:2] in (["add", "rule"], ["add", "element"]):
            used = re.findall(r"(?:jump|goto) (\S+)", line) + re.findall(r"@(\S+)", line)
            used += [words[4]]  # the chain, set or map the line adds to
            problems += [f"{name}: {line}" for name in used if name not in declared]
    return problems


@pytest.mark.parametrize("profile", PROFILES)
def test_every_name_is_declared_before_a_rule_or_element_uses_it(profile):
    # nft -f (1.0.6) refuses a jump to, or map element naming, a chain not yet declared.
    for model in [ROOT / "labs" / "lab-3-clusterip" / "lab.yaml", CASES / "overall-full.yaml"]:
        assert declared_before_use(render(lab_file.load(model), profile)) == []


def test_v1_33_layout_is_the_one_before_pre_dnat_chains():
    # proxier.go at b0f823e6 (before kubernetes PR #132456): filter chains at dstnat-10, the
    # ClusterIP port check after DNAT, and the service chain's masquerade rule matches the port.
    document = render(lab_file.load(CASES / "overall.yaml"), "v1.33")
    for line in [
        "add chain ip kube-proxy filter-output-post-dnat "
        "{ type filter hook output priority -90 ; }",
        "add chain ip kube-proxy filter-prerouting "
        "{ type filter hook prerouting priority -110 ; }",
        "add rule ip kube-proxy filter-output-post-dnat ct state new jump cluster-ips-check",
        "add rule ip kube-proxy filter-output ct state new jump firewall-check",
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 "
        "tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
    ]:
        assert line in document.splitlines(), line
    assert "pre-dnat" not in document


def test_replace_deletes_the_old_table_first_and_unknown_profiles_are_named():
    lab = lab_file.load(CASES / "overall.yaml")
    assert render(lab, replace=True).splitlines()[:2] == [
        "add table ip kube-proxy", "delete table ip kube-proxy"]
    with pytest.raises(ValueError, match="v1.33, v1.34"):
        render(lab, "v1.30")


# A real node's `nft list ruleset` of the v1.31-v1.33 generation (k3s, a public notes file found
# through the code search, logged 2025-11-24): names and rule texts kube-proxy wrote there.
K3S_NAMES = [
    (nft_names.service_chain("riset", "hellopod-np-svc", "tcp", None),
     "service-P6J77WGM-riset/hellopod-np-svc/tcp/"),
    (nft_names.external_chain("riset", "hellopod-np-svc", "tcp", None),
     "external-P6J77WGM-riset/hellopod-np-svc/tcp/"),
    (nft_names.endpoint_chain("riset", "hellopod-np-svc", "tcp", None, "10.42.2.218:8080"),
     "endpoint-VNXJG24O-riset/hellopod-np-svc/tcp/__10.42.2.218/8080"),
    (nft_names.service_chain("default", "kubernetes", "tcp", "https"),
     "service-2QRHZV4L-default/kubernetes/tcp/https"),
    (nft_names.endpoint_chain("default", "kubernetes", "tcp", "https", "10.34.4.142:6443"),
     "endpoint-MIBO4EMV-default/kubernetes/tcp/https__10.34.4.142/6443"),
]


@pytest.mark.parametrize("ours, theirs", K3S_NAMES, ids=[t for _, t in K3S_NAMES])
def test_names_on_a_real_node_including_an_unnamed_port(ours, theirs):
    assert ours == theirs


KUBE_DNS = """
id: k3s-kube-dns
title: kube-dns's UDP port on a k3s node
clusterCIDR: 10.42.0.0/16
serviceCIDR: 10.43.0.0/16
nodes: [{name: node, bridge: {name: cni0, address: 10.42.0.1/24}}]
pods:
  - {name: coredns-a, namespace: kube-system, ip: 10.42.0.171, labels: {k8s-app: kube-dns},
     ports: [{name: dns, containerPort: 53, protocol: UDP}]}
services:
  - {namespace: kube-system, name: kube-dns, selector: {k8s-app: kube-dns}, clusterIP: 10.43.0.10,
     ports: [{name: dns, port: 53, targetPort: dns, protocol: UDP}]}
"""


def test_v1_33_udp_service_rules_as_the_real_node_lists_them():
    document = render(lab_file.parse(KUBE_DNS), "v1.33")
    service = "service-FY5PMXPG-kube-system/kube-dns/udp/dns"
    endpoint = "endpoint-S4FSIJI2-kube-system/kube-dns/udp/dns__10.42.0.171/53"
    rules = [line.split(" ", 4)[4] for line in document.splitlines() if line.startswith("add rule")]
    assert [r.split(" ", 1)[1] for r in rules if r.startswith(service + " ")] == [
        "ip daddr 10.43.0.10 udp dport 53 ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
        f"numgen random mod 1 vmap {{ 0 : goto {endpoint} }}"]
    assert [r.split(" ", 1)[1] for r in rules if r.startswith(endpoint + " ")] == [
        "ip saddr 10.42.0.171 jump mark-for-masquerade", "meta l4proto udp dnat to 10.42.0.171:53"]
    assert (f"add element ip kube-proxy service-ips {{ 10.43.0.10 . udp . 53 : goto {service} }}"
            in document)


KUBE_PROXY_CASES = ROOT / "fixtures" / "golden" / "kube-proxy"


def rules_of(document: str, chain: str) -> list[str]:
    head = f"add rule ip kube-proxy {chain} "
    return [line[len(head):] for line in document.splitlines() if line.startswith(head)]


def test_internal_traffic_policy_local_goes_to_a_local_chain_of_local_endpoints():
    # kube-proxy's TestInternalTrafficPolicyE2E model: 10.0.1.1 is on test-node, .2 and .3 not.
    document = render(lab_file.load(KUBE_PROXY_CASES / "itp-local.yaml"))
    local = "local-" + nft_names.service_port_base("ns1", "svc1", "tcp", None)
    endpoint = nft_names.endpoint_chain("ns1", "svc1", "tcp", None, "10.0.1.1:80")
    assert (f"add element ip kube-proxy service-ips {{ 172.30.1.1 . tcp . 80 : goto {local} }}"
            in document)
    assert rules_of(document, local) == [
        "ip daddr 172.30.1.1 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
        f"numgen random mod 1 vmap {{ 0 : goto {endpoint} }}"]
    assert nft_names.service_chain("ns1", "svc1", "tcp", None) not in document  # no Cluster chain
    assert document.count("dnat to") == 1
    none_here = render(lab_file.load(KUBE_PROXY_CASES / "itp-local-none.yaml"))
    assert ('add element ip kube-proxy no-endpoint-services { 172.30.1.1 . tcp . 80 '
            'comment "ns1/svc1" : drop }') in none_here
    assert "dnat to" not in none_here and "add element ip kube-proxy service-ips" not in none_here


@pytest.mark.parametrize("profile, dport", [("v1.34", ""), ("v1.33", " tcp dport 80")])
def test_masquerade_all_marks_every_caller_of_the_cluster_ip(profile, dport):
    # proxier.go's masqueradeAll branch: the local detector's `ip saddr != CIDR` left out.
    document = render(lab_file.load(KUBE_PROXY_CASES / "masquerade-all-handwritten.yaml"), profile)
    chain = nft_names.service_chain("ns1", "svc1", "tcp", "p80")
    assert rules_of(document, chain)[0] == \
        f"ip daddr 172.30.0.41{dport} jump mark-for-masquerade"


def test_terminating_endpoints_serve_when_none_is_ready():
    # TestTerminatingEndpointsTrafficPolicyLocal, "terminating endpoints on remote node": the
    # one endpoint is serving and terminating, on another node; eTP Local drops outside traffic.
    document = render(lab_file.load(KUBE_PROXY_CASES / "terminating-remote.yaml"))
    service = nft_names.service_chain("ns1", "svc1", "tcp", None)
    external = nft_names.external_chain("ns1", "svc1", "tcp", None)
    assert "dnat to 10.0.1.5:80" in document
    assert (f"add element ip kube-proxy service-ips {{ 1.2.3.4 . tcp . 80 : goto {external} }}"
            in document)
    assert ('add element ip kube-proxy no-endpoint-services { 1.2.3.4 . tcp . 80 '
            'comment "ns1/svc1" : drop }') in document
    assert rules_of(document, external) == [
        f'ip saddr 10.0.0.0/8 goto {service} comment "short-circuit pod traffic"',
        'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
        f'fib saddr type local goto {service} comment "short-circuit local traffic"']


NO_ENDPOINTS_LB = """
id: no-endpoints-lb
title: kube-proxy's TestNoEndpointsReject (pkg/proxy/nftables/proxier_test.go)
profile: v1.34
clusterCIDR: 10.0.0.0/8
serviceCIDR: 172.30.0.0/16
nodeNetwork: 192.168.0.0/24
nodePortRange: 3000-32767
nodes: [{name: test-node, ip: 192.168.0.2, bridge: {name: cni0, address: 10.0.1.254/24}}]
services:
  - {namespace: ns1, name: svc1, type: LoadBalancer, selector: {app: svc1}, clusterIP: 172.30.0.41,
     externalIPs: [192.168.99.11], loadBalancerIPs: [1.2.3.4],
     loadBalancerSourceRanges: [192.168.0.0/24], ports: [{name: p80, port: 80, nodePort: 3001}]}
"""


def test_without_endpoints_every_address_of_the_service_is_rejected():
    document = render(lab_file.parse(NO_ENDPOINTS_LB))
    elements = [line for line in document.splitlines() if "reject-chain }" in line]
    assert elements == [
        f'add element ip kube-proxy {where} comment "ns1/svc1:p80" : goto reject-chain }}'
        for where in ("no-endpoint-services { 172.30.0.41 . tcp . 80",
                      "no-endpoint-services { 192.168.99.11 . tcp . 80",
                      "no-endpoint-services { 1.2.3.4 . tcp . 80",
                      "no-endpoint-nodeports { tcp . 3001")]
    assert "add chain ip kube-proxy external-" not in document
    assert "add element ip kube-proxy service-ips" not in document
    # The firewall chain does not wait for endpoints; a range holding the node's IP admits the
    # node's own connections to its load balancer IP, which come back with that IP as source.
    firewall = nft_names.firewall_chain("ns1", "svc1", "tcp", "p80")
    assert rules_of(document, firewall) == ["ip saddr != { 192.168.0.0/24 , 1.2.3.4 } drop"]


def test_match_all_nodeport_addresses_drop_the_set_for_fib_daddr_type_local():
    # setupNFTables with nodePortAddresses.MatchAll(): no nodeport-ips set after the sync, and
    # node ports on every local address but localhost.
    lab = lab_file.load(CASES / "overall-svc3.yaml")
    document = render(lab, nodeport_addresses="all")
    assert "nodeport-ips" not in document
    assert rules_of(document, "services")[-1] == (
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
        "vmap @service-nodeports")
    assert rules_of(document, "nodeport-endpoints-check") == [
        "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"]
    assert declared_before_use(document) == []
    with pytest.raises(ValueError, match="primary, all"):
        render(lab, nodeport_addresses="0.0.0.0/0")


BOTH_LOCAL = """
id: both-local
title: internalTrafficPolicy and externalTrafficPolicy Local on one NodePort Service
profile: v1.34
clusterCIDR: 10.0.0.0/8
serviceCIDR: 172.30.0.0/16
nodeNetwork: 192.168.0.0/24
nodePortRange: 3000-32767
nodes: [{name: test-node, ip: 192.168.0.2, bridge: {name: cni0, address: 10.180.0.254/24}}]
pods:
  - {name: a, namespace: ns1, ip: 10.180.0.1, labels: {app: a}}
  - {name: b, namespace: ns1, ip: 10.180.0.2, nodeName: other, labels: {app: a}}
services:
  - {namespace: ns1, name: svc1, type: NodePort, externalTrafficPolicy: Local,
     internalTrafficPolicy: Local, selector: {app: a}, clusterIP: 172.30.0.41,
     ports: [{name: p80, port: 80, nodePort: 3001}]}
"""


def test_both_policies_local_keep_the_cluster_chain_the_short_circuits_go_to():
    # UsesClusterEndpoints (pkg/proxy/serviceport.go): !internalPolicyLocal ||
    # ExternallyAccessible(). Pods' and the node's own connections to the node port go to the
    # Cluster chain, over every endpoint; the clusterIP and outside callers to the local one.
    document = render(lab_file.parse(BOTH_LOCAL))
    assert declared_before_use(document) == []
    service = nft_names.service_chain("ns1", "svc1", "tcp", "p80")
    local = "local-" + nft_names.service_port_base("ns1", "svc1", "tcp", "p80")
    assert " mod 2 vmap " in rules_of(document, service)[-1]
    assert " mod 1 vmap " in rules_of(document, local)[-1]
    assert (f"add element ip kube-proxy service-ips {{ 172.30.0.41 . tcp . 80 : goto {local} }}"
            in document)
