"""Lab 3's evidence, end to end on real namespaces: probes, pod view, counters, trace, conntrack.

Everything here is what the walkthrough teaches, asserted from the kernel's side:
  - a SYN to 10.104.5.205:8080 from the client draws a SYN-ACK *from the ClusterIP*, and the pod
    that got it saw `172.17.0.1 -> <its own IP>:80` (DNAT, and masquerade because the client is
    outside the cluster CIDR);
  - a packet no service rule matches (another port, another protocol) moves no KUBE-SVC/KUBE-SEP
    counter and reaches no pod;
  - the kernel's trace visits KUBE-SERVICES, KUBE-SVC, KUBE-MARK-MASQ, one KUBE-SEP, DNAT and
    KUBE-POSTROUTING, in that order;
  - conntrack keeps the mapping (what the client sent, what the pod's reply looks like), and the
    pod an HTTP answer names is the one conntrack says;
  - probes and traces leave nothing behind: no TRACE rule, no agent, capture or monitor process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from lab_runner.backends.netns import namespaces_of_run
from lab_runner.commands import Runner
from lab_runner.errors import EnvironmentProblem
from lab_runner.evidence import kernel_trace, probing
from lab_runner.evidence.probing import Target
from lab_runner.probes.launch import Capture

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_IP = "10.104.5.205"
SERVICE = Target(CLUSTER_IP, 8080, "tcp")
SVC_CHAIN = "KUBE-SVC-Q7IJ732UBZY4AJKA"
CLIENT_IP = "192.168.49.1"
MASQ_SOURCE = "172.17.0.1"  # docker0's address: what a masqueraded caller looks like to a pod


# -- helpers ---------------------------------------------------------------------------------------
def pod_ips(lab) -> dict[str, str]:
    """pod name -> pod IP, from the lab's model."""
    return {p.name: str(p.ip) for p in lab.model.pods}


def pod_named_by_ip(lab, ip: str) -> str:
    names = [name for name, address in pod_ips(lab).items() if address == ip]
    assert len(names) == 1, f"{ip} is not the address of exactly one pod: {pod_ips(lab)}"
    return names[0]


def service_counter_moves(report) -> dict[tuple[str, int], int]:
    """(chain, rule number) -> packets, for every KUBE-SVC-…/KUBE-SEP-… rule whose counter moved."""
    return {(r.chain, r.number): r.change.packets for r in report.counters.rules
            if r.table == "nat" and r.change.packets
            and (r.chain == SVC_CHAIN or r.chain.startswith("KUBE-SEP-"))}


def cli(lab, *args: str) -> subprocess.CompletedProcess:
    """`python -m lab_runner ARGS` for this test's run (KPLAB_RUN picks it among other runs)."""
    env = {**os.environ, "KPLAB_RUN": lab.run.run_id,
           "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"]
                                      if os.environ.get("PYTHONPATH") else "")}
    return subprocess.run([sys.executable, "-m", "lab_runner", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)


def trace_probe(lab, source: str, target: Target, sport: int | None = None):
    """(Trace, the agent's answer, the TRACE rule): the kit's own trace_probe, as `trace` uses."""
    return kernel_trace.trace_probe(lab, source, target, sport=sport)


def in_order(items: list[str], wanted: list) -> list[int]:
    """Positions in `items` of each wanted entry (a string, or a predicate), strictly increasing.

    Fails with the whole list when an entry is missing or out of order.
    """
    positions, start = [], 0
    for want in wanted:
        test = want if callable(want) else (lambda item, w=want: item == w)
        found = next((i for i in range(start, len(items)) if test(items[i])), None)
        assert found is not None, f"{getattr(want, '__name__', want)!r} not found after position " \
                                  f"{start - 1} in {items}"
        positions.append(found)
        start = found + 1
    return positions


def is_sep(name: str) -> bool:
    """Any endpoint chain, KUBE-SEP-…"""
    return name.startswith("KUBE-SEP-")


def namespace_pids(lab) -> dict[str, set[int]]:
    """Every namespace of the run -> the pids inside it (`ip netns pids`)."""
    spaces = set(lab.run.namespaces) | set(namespaces_of_run(lab.run.run_id))
    assert spaces, "the run has no namespaces"
    out = {}
    for ns in sorted(spaces):
        listing = Runner().run(["ip", "netns", "pids", ns], check=True).stdout
        out[ns] = {int(p) for p in listing.split()}
    return out


def expected_pids(lab) -> dict[str, set[int]]:
    """What should run in each namespace of an idle lab: one app server per pod, the holder of
    each node's UTS namespace (its hostname), nothing else."""
    from lab_runner.backends.netns import node_ns, pod_ns, uts_role

    spaces = namespace_pids(lab)
    want = {ns: set() for ns in spaces}
    for pod, pid in lab.run.pod_pids.items():
        want[pod_ns(lab.run.run_id, pod)] = {pid}
    for node in lab.model.nodes:
        want[node_ns(lab.run.run_id, node.name)] = {
            p.pid for p in lab.run.processes if p.role == uts_role(node.name)}
    return want


def trace_rules_left(lab) -> list[str]:
    text = lab.save(table="raw") + lab.save()
    return [line for line in text.splitlines() if "TRACE" in line or "kplab trace" in line]


# -- a SYN probe to the ClusterIP ------------------------------------------------------------------
@pytest.fixture(scope="module")
def syn_report(lab3):
    return probing.probe(lab3, "client", SERVICE, "syn")


def test_syn_is_answered_by_the_cluster_ip(syn_report):
    answer = syn_report.answer
    assert answer["answer"] == "syn-ack", answer
    assert (answer["src"], answer["sport"]) == (CLUSTER_IP, 8080)
    assert (answer["dst"], answer["dport"]) == (CLIENT_IP, answer["probe"]["sport"])


def test_the_pod_saw_its_own_address_and_the_masqueraded_source(lab3, syn_report):
    view = syn_report.pod_view
    assert view is not None, "no pod's capture holds the probe's SYN"
    assert view.via == "capture"  # a crafted SYN reaches no app: this is the pod's eth0
    assert view.pod in pod_ips(lab3)
    assert (view.dst, view.dport) == (pod_ips(lab3)[view.pod], 80)
    # 192.168.49.1 is outside the cluster CIDR 10.244.0.0/16: marked, then masqueraded.
    assert view.src == MASQ_SOURCE


def test_syn_moves_the_service_rules_once_and_one_endpoint(lab3, syn_report):
    moved = service_counter_moves(syn_report)
    assert moved.get((SVC_CHAIN, 1)) == 1, moved  # the `! -s 10.244.0.0/16 -j KUBE-MARK-MASQ` rule
    seps = {chain for chain, _ in moved if chain.startswith("KUBE-SEP-")}
    assert len(seps) == 1, moved
    (sep,) = seps
    # In the chosen KUBE-SEP only the DNAT rule (2) counts: the hairpin rule (1) is for the pod itself.
    assert moved.get((sep, 2)) == 1 and (sep, 1) not in moved, moved
    dnat = next(r for r in syn_report.counters.rules if (r.chain, r.number) == (sep, 2))
    assert dnat.text.endswith(f"--to-destination {pod_ips(lab3)[syn_report.pod]}:80"), dnat.text
    assert syn_report.counters.chain("KUBE-MARK-MASQ").packets >= 1


def test_syn_conntrack_maps_the_cluster_ip_to_the_pod(lab3, syn_report):
    sport = syn_report.answer["probe"]["sport"]
    entries = [e for e in syn_report.conntrack if e.original.sport == sport]
    assert len(entries) == 1, syn_report.conntrack
    entry = entries[0]
    assert (entry.original.src, entry.original.dst, entry.original.dport) == (CLIENT_IP, CLUSTER_IP, 8080)
    pod_ip = pod_ips(lab3)[syn_report.pod]
    assert (entry.reply.src, entry.reply.sport, entry.reply.dst) == (pod_ip, 80, MASQ_SOURCE)
    # The masqueraded port is the one the pod saw.
    assert entry.reply.dport == syn_report.pod_view.sport
    assert entry.dnat_to == f"{pod_ip}:80" and entry.masqueraded_as == MASQ_SOURCE


# -- what no service rule matches ------------------------------------------------------------------
@pytest.mark.parametrize(("target", "kind"), [
    (Target(CLUSTER_IP, 8081, "tcp"), "syn"),
    (Target(CLUSTER_IP, 8080, "udp"), "udp"),
], ids=["tcp-8081", "udp-8080"])
def test_no_rule_matches_another_port_or_protocol(lab3, target, kind):
    with ExitStack() as stack:  # our own captures: what reached each pod, whatever it was
        captures = {p.name: stack.enter_context(Capture(lab3.runner, lab3.place(p.name), "eth0",
                                                        "tcp or udp", timeout=30))
                    for p in lab3.model.pods}
        report = probing.probe(lab3, "client", target, kind, capture=True, timeout=0.5)
        seen = {name: cap.stop() for name, cap in captures.items()}
    assert report.answer["answer"] not in ("syn-ack", "reply"), report.answer
    # The probe did reach the node's nat table (PREROUTING jumped to KUBE-SERVICES) ...
    assert report.counters.chain("KUBE-SERVICES").packets >= 1
    # ... and matched nothing there: no service rule, no endpoint.
    assert service_counter_moves(report) == {}
    services_rule = [r for r in report.counters.rules
                     if r.chain == "KUBE-SERVICES" and r.text.endswith(f"-j {SVC_CHAIN}")]
    assert len(services_rule) == 1 and services_rule[0].change.packets == 0
    assert report.counters.chain(SVC_CHAIN).packets == 0
    assert report.pod_view is None, report.pod_view
    # Whatever conntrack recorded was not translated: the reply would come from the ClusterIP.
    assert all((e.reply.src, e.reply.dst) == (CLUSTER_IP, CLIENT_IP) for e in report.conntrack), \
        report.conntrack
    arrived = {name: [p for p in packets if p.get("direction") == "in"]
               for name, packets in seen.items()}
    assert all(not packets for packets in arrived.values()), arrived


# -- the kernel's own trace ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def traced(lab3):
    return trace_probe(lab3, "client", SERVICE)


def test_trace_visits_the_chains_in_order(lab3, traced):
    path, answer, _ = traced
    assert answer["answer"] == "syn-ack", answer
    # One token per hop: its chain, then the target its rule jumped to or applied.
    tokens: list[str] = []
    for hop in path.hops:
        tokens.append(hop.chain)
        if " -j " in hop.rule:
            tokens.append(hop.rule.split(" -j ", 1)[1].split()[0])
    in_order(tokens, ["KUBE-SERVICES", SVC_CHAIN, "KUBE-MARK-MASQ", is_sep, "DNAT", "KUBE-POSTROUTING"])
    seps = {hop.chain for hop in path.hops if hop.chain.startswith("KUBE-SEP-")}
    assert len(seps) == 1, path.chains()
    # The DNAT is the chosen KUBE-SEP's own rule, and MASQUERADE happens in KUBE-POSTROUTING.
    dnat = [hop for hop in path.hops if " -j DNAT " in hop.rule + " "]
    assert len(dnat) == 1 and dnat[0].chain in seps and dnat[0].table == "nat"
    assert any(h.chain == "KUBE-POSTROUTING" and "-j MASQUERADE" in h.rule for h in path.hops)


def test_trace_shows_the_addresses_before_and_after_dnat(lab3, traced):
    path, answer, _ = traced
    before, after = path.before_nat(), path.after_nat()
    assert (before["SRC"], before["DST"], before["DPORT"]) == (CLIENT_IP, CLUSTER_IP, "8080")
    assert before["SPORT"] == str(answer["probe"]["sport"])
    dnat_rule = next(h.rule for h in path.hops if " -j DNAT " in h.rule + " ")
    destination = dnat_rule.split("--to-destination ", 1)[1].split()[0]
    assert f"{after['DST']}:{after['DPORT']}" == destination
    assert after["DST"] in pod_ips(lab3).values() and after["DPORT"] == "80"


def test_trace_rule_is_gone_afterwards(lab3, traced):
    _, _, rule = traced
    assert trace_rules_left(lab3) == []
    # Deleting it again must fail: the Tracer really removed it (and nothing re-added it).
    again = lab3.exec("node", ["iptables", "-t", "raw", "-D", "PREROUTING", *rule])
    assert again.rc != 0


def test_trace_rule_is_removed_even_when_the_probe_fails(lab3):
    rule = kernel_trace.trace_rule("tcp", CLIENT_IP, 61999, CLUSTER_IP, 8080, local=False)

    def broken_send():
        # The rule is in place while the probe runs ...
        assert any("kplab trace" in line for line in lab3.save(table="raw").splitlines())
        raise RuntimeError("the probe failed")

    with pytest.raises(RuntimeError, match="the probe failed"):
        kernel_trace.node_tracer(lab3).trace(rule, broken_send, local=False)
    # ... and gone, with its monitor, once the trace has failed.
    assert trace_rules_left(lab3) == []
    assert namespace_pids(lab3) == expected_pids(lab3)


def test_trace_refuses_the_legacy_variant(lab3):
    with pytest.raises(EnvironmentProblem, match="nft"):
        kernel_trace.Tracer([], lambda argv: None, "legacy")


def test_cli_trace_lists_the_path(lab3):
    done = cli(lab3, "trace", "lab-3", "--from", "client", "--to", f"{CLUSTER_IP}:8080/tcp")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    hop_chains = [line.split()[0].split(":", 1)[1] for line in lines
                  if line.startswith("  ") and ":" in line.split()[0]]
    in_order(hop_chains, ["KUBE-SERVICES", SVC_CHAIN, "KUBE-MARK-MASQ", is_sep, "KUBE-POSTROUTING"])
    assert any("DNAT --to-destination 172.17.0." in line for line in lines), done.stdout
    assert trace_rules_left(lab3) == []


# -- conntrack and the HTTP answer -----------------------------------------------------------------
def test_http_answer_names_the_pod_conntrack_chose(lab3):
    pods_answering = set()
    for _ in range(6):
        report = probing.probe(lab3, "client", SERVICE, "http")
        assert report.answer["answer"] == "reply" and report.answer["code"] == 200, report.answer
        body = report.answer["body"]
        sport = report.answer["probe"]["sport"]
        entries = [e for e in report.conntrack if e.original.sport == sport]
        assert len(entries) == 1, report.conntrack
        entry = entries[0]
        assert (entry.original.src, entry.original.dst, entry.original.dport) == (CLIENT_IP, CLUSTER_IP, 8080)
        assert (entry.reply.sport, entry.reply.dst) == (80, MASQ_SOURCE)
        assert body["pod"] == pod_named_by_ip(lab3, entry.reply.src)
        # The pod saw the reply tuple's destination as its caller, at its own address.
        assert (body["saw_src"], body["saw_sport"]) == (entry.reply.dst, entry.reply.dport)
        assert (body["saw_dst"], body["saw_dport"]) == (entry.reply.src, 80)
        pods_answering.add(body["pod"])
    assert pods_answering <= set(pod_ips(lab3))


# -- nothing left behind ---------------------------------------------------------------------------
def test_probes_and_traces_leave_nothing_behind(lab3):
    """After every kind of probe, a trace and the CLI: only the pods' app servers run in the lab."""
    assert namespace_pids(lab3) == expected_pids(lab3), "the lab was not idle to begin with"
    probing.probe(lab3, "client", SERVICE, "syn")
    probing.probe(lab3, "client", SERVICE, "http")
    probing.probe(lab3, "client", Target(CLUSTER_IP, 8080, "udp"), "udp", capture=True, timeout=0.3)
    probing.probe(lab3, "dfrdh", SERVICE, "syn")
    trace_probe(lab3, "client", SERVICE)
    done = cli(lab3, "probe", "lab-3", "--from", "client", "--to", f"{CLUSTER_IP}:8080/tcp")
    assert done.returncode == 0, done.stderr
    assert f"SYN-ACK from {CLUSTER_IP}:8080" in done.stdout, done.stdout
    done = cli(lab3, "probe", "lab-3", "--from", "client", "--to", f"{CLUSTER_IP}:8080/tcp", "--http")
    assert done.returncode == 0, done.stderr
    assert "answered by my-app-7f569f66d9-" in done.stdout, done.stdout
    assert trace_rules_left(lab3) == []
    assert namespace_pids(lab3) == expected_pids(lab3)
    # And the app servers are the same processes as at the start, all still alive.
    for pod, pid in lab3.run.pod_pids.items():
        assert Path(f"/proc/{pid}").exists(), f"{pod}'s app server is gone"


def test_cli_probe_lists_the_moved_counters_in_the_order_the_packet_met_them(lab3):
    done = cli(lab3, "probe", "lab-3", "--from", "client", "--to", f"{CLUSTER_IP}:8080/tcp")
    assert done.returncode == 0, done.stderr
    listing = done.stdout.split("counters that moved", 1)[1].splitlines()[1:]
    chains = [line.split()[1] for line in listing if line.strip().startswith("+")]
    kinds = [c if not c.startswith("KUBE-SEP-") else "KUBE-SEP" for c in chains]
    # The node's own packets meanwhile (OUTPUT) may show too: the probe's path is in order.
    path = iter(kinds)
    assert all(kind in path for kind in [
        "PREROUTING", "KUBE-SERVICES", SVC_CHAIN, "KUBE-MARK-MASQ", SVC_CHAIN, "KUBE-SEP",
        "POSTROUTING", "KUBE-POSTROUTING", "KUBE-POSTROUTING"]), done.stdout


def test_until_all_from_a_pod_names_the_cluster_cidr_as_the_reason(lab3):
    """Every pod saw the node's address; the hairpin note alone left the other three unexplained."""
    assert str(lab3.model.cluster_cidr) == "10.244.0.0/16"
    done = cli(lab3, "probe", "lab-3", "--from", "dfrdh", "--to", f"{CLUSTER_IP}:8080/tcp",
               "--http", "--until-all")
    assert done.returncode == 0, done.stderr
    pod_lines = [line for line in done.stdout.splitlines() if " saw " in line]
    assert len(pod_lines) == 4, done.stdout
    assert all("(masqueraded: the caller is outside the cluster CIDR" in l for l in pod_lines)
    said = " ".join(done.stdout.split())
    assert ("every pod caller is masqueraded: 172.17.0.2 is outside the cluster CIDR "
            "10.244.0.0/16") in said and "--cluster-cidr 172.17.0.0/16 --apply" in said


@pytest.mark.parametrize("host", ["node", "dfrdh"])
def test_commands_in_the_node_and_pods_see_the_labs_own_resolver(lab3, host):
    """Entering a host's UTS namespace keeps `ip netns exec`'s /etc/netns mounts: without them
    `iptables -L` (no -n) in the walkthrough waited 20 s on the host's name servers."""
    assert "no name service inside a lab" in lab3.exec(host, ["cat", "/etc/resolv.conf"]).stdout
