"""Deployment changes on hostNetwork pods: refused in one sentence instead of a bridge address."""

from __future__ import annotations

import random

import pytest

from lab_runner import lab_file
from lab_runner.deployments import recreated, scaled
from lab_runner.errors import LabError

LAB = """
id: lab-hostnet
title: a hostNetwork agent beside ordinary pods
clusterCIDR: 10.244.0.0/16
nodes:
  - {name: node-a, ip: 192.168.49.2, bridge: {name: cni0, address: 10.244.0.1/24}}
pods:
  - {name: web-5d8f9c7b6-abcde, ip: 10.244.0.5, labels: {app: web}}
  - {name: agent-6c4b8d9f7-qwxyz, hostNetwork: true, ports: [{containerPort: 9100}],
     labels: {app: agent}}
"""


@pytest.fixture(scope="module")
def lab():
    return lab_file.parse(LAB, "hostnet.yaml")


@pytest.mark.parametrize("replicas", [0, 2])
def test_scaling_a_host_network_deployment_is_refused_by_name(lab, replicas):
    with pytest.raises(LabError, match="deployment 'agent' runs hostNetwork pods") as caught:
        scaled(lab, "agent", replicas, random.Random(1))
    assert "\n" not in str(caught.value) and str(caught.value).endswith("cannot scale it")


def test_scaling_a_host_network_deployment_to_its_size_changes_nothing(lab):
    assert scaled(lab, "agent", 1, random.Random(1)) == (lab, [], [])


def test_ordinary_deployment_still_scales_on_the_bridge(lab):
    new_lab, added, removed = scaled(lab, "web", 2, random.Random(1))
    assert [str(p.ip) for p in added] == ["10.244.0.2"] and removed == []
    assert not added[0].host_network


def test_recreating_a_host_network_pod_is_refused(lab):
    with pytest.raises(LabError, match="'agent-6c4b8d9f7-qwxyz' is a hostNetwork pod at node "
                                       "node-a's address"):
        recreated(lab, "qwxyz", random.Random(1))
