"""Parsers of kernel output, on recorded real output: xtables-monitor traces and conntrack listings."""

from pathlib import Path

from lab_runner.evidence import conntrack, kernel_trace

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "recorded"


def test_trace_of_first_packet_follows_kube_proxy_chains_in_order():
    trace = kernel_trace.parse((RECORDED / "xtables-monitor-trace.txt").read_text())
    chains = trace.chains()
    order = ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-Q7IJ732UBZY4AJKA", "KUBE-MARK-MASQ"]
    assert chains[:4] == order
    sep = chains[5]
    assert sep.startswith("KUBE-SEP-") and chains[4] == "KUBE-SVC-Q7IJ732UBZY4AJKA"
    assert chains.index("KUBE-POSTROUTING") > chains.index(sep)
    assert "DNAT" in trace.targets() and "MASQUERADE" in trace.targets()
    # Only the SYN: the later packets of the connection never reach the nat table.
    assert sum(1 for h in trace.hops if h.chain == "KUBE-SERVICES") == 1
    assert trace.before_nat()["DST"] == "10.104.5.205" and trace.before_nat()["DPORT"] == "8080"
    assert trace.after_nat()["DST"].startswith("172.17.0.") and trace.after_nat()["DPORT"] == "80"
    assert not any(h.table == "raw" for h in trace.hops)


def test_trace_parse_of_nothing_is_empty():
    assert kernel_trace.parse("").hops == []


def test_conntrack_entry_shows_dnat_and_masquerade():
    [entry] = conntrack.parse((RECORDED / "conntrack-L.txt").read_text())
    assert entry.proto == "tcp"
    assert (entry.original.dst, entry.original.dport) == ("10.104.5.205", 8080)
    assert entry.dnat_to.startswith("172.17.0.") and entry.dnat_to.endswith(":80")
    assert entry.masqueraded_as == "172.17.0.1"
    assert "DNAT to" in entry.describe()


def test_conntrack_ignores_summary_lines():
    assert conntrack.parse("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n") == []
