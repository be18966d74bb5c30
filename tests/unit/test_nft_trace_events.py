"""nft monitor trace's events read into a path through kube-proxy's chains, and the kit's own
trace table (no root: the text is what nft 1.0.6 printed for a probe in a lab node)."""

from __future__ import annotations

from lab_runner.evidence import nft_trace
from lab_runner.ruleset.nft_parse import parse_nft

SVC = "service-ULMVA6XW-stateful-apps/my-app/tcp/http-svc"
EP = "endpoint-5OJB2BYL-stateful-apps/my-app/tcp/http-svc__172.17.0.5/80"
PACKET = ('iif "eth0" ether saddr 3a:1b ether daddr 4e:2c ip saddr 192.168.49.1 ip daddr '
          '10.104.5.205 ip dscp cs0 ip ttl 64 tcp sport 61234 tcp dport 8080 tcp flags == syn')
EVENTS = f"""trace id 8d5103dd ip kplab-trace trace-prerouting packet: {PACKET}
trace id 8d5103dd ip kplab-trace trace-prerouting rule ip saddr 192.168.49.1 meta nftrace set 1 (verdict continue)
trace id 8d5103dd ip kplab-trace trace-prerouting policy accept
trace id 8d5103dd ip kube-proxy nat-prerouting packet: {PACKET}
trace id 8d5103dd ip kube-proxy nat-prerouting rule jump services (verdict jump services)
trace id 8d5103dd ip kube-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips (verdict goto {SVC})
trace id 8d5103dd ip kube-proxy {SVC} rule ip daddr 10.104.5.205 ip saddr != 10.244.0.0/16 jump mark-for-masquerade (verdict jump mark-for-masquerade)
trace id 8d5103dd ip kube-proxy mark-for-masquerade rule meta mark set meta mark | 0x00004000 (verdict continue)
trace id 8d5103dd ip kube-proxy mark-for-masquerade verdict continue
trace id 8d5103dd ip kube-proxy {SVC} rule numgen random mod 4 vmap {{ 0 : goto a, 1 : goto {EP} }} (verdict goto {EP})
trace id 8d5103dd ip kube-proxy {EP} rule meta l4proto tcp dnat to 172.17.0.5:80 (verdict accept)
trace id 8d5103dd ip kube-proxy nat-postrouting packet: iif "eth0" oif "docker0" ip saddr 192.168.49.1 ip daddr 172.17.0.5 tcp sport 61234 tcp dport 80
trace id 8d5103dd ip kube-proxy nat-postrouting rule jump masquerading (verdict jump masquerading)
trace id 8d5103dd ip kube-proxy masquerading rule masquerade fully-random (verdict accept)
trace id 77777777 ip kube-proxy nat-prerouting rule jump services (verdict jump services)
"""


def test_the_path_is_kube_proxys_chains_in_order_without_the_kits_table():
    path = nft_trace.parse(EVENTS)
    assert path.chains() == ["nat-prerouting", "services", SVC, "mark-for-masquerade", SVC, EP,
                             "nat-postrouting", "masquerading"]
    assert all(hop.table == "kube-proxy" for hop in path.hops)
    pick = path.hops[5]
    assert (pick.verdict, pick.target) == ("goto", EP)
    assert pick.rule.startswith("numgen random mod 4 vmap")
    assert path.hops[4].rule == "end of chain"


def test_addresses_before_and_after_nat_come_from_the_packet_events():
    path = nft_trace.parse(EVENTS)
    assert path.before_nat() == {"SRC": "192.168.49.1", "DST": "10.104.5.205", "SPORT": "61234",
                                 "DPORT": "8080"}
    assert path.after_nat()["DST"] == "172.17.0.5" and path.after_nat()["DPORT"] == "80"


def test_a_second_packet_of_the_connection_is_left_out():
    assert "77777777" not in "".join(h.rule for h in nft_trace.parse(EVENTS).hops)
    assert len(nft_trace.parse(EVENTS).hops) == 9


def test_the_trace_table_is_the_kits_own_before_kube_proxys_chains_and_marks_one_syn():
    rule = nft_trace.match_rule("tcp", "192.168.49.1", "10.104.5.205", 8080, 61234)
    ruleset = parse_nft(nft_trace.trace_document(rule))
    assert set(t for _, t in ruleset.tables) == {"kplab-trace"}
    table = ruleset.table("ip", "kplab-trace")
    assert {c.hook: c.priority for c in table.chains.values()} == {"prerouting": -400,
                                                                   "output": -400}
    assert "tcp sport 61234" in rule and "== syn meta nftrace set 1" in rule
