"""kube-proxy's chain names: the seed's, and those in kube-proxy's own tests."""

import pytest

from lab_runner.ruleset import names

SEED_PORT = "stateful-apps/my-app:http-svc"


def test_seed_service_chain():
    assert names.service_chain(SEED_PORT, "tcp") == "KUBE-SVC-Q7IJ732UBZY4AJKA"


@pytest.mark.parametrize("endpoint, chain", [
    ("172.17.0.2:80", "KUBE-SEP-TWZJG7ZWZYI5EC7J"),
    ("172.17.0.5:80", "KUBE-SEP-LCP7KINQA756A5JS"),
    ("172.17.0.6:80", "KUBE-SEP-XCVGJ5SWPGOUASPD"),
    ("172.17.0.7:80", "KUBE-SEP-56377YKM7VKGGV6C"),
])
def test_seed_endpoint_chains(endpoint, chain):
    assert names.endpoint_chain(SEED_PORT, "tcp", endpoint) == chain


def test_protocol_is_lower_cased_as_kube_proxy_does():
    assert names.service_chain(SEED_PORT, "TCP") == names.service_chain(SEED_PORT, "tcp")
    assert names.endpoint_chain(SEED_PORT, "TCP", "172.17.0.2:80") == "KUBE-SEP-TWZJG7ZWZYI5EC7J"


def test_protocol_is_part_of_the_hash():
    assert names.service_chain(SEED_PORT, "udp") != names.service_chain(SEED_PORT, "tcp")


def test_names_from_kube_proxy_proxier_test():
    # pkg/proxy/iptables/proxier_test.go, TestOverallIPTablesRulesWithMultipleServices
    assert names.service_chain("ns1/svc1:p80", "tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert names.endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert names.external_chain("ns2/svc2:p80", "tcp") == "KUBE-EXT-GNZBNJ2PO5MGZ6GT"
    assert names.firewall_chain("ns5/svc5:p80", "tcp") == "KUBE-FW-NUKIZ6OKUXPJNT4C"


def test_kube_dns_chains_seen_on_every_cluster():
    assert names.service_chain("kube-system/kube-dns:dns", "UDP") == "KUBE-SVC-TCOU7JCQXEZGVUNU"
    assert names.service_chain("kube-system/kube-dns:dns-tcp", "TCP") == "KUBE-SVC-ERIFXISQEP7F7OF4"


def test_per_service_chains_share_the_hash_and_fit_iptables_limit():
    suffix = names.port_proto_hash(SEED_PORT, "tcp")
    made = [f(SEED_PORT, "tcp") for f in (names.service_chain, names.local_service_chain,
                                          names.external_chain, names.firewall_chain,
                                          names.xlb_chain)]
    assert [m.rsplit("-", 1)[1] for m in made] == [suffix] * 5
    assert all(len(m) <= 28 for m in made + [names.endpoint_chain(SEED_PORT, "tcp", "1.2.3.4:5")])


def test_is_per_service_chain():
    assert names.is_per_service_chain("KUBE-SEP-TWZJG7ZWZYI5EC7J")
    assert names.is_per_service_chain("KUBE-XLB-Q7IJ732UBZY4AJKA")
    assert not names.is_per_service_chain("KUBE-SERVICES")
    assert not names.is_per_service_chain("KUBE-MARK-MASQ")
