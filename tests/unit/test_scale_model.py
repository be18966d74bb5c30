"""Lab 8's sweep model and kube-proxy's sync documents, without a kernel."""

from __future__ import annotations

import pytest

from lab_runner.ruleset.nft_render import render as render_nft
from lab_runner.ruleset.render import render as render_iptables
from lab_runner.scale import model


def test_build_gives_each_service_its_own_endpoints():
    lab = model.build(3, 4)
    assert [s.name for s in lab.services] == ["svc-0", "svc-1", "svc-2"]
    assert len(lab.pods) == 12 and len({p.ip for p in lab.pods}) == 12
    assert all(p.ip in model.CLUSTER_CIDR for p in lab.pods)
    assert str(lab.services[2].cluster_ip) == str(model.vip(2)) == "172.16.0.12"


@pytest.mark.parametrize("services, endpoints", [(0, 1), (1, 0)])
def test_build_refuses_an_empty_sweep(services, endpoints):
    with pytest.raises(ValueError, match="at least one"):
        model.build(services, endpoints)


def test_move_endpoint_changes_one_address_of_one_service():
    lab = model.build(3, 2)
    moved = model.move_endpoint(lab, 1)
    changed = [(a, b) for a, b in zip(lab.pods, moved.pods) if a.ip != b.ip]
    assert len(changed) == 1
    old, new = changed[0]
    assert old.labels == {"app": "svc-1"} and new.ip not in {p.ip for p in lab.pods}


def _iptables(services: int, endpoints: int = 2):
    lab = model.build(services, endpoints)
    return render_iptables(lab, "v1.34"), render_iptables(model.move_endpoint(lab), "v1.34")


def test_iptables_partial_writes_top_level_chains_whole_and_only_the_changed_service():
    old, new = _iptables(5)
    partial = model.iptables_partial(new, old, 0)
    lines = partial.splitlines()
    # KUBE-SERVICES is written whole: one jump per Service + the nodeports rule
    assert sum(line.startswith("-A KUBE-SERVICES") for line in lines) == 5 + 1
    svc0, svc1 = model.iptables_chains_of(new, 0), model.iptables_chains_of(new, 1)
    assert len(svc0) == 3 and len(svc1) == 3  # KUBE-SVC + 2 KUBE-SEP
    assert all(f":{c} - [0:0]" in lines for c in svc0)
    assert not any(c in partial for c in svc1 if c.startswith("KUBE-SEP"))
    stale = model.iptables_chains_of(old, 0) - svc0
    assert len(stale) == 1 and f"-X {stale.pop()}" in lines
    assert lines[-1] == "COMMIT"


def test_iptables_chains_are_found_without_comments():
    # past 1,000 endpoints kube-proxy drops the endpoint rules' comments
    old, new = _iptables(101, 10)
    assert "-> 10.0.0.2:8080" not in old
    assert len(model.iptables_chains_of(old, 0)) == 11
    assert len(model.iptables_chains_of(old, 100)) == 11
    assert model.iptables_chains_of(old, 1).isdisjoint(model.iptables_chains_of(old, 10))


def test_iptables_full_keeps_every_chain_and_deletes_the_stale_one():
    old, new = _iptables(4)
    full = model.iptables_full(new, old, 0)
    stale = (model.iptables_chains_of(old, 0) - model.iptables_chains_of(new, 0)).pop()
    assert full.replace(f":{stale} - [0:0]\n-X {stale}\n", "") == new
    assert model.iptables_full(new, new, 0) == new


def test_nft_partial_touches_only_the_changed_service():
    lab = model.build(4, 2)
    old, new = render_nft(lab), render_nft(model.move_endpoint(lab))
    partial = model.nft_partial(new, old, 0)
    assert "svc-1/" not in partial and "add element" not in partial
    chains = model.nft_chains_of(new, 0)
    assert len(chains) == 3
    for chain in chains:
        assert f"add chain ip kube-proxy {chain}\nflush chain ip kube-proxy {chain}\n" in partial
    stale = [c for c in model.nft_chains_of(old, 0) if c not in chains]
    assert len(stale) == 1 and f"flush chain ip kube-proxy {stale[0]}" in partial
    assert "numgen random mod 2 vmap" in partial


def test_nft_full_rewrites_the_whole_table_in_one_document():
    lab = model.build(3, 2)
    old, new = render_nft(lab), render_nft(model.move_endpoint(lab))
    full = model.nft_full(new, old, 0)
    assert full.startswith("flush table ip kube-proxy\n" + new)
    assert full.count("flush chain") == 1
