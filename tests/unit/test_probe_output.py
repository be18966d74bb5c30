"""`probe`'s report: counters in the order the packet met them, and why a pod saw the node."""

from __future__ import annotations

from types import SimpleNamespace

from lab_runner import lab_file
from lab_runner.evidence import probing
from lab_runner.evidence.probing import in_packet_order, masquerade_note
from lab_runner.ruleset.counters import Snapshot, delta

SVC, SEP = "KUBE-SVC-Q7IJ732UBZY4AJKA", "KUBE-SEP-TWZJG7ZWZYI5EC7J"


def rule(chain: str, number: int, rest: str) -> tuple[int, str, int, str]:
    return (1, chain, number, f"-A {chain} {rest}")


def test_moved_counters_follow_the_packet_not_the_alphabet():
    """Sorted by name, KUBE-MARK-MASQ and KUBE-POSTROUTING came before the rule that sent the
    packet there; the packet met PREROUTING first and KUBE-POSTROUTING last."""
    moved = sorted([
        rule("PREROUTING", 1, '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
        rule("KUBE-SERVICES", 1, "-d 10.104.5.205/32 -p tcp -m tcp --dport 8080 -j " + SVC),
        rule(SVC, 1, "! -s 10.244.0.0/16 -d 10.104.5.205/32 -p tcp -j KUBE-MARK-MASQ"),
        rule("KUBE-MARK-MASQ", 1, "-j MARK --set-xmark 0x4000/0x4000"),
        rule(SVC, 2, "-m statistic --mode random --probability 0.25 -j " + SEP),
        rule(SEP, 2, "-p tcp -m tcp -j DNAT --to-destination 172.17.0.2:80"),
        rule("POSTROUTING", 1, "-j KUBE-POSTROUTING"),
        rule("KUBE-POSTROUTING", 3, "-j MASQUERADE --random-fully"),
        rule("KUBE-POSTROUTING", 1, "-m mark ! --mark 0x4000/0x4000 -j RETURN"),
    ], key=lambda e: (e[1], e[2]))
    assert [(c, n) for _, c, n, _ in in_packet_order(moved)] == [
        ("PREROUTING", 1), ("KUBE-SERVICES", 1), (SVC, 1), ("KUBE-MARK-MASQ", 1), (SVC, 2),
        (SEP, 2), ("POSTROUTING", 1), ("KUBE-POSTROUTING", 1), ("KUBE-POSTROUTING", 3)]


def test_the_node_own_packets_start_in_output_and_strays_come_last():
    moved = [rule("KUBE-SEP-X", 1, "-j DNAT --to-destination 1.2.3.4:80"),
             rule("OUTPUT", 1, "-j KUBE-SERVICES"), rule("KUBE-SERVICES", 2, "-g KUBE-SEP-X"),
             rule("KUBE-OTHER", 1, "-j RETURN")]
    assert [c for _, c, _, _ in in_packet_order(moved)] == [
        "OUTPUT", "KUBE-SERVICES", "KUBE-SEP-X", "KUBE-OTHER"]


def test_a_pod_caller_outside_the_cluster_cidr_is_named_as_the_reason():
    saw = lambda src, dst: SimpleNamespace(src=src, dst=dst)  # noqa: E731
    caller = "172.17.0.2"
    assert "outside the cluster CIDR)" in masquerade_note(saw("172.17.0.1", "172.17.0.5"),
                                                           caller, outside=True)
    assert "outside the cluster CIDR, and reached itself" in masquerade_note(
        saw("172.17.0.1", caller), caller, outside=True)
    assert "hairpin" in masquerade_note(saw("172.17.0.1", caller), caller, outside=False)
    assert masquerade_note(saw(caller, "172.17.0.5"), caller, outside=False) == ""


def test_moved_gives_every_caller_of_it_the_packets_order():
    """probing.moved (what the grader, the walkthrough's probes and reports read) orders the
    counters as the packet met them, not as iptables-save lists the chains."""
    document = ("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n"
                f":{SVC} - [0:0]\n"
                "[{n}:0] -A PREROUTING -j KUBE-SERVICES\n"
                "[{n}:0] -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n"
                f"[{{n}}:0] -A KUBE-SERVICES -d 10.104.5.205/32 -p tcp -m tcp --dport 8080 -j {SVC}\n"
                f"[{{n}}:0] -A {SVC} -j KUBE-MARK-MASQ\nCOMMIT\n")
    before, after = (Snapshot.parse(document.format(n=n)) for n in (0, 1))
    assert [c for _, c, _, _ in probing.moved(delta(before, after))] == [
        "PREROUTING", "KUBE-SERVICES", SVC, "KUBE-MARK-MASQ"]


def test_the_pod_caller_reason_names_the_cidr_and_the_fix():
    lab = lab_file.load("lab-3")
    pod = lab.pods[0]
    assert probing.pod_caller_outside(lab, "pod", str(pod.ip)) == (pod.ip not in lab.cluster_cidr)
    assert not probing.pod_caller_outside(lab, "client", "192.168.49.1")
    said = probing.pod_caller_reason(lab, str(pod.ip), "abc123")
    assert f"outside the cluster CIDR {lab.cluster_cidr}" in said
    assert f"lab-runner rules abc123 --cluster-cidr {lab.nodes[0].pod_subnet} --apply" in said
