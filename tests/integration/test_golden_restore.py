"""The golden documents load into a real kernel, and what iptables-save reads back means the same."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab_runner import lab_file
from lab_runner.ruleset.compare import compare
from lab_runner.ruleset.parse import parse
from lab_runner.ruleset.render import render

pytestmark = pytest.mark.needs_root

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
DOCUMENTS = sorted(GOLDEN.glob("*.rules"))
# kube-proxy's own cases: NodePort, LoadBalancer, source ranges, traffic policies, terminating
# endpoints, nfacct (test_golden_kube_proxy.py compares their text; here the kernel loads them).
KUBE_PROXY_CASES = sorted(GOLDEN.glob("kube-proxy/*.expected"))
BACKENDS = {"nft": ("iptables-restore", "iptables-save"),
            "legacy": ("iptables-legacy-restore", "iptables-legacy-save")}


def golden_lab(path: Path):
    name, profile = re.fullmatch(r"(.+)\.(v1\.\d+)\.rules", path.name).groups()
    return lab_file.load(GOLDEN / f"{name}.yaml"), profile


def in_netns(netns: str, argv: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, text=True,
                          capture_output=True)
    assert done.returncode == 0, f"{' '.join(argv)} failed in {netns}: {done.stderr}"
    return done.stdout


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_golden_restores_and_reads_back_the_same(scratch_netns, document, backend):
    restore, save = BACKENDS[backend]
    lab, profile = golden_lab(document)
    in_netns(scratch_netns, [restore], document.read_text())
    saved = in_netns(scratch_netns, [save, "-c"])
    result = compare(render(lab, profile), saved)
    assert result.equal, result.text
    # Re-applying the per-sync document with --noflush leaves the same ruleset: no duplicated jumps.
    in_netns(scratch_netns, [restore, "--noflush"], render(lab, profile, base_jumps=False))
    again = parse(in_netns(scratch_netns, [save, "-c"]))
    result = compare(render(lab, profile), again)
    assert result.equal, result.text


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_kernel_rewrites_what_compare_normalises(scratch_netns, backend):
    """The read-back differs in text from what was written; only the normalisation makes them equal."""
    restore, save = BACKENDS[backend]
    document = (GOLDEN / "lab-3.v1.23.rules").read_text()
    in_netns(scratch_netns, [restore], document)
    saved = in_netns(scratch_netns, [save])
    assert "--probability 0.33333333349" in saved
    assert "-j MARK --set-xmark 0x4000/0x4000" in saved
    assert "-j MARK --set-xmark 0x4000/0x0" in saved
    assert "-d 10.104.5.205/32" in saved
    svc = parse(saved).chain("nat", "KUBE-SVC-Q7IJ732UBZY4AJKA")
    assert [r.target for r in svc.rules] == ["KUBE-MARK-MASQ", "KUBE-SEP-TWZJG7ZWZYI5EC7J",
                                             "KUBE-SEP-LCP7KINQA756A5JS",
                                             "KUBE-SEP-XCVGJ5SWPGOUASPD",
                                             "KUBE-SEP-56377YKM7VKGGV6C"]
    assert document.strip() != saved.strip()


def test_a_changed_rule_is_caught_after_the_round_trip(scratch_netns):
    """compare is not trivially equal: a real difference survives iptables' rewriting."""
    lab, profile = golden_lab(GOLDEN / "lab-3.v1.23.rules")
    wrong = render(lab, profile).replace("--probability 0.3333333333", "--probability 0.5")
    in_netns(scratch_netns, ["iptables-restore"], wrong)
    result = compare(render(lab, profile), in_netns(scratch_netns, ["iptables-save"]))
    assert not result.equal
    assert result.text.startswith("nat KUBE-SVC-Q7IJ732UBZY4AJKA rule 3: expected ")


def kube_proxy_case(expected: Path):
    name, profile = re.fullmatch(r"(.+)\.(v1\.\d+)\.expected", expected.name).groups()
    return lab_file.load(GOLDEN / "kube-proxy" / f"{name}.yaml"), profile


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("expected", KUBE_PROXY_CASES, ids=[p.name for p in KUBE_PROXY_CASES])
def test_kube_proxy_cases_load_into_the_kernel(scratch_netns, expected, backend):
    restore, save = BACKENDS[backend]
    lab, profile = kube_proxy_case(expected)
    if lab.nfacct:  # kube-proxy creates its counters before it writes rules that count into them
        in_netns(scratch_netns, [sys.executable, "-m", "lab_runner.nfacct"])
    document = render(lab, profile)
    in_netns(scratch_netns, [restore], document)
    result = compare(document, in_netns(scratch_netns, [save, "-c"]))
    assert result.equal, result.text


def test_nfacct_rules_need_their_counters(scratch_netns):
    """Why kubeProxy.nfacct is the node's: without the counters the whole document is refused."""
    lab, profile = kube_proxy_case(GOLDEN / "kube-proxy" / "overall-v134.v1.34.expected")
    done = subprocess.run(["ip", "netns", "exec", scratch_netns, "iptables-restore"],
                          input=render(lab, profile), text=True, capture_output=True)
    assert done.returncode != 0 and "No such file or directory" in done.stderr
    in_netns(scratch_netns, ["iptables-restore"], render(lab.with_changes(nfacct=False), profile))
