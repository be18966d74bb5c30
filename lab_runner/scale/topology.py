"""The throw-away namespaces one sweep point runs in: client -> node -> pods, all deleted after.

    with scale_topology() as topo:      # kplab-<run id>-{client,node,pods}
        ...                             # topo.node gets the rules, topo.client sends the flows

    client  eth0 192.168.50.2/24, the Service range routed via the node
    node    to-client 192.168.50.1/24, to-pods 192.168.100.1/30, the cluster CIDR via the pods,
            ip_forward=1: kube-proxy's rules go here
    pods    eth0 192.168.100.2/30, the whole cluster CIDR a `local` route (every endpoint address
            is this namespace's own), one listener on 0.0.0.0:8080

The client is outside the cluster CIDR, so, as the seed's load balancer, its connections are
marked and masqueraded. Every veth is made inside a lab namespace with its peer sent to another:
nothing is created in the host's namespace.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from lab_runner import PREFIX
from lab_runner.commands import Place, Runner
from lab_runner.errors import CommandFailed
from lab_runner.probes.launch import probe_env
from lab_runner.probes.minilab import _teardown as teardown
from lab_runner.scale.model import CLUSTER_CIDR, SERVICE_CIDR, TARGET_PORT

CLIENT_IP, NODE_CLIENT_IP = "192.168.50.2", "192.168.50.1"
NODE_PODS_IP, PODS_IP = "192.168.100.1", "192.168.100.2"
CLIENT_IFACE = "eth0"


@dataclass
class Topology:
    """Names of one sweep point's namespaces and the listener running in its pods namespace."""

    run_id: str
    runner: Runner
    server: subprocess.Popen | None = None  # the pods' listener
    made: list[str] = field(default_factory=list)
    stragglers: list[int] = field(default_factory=list)  # still in a namespace at teardown

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.made)

    def name(self, role: str) -> str:
        return f"{PREFIX}-{self.run_id}-{role}"

    @property
    def client(self) -> Place:
        return Place(self.name("client"))

    @property
    def node(self) -> Place:
        return Place(self.name("node"))

    @property
    def pods(self) -> Place:
        return Place(self.name("pods"))


def _build(topo: Topology) -> None:
    run, c, n, p = topo.runner.run, topo.name("client"), topo.name("node"), topo.name("pods")
    for ns in (c, n, p):
        run(["ip", "netns", "add", ns])
        topo.made.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", c, "link", "add", CLIENT_IFACE, "type", "veth", "peer", "name", "to-client",
         "netns", n])
    run(["ip", "-n", n, "link", "add", "to-pods", "type", "veth", "peer", "name", "eth0",
         "netns", p])
    for ns, link, address in ((c, CLIENT_IFACE, f"{CLIENT_IP}/24"),
                              (n, "to-client", f"{NODE_CLIENT_IP}/24"),
                              (n, "to-pods", f"{NODE_PODS_IP}/30"), (p, "eth0", f"{PODS_IP}/30")):
        run(["ip", "-n", ns, "addr", "add", address, "dev", link])
        run(["ip", "-n", ns, "link", "set", link, "up"])
    run(["ip", "-n", c, "route", "add", str(SERVICE_CIDR), "via", NODE_CLIENT_IP])
    run(["ip", "-n", n, "route", "add", str(CLUSTER_CIDR), "via", PODS_IP])
    run(["ip", "-n", p, "route", "add", "local", str(CLUSTER_CIDR), "dev", "lo"])
    run(["ip", "-n", p, "route", "add", "default", "via", NODE_PODS_IP])
    run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], topo.node)
    argv = [sys.executable, "-m", "lab_runner.scale.listener", "--port", str(TARGET_PORT)]
    topo.server = topo.runner.spawn(argv, topo.pods, stdout=subprocess.PIPE, text=True,
                                      env=probe_env())
    assert topo.server.stdout is not None
    said = topo.server.stdout.readline().strip()
    topo.server.stdout.close()
    if said != "ready":
        raise CommandFailed(argv, topo.server.wait(), said, "the listener did not say ready", p)


@contextmanager
def scale_topology(runner: Runner | None = None) -> Iterator[Topology]:
    """Build the three namespaces under a fresh run id; remove them however the block ends
    (Ctrl-C included)."""
    from lab_runner.runs import scratch_run_id

    topo = Topology(run_id=scratch_run_id(), runner=runner or Runner())
    try:
        _build(topo)
        yield topo
    finally:
        teardown(topo)  # the mini lab's: the same fields, the same way down
