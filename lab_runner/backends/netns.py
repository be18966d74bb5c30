"""The network-namespace backend: the only module that creates and deletes namespaces, links and pods.

Layout of one run (every namespace named `kplab-<run>-…`; links live only inside them):

    kplab-<run>-net                 the node network (minikube's docker network): bridge `nodenet`
      ├─ eth0 ── kplab-<run>-node-<node>   ip_forward=1, pod bridge (docker0), kube-proxy chains
      │            └─ vethXXXXXXX ── eth0  kplab-<run>-pod-<pod>   default via the bridge address
      └─ eth0 ── kplab-<run>-client-<c>     routes the service CIDR and pod subnets via its node

Nothing is created in the host's own namespace: veth pairs are made inside a lab namespace with
their peer moved straight into another one.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab_runner.commands import HOST, Place, Runner
from lab_runner.errors import CommandFailed, LabError
from lab_runner.model import Lab, Node, Pod
from lab_runner.runs import (RunRecord, TrackedProcess, is_kit_name, netns_name,
                             process_start_ticks, run_id_of, valid_run_id)
from lab_runner.safe_files import write_file

NODE_NET_BRIDGE = "nodenet"
APP_START_TIMEOUT = 10.0
# Holds a node's own UTS namespace (hostname = node name, as a minikube node has) for as long as
# the run lives; commands in the node enter it through this process (LiveLab.place).
UTS_HOLDER = ("import signal,socket,sys;socket.sethostname(sys.argv[1]);print('ready',flush=True);"
              "signal.pause()")


def uts_role(node: str) -> str:
    """The role of the process that holds a node's UTS namespace in a run record."""
    return f"uts:{node}"


def node_ns(run_id: str, node: str) -> str:
    return netns_name(run_id, "node", node)


def pod_ns(run_id: str, pod: str) -> str:
    return netns_name(run_id, "pod", pod)


def client_ns(run_id: str, client: str) -> str:
    return netns_name(run_id, "client", client)


def fabric_ns(run_id: str) -> str:
    return netns_name(run_id, "net")


def veth_name(pod: str) -> str:
    """Docker-style host-side name (`veth` + 7 hex): unique per pod, within the 15-character limit."""
    return "veth" + hashlib.sha1(pod.encode()).hexdigest()[:7]


def all_namespaces(lab: Lab, run_id: str) -> list[str]:
    return ([fabric_ns(run_id)] + [node_ns(run_id, n.name) for n in lab.nodes]
            + [pod_ns(run_id, p.name) for p in lab.pods if not p.host_network]
            + [client_ns(run_id, c.name) for c in lab.clients])


class NetnsBackend:
    """Realises a lab model as namespaces, links and app processes, and removes them again."""

    name = "netns"

    def __init__(self, runner: Runner | None = None):
        self.runner = runner or Runner()

    # -- build -----------------------------------------------------------------------------
    def create(self, lab: Lab, run: RunRecord) -> None:
        """Build everything; the caller tears down on any exception (the record lists it all)."""
        run.namespaces = all_namespaces(lab, run.run_id)
        run.save()  # recorded before creation, so an interrupted up is fully removable
        self._batch(HOST, [f"netns add {ns}" for ns in run.namespaces])
        for ns in run.namespaces:
            _write_resolv_conf(ns)
        self._batch(Place(fabric_ns(run.run_id)), self._fabric_commands(lab, run.run_id))
        batches = [(Place(node_ns(run.run_id, n.name)), self._node_commands(lab, n, run.run_id))
                   for n in lab.nodes]
        self._parallel(batches)
        batches = [(Place(pod_ns(run.run_id, p.name)), self._pod_commands(lab, p)) for p in lab.pods
                   if not p.host_network]
        batches += [(Place(client_ns(run.run_id, c.name)), self._client_commands(lab, c))
                    for c in lab.clients]
        self._parallel(batches)
        for node in lab.nodes:
            # No ICMP redirects (they would use up the ICMP rate budget meant for the REJECT
            # answers students look for) and no ICMP rate limit: a probe burst gets every error.
            self.runner.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                             "net.bridge.bridge-nf-call-iptables=1",
                             "net.ipv4.conf.all.send_redirects=0",
                             "net.ipv4.conf.eth0.send_redirects=0",
                             "net.ipv4.icmp_ratelimit=0"],
                            Place(node_ns(run.run_id, node.name)))
        self.start_node_hostnames(lab, run)
        self.start_pods(lab, run, lab.pods)

    def _fabric_commands(self, lab: Lab, run_id: str) -> list[str]:
        cmds = ["link set lo up", f"link add {NODE_NET_BRIDGE} type bridge",
                f"link set {NODE_NET_BRIDGE} up"]
        ends = [(f"n{i}", node_ns(run_id, n.name)) for i, n in enumerate(lab.nodes)]
        ends += [(f"c{i}", client_ns(run_id, c.name)) for i, c in enumerate(lab.clients)]
        for port, peer_ns in ends:
            cmds += [f"link add {port} type veth peer name eth0 netns {peer_ns}",
                     f"link set {port} master {NODE_NET_BRIDGE} up"]
        return cmds

    # -- pods added to or removed from a running lab ------------------------------------------
    def add_pod(self, lab: Lab, run: RunRecord, pod: Pod) -> None:
        """Wire one more pod into its node's bridge and start its app (a scale-out)."""
        ns = pod_ns(run.run_id, pod.name)
        run.namespaces.append(ns)
        run.save()
        self._batch(HOST, [f"netns add {ns}"])
        _write_resolv_conf(ns)
        self._batch(Place(node_ns(run.run_id, pod.node)), self._veth_commands(lab, pod, run.run_id))
        self._batch(Place(ns), self._pod_commands(lab, pod))
        self.start_pods(lab, run, [pod])

    def remove_pod(self, run: RunRecord, pod_name: str) -> None:
        """Stop a pod's app and delete its namespace (its veth goes with it)."""
        ns = pod_ns(run.run_id, pod_name)
        inodes = _namespace_inodes([ns])
        self.stop_pod(run, pod_name, inodes)
        _terminate_pids(_netns_pids(ns), inodes)
        self.runner.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        run.namespaces = [n for n in run.namespaces if n != ns]
        run.save()

    def _veth_commands(self, lab: Lab, pod: Pod, run_id: str) -> list[str]:
        # hairpin on, as kubelet sets it: with br_netfilter a pod's packet DNATed back to that
        # same pod leaves through the bridge port it came in by.
        veth, bridge = veth_name(pod.name), lab.node(pod.node).bridge
        return [f"link add {veth} type veth peer name eth0 netns {pod_ns(run_id, pod.name)}",
                f"link set {veth} master {bridge} up",
                f"link set {veth} type bridge_slave hairpin on"]

    def _node_commands(self, lab: Lab, node: Node, run_id: str) -> list[str]:
        prefix = lab.node_network.prefixlen
        cmds = ["link set lo up", f"addr add {node.ip}/{prefix} dev eth0", "link set eth0 up",
                f"link add {node.bridge} type bridge", f"addr add {node.bridge_address} dev {node.bridge}",
                f"link set {node.bridge} up"]
        for pod in lab.pods:
            if pod.node == node.name and not pod.host_network:
                cmds += self._veth_commands(lab, pod, run_id)
        for other in lab.nodes:
            if other.name != node.name:
                cmds.append(f"route add {other.pod_subnet} via {other.ip}")
        # Like minikube's node, a default route to the node network's first address (the host
        # there; here a lab namespace or nobody). Traffic for a ClusterIP that no rule DNATs is
        # then routed and meets the filter table, so "has no endpoints" REJECTs are seen. The
        # node network has no uplink: nothing leaves the machine.
        gateway = next(lab.node_network.hosts())
        if gateway != node.ip:
            cmds.append(f"route add default via {gateway}")
        return cmds

    def _pod_commands(self, lab: Lab, pod: Pod) -> list[str]:
        node = lab.node(pod.node)
        return ["link set lo up", f"addr add {pod.ip}/{node.pod_subnet.prefixlen} dev eth0",
                "link set eth0 up", f"route add default via {node.bridge_address.ip}"]

    def _client_commands(self, lab: Lab, client) -> list[str]:
        via = lab.node(client.node).ip
        cmds = ["link set lo up", f"addr add {client.ip}/{lab.node_network.prefixlen} dev eth0",
                "link set eth0 up", f"route add {lab.service_cidr} via {via}"]
        # Pod subnets (and the cluster CIDR where it is not already covered) via the client's node.
        subnets = {n.pod_subnet for n in lab.nodes} | {lab.cluster_cidr}
        for subnet in sorted(subnets, key=lambda s: (s.network_address, s.prefixlen)):
            if not subnet.overlaps(lab.node_network) and not subnet.overlaps(lab.service_cidr):
                cmds.append(f"route add {subnet} via {via}")
        return _without_duplicate_routes(cmds)

    def _batch(self, place: Place, commands: list[str]) -> None:
        argv = ["ip", "-batch", "-"] if place.netns is None else ["ip", "-n", place.netns, "-batch", "-"]
        self.runner.run(argv, input="\n".join(commands) + "\n")

    def _parallel(self, batches: list[tuple[Place, list[str]]]) -> None:
        if not batches:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(batches))) as pool:
            for future in [pool.submit(self._batch, place, cmds) for place, cmds in batches]:
                future.result()

    # -- hosts' own UTS namespaces ------------------------------------------------------------
    def start_node_hostnames(self, lab: Lab, run: RunRecord) -> None:
        """Give each node a UTS namespace of its own, named like the node (`hostname` in
        `lab-runner ssh` prints minikube, not the machine's name), held by a small process."""
        started = []
        for node in lab.nodes:
            proc = self.runner.spawn(["unshare", "--uts", "--", sys.executable, "-c", UTS_HOLDER,
                                      node.name], Place(node_ns(run.run_id, node.name)),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
            ticks = process_start_ticks(proc.pid) or 0
            run.processes.append(TrackedProcess(proc.pid, uts_role(node.name), ticks))
            started.append((f"node {node.name}", proc))
        run.save()
        deadline = time.monotonic() + APP_START_TIMEOUT
        for what, proc in started:
            _wait_ready(what, proc, deadline)

    # -- pods ------------------------------------------------------------------------------
    def start_pods(self, lab: Lab, run: RunRecord, pods) -> None:
        """Start each pod's app server in its own UTS namespace and wait until all listen.

        A hostNetwork pod's app runs in its node's namespace, on the node's address; it is a
        process of the run (cleanup stops it with the node) but no pod namespace holds it, so it
        is not in pod_pids, which name the pods that have one.
        """
        started = []
        extra = _hand_made_ports(lab)
        for pod in pods:
            argv = ["unshare", "--uts", "--", sys.executable, "-m", "lab_runner.appserver",
                    "--pod", pod.name, "--ip", str(pod.ip)]
            listen = {(p.container_port, p.protocol) for p in pod.ports}
            for number, protocol in sorted(listen | extra.get(pod.name, set())):
                argv += [f"--{protocol.lower()}", str(number)]
            if pod.app == "echo":
                argv.append("--plain")
            where = (node_ns(run.run_id, pod.node) if pod.host_network
                     else pod_ns(run.run_id, pod.name))
            proc = self.runner.spawn(argv, Place(where),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=_child_env())
            ticks = process_start_ticks(proc.pid) or 0
            run.processes.append(TrackedProcess(proc.pid, f"app:{pod.name}", ticks))
            if not pod.host_network:
                run.pod_pids[pod.name] = proc.pid
            started.append((pod, proc))
        run.save()
        deadline = time.monotonic() + APP_START_TIMEOUT
        for pod, proc in started:
            _wait_ready(f"pod {pod.name}", proc, deadline)

    def stop_pod(self, run: RunRecord, pod_name: str, inodes: set | None = None) -> None:
        pid = run.pod_pids.pop(pod_name, None)
        if inodes is None:
            inodes = _namespace_inodes([pod_ns(run.run_id, pod_name)])
        keep = []
        for proc in run.processes:
            if proc.pid == pid:
                _terminate([proc], inodes)
            else:
                keep.append(proc)
        run.processes = keep

    # -- teardown --------------------------------------------------------------------------
    def destroy(self, run: RunRecord) -> list[str]:
        """Stop the run's processes and delete its namespaces; returns what could not be removed.

        Only kit names of this run id are touched, each passed to `ip` as one argument; a process
        is signalled only while it lives in one of those namespaces (and, for a process the kit
        started, only while its start time is the one recorded: never a recycled pid).
        """
        if not valid_run_id(run.run_id):
            return [f"{run.run_id!r} is not a run id: nothing of it was touched"]
        namespaces = ({ns for ns in run.namespaces if is_kit_name(ns, run.run_id)}
                      | set(namespaces_of_run(run.run_id)))
        inodes = _namespace_inodes(namespaces)
        _terminate(run.processes, inodes)
        for ns in namespaces:  # anything else still inside (a shell, a probe) goes too
            _terminate_pids(_netns_pids(ns), inodes)
        problems = []
        if namespaces:
            present = set(list_netns())
            errors = [self.runner.run(["ip", "netns", "del", ns], check=False).stderr.strip()
                      for ns in sorted(namespaces & present)]
            for ns in namespaces:
                shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
            _remove_if_empty(NETNS_ETC)
            left = set(namespaces) & set(namespaces_of_run(run.run_id))
            if left:
                problems.append(f"namespaces not removed: {', '.join(sorted(left))}: "
                                + "; ".join(e for e in errors if e))
        return problems


NETNS_ETC = Path("/etc/netns")


def _hand_made_ports(lab: Lab) -> dict[str, set[tuple[int, str]]]:
    """Ports that Services without selector name on a pod beyond its container ports: its app
    listens there too, so a hand-made endpoint answers as a selected one does."""
    found: dict[str, set[tuple[int, str]]] = {}
    for service in lab.services:
        protocols = {p.name or "": p.protocol for p in service.ports}
        for endpoint in service.endpoints:
            found.setdefault(endpoint.pod.name, set()).update(
                (number, protocols[name]) for name, number in endpoint.ports)
    return found


def _write_resolv_conf(ns: str) -> None:
    """A resolver that fails at once inside the lab (`ip netns exec` mounts /etc/netns/NS/*).

    Without it, `iptables -L` without -n waits seconds per address for the host's nameserver,
    which a lab namespace cannot reach (and must not: nothing leaves the machine).
    """
    folder = NETNS_ETC / ns
    # Explicit modes whatever the umask: every file here is mounted over /etc inside the lab.
    for directory in (NETNS_ETC, folder):
        try:
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)
        except FileExistsError:
            pass
    write_file(folder / "resolv.conf", "# lab-runner: no name service inside a lab\n"
               "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n", 0o644)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only when no other namespace uses it
    except OSError:
        pass


def namespaces_of_run(run_id: str) -> list[str]:
    return [ns for ns in list_netns() if run_id_of(ns) == run_id]


def _namespace_inodes(namespaces) -> set[tuple[int, int]]:
    """The identity (device, inode) of each named namespace that exists now."""
    found = set()
    for ns in namespaces:
        try:
            info = os.stat(f"/run/netns/{ns}")
        except OSError:
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def _lives_in(pid: int, inodes: set[tuple[int, int]]) -> bool:
    """Whether pid's network namespace is one of inodes (the run's own)."""
    try:
        info = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    return (info.st_dev, info.st_ino) in inodes


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _without_duplicate_routes(cmds: list[str]) -> list[str]:
    seen, out = set(), []
    for c in cmds:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _wait_ready(what: str, proc: subprocess.Popen, deadline: float) -> None:
    remaining = max(0.0, deadline - time.monotonic())
    ready, _, _ = select.select([proc.stdout], [], [], remaining)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        proc.kill()
        err = proc.stderr.read().decode(errors="replace").strip() if proc.poll() is not None else ""
        raise LabError(f"{what}: its process did not start"
                       + (f": {err}" if err else f" within {APP_START_TIMEOUT:g} s"))
    proc.stdout.close()
    proc.stderr.close()


def _netns_pids(ns: str) -> list[int]:
    try:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def _terminate(processes: list[TrackedProcess], inodes: set[tuple[int, int]]) -> None:
    _terminate_pids([p.pid for p in processes if p.alive()], inodes)


def _terminate_pids(pids: list[int], inodes: set[tuple[int, int]], grace: float = 1.0) -> None:
    """SIGTERM, a short wait, then SIGKILL for what is left: only processes in the namespaces
    whose identities are `inodes` (a run's own), looked at again before each signal."""
    pids = [p for p in pids if p > 1 and p != os.getpid() and _lives_in(p, inodes)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _exists(p)]
        if pids:
            time.sleep(0.01)
    for pid in pids:
        if _lives_in(pid, inodes):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours still "exists"; reap it if it is our child.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return process_start_ticks(pid) is not None and _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


__all__ = ["NetnsBackend", "CommandFailed", "node_ns", "pod_ns", "client_ns", "fabric_ns"]
