"""nft_compare: the render against a kernel-style listing, difference by difference (no root)."""

from __future__ import annotations

from lab_runner import lab_file
from lab_runner.ruleset.nft_compare import differences
from lab_runner.ruleset.nft_parse import parse_nft
from lab_runner.ruleset.nft_render import render

LAB = lab_file.load("lab-3").with_changes(profile="v1.34", proxy_mode="nftables")
KEY = ("ip", "kube-proxy")
# The kernel's spelling of the render's `mark set mark or 0x4000` and its masquerading chain.
LISTING = """table ip kube-proxy {
	chain mark-for-masquerade {
		meta mark set meta mark | 0x00004000
	}

	chain masquerading {
		meta mark & 0x00004000 == 0x00000000 return
		meta mark set meta mark ^ 0x00004000
		masquerade fully-random
	}
}
"""


def table(text: str):
    return parse_nft(text).table(*KEY)


def test_a_table_equals_itself():
    document = render(LAB, "v1.34")
    assert differences(table(document), table(document)) == []


def test_the_kernels_spelling_of_the_same_rules_is_no_difference():
    rendered = "\n".join(line for line in render(LAB, "v1.34").splitlines()
                         if line.startswith("add table") or " mark-for-masquerade" in line
                         and line.startswith(("add chain", "add rule ip kube-proxy mark-"))
                         or " masquerading" in line and line.startswith(
                             ("add chain", "add rule ip kube-proxy masquerading"))) + "\n"
    assert differences(table(rendered), table(LISTING)) == []


def test_a_deleted_rule_and_a_missing_chain_are_named():
    document = render(LAB, "v1.34")
    endpoint = next(line.split()[4] for line in document.splitlines()
                    if line.startswith("add chain ip kube-proxy endpoint-"))
    lines = document.splitlines()
    changed = [line for line in lines
               if not line.startswith("add rule ip kube-proxy masquerading mark and")
               and endpoint not in line or line.startswith("add rule ip kube-proxy service-")]
    # the service chain's numgen still names the endpoint chain: keep it out of the comparison
    found = differences(table(document), table("\n".join(changed) + "\n"))
    assert "chain masquerading rule 1: `mark and 0x00004000 == 0 return` in the render, " \
           "`mark set mark xor 0x00004000` in the node" in found
    assert "chain masquerading: 3 rule(s) in the render, 2 in the node" in found
    assert f"chain {endpoint}: only in the render (not in the node)" in found


def test_an_element_only_on_one_side_is_listed_with_its_verdict():
    document = render(LAB, "v1.34")
    extra = document + ("add element ip kube-proxy service-ips { 10.96.0.99 . tcp . 53 : "
                        "goto mark-for-masquerade }\n")
    found = differences(table(document), table(extra))
    assert found == ["map service-ips element 10.96.0.99 . tcp . 53 : goto mark-for-masquerade: "
                     "only in the node"]


def test_no_table_on_the_node_is_one_difference():
    assert differences(table(render(LAB, "v1.34")), None) == [
        "table: only in the render (not in the node)"]
