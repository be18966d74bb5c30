"""Lab 7 without root: it is lab 3's Service with only kube-proxy's mode changed, and the
iptables-mode file its walkthrough reads is what the kit renders for lab 3 at v1.34."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lab_runner import lab_file
from lab_runner.ruleset import nft_render, render

ROOT = Path(__file__).resolve().parents[2]
LAB7 = ROOT / "labs" / "lab-7-nftables"


def test_lab7_is_lab3_in_nftables_mode_at_v1_34():
    lab3, lab7 = lab_file.load("lab-3"), lab_file.load("lab-7")
    assert (lab7.proxy_mode, lab7.profile) == ("nftables", "v1.34")
    same = ("cluster_cidr", "service_cidr", "node_network", "nodes", "pods", "services", "clients")
    for field in same:
        assert getattr(lab7, field) == getattr(lab3, field), field
    differing = {f.name for f in dataclasses.fields(lab3)
                 if getattr(lab3, f.name) != getattr(lab7, f.name)}
    assert differing <= {"id", "title", "teaches", "source", "profile", "proxy_mode"}, differing


def test_the_walkthroughs_iptables_file_is_lab3_rendered_at_v1_34():
    text = (LAB7 / "iptables-mode.rules").read_text(encoding="utf-8")
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    assert body == render.render(lab_file.load("lab-3"), "v1.34")


def test_the_nftables_table_picks_endpoints_with_numgen_and_matches_through_the_map():
    document = nft_render.render(lab_file.load("lab-7"))
    assert "numgen random mod 4 vmap" in document
    assert "statistic" not in document and "probability" not in document
    assert ("add element ip kube-proxy service-ips { 10.104.5.205 . tcp . 8080 : goto "
            "service-54NX2MGN-stateful-apps/my-app/tcp/http-svc }") in document
