"""Semantic comparison: what iptables rewrites compares equal; real differences are named precisely."""

from __future__ import annotations

import pytest

from lab_runner import lab_file
from lab_runner.ruleset.compare import compare, kernel_probability, normalize
from lab_runner.ruleset.parse import parse
from lab_runner.ruleset.render import render

SVC = "KUBE-SVC-Q7IJ732UBZY4AJKA"


def doc(*rules: str, chains: tuple[str, ...] = ("KUBE-X", "KUBE-Y"), table: str = "nat") -> str:
    declared = "".join(f":{c} - [0:0]\n" for c in chains)
    return f"*{table}\n{declared}" + "".join(f"{r}\n" for r in rules) + "COMMIT\n"


def one(rule: str, table: str = "nat"):
    return parse(doc(rule, table=table)).chain(table, rule.split()[1]).rule(1)


@pytest.fixture(scope="module")
def lab3_doc():
    return render(lab_file.load("lab-3"))


@pytest.mark.parametrize("written, saved", [
    # iptables adds /32 and moves -p/-s/-d in front of the matches
    ('-A KUBE-X -m comment --comment "a b" -m tcp -p tcp -d 10.1.2.3 --dport 80 -j KUBE-Y',
     '-A KUBE-X -d 10.1.2.3/32 -p tcp -m comment --comment "a b" -m tcp --dport 80 -j KUBE-Y'),
    # the kernel stores lround(p * 2^31) and prints it back with 11 decimals
    ("-A KUBE-X -m statistic --mode random --probability 0.3333333333 -j KUBE-Y",
     "-A KUBE-X -m statistic --mode random --probability 0.33333333349 -j KUBE-Y"),
    ("-A KUBE-X -m statistic --mode random --probability 0.2500000000 -j KUBE-Y",
     "-A KUBE-X -m statistic --mode random --probability 0.25000000000 -j KUBE-Y"),
    ("-A KUBE-X -j MARK --or-mark 0x00004000", "-A KUBE-X -j MARK --set-xmark 0x4000/0x4000"),
    ("-A KUBE-X -j MARK --xor-mark 0x4000", "-A KUBE-X -j MARK --set-xmark 0x4000/0x0"),
    ("-A KUBE-X -j MARK --set-mark 0x1", "-A KUBE-X -j MARK --set-xmark 0x1/0xffffffff"),
    ("-A KUBE-X -m mark ! --mark 0x00004000/0x00004000 -j RETURN",
     "-A KUBE-X -m mark ! --mark 0x4000/0x4000 -j RETURN"),
    ("-A KUBE-X -m comment --comment ns/svc:p -s 10.0.0.1 -j KUBE-Y",
     '-A KUBE-X -s 10.0.0.1/32 -m comment --comment "ns/svc:p" -j KUBE-Y'),
    ("-A KUBE-X -m comment --comment 'one two' -j KUBE-Y",
     '-A KUBE-X -m comment --comment "one two" -j KUBE-Y'),
    ("-A KUBE-X -m comment --comment x -m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80",
     "-A KUBE-X -p tcp -m comment --comment x -m tcp -j DNAT --to-destination 10.0.0.1:80"),
    ("-A KUBE-X -m recent --name KUBE-Y --rcheck --seconds 10800 --reap -j KUBE-Y",
     "-A KUBE-X -m recent --rcheck --seconds 10800 --reap --name KUBE-Y "
     "--mask 255.255.255.255 --rsource -j KUBE-Y"),
    ("-A KUBE-X -m recent --name KUBE-Y --set -m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80",
     "-A KUBE-X -p tcp -m recent --set --name KUBE-Y --mask 255.255.255.255 --rsource -m tcp "
     "-j DNAT --to-destination 10.0.0.1:80"),
    ("-A KUBE-X -m udp -p udp -d 10.96.0.10 --dport 53 -j KUBE-Y",
     "-A KUBE-X -d 10.96.0.10/32 -p 17 -m udp --dport 53 -j KUBE-Y"),
    ("-A KUBE-X -p tcp --dport 80 -j KUBE-Y", "-A KUBE-X -p tcp -m tcp --dport 80 -j KUBE-Y"),
    ("-A KUBE-X -s 10.244.1.7/16 -j KUBE-Y", "-A KUBE-X -s 10.244.0.0/16 -j KUBE-Y"),
    ("-A KUBE-X -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
     "-A KUBE-X -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"),
    ("-A KUBE-X -m state --state NEW -j ACCEPT", "-A KUBE-X -m conntrack --ctstate NEW -j ACCEPT"),
])
def test_equal_after_normalisation(written, saved):
    result = compare(doc(written), doc(saved))
    assert result.equal, result.text


def test_reject_default_and_alias():
    written = doc("-A KUBE-X -m tcp -p tcp -d 10.0.0.1 --dport 80 -j REJECT", table="filter")
    saved = doc("-A KUBE-X -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j REJECT "
                "--reject-with icmp-port-unreachable", table="filter")
    alias = doc("-A KUBE-X -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j REJECT "
                "--reject-with port-unreach", table="filter")
    assert compare(written, saved).equal and compare(written, alias).equal
    tcp_reset = saved.replace("icmp-port-unreachable", "tcp-reset")
    assert not compare(written, tcp_reset).equal


@pytest.mark.parametrize("a, b, hint", [
    ("-A KUBE-X -m statistic --mode random --probability 0.5 -j KUBE-Y",
     "-A KUBE-X -m statistic --mode random --probability 0.34 -j KUBE-Y", "-m statistic"),
    ("-A KUBE-X ! -s 10.244.0.0/16 -j KUBE-Y", "-A KUBE-X -s 10.244.0.0/16 -j KUBE-Y",
     "addresses"),
    ("-A KUBE-X -j KUBE-Y", "-A KUBE-X -g KUBE-Y", "target"),
    ("-A KUBE-X -j DNAT --to-destination 10.0.0.1:80",
     "-A KUBE-X -j DNAT --to-destination 10.0.0.1:8080", "target"),
    ("-A KUBE-X -j MARK --or-mark 0x4000", "-A KUBE-X -j MARK --or-mark 0x8000", "target"),
    ("-A KUBE-X -m tcp -p tcp --dport 80 -j KUBE-Y", "-A KUBE-X -m udp -p udp --dport 80 -j KUBE-Y",
     "addresses/protocol"),
    ("-A KUBE-X -m comment --comment a -j KUBE-Y", "-A KUBE-X -m comment --comment b -j KUBE-Y",
     "-m comment"),
])
def test_real_differences_are_found(a, b, hint):
    result = compare(doc(a), doc(b))
    assert not result.equal
    (difference,) = result.differences
    assert str(difference).startswith("nat KUBE-X rule 1: expected ")
    assert hint in difference.hint


def test_diff_text_names_table_chain_and_rule(lab3_doc):
    wrong = lab3_doc.replace("--probability 0.3333333333", "--probability 0.5")
    result = compare(lab3_doc, wrong)
    assert result.text == (
        f"nat {SVC} rule 3: expected -m comment --comment stateful-apps/my-app:http-svc "
        "-m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-LCP7KINQA756A5JS "
        "got -m comment --comment stateful-apps/my-app:http-svc -m statistic --mode random "
        "--probability 0.5 -j KUBE-SEP-LCP7KINQA756A5JS (differs in -m statistic)")


def test_missing_extra_and_reordered_rules(lab3_doc):
    lines = lab3_doc.splitlines(keepends=True)
    picks = [i for i, line in enumerate(lines) if line.startswith(f"-A {SVC} -m comment --comment "
                                                                  "stateful-apps/my-app:http-svc -")]
    missing = "".join(line for i, line in enumerate(lines) if i != picks[-1])
    assert [str(d) for d in compare(lab3_doc, missing).differences] == [
        f"nat {SVC} rule 5: missing: -m comment --comment stateful-apps/my-app:http-svc "
        "-j KUBE-SEP-56377YKM7VKGGV6C"]
    assert compare(missing, lab3_doc).differences[0].kind == "extra rule"
    swapped = list(lines)
    swapped[picks[0]], swapped[picks[1]] = swapped[picks[1]], swapped[picks[0]]
    assert not compare(lab3_doc, "".join(swapped)).equal


def test_missing_and_extra_chains():
    want = doc("-A KUBE-X -j KUBE-Y")
    got = doc("-A KUBE-X -j KUBE-Z", chains=("KUBE-X", "KUBE-Z"))
    texts = [str(d) for d in compare(want, got).differences]
    assert "nat KUBE-Y: missing chain (expected 0 rule(s))" in texts
    assert "nat KUBE-Z: unexpected chain (0 rule(s))" in texts
    assert any(t.startswith("nat KUBE-X rule 1: expected -j KUBE-Y got -j KUBE-Z") for t in texts)


def test_missing_table_means_missing_chains(lab3_doc):
    nat_only = lab3_doc[lab3_doc.index("*nat"):]
    result = compare(lab3_doc, nat_only)
    assert {d.table for d in result.differences} == {"mangle", "filter"}
    assert compare(lab3_doc, nat_only, tables=["nat"]).equal


def test_builtin_chains_compare_only_the_kube_jumps(lab3_doc):
    other = lab3_doc.replace("*nat\n", "*nat\n:DOCKER - [0:0]\n").replace(
        "-A PREROUTING -m comment", "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n"
                                    "-A PREROUTING -m comment")
    assert compare(lab3_doc, other).equal
    assert not compare(lab3_doc, other, chains=["PREROUTING"]).equal
    no_jump = lab3_doc.replace(
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n', "")
    assert [str(d) for d in compare(lab3_doc, no_jump).differences] == [
        'nat PREROUTING rule 1: missing: -m comment --comment "kubernetes service portals" '
        "-j KUBE-SERVICES"]


def test_restricting_to_chains_and_ignoring_comments(lab3_doc):
    renamed = lab3_doc.replace("stateful-apps/my-app:http-svc", "my comment")
    assert not compare(lab3_doc, renamed).equal
    assert compare(lab3_doc, renamed, comments=False).equal
    broken = lab3_doc.replace("--to-destination 172.17.0.2:80", "--to-destination 172.17.0.3:80")
    assert compare(lab3_doc, broken, chains=[SVC]).equal
    assert not compare(lab3_doc, broken, chains=["KUBE-SEP-TWZJG7ZWZYI5EC7J"]).equal


def test_v123_and_v130_differ_only_where_kube_proxy_changed(lab3_doc):
    lab = lab_file.load("lab-3")
    result = compare(lab3_doc, render(lab, "v1.30"))
    kinds = {(d.kind, d.chain) for d in result.differences}
    assert ("missing chain", "KUBE-MARK-DROP") in kinds
    assert ("extra chain", "KUBE-PROXY-FIREWALL") in kinds
    assert {d.chain for d in result.differences if d.kind == "changed rule"} == {SVC}


@pytest.mark.parametrize("p, stored", [
    ("0.2500000000", 536870912), ("0.3333333333", 715827883), ("0.33333333349", 715827883),
    ("0.5000000000", 1073741824), ("0.1428571429", 306783378), ("0.14285714272", 306783378),
    ("0.1666666667", 357913941), ("1", 1 << 31), ("0", 0),
])
def test_kernel_probability_is_libxt_statistics_lround(p, stored):
    assert kernel_probability(p) == stored


def test_normalize_is_hashable_and_ignores_spelling():
    a = one('-A KUBE-X -m comment --comment "x" -m tcp -p tcp -d 10.0.0.1 --dport 80 -j KUBE-Y')
    b = one("-A KUBE-X -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -m comment --comment x -j KUBE-Y")
    assert hash(normalize(a)) == hash(normalize(b)) and normalize(a) == normalize(b)
