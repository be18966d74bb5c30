"""Packet classes and outcomes (grading/outcomes.py), static mode: no root needed."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

from lab_runner.evidence.probing import Target
from lab_runner.grading import exercise as exercises
from lab_runner.grading import outcomes, submission
from lab_runner.grading.sandbox import StaticSandbox
from lab_runner.ruleset import tracer
from lab_runner.ruleset.parse import parse

ROOT = Path(__file__).resolve().parents[2]
LAB3 = ROOT / "fixtures" / "submissions" / "lab-3"
SERVICE = Target("10.104.5.205", 8080, "tcp")
HAIRPIN_POD = "my-app-7f569f66d9-qtc2q"


def _sandbox(number: str, name: str, **changes) -> StaticSandbox:
    ex = dataclasses.replace(exercises.find("lab-3", number), **changes)
    path = LAB3 / name if (LAB3 / name).exists() else \
        ROOT / "labs" / "lab-3-clusterip" / "solutions" / name
    return StaticSandbox(ex, submission.read(path, ex))


def test_every_caller_class_of_lab_3():
    model = exercises.find("lab-3", "1").lab
    classes = outcomes.caller_classes(model, SERVICE)
    assert [c.caller for c in classes] == ["client", *[p.name for p in model.pods],
                                           outcomes.CLUSTER_CALLER, "node", "client"]
    assert classes[-1].premark == outcomes.PREMARK and not any(c.premark for c in classes[:-1])
    assert outcomes.cluster_caller_ip(model) == "10.244.0.250"
    # Where the pods are inside the cluster CIDR (exercise 2), they are its callers already.
    assert outcomes.cluster_caller_ip(exercises.find("lab-3", "2").lab) is None


def test_a_caller_inside_the_cluster_cidr_keeps_its_address():
    sandbox = _sandbox("6", "ex6-masquerade-everyone.lose-2.rules")
    problem = sandbox.differs(outcomes.PacketClass(outcomes.CLUSTER_CALLER, SERVICE))
    assert problem.startswith("A connection from a caller inside the cluster CIDR 10.244.0.0/16")
    assert problem.endswith("it should arrive with the caller's own address as source.")


def test_the_reference_outcome_of_a_pod_reaching_itself_is_masqueraded_and_marked():
    sandbox = _sandbox("4", "ex4-dnat.rules")
    outcome = sandbox.reference_outcome(outcomes.PacketClass(HAIRPIN_POD, SERVICE))
    itself = [f for f in outcome.fates if f.pod == HAIRPIN_POD]
    assert itself == [outcomes.Fate(True, HAIRPIN_POD, "172.17.0.1", True)]
    assert sandbox.differs(outcomes.PacketClass(HAIRPIN_POD, SERVICE)) is None


def test_a_dead_hairpin_rule_is_named_in_the_students_terms():
    sandbox = _sandbox("4", "ex4-dnat-inserted-before-hairpin.lose-2.rules")
    problem = sandbox.differs(outcomes.PacketClass(HAIRPIN_POD, SERVICE))
    assert problem.startswith(f"A connection from pod {HAIRPIN_POD} (172.17.0.5) to itself "
                              "through 10.104.5.205:8080 arrived masqueraded, but was never marked")
    assert "-j" not in problem and "KUBE-" not in problem  # no rule text, no chain to copy


def test_set_mark_loses_the_other_bits_and_xor_the_masquerade():
    premarked = outcomes.PacketClass("client", SERVICE, outcomes.PREMARK)
    set_mark = _sandbox("2", "ex2-set-mark.lose-1.rules")
    assert set_mark.outcome(premarked).bits_kept == {False}
    assert "without the mark bit 0x1" in set_mark.differs(premarked)
    xor = _sandbox("2", "ex2-xor-mark.lose-1.rules")
    assert xor.outcome(premarked).bits_kept == {True}
    assert "the caller's own address as source; it should arrive masqueraded" in xor.differs(premarked)


def test_which_pod_answers_counts_only_for_a_pod_reaching_itself():
    cls = outcomes.PacketClass(HAIRPIN_POD, SERVICE)
    outcome = outcomes.Outcome(frozenset({outcomes.Fate(True, "other-pod", "172.17.0.1"),
                                          outcomes.Fate(True, HAIRPIN_POD, "172.17.0.1", True)}))
    assert {f.pod for f in outcomes.judged(cls, outcome).fates} == {"", HAIRPIN_POD}


def test_round_robin_reads_as_the_random_choice_it_amounts_to():
    sandbox = _sandbox("3", "ex3-round-robin.lose-4.rules")
    node = sandbox.model.nodes[0]
    packet = tracer.Packet(src="192.168.49.1", dst=SERVICE.ip, dport=SERVICE.port, in_interface="eth0",
                           local_addresses=(str(node.ip),))
    shares = tracer.trace(sandbox.rules, packet).dnat_distribution()
    assert len(shares) == 4 and all(abs(p - Fraction(1, 4)) < Fraction(1, 10**9) for p in shares.values())
    assert not sandbox.spread("client", SERVICE).passed  # refused: the exercise asks for random
    accepting = _sandbox("3", "ex3-round-robin.lose-4.rules", round_robin="accept")
    assert accepting.spread("client", SERVICE).passed


def _nat(*rules: str):
    chains = "".join(f":{c} - [0:0]\n" for c in ("A", "X1", "X2", "X3"))
    return parse("*nat\n" + chains + "".join(f"-A A -j {r}\n" for r in rules) + "COMMIT\n", "<t>")


def test_lost_rules_allow_extra_rules_but_not_missing_or_reordered_ones():
    start = _nat("X1", "X2", "X3")
    assert outcomes.lost_rules(start, _nat("X1", "LOG", "X2", "X3"), set()) == []
    assert [(c, n) for c, n, _ in outcomes.lost_rules(start, _nat("X2", "X1", "X3"), set())] == [("A", 2)]
    assert outcomes.lost_rules(start, _nat("X2", "X1", "X3"), {"-A A -j X2"}) == []


def test_lost_rules_reads_the_concerned_rules_by_meaning_not_text():
    from lab_runner.grading.outcomes import lost_rules
    from lab_runner.ruleset.parse import parse

    start = parse("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-SVC-X - [0:0]\n"
                  "-A KUBE-SERVICES -d 10.104.5.205/32 -p tcp -m tcp --dport 8080 -j KUBE-SVC-X\n"
                  "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\nCOMMIT\n")
    now = parse("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-SVC-X - [0:0]\n"
                "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\nCOMMIT\n")
    concerned = {"--append KUBE-SERVICES --destination 10.104.5.205/255.255.255.255 --protocol tcp "
                 "--dport 8080 --jump KUBE-SVC-X"}
    assert lost_rules(start, now, concerned) == []
    assert [(c, n) for c, n, _ in lost_rules(start, now, set())] == [("KUBE-SERVICES", 1)]


def test_an_output_interface_match_is_graded_by_the_nodes_routes():
    """Issue 20: static packets carry the node's routes, so the intake takes `-o` and the tracer
    reads the interface a packet leaves by from them: the node's own connection to the Service
    leaves by eth0 (the default route), so it RETURNs undNATed; arriving ones meet no output
    interface in PREROUTING and are DNATed as before."""
    ex = exercises.find("lab-3", "1")
    answer = (ROOT / "labs" / "lab-3-clusterip" / "solutions" / "ex1-matching.rules").read_text()
    rules = answer.replace("*nat\n", "*nat\n-A KUBE-SERVICES -o eth0 -j RETURN\n").encode()
    sandbox = StaticSandbox(ex, submission.from_bytes(rules, "out-eth0.rules", ex))
    node = outcomes.PacketClass("node", SERVICE)
    assert sandbox.outcome(node).fates == {outcomes.NO_ANSWER}
    assert sandbox.reference_outcome(node).fates != {outcomes.NO_ANSWER}
    for caller in ["client", *[p.name for p in ex.lab.pods]]:
        assert sandbox.differs(outcomes.PacketClass(caller, SERVICE)) is None, caller


def test_static_packets_carry_the_routes_a_lab_node_has():
    """As `ip route` shows them in lab 2's node-a (checked on a live lab): its pod subnet on
    cni0, node-b's pod subnet and the node network by eth0, the default route by eth0."""
    from lab_runner.evidence import sampling

    lab2 = exercises.find("lab-2", "1").lab
    assert sampling.node_routes(lab2) == (("10.244.0.0/24", "cni0"), ("10.244.1.0/24", "eth0"),
                                          ("192.168.49.0/24", "eth0"), ("0.0.0.0/0", "eth0"))
    assert sampling.node_routes(lab2, "node-b")[:2] == (("10.244.1.0/24", "cni0"),
                                                        ("10.244.0.0/24", "eth0"))


def test_a_pod_reached_where_kube_proxy_lets_none_answer_is_worded_so():
    """The reference outcome has no answered fate (a port of the ClusterIP no Service serves):
    the feedback says no pod should be reached, not 'That should not happen: .'"""
    sandbox = _sandbox("1", "ex1-matching.rules")
    cls = outcomes.PacketClass("client", Target(SERVICE.ip, 9999, "tcp"))
    want = outcomes.Outcome(frozenset({outcomes.NO_ANSWER}))
    got = outcomes.Outcome(frozenset({outcomes.Fate(True, HAIRPIN_POD, "192.168.49.1")}))
    text = outcomes.difference(sandbox, cls, want, got)
    assert text == (f"A connection from the client (192.168.49.1) to {SERVICE.ip}:9999 reached a "
                    "pod, which saw the caller's own address as source. It should reach no pod: "
                    "kube-proxy's rules refuse or drop it there.")
    both = outcomes.Outcome(want.fates | got.fates)  # sometimes refused, sometimes answered
    assert outcomes.difference(sandbox, cls, want, both) == text
