"""What `nft -f` (nftables 1.0.6 on the kit's kernel) refuses, the kit's nft reader refuses too,
naming the line: found by the nftables differential test (tests/integration/
test_differential_nft.py), where the intake took these variants of lab 7's table and nft did not.
"""

from __future__ import annotations

import pytest

from lab_runner.ruleset.nft_parse import NftSyntaxError, parse_nft

HEAD = ["add table ip t", "add chain ip t a", "add chain ip t b", "add chain ip t c"]


def document(*lines: str) -> str:
    return "\n".join(HEAD + list(lines)) + "\n"


@pytest.mark.parametrize(("line", "nft_says"), [
    # Overlapping keys of an anonymous verdict map, whatever the verdicts.
    ("add rule ip t c numgen random mod 4 vmap { 0-1 : goto a , 1 : goto b }", "conflicting"),
    ("add rule ip t c numgen random mod 4 vmap { 0-1 : goto a , 0 : goto a }", "conflicting"),
    ("add rule ip t c numgen random mod 4 vmap { 0-1 : goto a , 1-2 : goto a }", "conflicting"),
    ("add rule ip t c tcp dport vmap { 80-90 : goto a , 85 : goto b }", "conflicting"),
    ("add rule ip t c ip daddr vmap { 10.0.0.0/8 : goto a , 10.1.0.5 : goto a }", "conflicting"),
    # The named priorities at a hook not their own.
    ("add chain ip t f { type filter hook output priority dstnat ; }", "invalid priority"),
    ("add chain ip t n { type nat hook input priority srcnat ; }", "invalid priority"),
    ("add chain ip t n { type nat hook forward priority dstnat ; }", "invalid priority"),
    ("add chain ip t p { type filter hook input priority 0 ; policy drop ; policy accept ; }",
     "policy twice"),
    # A nat chain at conntrack's priority or before it (-199 is taken).
    ("add chain ip t n { type nat hook prerouting priority -200 ; }", "Operation not supported"),
    ("add chain ip t n { type nat hook postrouting priority raw ; }", "Operation not supported"),
])
def test_what_nft_refuses_the_reader_refuses_naming_the_line(line, nft_says):
    with pytest.raises(NftSyntaxError) as caught:
        parse_nft(document(line))
    assert caught.value.line_no == len(HEAD) + 1 and nft_says in str(caught.value)


@pytest.mark.parametrize("line", [
    # What nft takes: the same key twice with the same verdict, keys side by side, anonymous
    # sets (not maps) with overlaps, each named priority at its own hook.
    "add rule ip t c numgen random mod 4 vmap { 0 : goto a , 0 : goto a }",
    "add rule ip t c numgen random mod 4 vmap { 0-1 : goto a , 0-1 : goto a }",
    "add rule ip t c numgen random mod 4 vmap { 0-1 : goto a , 2-3 : goto b }",
    "add rule ip t c ip daddr { 10.0.0.0/8 , 10.0.0.5 } accept",
    "add rule ip t c tcp dport { 80-90 , 85 } accept",
    "add chain ip t f { type filter hook prerouting priority dstnat ; }",
    "add chain ip t n { type nat hook postrouting priority srcnat ; policy accept ; }",
    "add chain ip t n { type nat hook prerouting priority -199 ; }",
])
def test_what_nft_takes_the_reader_takes(line):
    assert parse_nft(document(line)).table("ip", "t")


@pytest.mark.parametrize(("lines", "refused_at"), [
    # A NAT statement reached from a base chain that may not run it: the kernel refuses the
    # rule that holds it when the transaction commits (nft -c does not see it).
    (["add chain ip t b { type filter hook prerouting priority 0 ; }", "add rule ip t b jump a",
      "add rule ip t a dnat to 1.2.3.4"], 7),
    (["add chain ip t b { type nat hook input priority 100 ; }", "add rule ip t b jump a",
      "add rule ip t a masquerade"], 7),
    (["add chain ip t b { type nat hook output priority -100 ; }", "add rule ip t b goto a",
      "add rule ip t a snat to 1.2.3.4"], 7),
    (["add chain ip t b { type nat hook postrouting priority 100 ; }",
      "add rule ip t b tcp dport vmap { 80 : jump a }", "add rule ip t a dnat to 1.2.3.4"], 7),
    (["add map ip t m { type inet_service : verdict ; }",
      "add chain ip t b { type nat hook postrouting priority 100 ; }",
      "add rule ip t b tcp dport vmap @m", "add element ip t m { 80 : goto a }",
      "add rule ip t a dnat to 1.2.3.4"], 9),
    (["add chain ip t b { type nat hook prerouting priority -100 ; }",
      "add rule ip t b masquerade"], 6),
])
def test_a_nat_statement_a_base_chain_may_not_run_is_refused_at_its_rule(lines, refused_at):
    with pytest.raises(NftSyntaxError) as caught:
        parse_nft(document(*lines))
    assert caught.value.line_no == refused_at and "Operation not supported" in str(caught.value)


@pytest.mark.parametrize("lines", [
    ["add chain ip t b { type nat hook input priority 100 ; }", "add rule ip t b jump a",
     "add rule ip t a snat to 1.2.3.4"],
    ["add chain ip t b { type nat hook output priority -100 ; }", "add rule ip t b jump a",
     "add rule ip t a dnat to 1.2.3.4"],
    ["add rule ip t a dnat to 1.2.3.4"],  # no base chain reaches it
])
def test_a_nat_statement_where_the_kernel_runs_it_is_taken(lines):
    assert parse_nft(document(*lines)).table("ip", "t")
