"""The tracer's exact outcome distributions through kube-proxy's rules, and its refusals."""

from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from lab_runner import lab_file
from lab_runner.ruleset.parse import parse
from lab_runner.ruleset.render import render
from lab_runner.ruleset.semantics import unsupported
from lab_runner.ruleset.tracer import (Limits, Packet, TraceError, TraceLimit, UnsupportedRule,
                                       trace)

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
VIP = "10.104.5.205"
NODE_ADDRESSES = ("192.168.49.2", "172.17.0.1")
TWO_31 = 2 ** 31
P_THIRD = Fraction(715827883, TWO_31)  # what the kernel keeps of --probability 0.3333333333
PODS = [("172.17.0.2", 80), ("172.17.0.5", 80), ("172.17.0.6", 80), ("172.17.0.7", 80)]
EXPECTED = {
    PODS[0]: Fraction(1, 4),
    PODS[1]: Fraction(3, 4) * P_THIRD,
    PODS[2]: Fraction(3, 4) * (1 - P_THIRD) * Fraction(1, 2),
    PODS[3]: Fraction(3, 4) * (1 - P_THIRD) * Fraction(1, 2),
}


def from_outside(src="192.168.49.1", dst=VIP, dport=8080, protocol="tcp", **kw) -> Packet:
    return Packet(src, dst, protocol, 40000, dport, in_interface="eth0",
                  out_interface=kw.pop("out_interface", "docker0"),
                  local_addresses=NODE_ADDRESSES, **kw)


def golden_ruleset(name: str, profile: str | None = None):
    lab = lab_file.load(GOLDEN / f"{name}.yaml")
    return parse(render(lab, profile))


@pytest.fixture(scope="module", params=["v1.23", "v1.30"])
def lab3(request):
    return parse(render(lab_file.load("lab-3"), request.param))


def test_four_pods_each_about_a_quarter_exactly(lab3):
    result = trace(lab3, from_outside())
    assert result.dnat_distribution() == EXPECTED
    assert sum(o.probability for o in result.outcomes) == 1
    assert EXPECTED[PODS[1]] == Fraction(2147483649, 8589934592)  # a hair over 1/4
    assert EXPECTED[PODS[2]] == Fraction(4294967295, 17179869184)  # a hair under 1/4
    assert all(o.verdict == "ACCEPT" and o.route == "forward" for o in result.outcomes)


def test_outside_source_is_marked_and_masqueraded(lab3):
    for outcome in trace(lab3, from_outside()).outcomes:
        assert outcome.masquerade
        chains = outcome.chains()
        assert chains[:4] == ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-Q7IJ732UBZY4AJKA",
                              "KUBE-MARK-MASQ"]
        assert "KUBE-POSTROUTING" in chains
        assert outcome.mark == 0  # KUBE-POSTROUTING clears it with --xor-mark before MASQUERADE
        dnat_step = next(s for s in outcome.path if "DNAT" in s.text)
        assert dnat_step.table == "nat" and dnat_step.chain.startswith("KUBE-SEP-")
        assert dnat_step.text.endswith(f"--to-destination {outcome.dnat[0]}:80")


def test_path_steps_are_table_chain_number_text(lab3):
    first = trace(lab3, from_outside()).outcomes[0]
    table, chain, number, text = first.path[2]
    assert (table, chain, number) == ("nat", "KUBE-SVC-Q7IJ732UBZY4AJKA", 1)
    assert text.endswith("! -s 10.244.0.0/16 -j KUBE-MARK-MASQ")


def test_source_inside_cluster_cidr_is_not_masqueraded(lab3):
    result = trace(lab3, from_outside(src="10.244.3.4"))
    assert result.dnat_distribution() == EXPECTED
    assert not any(o.masquerade for o in result.outcomes)
    assert all("KUBE-MARK-MASQ" not in o.chains() for o in result.outcomes)


def test_hairpin_is_masqueraded_only_when_the_pod_picks_itself():
    ruleset = golden_ruleset("multiport")
    packet = Packet("10.244.0.11", "10.96.10.10", "tcp", 40000, 80, in_interface="cni0",
                    out_interface="cni0")
    outcomes = {o.dnat: o for o in trace(ruleset, packet).outcomes}
    assert set(outcomes) == {("10.244.0.11", 8080), ("10.244.0.12", 8080)}
    assert outcomes[("10.244.0.11", 8080)].masquerade
    assert not outcomes[("10.244.0.12", 8080)].masquerade
    hairpin = outcomes[("10.244.0.11", 8080)].path
    assert any(s.chain == "KUBE-SEP-GXKVICYM64SODBWJ" and "-s 10.244.0.11 -j KUBE-MARK-MASQ" in s.text
               for s in hairpin)
    assert trace(ruleset, packet).dnat_distribution()[("10.244.0.11", 8080)] == Fraction(1, 2)


@pytest.mark.parametrize("dport, protocol", [(8081, "tcp"), (8080, "udp")])
def test_other_port_or_protocol_is_not_captured(lab3, dport, protocol):
    (outcome,) = trace(lab3, from_outside(dport=dport, protocol=protocol)).outcomes
    assert outcome.probability == 1
    assert outcome.dnat is None and not outcome.masquerade
    assert outcome.verdict == "ACCEPT"
    assert not any(s.chain.startswith(("KUBE-SVC-", "KUBE-SEP-")) for s in outcome.path)


def test_udp_service_port():
    ruleset = golden_ruleset("udp")
    packet = Packet("10.244.0.99", "10.96.0.10", "udp", 5353, 53, in_interface="cni0",
                    out_interface="cni0")
    assert trace(ruleset, packet).dnat_distribution() == {("10.244.0.31", 53): Fraction(1, 2),
                                                          ("10.244.0.32", 53): Fraction(1, 2)}
    chains = trace(ruleset, packet).outcomes[0].chains()
    assert "KUBE-SVC-TCOU7JCQXEZGVUNU" in chains and "KUBE-SVC-ERIFXISQEP7F7OF4" not in chains


@pytest.mark.parametrize("local", [False, True])
def test_no_endpoints_is_rejected_by_filter(local):
    ruleset = golden_ruleset("noendpoints")
    packet = Packet("10.244.0.99", "10.96.40.40", "tcp", 40000, 80,
                    in_interface=None if local else "cni0", out_interface="cni0")
    (outcome,) = trace(ruleset, packet).outcomes
    assert outcome.verdict == "REJECT" and outcome.dnat is None
    last = outcome.path[-1]
    assert (last.table, last.chain) == ("filter", "KUBE-SERVICES")
    assert "default/api:http has no endpoints" in last.text


def test_locally_generated_packet_goes_through_nat_output(lab3):
    packet = Packet("192.168.49.2", VIP, "tcp", 40000, 8080, out_interface="docker0",
                    local_addresses=NODE_ADDRESSES)
    result = trace(lab3, packet)
    assert result.dnat_distribution() == EXPECTED
    assert all(o.path[0].chain == "OUTPUT" and o.route == "output" for o in result.outcomes)


def test_node_port_range_goes_to_kube_nodeports_and_is_delivered(lab3):
    (outcome,) = trace(lab3, from_outside(dst="192.168.49.2", dport=30080)).outcomes
    assert outcome.dnat is None and outcome.route == "local"
    assert any(s.text.endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS") for s in outcome.path)


@pytest.mark.parametrize("profile", ["v1.23", "v1.30"])
def test_affinity_first_packet_is_spread_and_recorded(profile):
    ruleset = golden_ruleset("affinity", profile)
    packet = Packet("10.244.0.99", "10.96.60.60", "tcp", 40000, 80, in_interface="cni0",
                    out_interface="cni0")
    result = trace(ruleset, packet)
    assert result.dnat_distribution() == {("10.244.0.61", 8080): Fraction(1, 2),
                                          ("10.244.0.62", 8080): Fraction(1, 2)}
    for outcome in result.outcomes:
        assert not any("--rcheck" in s.text for s in outcome.path)
        assert any("--set" in s.text and "DNAT" in s.text for s in outcome.path)


def test_seven_endpoints_each_get_about_a_seventh():
    result = trace(golden_ruleset("seven"), Packet("10.244.0.99", "10.96.70.70", "tcp", 40000, 80,
                                                   in_interface="cni0", out_interface="cni0"))
    dist = result.dnat_distribution()
    assert len(dist) == 7 and sum(dist.values()) == 1
    assert dist[("10.244.0.100", 80)] == Fraction(306783378, TWO_31)
    assert all(abs(p - Fraction(1, 7)) < Fraction(1, 10**8) for p in dist.values())


def custom(*rules: str, table: str = "nat", chains=("KUBE-X", "KUBE-Y")):
    declared = "".join(f":{c} - [0:0]\n" for c in chains)
    return parse(f"*{table}\n{declared}" + "".join(f"{r}\n" for r in rules) + "COMMIT\n")


PACKET = Packet("1.1.1.1", "2.2.2.2", "tcp", 1000, 80, in_interface="eth0", out_interface="eth1")


def test_statistic_probability_is_the_stored_u32_and_can_be_inverted():
    ruleset = custom("-A PREROUTING -m statistic --mode random --probability 0.3 "
                     "-j DNAT --to-destination 9.9.9.9:81",
                     "-A PREROUTING -m statistic --mode random ! --probability 0.5 "
                     "-j DNAT --to-destination 8.8.8.8")
    dist = trace(ruleset, PACKET).dnat_distribution()
    p = Fraction(644245094, TWO_31)  # lround(0.3 * 2^31)
    assert dist == {("9.9.9.9", 81): p, ("8.8.8.8", 80): (1 - p) / 2, None: (1 - p) / 2}


def test_goto_returns_to_the_caller_of_the_chain():
    ruleset = custom("-A PREROUTING -j KUBE-X", "-A PREROUTING -j MARK --set-mark 0x2",
                     "-A KUBE-X -g KUBE-Y", "-A KUBE-X -j MARK --set-mark 0x1",
                     "-A KUBE-Y -j RETURN")
    (outcome,) = trace(ruleset, PACKET).outcomes
    assert outcome.mark == 0x2
    assert [s.chain for s in outcome.path] == ["PREROUTING", "KUBE-X", "KUBE-Y", "PREROUTING"]


def test_mark_targets_and_match():
    ruleset = custom("-A PREROUTING -j MARK --or-mark 0x4000",
                     "-A PREROUTING -m mark --mark 0x4000/0x4000 -j MARK --xor-mark 0x4001",
                     "-A PREROUTING -m mark ! --mark 0x1 -j DROP")
    (outcome,) = trace(ruleset, PACKET).outcomes
    assert outcome.mark == 0x1 and outcome.verdict == "ACCEPT"


def test_policy_drop_and_snat():
    ruleset = custom("-A POSTROUTING -s 1.1.1.0/24 -j SNAT --to-source 5.5.5.5")
    (outcome,) = trace(ruleset, PACKET).outcomes
    assert outcome.snat == ("5.5.5.5", None) and not outcome.masquerade
    dropping = parse("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n")
    (dropped,) = trace(dropping, PACKET).outcomes
    assert dropped.verdict == "DROP" and dropped.path[-1].text == "policy DROP"


@pytest.mark.parametrize("rule, what", [
    ("-A KUBE-X -m string --string foo --algo bm -j RETURN", "-m string"),
    ("-A KUBE-X -p tcp -j REDIRECT --to-ports 8080", "target REDIRECT"),
    ("-A KUBE-X -m addrtype --dst-type LOCAL --limit-iface-in -j RETURN",
     "-m addrtype --limit-iface-in"),
    ("-A KUBE-X -p tcp -j DNAT --to-destination 10.0.0.1-10.0.0.5:80 --random", "ranges"),
    ("-A KUBE-X -p tcp -j DNAT --to-destination 10.0.0.1:80-90 --random", "ranges"),
    ("-A KUBE-X -m conntrack --ctorigdst 1.2.3.4 -j RETURN", "-m conntrack --ctorigdst"),
])
def test_unsupported_rules_are_named(rule, what):
    ruleset = custom("-A PREROUTING -j KUBE-X", rule)
    with pytest.raises(UnsupportedRule) as caught:
        trace(ruleset, PACKET)
    message = str(caught.value)
    assert message.startswith("cannot model ") and "at line 5 (nat KUBE-X)" in message
    assert what in message and rule in message
    assert caught.value.rule.chain == "KUBE-X"
    assert str(unsupported(ruleset)) == message  # the intake refuses it before any trace


def test_output_interface_must_be_given_when_a_rule_needs_it():
    ruleset = custom("-A POSTROUTING -o eth1 -j MASQUERADE")
    assert trace(ruleset, PACKET).outcomes[0].masquerade
    with pytest.raises(TraceError, match="out_interface"):
        trace(ruleset, Packet("1.1.1.1", "2.2.2.2", in_interface="eth0"))


def test_jump_loop_is_reported():
    ruleset = custom("-A PREROUTING -j KUBE-X", "-A KUBE-X -j KUBE-Y", "-A KUBE-Y -j KUBE-X")
    with pytest.raises(TraceError, match="jump loop"):
        trace(ruleset, PACKET)


def test_many_endpoints_do_not_exhaust_the_stack():
    import ipaddress

    from lab_runner.model import Pod

    lab = lab_file.load("lab-3")
    template = lab.pods[0]
    pods = tuple(Pod(name=f"p{i}", namespace=template.namespace, node=template.node,
                     ip=ipaddress.ip_address("172.17.0.10") + i, labels=template.labels,
                     ports=template.ports) for i in range(1100))
    result = trace(parse(render(lab.with_changes(pods=pods))), from_outside())
    assert len(result.outcomes) == 1100
    assert sum(o.probability for o in result.outcomes) == 1


def test_twenty_random_log_rules_trace_as_one_state():
    """2**20 ways, merged at each rule into one packet state: a limit of 4 states per rule
    holds (without the merging it would raise TraceLimit at the third rule)."""
    rules = ["-A PREROUTING -j KUBE-X"] + [
        "-A KUBE-X -m statistic --mode random --probability 0.5 -j LOG"] * 20 + [
        "-A KUBE-X -j DNAT --to-destination 9.9.9.9:80"]
    (outcome,) = trace(custom(*rules), PACKET, Limits(max_states=4)).outcomes
    marking = ["-A PREROUTING -j KUBE-X"] + [  # states that differ (in the mark) cannot merge
        f"-A KUBE-X -m statistic --mode random --probability 0.5 -j MARK --or-mark {1 << i}"
        for i in range(20)]
    with pytest.raises(TraceLimit):
        trace(custom(*marking), PACKET, Limits(max_states=4))
    assert outcome.probability == 1 and outcome.dnat == ("9.9.9.9", 80)
    assert sum(1 for s in outcome.path if "LOG" in s.text) == 20  # each was matched on some way


def test_states_that_differ_are_capped_and_the_limit_is_named():
    rules = ["-A PREROUTING -j KUBE-X"] + [
        f"-A KUBE-X -m statistic --mode random --probability 0.5 -j MARK --xor-mark {1 << i:#x}"
        for i in range(20)]
    with pytest.raises(TraceLimit, match=r"more than 1000 distinct packet states.*max_states"):
        trace(custom(*rules), PACKET, Limits(max_states=1000))
    with pytest.raises(UnsupportedRule, match="line"):  # treated as "cannot model" by graders
        trace(custom(*rules), PACKET, Limits(max_states=1000))
    with pytest.raises(TraceLimit, match=r"more than 0 s .*Limits.seconds"):
        trace(custom(*rules), PACKET, Limits(seconds=0))


def test_all_traces_over_one_ruleset_share_one_time_limit():
    ruleset = custom("-A PREROUTING -j KUBE-X", "-A KUBE-X -j DNAT --to-destination 9.9.9.9")
    limits = Limits(ruleset_seconds=0.05)
    trace(ruleset, PACKET, limits)
    with pytest.raises(TraceLimit, match=r"in all .*one grade, Limits.ruleset_seconds"):
        for _ in range(100_000):
            trace(ruleset, PACKET, limits)
    trace(custom("-A PREROUTING -j KUBE-X", "-A KUBE-X -j RETURN"), PACKET, limits)  # its own


def test_nth_round_robin_gives_each_rule_its_share_over_a_cycle():
    ruleset = custom("-A PREROUTING -m statistic --mode nth --every 3 --packet 0 "
                     "-j DNAT --to-destination 9.9.9.1",
                     "-A PREROUTING -m statistic --mode nth --every 2 --packet 1 "
                     "-j DNAT --to-destination 9.9.9.2",
                     "-A PREROUTING -j DNAT --to-destination 9.9.9.3")
    dist = trace(ruleset, PACKET).dnat_distribution()
    assert dist == {("9.9.9.1", 80): Fraction(1, 3), ("9.9.9.2", 80): Fraction(1, 3),
                    ("9.9.9.3", 80): Fraction(1, 3)}
    # The kernel's counters over one whole cycle (six connections) give the same shares.
    assert _round_robin([(3, 0), (2, 1)], connections=6) == [2, 2, 2]


def _round_robin(rules: list[tuple[int, int]], connections: int) -> list[int]:
    """xt_statistic's nth mode: a counter per rule starting at --packet, advanced by each
    packet reaching it; the rule matches when the advanced counter wraps to 0."""
    counts, hits = [packet for _, packet in rules], [0] * (len(rules) + 1)
    for _ in range(connections):
        for i, (every, _) in enumerate(rules):
            counts[i] = 0 if counts[i] == every - 1 else counts[i] + 1
            if counts[i] == 0:
                hits[i] += 1
                break
        else:
            hits[-1] += 1
    return hits


def test_nth_reached_twice_by_one_packet_is_refused():
    ruleset = custom("-A PREROUTING -j KUBE-X", "-A PREROUTING -j KUBE-X",
                     "-A KUBE-X -m statistic --mode nth --every 2 --packet 0 -j MARK --or-mark 1")
    with pytest.raises(UnsupportedRule, match="nth reached twice"):
        trace(ruleset, PACKET)
    assert "one packet can enter twice" in str(unsupported(ruleset))  # refused at intake
    via_two_hooks = custom("-A PREROUTING -j KUBE-X", "-A POSTROUTING -j KUBE-Y",
                           "-A KUBE-Y -j KUBE-X",
                           "-A KUBE-X -m statistic --mode nth --every 2 --packet 0 -j LOG")
    assert "one packet can enter twice" in str(unsupported(via_two_hooks))
    local_or_forwarded = custom("-A PREROUTING -j KUBE-X", "-A OUTPUT -j KUBE-X",
                                "-A KUBE-X -m statistic --mode nth --every 2 --packet 0 -j LOG")
    assert unsupported(local_or_forwarded) is None  # no packet meets both


@pytest.mark.parametrize("target, start, mark", [
    ("--set-xmark 0x4000/0x4000", 0x1, 0x4001),
    ("--set-mark 0x4000", 0x1, 0x4000),  # wipes the other bits
    ("--set-mark 0x4000/0x4000", 0x1, 0x4001),
    ("--or-mark 0x4000", 0x4001, 0x4001),
    ("--xor-mark 0x4000", 0x4001, 0x1),  # undoes itself on a packet marked before
    ("--and-mark 0x4000", 0x4001, 0x4000),
])
def test_mark_targets_keep_or_change_other_bits(target, start, mark):
    ruleset = custom(f"-A PREROUTING -j MARK {target}")
    (outcome,) = trace(ruleset, replace(PACKET, mark=start)).outcomes
    assert outcome.mark == mark


def test_mark_match_with_a_mask():
    ruleset = custom("-A PREROUTING -m mark --mark 0x4000/0x4000 -j DNAT --to-destination 9.9.9.9")
    assert trace(ruleset, replace(PACKET, mark=0x4001)).outcomes[0].dnat == ("9.9.9.9", 80)
    assert trace(ruleset, replace(PACKET, mark=0x1)).outcomes[0].dnat is None


def test_recent_set_earlier_on_the_way_is_seen_and_lists_start_empty():
    ruleset = custom("-A PREROUTING -m recent --rcheck --name L -j DNAT --to-destination 9.9.9.1",
                     "-A PREROUTING -m recent --set --name L",
                     "-A PREROUTING -m recent --rcheck --name L -j DNAT --to-destination 9.9.9.2")
    assert trace(ruleset, PACKET).dnat_distribution() == {("9.9.9.2", 80): 1}
    drawn_first = custom("-A PREROUTING -m statistic --mode random --probability 0.5 "
                         "-m recent --set --name L")
    assert "-m recent after -m statistic" in str(unsupported(drawn_first))


def test_inserted_replaced_and_deleted_rules_are_traced_where_they_land():
    base = custom("-A PREROUTING -j DNAT --to-destination 9.9.9.1")
    ruleset = parse("*nat\n-I PREROUTING 1 -j MARK --set-mark 0x7\n"
                    "-R PREROUTING 2 -j DNAT --to-destination 9.9.9.2\n"
                    "-A PREROUTING -j DNAT --to-destination 9.9.9.3\n"
                    "-D PREROUTING -j DNAT --to-destination 9.9.9.2\nCOMMIT\n", base=base)
    (outcome,) = trace(ruleset, PACKET).outcomes
    assert (outcome.mark, outcome.dnat) == (0x7, ("9.9.9.3", 80))


def test_merged_ways_keep_the_nat_rule_that_rewrote_them_apart():
    ruleset = custom("-A PREROUTING -m statistic --mode random --probability 0.5 -j KUBE-X",
                     "-A PREROUTING -j KUBE-Y",
                     "-A KUBE-X -j DNAT --to-destination 9.9.9.9",
                     "-A KUBE-Y -j DNAT --to-destination 9.9.9.9")
    outcomes = trace(ruleset, PACKET).outcomes
    assert len(outcomes) == 2 and sum(o.probability for o in outcomes) == 1
    assert {o.chains()[-1] for o in outcomes} == {"KUBE-X", "KUBE-Y"}


def test_source_list_matches_any_of_its_addresses():
    ruleset = custom("-A PREROUTING -s 5.5.5.5,1.1.1.1 -j DNAT --to-destination 9.9.9.9")
    assert trace(ruleset, PACKET).outcomes[0].dnat == ("9.9.9.9", 80)


@pytest.mark.parametrize("spelling", [
    "-A PREROUTING -d 2.2.2.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 9.9.9.9:81",
    "--append PREROUTING --destination 2.2.2.2/255.255.255.255 --protocol 6 --dport 80 "
    "--jump DNAT --to-destination=9.9.9.9:81",
    "-A PREROUTING -d 2.2.2.2 -p TCP --destination-port 80 -j DNAT --to 9.9.9.9:81",
])
def test_equivalent_spellings_trace_alike_and_steps_carry_the_parsed_rule(spelling):
    (outcome,) = trace(custom(spelling), PACKET).outcomes
    assert outcome.dnat == ("9.9.9.9", 81)
    (step,) = outcome.path
    assert step.rule.target == "DNAT" and step.text == spelling


def test_dnat_mistakes_are_named_for_what_they_are():
    from lab_runner.ruleset.semantics import dnat_destination, dnat_mistake

    ruleset = custom("-A KUBE-X -p tcp -j DNAT --to-destination=172.17.0.2",
                     "-A KUBE-X -p tcp -j DNAT --to 172.17.0.2:81")
    first, second = (dnat_destination(r) for r in ruleset.chain("nat", "KUBE-X").rules)
    assert first == ("172.17.0.2", None) and second == ("172.17.0.2", 81)
    right = ("172.17.0.2", 80)
    assert "without a port" in dnat_mistake(first, right)
    assert "port 81 of its endpoint's address instead of port 80" in dnat_mistake(second, right)
    assert "another address" in dnat_mistake(("172.17.0.5", 80), right)
    assert dnat_mistake(right, right) is None


def test_a_rule_no_packet_can_reach_is_no_reason_to_refuse_the_file():
    assert unsupported(custom("-A KUBE-X -m string --string foo --algo bm -j RETURN")) is None
    assert unsupported(custom("-A PREROUTING -j KUBE-Y", "-A KUBE-Y -g KUBE-X",
                              "-A KUBE-X -m string --string foo --algo bm -j RETURN")) is not None


def test_fates_merge_outcomes_a_caller_cannot_tell_apart():
    # Twelve coin flips each set another mark bit: 4096 outcomes that differ in the mark
    # alone, one fate to report (not 4096 lines of the same feedback).
    rules = ["-A PREROUTING -j KUBE-X"] + [
        f"-A KUBE-X -m statistic --mode random --probability 0.5 -j MARK --or-mark {1 << i:#x}"
        for i in range(12)] + ["-A KUBE-X -j DNAT --to-destination 9.9.9.9"]
    result = trace(custom(*rules), PACKET)
    assert len(result.outcomes) == 4096
    (fate,) = result.fates()
    assert fate.probability == 1 and fate.dnat == ("9.9.9.9", 80)
    assert len(fate.path) == 14  # the jump, twelve MARK rules, the DNAT


def test_recent_names_are_cut_where_iptables_cuts_them():
    long = "r" * 199
    ruleset = custom(f"-A PREROUTING -m recent --set --name {long}a",
                     f"-A PREROUTING -m recent --rcheck --name {long}b "
                     "-j DNAT --to-destination 9.9.9.9")
    assert trace(ruleset, PACKET).outcomes[0].dnat == ("9.9.9.9", 80)


# -- student-like edits of lab 3's rules: the intake or the tracer answers, never a crash -------

MARK_SPELLINGS = ["--set-xmark 0x4000/0x4000", "--set-mark 0x4000", "--or-mark 0x4000",
                  "--xor-mark 0x4000", "--set-mark 0x4000/0x4000", "--and-mark 0x4000",
                  "--set-xmark 16384/16384"]


def _edit(rules: list[str], rng) -> list[str]:
    """One edit a student might make to the nat table's rules."""
    rules = list(rules)
    at = rng.randrange(len(rules))
    rule = rules[at]
    chain = rule.split()[1]
    kind = rng.randrange(10)
    if kind == 0:
        del rules[at]
    elif kind == 1:
        rules.insert(rng.randrange(len(rules) + 1), rule)
    elif kind == 2 and "--probability" in rule:
        rules[at] = re.sub(r"--probability \S+", f"--probability {rng.random():.4f}", rule)
    elif kind == 3 and "-j MARK" in rule:
        rules[at] = rule.split("-j MARK")[0] + "-j MARK " + rng.choice(MARK_SPELLINGS)
    elif kind == 4:
        every = rng.randrange(1, 5)
        rules.insert(at, f"-A {chain} -m statistic --mode nth --every {every} --packet "
                         f"{rng.randrange(every)} -j LOG")
    elif kind == 5:
        rules.insert(at, f"-A {chain} -m statistic --mode random --probability 0.5 -j MARK "
                         f"{rng.choice(MARK_SPELLINGS)}")
    elif kind == 6 and "--to-destination" in rule:
        rules[at] = rule.rsplit(":", 1)[0]  # DNAT without the port
    elif kind == 7:
        rules[at] = rule.replace(" -j ", " --jump ").replace("-A ", "--append ", 1)
    elif kind == 8 and " -s " in rule:
        rules[at] = rule.replace(" -s ", " ! -s ")
    elif kind == 9:
        rules.insert(at, f"-A {chain} -m recent --set --name L{rng.randrange(2)} -j LOG")
        rules.insert(at, f"-A {chain} -m recent --rcheck --name L{rng.randrange(2)} -j RETURN")
    return rules


def test_edited_rulesets_are_refused_or_traced_to_a_whole_distribution():
    import random

    from lab_runner.errors import SubmissionError
    from lab_runner.grading.submission import as_iptables_restore

    document = render(lab_file.load("lab-3"), "v1.23")
    head, nat, tail = document.partition("*nat\n")
    declared = [line for line in tail.split("\n") if line.startswith(":")]
    rules = [line for line in tail.split("\n") if line.startswith("-A ")]
    rng = random.Random(20261204)
    packets = [from_outside(), from_outside(src="172.17.0.2", **{"out_interface": "docker0"}),
               Packet("192.168.49.2", VIP, "tcp", 40000, 8080, out_interface="docker0",
                      local_addresses=NODE_ADDRESSES)]
    traced = refused = 0
    for _ in range(150):
        edited = rules
        for _ in range(rng.randrange(1, 4)):
            edited = _edit(edited, rng)
        text = head + nat + "\n".join(declared + edited) + "\nCOMMIT\n"
        try:
            ruleset = as_iptables_restore(text, "variant.rules")
        except SubmissionError:
            refused += 1
            continue
        if unsupported(ruleset):
            refused += 1
            continue
        for packet in packets:
            try:
                result = trace(ruleset, packet, Limits(max_states=5000, seconds=2))
            except TraceLimit:  # said plainly, naming the limit
                continue
            assert sum(o.probability for o in result.outcomes) == 1, text
            assert all(o.probability > 0 and o.verdict in ("ACCEPT", "DROP", "REJECT")
                       for o in result.outcomes), text
            assert sum(f.probability for f in result.fates()) == 1
        traced += 1
    assert traced > 100 and refused < 40, (traced, refused)


def test_the_output_interface_follows_the_routes_after_dnat():
    ruleset = custom("-A PREROUTING -m statistic --mode random --probability 0.5 "
                     "-j DNAT --to-destination 172.17.0.2:80",
                     "-A POSTROUTING -o docker0 -j MASQUERADE")
    packet = replace(PACKET, out_interface=None,
                     routes=(("0.0.0.0/0", "eth0"), ("172.17.0.0/16", "docker0")))
    masqueraded = {o.dnat: o.masquerade for o in trace(ruleset, packet).outcomes}
    assert masqueraded == {("172.17.0.2", 80): True, None: False}


# -- issue 20, item 3: addrtype's types, DNAT ranges, REDIRECT ---------------------------------

NODE_ROUTES = (("0.0.0.0/0", "eth0"), ("192.168.49.0/24", "eth0"), ("172.17.0.0/16", "docker0"))


@pytest.mark.parametrize("dst, kind", [
    ("10.104.5.205", "UNICAST"), ("172.17.0.2", "UNICAST"), ("192.168.49.2", "LOCAL"),
    ("172.17.0.1", "LOCAL"), ("127.0.0.9", "LOCAL"), ("172.17.255.255", "BROADCAST"),
    ("192.168.49.255", "BROADCAST"), ("255.255.255.255", "BROADCAST"), ("0.0.0.0", "BROADCAST"),
    ("224.0.0.1", "MULTICAST"), ("172.17.0.0", "UNICAST"),  # no network-address broadcast (6.x)
])
def test_addrtype_gives_each_address_the_kernels_type(dst, kind):
    rules = [f"-A PREROUTING -m addrtype --dst-type {t} -j MARK --set-mark {i + 1}"
             for i, t in enumerate(("UNICAST", "LOCAL", "BROADCAST", "MULTICAST"))]
    ruleset = custom(*rules)
    packet = Packet("192.168.49.1", dst, "tcp", 1000, 80, in_interface="eth0",
                    out_interface="eth1", local_addresses=NODE_ADDRESSES, routes=NODE_ROUTES)
    marks = {o.mark for o in trace(ruleset, packet).outcomes}
    assert marks == {1 + ("UNICAST", "LOCAL", "BROADCAST", "MULTICAST").index(kind)}
    assert unsupported(ruleset) is None


# (source, original destination, --to-destination, destination port) -> where nf_nat sent it,
# read from conntrack on this kernel (6.x, unshare -n, OUTPUT DNAT of UDP packets).
NF_NAT_CHOICES = [
    ("10.0.0.1", "10.96.0.10", "10.0.0.2-10.0.0.200:53", 53, ("10.0.0.71", 53)),
    ("10.0.0.7", "10.96.0.10", "10.0.0.2-10.0.0.200:53", 53, ("10.0.0.56", 53)),
    ("10.0.0.33", "10.96.0.10", "10.0.0.2-10.0.0.200:53", 53, ("10.0.0.75", 53)),
    ("10.0.0.101", "10.96.0.10", "10.0.0.2-10.0.0.200:53", 53, ("10.0.0.6", 53)),
    ("10.0.0.1", "10.96.7.99", "10.0.0.5-10.0.0.9:5000-5010", 80, ("10.0.0.8", 5000)),
    ("10.0.0.1", "10.96.7.99", "10.0.0.5-10.0.0.9:5000-5010", 5005, ("10.0.0.8", 5005)),
    ("10.0.0.33", "10.96.7.99", "10.0.0.5-10.0.0.9:5000-5010", 80, ("10.0.0.9", 5000)),
    ("10.0.0.101", "10.96.7.99", "10.0.0.5-10.0.0.9:5000-5010", 5005, ("10.0.0.5", 5005)),
]


@pytest.mark.parametrize("src, dst, to, dport, chosen", NF_NAT_CHOICES)
def test_dnat_ranges_choose_as_nf_nat_does(src, dst, to, dport, chosen):
    ruleset = custom(f"-A PREROUTING -p tcp -j DNAT --to-destination {to}")
    packet = Packet(src, dst, "tcp", 1000, dport, in_interface="eth0", out_interface="eth1")
    assert unsupported(ruleset) is None
    assert [o.dnat for o in trace(ruleset, packet).outcomes] == [chosen]


def test_persistent_dnat_range_hashes_the_source_alone():
    ruleset = custom("-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.5-10.0.0.9:5000 "
                     "--persistent")
    chosen = {trace(ruleset, Packet("10.0.0.1", vip, "tcp", 1000, 80, in_interface="eth0",
                                    out_interface="eth1")).outcomes[0].dnat
              for vip in ("10.96.7.98", "10.96.0.1", "10.1.2.3")}
    assert chosen == {("10.0.0.6", 5000)}  # conntrack's answer for 10.0.0.1 -> 10.96.7.98


def test_redirect_goes_to_the_incoming_interfaces_address_or_loopback():
    ruleset = custom("-A PREROUTING -p tcp -j REDIRECT --to-ports 8080",
                     "-A OUTPUT -p tcp -j REDIRECT")
    assert unsupported(ruleset) is not None  # not without the node's routes
    # nor with them alone: the intake refuses REDIRECT until the kernel has confirmed it
    assert "target REDIRECT" in str(unsupported(ruleset, routes=True))
    assert unsupported(ruleset, routes=True, redirect=True) is None
    common = dict(local_addresses=NODE_ADDRESSES, routes=NODE_ROUTES)
    pod = Packet("172.17.0.2", VIP, "tcp", 1000, 80, in_interface="docker0", **common)
    client = Packet("192.168.49.1", VIP, "tcp", 1000, 80, in_interface="eth0", **common)
    node = Packet("192.168.49.2", VIP, "tcp", 1000, 80, **common)
    assert [(o.dnat, o.route) for o in trace(ruleset, pod).outcomes] == [(("172.17.0.1", 8080), "local")]
    assert [o.dnat for o in trace(ruleset, client).outcomes] == [("192.168.49.2", 8080)]
    assert [o.dnat for o in trace(ruleset, node).outcomes] == [("127.0.0.1", 80)]
    with pytest.raises(UnsupportedRule, match="target REDIRECT"):
        trace(ruleset, replace(client, routes=()))


def test_output_interface_matches_are_modelled_only_for_packets_that_carry_routes():
    """Without the node's routes a rule with -o would stop a trace mid-grade; static grading's
    packets carry them (sampling.node_routes), so the intake asks with routes=True."""
    ruleset = custom("-A POSTROUTING -o docker0 -j MASQUERADE")
    assert "-o docker0 (a match on the output interface)" in str(unsupported(ruleset))
    assert unsupported(ruleset, routes=True) is None


def test_postrouting_sees_the_input_device_of_a_routed_packet_but_not_of_a_bridged_one():
    """Issue 20's survey: `-i eth0` on KUBE-POSTROUTING's MASQUERADE still masquerades the client
    (ip_output() hands POSTROUTING the device the packet came in by), while `-i docker0` never
    matches a pod's connection DNATed to a pod behind docker0 again (br_netfilter bridges it and
    calls POSTROUTING without an input device), nor the node's own."""
    ruleset = custom("-A PREROUTING -d 10.104.5.205 -p tcp -j DNAT --to-destination 172.17.0.2:80",
                     "-A OUTPUT -d 10.104.5.205 -p tcp -j DNAT --to-destination 172.17.0.2:80",
                     "-A POSTROUTING -i eth0 -j MARK --set-mark 1",
                     "-A POSTROUTING -i docker0 -j MARK --set-mark 2")
    common = dict(local_addresses=NODE_ADDRESSES, routes=NODE_ROUTES, bridges=("docker0",))

    def mark(src, dst, inbound):
        packet = Packet(src, dst, "tcp", 1000, 8080, in_interface=inbound, **common)
        return [o.mark for o in trace(ruleset, packet).outcomes]

    assert mark("192.168.49.1", VIP, "eth0") == [1]  # routed eth0 -> docker0
    assert mark("172.17.0.5", VIP, "docker0") == [0]  # bridged back out of docker0
    assert mark("172.17.0.5", "192.168.49.1", "docker0") == [2]  # routed docker0 -> eth0
    assert mark("192.168.49.2", VIP, None) == [0]  # the node's own
