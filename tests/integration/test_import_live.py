"""An imported cluster built for real: lab 3's cluster as kubectl prints it, imported, `up`, and
1,000 new flows spread as `explain` says the imported lab's rules spread them.

The objects are fixtures/real-clusters/lab-3-minikube.yaml and the node's rules lab 3's render
(as --rules: the cluster CIDR and profile come from it). The generated lab.yaml is loaded from
its file as `lab-runner up` loads it; the rules `explain` reads are the imported lab's render,
and the kernel's spread over the DNAT rules must fit explain's exact shares (chi-square,
alpha = 1e-6, lab_runner.probes.stats), from an outside client and from a pod.
"""

from __future__ import annotations

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
OBJECTS = Path(__file__).resolve().parents[2] / "fixtures" / "real-clusters" / "lab-3-minikube.yaml"


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
    shares: dict[str, Fraction] = {}
    for fate in answer.fates:
        key = f"{fate.dnat[0]}:{fate.dnat[1]}"
        shares[key] = shares.get(key, Fraction(0)) + fate.probability
    return shares


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
