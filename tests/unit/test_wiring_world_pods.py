"""The wiring grader's static world: which pods of the node sit on its bridge."""

from __future__ import annotations

import ipaddress

from lab_runner import lab_file
from lab_runner.backends.netns import veth_name
from lab_runner.grading.wiring.spec import WiringSpec
from lab_runner.grading.wiring.world import World
from lab_runner.model import Pod

LAB = """
id: lab-wiring-hostnet
title: a bridge pod and a hostNetwork agent on one node
clusterCIDR: 10.244.0.0/16
nodes:
  - {name: node-a, ip: 192.168.49.2, bridge: {name: cni0, address: 10.244.0.1/24}}
  - {name: node-b, ip: 192.168.49.3, bridge: {name: cni0, address: 10.244.1.1/24}}
pods:
  - {name: web-1, node: node-a, ip: 10.244.0.5}
  - {name: web-2, node: node-b, ip: 10.244.1.5}
  - {name: agent, node: node-a, hostNetwork: true, ports: [{containerPort: 9100}]}
"""


def world() -> World:
    lab = lab_file.parse(LAB, "wiring-hostnet.yaml")
    student = Pod(name="wired", namespace="default", node="node-a",
                  ip=ipaddress.IPv4Address("10.244.0.9"))
    return World(lab, WiringSpec(pod=student))


def test_host_network_pods_are_not_on_the_bridge():
    w = world()
    # The agent is at node-a's own address: the live lab gives it no veth, so neither does
    # the static world; web-2 is on node-b's bridge, not this one.
    assert [p.name for p in w.bridge_pods] == ["web-1"]
    veths = {link.name for link in w.in_ns("node") if link.kind == "veth" and link.master}
    assert veths == {veth_name("web-1")}
    assert w.find("node", veth_name("agent")) is None
