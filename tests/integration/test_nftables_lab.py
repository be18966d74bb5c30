"""Lab 3 with kube-proxy in nftables mode, on real namespaces: the node holds kube-proxy's
`table ip kube-proxy` exactly as rendered and no KUBE-* iptables chains; connections spread as
nft_tracer says; a pod reaching itself is masqueraded; resync drops a gone endpoint's chain; and
the CLI's up --proxy-mode, status, trace, counters and rules --diff work on it.

The lab file is lab 3's with `profile: v1.34`, `kubeProxy: {mode: nftables}` and the pods'
network as cluster CIDR (so a pod caller is masqueraded only by the hairpin rule).
"""

from __future__ import annotations

import os
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from lab_runner.evidence import nft_sampling
from lab_runner.evidence.probing import Target, connections
from lab_runner.lab import LiveLab
from lab_runner.ruleset.nft_compare import differences
from lab_runner.ruleset.nft_parse import parse_nft

ROOT = Path(__file__).resolve().parents[2]
LAB_RUNNER = str(ROOT / ".venv" / "bin" / "lab-runner")
VIP = Target("10.104.5.205", 8080, "tcp")
POD = "my-app-7f569f66d9-dfrdh"
POD_IP = "172.17.0.2"
BRIDGE_IP = "172.17.0.1"


def nftables_lab_file(folder: Path) -> Path:
    text = (ROOT / "labs" / "lab-3-clusterip" / "lab.yaml").read_text()
    text = text.replace("profile: v1.23", "profile: v1.34\nkubeProxy: {mode: nftables}")
    text = text.replace("clusterCIDR: 10.244.0.0/16", "clusterCIDR: 172.17.0.0/16")
    assert "mode: nftables" in text and "clusterCIDR: 172.17.0.0/16" in text
    path = folder / "lab.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def nft_lab(tmp_path_factory):
    with LiveLab.up(nftables_lab_file(tmp_path_factory.mktemp("nftlab"))) as lab:
        yield lab


def cli(lab: LiveLab | None, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    if lab is not None:
        env["KPLAB_RUN"] = lab.run.run_id
    return subprocess.run([LAB_RUNNER, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)


def table_differences(lab: LiveLab) -> list[str]:
    key = ("ip", "kube-proxy")
    return differences(parse_nft(lab.rendered_rules()).table(*key),
                       parse_nft(lab.save()).tables.get(key))


def test_the_node_holds_kube_proxys_table_as_rendered_and_no_kube_iptables_chains(nft_lab):
    assert nft_lab.run.proxy_mode == "nftables" and nft_lab.model.profile == "v1.34"
    assert table_differences(nft_lab) == []
    iptables = nft_lab.iptables_save()
    assert "KUBE-" not in iptables, iptables


def test_connections_from_outside_spread_over_the_pods_as_the_nft_tracer_says(nft_lab):
    shares, chains = nft_sampling.expected(nft_lab, "client", VIP, against="node")
    assert shares == {f"172.17.0.{i}:80": Fraction(1, 4) for i in (2, 5, 6, 7)}
    assert all(chain.startswith("endpoint-") for chain in chains.values())
    report = nft_sampling.sample(nft_lab, VIP, 240, source="client")
    assert report.flows == 240
    assert set(report.observed) == set(shares), report.observed
    assert report.passed, (report.observed, report.result)


def test_a_pod_reaching_itself_through_the_vip_is_masqueraded_and_others_are_not(nft_lab):
    every_pod = {pod.name for pod in nft_lab.model.pods}  # itself and the others, not one only
    reports, counters = connections(nft_lab, POD, VIP, count=80, until_pods=every_pod,
                                    counters=True)
    assert counters is None  # nftables mode: no counters to read
    views = [r.pod_view for r in reports if r.pod_view]
    itself = [v for v in views if v.pod == POD]
    others = [v for v in views if v.pod != POD]
    assert itself, f"{POD} never reached itself in {len(reports)} connections"
    assert all(v.src == BRIDGE_IP for v in itself), itself  # the hairpin rule's masquerade
    assert others and all(v.src == POD_IP for v in others), others  # inside the cluster CIDR


def test_cli_status_trace_counters_and_rules_diff(nft_lab):
    status = cli(None, "status")
    assert re.search(rf"{nft_lab.run.run_id}.*netns nftables v1\.34", status.stdout), status.stdout

    trace = cli(nft_lab, "trace", nft_lab.run.run_id, "--from", "client", "--to", str(VIP))
    assert trace.returncode == 0, trace.stderr
    chains = re.findall(r"^  (\S+)", trace.stdout, re.MULTILINE)
    met = [next((i for i, c in enumerate(chains) if c.startswith(prefix)), None)
           for prefix in ("nat-prerouting", "services", "service-", "mark-for-masquerade",
                          "endpoint-", "nat-postrouting", "masquerading")]
    assert None not in met and met == sorted(met), trace.stdout  # in the order a packet goes
    assert "-> 172.17.0." in trace.stdout.split("after NAT:")[1]  # DNATed to a pod
    assert "masqueraded" in trace.stdout  # the client is outside the cluster CIDR
    assert "kplab-trace" not in nft_lab.exec("node", ["nft", "list", "tables"]).stdout

    counters = cli(nft_lab, "counters", nft_lab.run.run_id)
    assert counters.returncode == 1 and "carry no counters" in counters.stderr + counters.stdout
    assert "Traceback" not in counters.stderr

    fresh = cli(nft_lab, "rules", nft_lab.run.run_id, "--diff")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    service = next(c for c in chains if c.startswith("service-"))
    listing = nft_lab.exec("node", ["nft", "-a", "list", "chain", "ip", "kube-proxy", service],
                           check=True).stdout
    handle = re.search(r"jump mark-for-masquerade # handle (\d+)", listing).group(1)
    nft_lab.exec("node", ["nft", "delete", "rule", "ip", "kube-proxy", service, "handle",
                          handle], check=True)
    try:
        changed = cli(nft_lab, "rules", nft_lab.run.run_id, "--diff")
        assert changed.returncode == 1
        assert f"chain {service} rule 1:" in changed.stdout, changed.stdout
    finally:
        nft_lab.resync()
    assert table_differences(nft_lab) == []


def test_cli_probe_sample_and_iptables_on_an_nftables_lab(nft_lab):
    run = nft_lab.run.run_id
    probe = cli(nft_lab, "probe", run, "--to", str(VIP))
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert "rules the packet met (nft monitor trace" in probe.stdout, probe.stdout
    assert re.search(r"^  endpoint-\S+ +accept +meta l4proto tcp dnat to 172\.17\.0\.\d:80$",
                     probe.stdout, re.MULTILINE), probe.stdout
    assert "counters that moved" not in probe.stdout

    sample = cli(nft_lab, "sample", run, "--to", str(VIP), "--flows", "200")
    assert sample.returncode == 0, sample.stdout + sample.stderr
    assert "consistent with the rules" in sample.stdout
    assert len(re.findall(r"^  endpoint-\S+ +172\.17\.0\.\d:80 ", sample.stdout,
                          re.MULTILINE)) == 4, sample.stdout

    listing = cli(nft_lab, "iptables", "--lab", run, "node", "--", "-t", "nat", "-S")
    assert listing.returncode == 0 and "KUBE-" not in listing.stdout
    assert "nftables mode" in listing.stderr  # said, not silently an empty iptables listing


def test_resync_after_scaling_in_removes_the_gone_endpoints_chains(nft_lab):
    def endpoint_chains() -> set[str]:
        table = parse_nft(nft_lab.save()).table("ip", "kube-proxy")
        return {c for c in table.chains if c.startswith("endpoint-")}

    before = endpoint_chains()
    assert len(before) == 4
    _, removed = nft_lab.scale("my-app", 2)
    after = endpoint_chains()
    assert len(removed) == 2 and len(after) == 2 and after < before
    gone_ips = {str(p.ip) for p in parse_removed(removed)}
    assert not any(ip in chain for chain in after for ip in gone_ips)
    assert table_differences(nft_lab) == []


def parse_removed(names: list[str]):
    """The removed pods as lab 3's file defines them (their addresses name their chains)."""
    from lab_runner import lab_file

    return [p for p in lab_file.load("lab-3").pods if p.name in names]


def test_up_with_proxy_mode_nftables_picks_v1_34_and_records_the_mode():
    up = cli(None, "up", "lab-3", "--proxy-mode", "nftables")
    run_id = re.search(r"as run (\w{6})", up.stdout)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "profile v1.34 instead of the lab's v1.23" in up.stdout
        assert "nftables mode, profile v1.34" in up.stdout
        live = LiveLab.attach(run_id.group(1))
        assert live.nftables and live.run.proxy_mode == "nftables"
        assert table_differences(live) == []
        assert "KUBE-" not in live.iptables_save()
    finally:
        if run_id:
            down = cli(None, "down", run_id.group(1))
            assert down.returncode == 0, down.stderr
