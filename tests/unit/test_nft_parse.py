"""The nftables reader: the kit's render and the kernel's listing of it read into one model;
counters, handles, wrapped elements and element options; errors that name the line; what it
does not model, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab_runner import lab_file
from lab_runner.ruleset.nft_model import (Element, Lookup, MarkSet, Match, Nat, NoOp, Unmodelled,
                                          Verdict)
from lab_runner.ruleset.nft_parse import NftSyntaxError, parse_nft
from lab_runner.ruleset.nft_render import PROFILES, render

ROOT = Path(__file__).resolve().parents[2]
LISTINGS = ROOT / "fixtures" / "nftables-listings"
LAB3 = lab_file.load("lab-3")
SERVICE_CHAIN = "service-54NX2MGN-stateful-apps/my-app/tcp/http-svc"


def model(ruleset) -> dict:
    """What a packet meets, without where it was written: chains, rules' statements, sets."""
    out = {}
    for key, table in ruleset.tables.items():
        chains = {name: (c.type, c.hook, c.priority, c.policy, c.comment,
                         [r.statements for r in c.rules]) for name, c in table.chains.items()}
        sets = {name: (s.kind, s.key_type, s.data_type, s.flags, sorted(s.elements, key=str))
                for name, s in table.sets.items()}
        out[key] = (table.comment, chains, sets)
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_the_render_and_the_kernels_listing_of_it_read_the_same(profile):
    listed = parse_nft((LISTINGS / f"lab-3.{profile}.txt").read_text())
    rendered = parse_nft(render(LAB3, profile))
    assert model(listed) == model(rendered)
    assert listed.unmodelled == [] and rendered.unmodelled == []


def test_the_listing_with_handles_reads_the_same_and_keeps_them():
    plain = parse_nft((LISTINGS / "lab-3.v1.34.txt").read_text())
    handles = parse_nft((LISTINGS / "lab-3.v1.34.handles.txt").read_text())
    assert model(handles) == model(plain)
    rules = [r for c in handles.table("ip", "kube-proxy").chains.values() for r in c.rules]
    assert rules and all(isinstance(r.handle, int) for r in rules)
    assert "# handle" not in rules[0].text


def test_lab3_read_as_kube_proxy_wrote_it():
    table = parse_nft(render(LAB3, "v1.34")).table("ip", "kube-proxy")
    assert table.comment == "rules for kube-proxy"
    hooks = {(c.name, c.type, c.hook, c.priority) for c in table.chains.values() if c.base}
    assert hooks == {
        ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
        ("filter-output-pre-dnat", "filter", "output", -110),
        ("filter-input", "filter", "input", 0), ("filter-forward", "filter", "forward", 0),
        ("filter-output", "filter", "output", 0), ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100), ("nat-postrouting", "nat", "postrouting", 100)}
    masq, pick = table.chains[SERVICE_CHAIN].rules
    assert masq.statements == (Match(("ip daddr",), False, ("10.104.5.205",)),
                               Match(("ip saddr",), True, ("10.244.0.0/16",)),
                               Verdict("jump", "mark-for-masquerade"))
    assert pick.statements[0].numgen == (4, 0)
    assert [e.key for e in pick.statements[0].elements] == [("0",), ("1",), ("2",), ("3",)]
    assert table.sets["service-ips"].elements == [
        Element(("10.104.5.205", "tcp", "8080"), Verdict("goto", SERVICE_CHAIN))]
    assert table.sets["service-ips"].key_type == "ipv4_addr . inet_proto . inet_service"
    assert table.sets["service-ips"].data_type == "verdict"
    assert table.chains["masquerading"].rules[0].statements == (
        Match(("meta mark",), False, ("0",), mask=0x4000), Verdict("return"))
    assert table.chains["mark-for-masquerade"].rules[0].statements == (MarkSet("or", 0x4000),)


def test_line_numbers_are_those_of_the_text():
    document = render(LAB3, "v1.34")
    lines = document.splitlines()
    table = parse_nft(document).table("ip", "kube-proxy")
    for chain in table.chains.values():
        for rule in chain.rules:
            assert lines[rule.line_no - 1].endswith(rule.text)
    listing = (LISTINGS / "lab-3.v1.34.txt").read_text().splitlines()
    chain = parse_nft("\n".join(listing)).table("ip", "kube-proxy").chains["masquerading"]
    assert listing[chain.line_no - 1].strip() == "chain masquerading {"
    assert listing[chain.rules[2].line_no - 1].strip() == "masquerade fully-random"


def test_golden_elements_with_a_comment_before_the_verdict():
    text = (ROOT / "fixtures" / "golden" / "nftables" / "overall.v1.34.expected").read_text()
    table = parse_nft(text).table("ip", "kube-proxy")
    assert table.sets["no-endpoint-services"].elements == [
        Element(("172.30.0.46", "tcp", "80"), Verdict("goto", "reject-chain"))]
    sticky = table.sets["affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"]
    assert sticky.flags == ("dynamic", "timeout") and sticky.elements == []


LISTED = """\
table ip kube-proxy { # handle 7
	set affinity-X { # handle 3
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		timeout 3h
		elements = { 10.0.0.1 timeout 3h expires 2h59m, 10.0.0.2 expires 1h,
			     10.0.0.3 }
	}

	map m {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.96.0.1 . tcp . 443 comment "default/kubernetes:https" : goto c,
			     10.96.0.10 . udp . 53 counter packets 3 bytes 180 : drop }
	}

	chain c { # handle 4
		counter packets 12 bytes 720 ip saddr { 10.0.0.0/8, 192.168.1.1 } accept # handle 9
		ct state established,related accept
		reject with icmp type port-unreachable
	}

	chain base {
		type filter hook input priority filter + 5; policy drop;
		tcp dport != 22 jump c
	}
}
"""


def test_the_kernel_listings_extras_counters_options_and_wrapped_elements():
    ruleset = parse_nft(LISTED)
    table = ruleset.table("ip", "kube-proxy")
    assert [e.key for e in table.sets["affinity-X"].elements] == [
        ("10.0.0.1",), ("10.0.0.2",), ("10.0.0.3",)]
    assert table.sets["m"].elements == [
        Element(("10.96.0.1", "tcp", "443"), Verdict("goto", "c")),
        Element(("10.96.0.10", "udp", "53"), Verdict("drop"))]
    first, second, third = table.chains["c"].rules
    assert first.handle == 9
    assert first.statements == (NoOp("counter"), Match(("ip saddr",), False,
                                                       ("10.0.0.0/8", "192.168.1.1")),
                                Verdict("accept"))
    assert second.statements == (Match(("ct state",), False, ("established", "related")),
                                 Verdict("accept"))
    assert third.statements == (Verdict("reject"),)
    base = table.chains["base"]
    assert (base.hook, base.priority, base.policy) == ("input", 5, "drop")
    assert base.rules[0].statements == (Match(("tcp dport",), True, ("22",)), Verdict("jump", "c"))


def test_commands_insert_flush_and_delete():
    ruleset = parse_nft("\n".join([
        "add table ip t", "add chain ip t c", "add rule ip t c ip daddr 1.2.3.4 drop",
        "insert rule ip t c ip daddr 5.6.7.8 accept", "add set ip t s { type ipv4_addr ; }",
        "add element ip t s { 1.1.1.1, 2.2.2.2 }", "flush set ip t s",
        "add element ip t s { 3.3.3.3, 4.4.4.4, 5.5.5.5 }", "delete element ip t s { 4.4.4.4 }",
        "add element ip t s { 3.3.3.3 }", "add table ip gone", "delete table ip gone"]))
    table = ruleset.table("ip", "t")
    assert [r.text for r in table.chains["c"].rules] == ["ip daddr 5.6.7.8 accept",
                                                         "ip daddr 1.2.3.4 drop"]
    assert table.sets["s"].elements == [Element(("3.3.3.3",)), Element(("5.5.5.5",))]
    assert set(ruleset.tables) == {("ip", "t")}


def test_nat_statements():
    table = parse_nft("\n".join([
        "add table ip t", "add chain ip t c", "add rule ip t c meta l4proto tcp dnat to 10.0.0.1:80",
        "add rule ip t c snat ip to 192.168.0.1", "add rule ip t c masquerade random,persistent",
        "add rule ip t c update @s { ip saddr }",
        'add rule ip t c log prefix "kp: " level info ip daddr 1.2.3.4 drop'])).table("ip", "t")
    assert [r.statements for r in table.chains["c"].rules[:4]] == [
        (Match(("meta l4proto",), False, ("tcp",)), Nat("dnat", "10.0.0.1", 80)),
        (Nat("snat", "192.168.0.1"),), (Nat("masquerade"),),
        (table.chains["c"].rules[3].statements[0],)]
    assert table.chains["c"].rules[3].statements[0].set_name == "s"
    assert table.chains["c"].rules[4].statements == (
        NoOp("log"), Match(("ip daddr",), False, ("1.2.3.4",)), Verdict("drop"))


@pytest.mark.parametrize(("text", "line", "says"), [
    ("add table ip t\nadd rule ip t nowhere accept", 2, "not declared before it"),
    ("table ip t {\n\tchain c {\n\t\taccept\n\t}\n", 4, "a '}' is missing"),
    ("table ip t {\n\tchain c {\n\t\ttype filter hook input priority soon; policy accept;\n\t}\n}",
     3, "priority 'soon'"),
    ("add table ip t\nadd map ip t m { type ipv4_addr : verdict ; }\n"
     "add element ip t m { 1.2.3.4 5.6.7.8 : drop }", 3, "expected KEY or KEY . KEY"),
    ("iptables -A INPUT -j DROP", 1, "expected `table FAMILY NAME {`"),
    ("add table ip t\nadd chain ip t c\nadd rule ip t c ip daddr", 3, "without a value"),
    ("add table ip t\nadd chain ip t c\nadd rule ip t c jump", 3, "ends early"),
    ("table ip t {\n\tset s {\n\t\telements = { 1.2.3.4,\n", 3, "never closed"),
    ("add table ip t\nadd chain ip t c { type filter hook input priority 0 ; colour red ; }",
     2, "chain option 'colour red'"),
])
def test_malformed_text_names_its_line(text, line, says):
    with pytest.raises(NftSyntaxError) as caught:
        parse_nft(text)
    assert caught.value.line_no == line
    assert says in str(caught.value) and f"line {line}" in str(caught.value)


def test_what_it_does_not_model_is_kept_and_named():
    ruleset = parse_nft("\n".join([
        "table inet f {", "\tflowtable ft {", "\t\thook ingress priority 0", "\t\tdevices = { eth0 }",
        "\t}", "\tchain c {", "\t\tip saddr 1.2.3.4 limit rate 10/second accept", "\t}", "}"]))
    rule = ruleset.table("inet", "f").chains["c"].rules[0]
    assert rule.statements == (Match(("ip saddr",), False, ("1.2.3.4",)),
                               Unmodelled("limit rate 10/second accept"))
    assert ruleset.unmodelled == [(2, "flowtable ft (an nftables flowtable object)"),
                                  (7, "c: limit rate 10/second accept")]


def test_a_lookup_keeps_its_concatenated_key():
    table = parse_nft((LISTINGS / "lab-3.v1.34.txt").read_text()).table("ip", "kube-proxy")
    (rule,) = table.chains["services"].rules[:1]
    assert rule.statements == (Lookup(("ip daddr", "meta l4proto", "th dport"),
                                      map_ref="service-ips"),)
