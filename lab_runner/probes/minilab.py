"""A throwaway client → node → pod topology (one DNAT rule per service port) to test and time the probes.

    with mini_lab() as lab:  # three namespaces kplab-<run id>-{client,node,pod}, all deleted after
        run_agent(Runner(), Place(lab.client), "syn", dst=lab.VIP, dport=80)

It is not the kit's lab: no kube-proxy chains, just the smallest node that DNATs a virtual IP the
way KUBE-SEP rules do and masquerades outside clients (MASQUERADE --random-fully, as in the seed),
so a probe meets the same kernel machinery. The pod runs the kit's own app server
(lab_runner.appserver, in a UTS namespace of its own as the backend starts it), which answers
{"pod", "saw_src", "saw_sport", "saw_dst", "saw_dport", "proto"}.

    service port on VIP      goes to                         a probe gets
    80/tcp   "http"          pod 8080, HTTP server           syn-ack, an HTTP reply
    7/tcp    "echo"          pod 7007, line echo             a JSON line
    53/udp   "udp"           pod 5353, datagram echo         a JSON datagram
    81/tcp   "closed"        pod 8181, nothing listens       rst (from the VIP: conntrack un-NATs it)
    82/tcp   "rejected"      REJECT in the node's FORWARD    icmp port-unreachable (kube-proxy's
                                                             answer for a service without endpoints)
    83/tcp   no rule         the node's default route        none (a portless bridge swallows it)
    8000/tcp "burst"         pod 8080                        a DNAT rule only bursts use, to count
    8053/udp "burst-udp"     pod 5353                        the same for UDP bursts
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from lab_runner import PREFIX
from lab_runner.commands import Place, Runner
from lab_runner.errors import CommandFailed
from lab_runner.probes.launch import probe_env


@dataclass
class MiniLab:
    """Names and addresses of one running mini lab."""

    run_id: str
    runner: Runner
    server: subprocess.Popen | None = None
    stragglers: list[int] = field(default_factory=list)  # processes still in a namespace at teardown

    VIP = "10.96.0.10"
    CLIENT_IP, NODE_CLIENT_IP = "10.10.0.2", "10.10.0.1"
    NODE_POD_IP, POD_IP = "10.244.0.1", "10.244.0.2"
    POD_NAME = "web-0"
    POD_IFACE = "eth0"

    @property
    def client(self) -> str:
        return f"{PREFIX}-{self.run_id}-client"

    @property
    def node(self) -> str:
        return f"{PREFIX}-{self.run_id}-node"

    @property
    def pod(self) -> str:
        return f"{PREFIX}-{self.run_id}-pod"

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return (self.client, self.node, self.pod)

    def nat_counter(self, comment: str) -> int:
        """Packets counted so far by the node's nat rule carrying this comment."""
        listing = self.runner.run(["iptables-save", "-c", "-t", "nat"], Place(self.node)).stdout
        for line in listing.splitlines():
            if f'--comment "{comment}"' in line or f"--comment {comment} " in line:
                match = re.match(r"\[(\d+):\d+\]", line)
                if match:
                    return int(match.group(1))
        raise LookupError(f"no nat rule commented {comment!r} in {self.node}:\n{listing}")


def _ruleset() -> str:
    vip, pod = MiniLab.VIP, MiniLab.POD_IP
    dnat = [("http", "tcp", 80, 8080), ("echo", "tcp", 7, 7007), ("udp", "udp", 53, 5353),
            ("closed", "tcp", 81, 8181), ("burst", "tcp", 8000, 8080), ("burst-udp", "udp", 8053, 5353)]
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]"]
    lines += [f'-A PREROUTING -d {vip}/32 -p {proto} -m {proto} --dport {port} -m comment --comment "{name}" '
              f"-j DNAT --to-destination {pod}:{target}" for name, proto, port, target in dnat]
    lines += ['-A POSTROUTING -s 10.10.0.0/24 -o to-pod -m comment --comment "masquerade" '
              "-j MASQUERADE --random-fully", "COMMIT",
              "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
              f'-A FORWARD -d {vip}/32 -p tcp -m tcp --dport 82 -m comment --comment "rejected" '
              "-j REJECT --reject-with icmp-port-unreachable", "COMMIT", ""]
    return "\n".join(lines)


def _build(lab: MiniLab) -> None:
    run, c, n, p = lab.runner.run, lab.client, lab.node, lab.pod
    for ns in lab.namespaces:
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    # Each veth is created inside a lab namespace and its peer sent to another: none ever exists
    # in the host's namespace.
    run(["ip", "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "to-client", "netns", n])
    run(["ip", "-n", n, "link", "add", "to-pod", "type", "veth", "peer", "name", "eth0", "netns", p])
    # The node's way out is a bridge with no ports and no ARP: what is routed there is dropped
    # silently (no neighbour resolution that could fail into an ICMP error), as when a real node
    # sends a packet for an address nobody owns out of its default route.
    run(["ip", "-n", n, "link", "add", "upstream0", "type", "bridge"])
    run(["ip", "-n", n, "link", "set", "upstream0", "arp", "off"])
    addresses = ((c, "eth0", MiniLab.CLIENT_IP), (n, "to-client", MiniLab.NODE_CLIENT_IP),
                 (n, "to-pod", MiniLab.NODE_POD_IP), (p, "eth0", MiniLab.POD_IP), (n, "upstream0", "192.0.2.1"))
    for ns, link, address in addresses:
        run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", link])
        run(["ip", "-n", ns, "link", "set", link, "up"])
    run(["ip", "-n", c, "route", "add", "10.96.0.0/12", "via", MiniLab.NODE_CLIENT_IP])
    run(["ip", "-n", p, "route", "add", "default", "via", MiniLab.NODE_POD_IP])
    run(["ip", "-n", n, "route", "add", "default", "dev", "upstream0"])
    run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], Place(n))
    run(["iptables-restore"], Place(n), input=_ruleset())
    app = ["unshare", "--uts", sys.executable, "-m", "lab_runner.appserver", "--pod", MiniLab.POD_NAME,
           "--ip", MiniLab.POD_IP, "--tcp", "8080", "--tcp", "7007", "--udp", "5353"]
    lab.server = lab.runner.spawn(app, Place(p), stdout=subprocess.PIPE, text=True, env=probe_env())
    assert lab.server.stdout is not None
    said = lab.server.stdout.readline().strip()
    lab.server.stdout.close()  # the app lets go of the pipe after `ready` too
    if said != "ready":
        raise CommandFailed(app, lab.server.wait(), said, "the pod app did not say ready", p)


def _teardown(lab: MiniLab) -> None:
    if lab.server is not None and lab.server.poll() is None:
        lab.server.terminate()
        try:
            lab.server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            lab.server.kill()
            lab.server.wait()
    for ns in lab.namespaces:
        listed = lab.runner.run(["ip", "netns", "pids", ns], check=False)
        for pid in (int(word) for word in listed.stdout.split()):
            lab.stragglers.append(pid)  # only processes inside our own namespace: ours
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for ns in lab.namespaces:
        lab.runner.run(["ip", "netns", "del", ns], check=False)


@contextmanager
def mini_lab(runner: Runner | None = None) -> Iterator[MiniLab]:
    """Build the topology under a fresh run id; tear it all down however the block ends."""
    from lab_runner.runs import scratch_run_id

    lab = MiniLab(run_id=scratch_run_id(), runner=runner or Runner())
    try:
        _build(lab)
        yield lab
    finally:
        _teardown(lab)
