"""Imported clusters built for real: objects as kubectl prints them, imported, `up`, and 1,000
new flows per Service port spread as `explain` says.

Lab 3: fixtures/real-clusters/lab-3-minikube.yaml with lab 3's render as the node's rules (the
cluster CIDR and profile come from it); the shares are explain's on the imported lab's render,
from an outside client and from a pod. Real nodes: the EKS v1.34 and kubeadm v1.20 clusters with
their nodes' dumps from fixtures/real-nodes; every Service port the kit builds is sampled from
the outside client and must fit explain's shares on the real node's own dump. The generated
lab.yaml is loaded from its file as `lab-runner up` loads it; the fit is a chi-square test
(alpha = 1e-6, lab_runner.probes.stats).
"""

from __future__ import annotations

import ipaddress
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import pytest

from lab_runner import lab_file
from lab_runner.evidence import sampling
from lab_runner.explain.dump import read_file
from lab_runner.explain.packet import Question, explain
from lab_runner.importer import Options, import_lab
from lab_runner.lab import LiveLab
from lab_runner.probes import stats
from lab_runner.ruleset.render import render

pytestmark = pytest.mark.needs_root

FLOWS = 1000
SERVICE = "stateful-apps/my-app:http-svc"
ROOT = Path(__file__).resolve().parents[2]
OBJECTS = ROOT / "fixtures" / "real-clusters" / "lab-3-minikube.yaml"
REAL = {  # cluster objects, the node's dump, the options a learner gives, the ports the kit builds
    "eks-v1.34": ("eks-v1.34.yaml", "eks-v1.34.rules", {"cluster_cidr": "192.168.0.0/16"},
                  ["kube-system/kube-dns:dns", "kube-system/kube-dns:dns-tcp",
                   "kube-system/kube-dns:metrics", "game-2048/service-2048"]),
    "kubeadm-v1.20": ("kubeadm-v1.20.yaml", "kubeadm-v1.20-docker.rules", {},
                      # kubernetes: selector-less, its endpoint kube-apiserver on the node's
                      # own address (a hostNetwork pod of the lab)
                      ["kube-system/kube-dns:dns", "default/nginx-ext",
                       "default/kubernetes:https"]),
}


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("import")
    node_rules = where / "node.rules"
    lab3 = lab_file.load("lab-3")
    node_rules.write_text(render(lab3, lab3.profile))
    text, result, _ = import_lab([str(OBJECTS)], Options(lab_id="imported-lab-3"),
                                 str(node_rules))
    assert result.warnings == []
    path = where / "imported.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def lab(imported) -> Iterator[LiveLab]:
    with LiveLab.up(imported) as live:
        yield live


def explained_shares(rules: Path, question: Question) -> dict[str, Fraction]:
    answer = explain(read_file(rules), question)
    assert {f.verdict for f in answer.fates} == {"ACCEPT"}, answer.fates
    return answer.dnat_shares()


@pytest.mark.parametrize("source", ["client", "dfrdh"])
def test_the_imported_lab_spreads_new_flows_as_explain_says(lab, tmp_path, source):
    assert lab.model.id == "imported-lab-3" and len(lab.model.pods) == 4
    rendered = tmp_path / "imported.rules"
    rendered.write_text(render(lab.model, lab.model.profile))
    target = sampling.service_target(lab.model, SERVICE)
    inbound = "eth0" if source == "client" else lab.model.nodes[0].bridge
    shares = explained_shares(rendered, Question(
        target.ip, target.port, target.proto, src=sampling.host_ip(lab, source),
        in_interface=inbound))
    assert len(shares) == 4 and sum(shares.values()) == 1

    report = sampling.sample(lab, target, FLOWS, source=source, expected=shares)

    assert report.flows == FLOWS and sum(report.observed.values()) == FLOWS, report.observed
    assert sampling.NO_DNAT not in report.observed, report.observed
    assert report.passed, (f"{FLOWS} flows from {source}: observed {report.observed}, explain "
                           f"said {shares}: {report.result}")
    # Negative control: the same counts refute every rule at 1/4 (the last endpoint at 42 %).
    wrong = dict(zip(shares, sampling.wrong_alternative(len(shares)).values()))
    assert not stats.gof(report.observed, wrong, alpha=1e-6).passed, report.observed


def test_the_live_node_holds_the_imported_render(lab):
    """What the kernel holds is the render of the imported lab (read back with iptables-save)."""
    from lab_runner.ruleset.compare import compare

    result = compare(render(lab.model, lab.model.profile), lab.save())
    assert result.equal, result.text


@pytest.fixture(scope="module", params=sorted(REAL))
def real(request, tmp_path_factory) -> Iterator[tuple[LiveLab, Path, list[str]]]:
    objects, dump, options, ports = REAL[request.param]
    cidr = options.get("cluster_cidr")
    text, _, _ = import_lab([str(ROOT / "fixtures" / "real-clusters" / objects)],
                            Options(cluster_cidr=ipaddress.IPv4Network(cidr) if cidr else None,
                                    lab_id=f"imported-{request.param}"),
                            str(ROOT / "fixtures" / "real-nodes" / dump))
    path = tmp_path_factory.mktemp(request.param) / "imported.yaml"
    path.write_text(text)
    model = lab_file.load(path)
    # The EKS node counts with nfacct; this machine's kernel has no nfacct objects (the kit does
    # not create them), so the lab is built without the two -m nfacct matches, which count and
    # never change where a packet goes.
    with LiveLab.up(model.with_changes(nfacct=False)) as live:
        yield live, ROOT / "fixtures" / "real-nodes" / dump, ports


def test_every_imported_port_spreads_as_explain_says_on_the_real_node(real):
    lab, dump, ports = real
    for name in ports:
        target = sampling.service_target(lab.model, name)
        shares = explained_shares(dump, Question(target.ip, target.port, target.proto))
        report = sampling.sample(lab, target, FLOWS, source="client", expected=shares)
        assert sum(report.observed.values()) == FLOWS, (name, report.observed)
        assert sampling.NO_DNAT not in report.observed, (name, report.observed)
        assert report.passed, (f"{name}: {FLOWS} flows observed {report.observed}, explain on "
                               f"{dump.name} said {shares}: {report.result}")


def test_hand_made_slices_and_host_network_endpoints_answer_when_imported(tmp_path):
    """kind's kubernetes (selector-less, kube-apiserver on the node's address), a hostNetwork
    node-exporter selected by its Service, and web-admin's hand-made slice naming web's pods on
    another port: imported, up, and each answered over HTTP by the app the slice names."""
    from lab_runner.evidence.probing import Target, probe

    text, _, _ = import_lab([str(ROOT / "fixtures" / "real-clusters" /
                                 "kind-v1.31-hand-made-slices.yaml")],
                            Options(cluster_cidr=ipaddress.IPv4Network("10.244.0.0/16"),
                                    lab_id="imported-kind"))
    path = tmp_path / "imported.yaml"
    path.write_text(text)
    expected = {Target("10.96.0.1", 443): {"host-kind-control-plane"},
                Target("10.96.120.15", 9100): {"node-exporter-4xk8p"},
                Target("10.96.44.10", 80): {"web-7d9c5b8f6-jq2mz", "web-7d9c5b8f6-x8w4r"},
                # the other pod of web-admin's slice is terminating: only this one is used
                Target("10.96.44.11", 8081): {"web-7d9c5b8f6-jq2mz"}}
    with LiveLab.up(path) as live:
        for target, pods in expected.items():
            report = probe(live, "client", target, "http", counters=False)
            assert report.pod in pods, (target, report.answer)
