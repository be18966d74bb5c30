"""The static model: namespaces, links, addresses and routes, following the kernel's rules."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from lab_runner.grading.wiring.commands import Command
from lab_runner.grading.wiring.spec import WiringSpec
from lab_runner.model import Lab


@dataclass(eq=False)
class Link:
    name: str
    ns: str  # "node", "pod", or "elsewhere" (the other end of a pod's or the node's link)
    kind: str  # veth, bridge, loopback
    up: bool = False
    master: str | None = None
    peer: "Link | None" = None
    addresses: list = field(default_factory=list)  # IPv4Interface


@dataclass
class Route:
    dest: ipaddress.IPv4Network
    via: ipaddress.IPv4Address | None
    dev: Link


@dataclass(frozen=True)
class Ran:
    """What one command did: exit status 0 or not, and the message a terminal would show."""

    line: int
    text: str
    ok: bool
    message: str = ""


class World:
    """The node's and the pod's network namespaces as the commands leave them (static mode)."""

    def __init__(self, lab: Lab, spec: WiringSpec):
        self.node = lab.node(spec.pod.node)
        self.spec = spec
        self.namespaces = {"node"}
        self.links: list[Link] = []
        self.routes: list[Route] = []  # user routes, pod namespace only
        self.uncertain: list[str] = []  # states the model does not follow (static: undecidable)
        # A hostNetwork pod is at the node's own address, with no veth on the bridge.
        self.bridge_pods = [p for p in lab.pods
                            if p.node == self.node.name and not p.host_network]
        elsewhere = Link("peer", "elsewhere", "veth", True)
        self.links += [Link("lo", "node", "loopback", True),
                       Link("eth0", "node", "veth", True, peer=elsewhere,
                            addresses=[ipaddress.IPv4Interface(
                                f"{self.node.ip}/{lab.node_network.prefixlen}")]),
                       Link(self.node.bridge, "node", "bridge", True,
                            addresses=[self.node.bridge_address])]
        from lab_runner.backends.netns import veth_name

        for pod in self.bridge_pods:
            self.links.append(Link(veth_name(pod.name), "node", "veth", True,
                                   master=self.node.bridge,
                                   peer=Link("eth0", "elsewhere", "veth", True)))

    # -- lookups -----------------------------------------------------------------------------
    def find(self, ns: str, name: str) -> Link | None:
        return next((link for link in self.links if link.ns == ns and link.name == name), None)

    def in_ns(self, ns: str) -> list[Link]:
        return [link for link in self.links if link.ns == ns]

    def connected(self, ns: str) -> list[Route]:
        """The kernel's prefix routes: one per address (shorter than /32) of a link that is up."""
        out = []
        for link in self.in_ns(ns):
            if link.up:
                for a in link.addresses:
                    if a.network.prefixlen < 32:
                        out.append(Route(a.network, None, link))
        return out

    def table(self, ns: str) -> list[Route]:
        return self.connected(ns) + [r for r in self.routes if r.dev.ns == ns]

    def lookup(self, ns: str, address, *, link_scope: bool = False, dev: Link | None = None):
        """Longest prefix match (link_scope: only routes without a gateway, as for a nexthop)."""
        best = None
        for route in self.table(ns):
            if link_scope and route.via is not None:
                continue
            if dev is not None and route.dev is not dev:
                continue
            if address in route.dest and (best is None or route.dest.prefixlen > best.dest.prefixlen):
                best = route
        return best

    def local_addresses(self, ns: str) -> set:
        return {a.ip for link in self.in_ns(ns) for a in link.addresses}

    # -- commands ----------------------------------------------------------------------------
    def run(self, command: Command) -> Ran:
        if command.op != "netns-add" and command.ns not in self.namespaces:
            return Ran(command.line, command.text, False,
                       f'Cannot open network namespace "{command.ns}": No such file or directory')
        message = getattr(self, command.op.replace("-", "_"))(command, **command.args)
        return Ran(command.line, command.text, message is None, message or "")

    def netns_add(self, command, name):
        if name in self.namespaces:
            return f'Cannot create namespace file "/run/netns/{name}": File exists'
        self.namespaces.add(name)
        self.links.append(Link("lo", name, "loopback", False))

    def link_add(self, command, name, peer, peer_ns):
        ns = command.ns
        other = peer_ns or ns
        if other not in self.namespaces:
            return f'Error: argument "{other}" is wrong: Invalid "netns" value'
        if self.find(ns, name) or self.find(other, peer) or (ns == other and name == peer):
            return "RTNETLINK answers: File exists"
        a, b = Link(name, ns, "veth"), Link(peer, other, "veth")
        a.peer, b.peer = b, a
        self.links += [a, b]

    def link_set(self, command, dev, action, value):
        ns = command.ns
        # iproute2 resolves the arguments (master, netns) before the device itself.
        if action == "master" and self.find(ns, value) is None:
            return f'Error: argument "{value}" is wrong: Device does not exist'
        if action == "netns" and value not in self.namespaces:
            return f'Error: argument "{value}" is wrong: Invalid "netns" value'
        link = self.find(ns, dev)
        if link is None:
            return f'Cannot find device "{dev}"'
        if action == "up":
            link.up = True
        elif action == "down":
            link.up = False
            self.routes = [r for r in self.routes if r.dev is not link]
        elif action == "master":
            bridge = self.find(ns, value)
            if link is bridge or link.kind == "bridge":
                return "Error: Can not enslave a bridge to a bridge."
            link.master = value
        elif action == "nomaster":
            link.master = None
        elif action == "netns":
            if link.kind == "loopback":
                return "Error: The interface netns is immutable."
            if value == ns:
                return None
            if self.find(value, link.name):
                return "Error: An interface with the same name exists in the target netns."
            self.routes = [r for r in self.routes if r.dev is not link]
            link.ns, link.up, link.master, link.addresses = value, False, None, []
        elif action == "name":
            if self.find(ns, value) and value != dev:
                return "RTNETLINK answers: File exists"
            if link.up and value != dev:
                self.uncertain.append(f"line {command.line} renames {dev}, which is up (kernels "
                                      "before 6.2 refuse that: Device or resource busy)")
            link.name = value

    def link_del(self, command, dev):
        link = self.find(command.ns, dev)
        if link is None:
            return f'Cannot find device "{dev}"'
        if link.kind == "loopback":
            return "RTNETLINK answers: Operation not supported"
        gone = {id(link)} | ({id(link.peer)} if link.peer else set())
        self.links = [item for item in self.links if id(item) not in gone]
        self.routes = [r for r in self.routes if id(r.dev) not in gone]

    def addr_add(self, command, address, dev):
        link = self.find(command.ns, dev)
        if link is None:
            return f'Cannot find device "{dev}"'
        if any(a.ip == address.ip and a.network.prefixlen == address.network.prefixlen
               for a in link.addresses):
            return "Error: ipv4: Address already assigned."
        link.addresses.append(address)

    def route_add(self, command, dest, via, dev):
        ns = command.ns
        dest = dest or ipaddress.IPv4Network("0.0.0.0/0")
        out = None
        if dev is not None:
            out = self.find(ns, dev)
            if out is None:
                return f'Cannot find device "{dev}"'
        if via is None:
            if not out.up:
                return "Error: Device for nexthop is not up."
        else:
            cover = self.lookup(ns, via, link_scope=True, dev=out)
            own = next((link for link in self.in_ns(ns) for a in link.addresses if a.ip == via), None)
            if cover is None and own is None:
                return "Error: Nexthop has invalid gateway."
            out = cover.dev if cover is not None else own
            if out is not None and dev is not None and out.name != dev:
                return "Error: Nexthop has invalid gateway."
        if any(r.dest == dest for r in self.table(ns)):
            return "RTNETLINK answers: File exists"
        self.routes.append(Route(dest, via, out))

    # -- what the checks ask ---------------------------------------------------------------------
    def _pod_links(self) -> tuple[list[Link], str]:
        if "pod" not in self.namespaces:
            return [], "the pod's namespace was never created (`ip netns add pod`)"
        links = [link for link in self.in_ns("pod") if link.kind != "loopback"]
        return links, "" if links else "the pod's namespace has no interface besides lo"

    def _bridged(self, link: Link) -> bool:
        peer = link.peer
        return (link.kind == "veth" and peer is not None and peer.ns == "node"
                and peer.master == self.node.bridge and link.up and peer.up)

    def _not_bridged(self, link: Link) -> str:
        peer = link.peer
        if link.kind != "veth" or peer is None or peer.ns != "node":
            return f"the pod's {link.name} is not paired with an interface in the node"
        if peer.master != self.node.bridge:
            return (f"the node's end of the pair, {peer.name}, is not attached to the bridge "
                    f"{self.node.bridge}")
        down = [f"{x.name} ({'node' if x is peer else 'pod'})" for x in (peer, link) if not x.up]
        return f"not up: {', '.join(down)}; a veth carries packets only when both ends are up"

    def reach(self, caller_ip: str) -> tuple[bool, str]:
        """Does a TCP connection from caller_ip to the pod's address get its answer?

        Raises Uncertain for states the model does not follow (the address on several links,
        or several links of the pod on the bridge: which one answers ARP is the kernel's call).
        """
        links, why = self._pod_links()
        if not links:
            return False, why
        target = self.spec.address
        holders = [link for link in links if any(a.ip == target for a in link.addresses)]
        bridged = [link for link in links if self._bridged(link)]
        if not holders:
            have = "; ".join(f"{link.name}: {', '.join(str(a) for a in link.addresses) or 'none'}"
                             for link in links)
            return False, f"no interface of the pod has {target} (addresses: {have})"
        if len(holders) > 1 or len(bridged) > 1 or (bridged and holders[0] not in bridged):
            raise Uncertain(f"the pod has {len(links)} interfaces, {len(bridged)} of them on the "
                            f"bridge, and {target} on {', '.join(h.name for h in holders)}")
        link = holders[0]
        if not bridged:
            return False, self._not_bridged(link)
        source = ipaddress.IPv4Address(caller_ip)
        route = self.lookup("pod", source)
        if route is None:
            return False, f"the pod has no route back to {source}"
        if route.dev is not link:
            return False, f"the pod's route back to {source} goes out of {route.dev.name}"
        bridge_ip = self.node.bridge_address.ip
        on_bridge = {bridge_ip} | {p.ip for p in self.bridge_pods}
        if route.via is None:
            if source not in on_bridge:
                return False, (f"the pod sends its answer to {source} straight onto its link "
                               f"(no gateway), but {source} is not on the bridge")
        elif route.via != bridge_ip:
            return False, (f"the pod's route back to {source} goes via {route.via}, which does not "
                           "forward")
        return True, ""

    def pod_link_name(self) -> tuple[str | None, str]:
        """eth0 if one of the pod's links paired with the node is called so, else the first one's
        name (what the live check reports too), or None with the reason."""
        links, why = self._pod_links()
        if not links:
            return None, why
        paired = [link for link in links if link.kind == "veth" and link.peer is not None
                  and link.peer.ns == "node"]
        if not paired:
            return None, (f"no interface of the pod is the end of a veth pair whose other end is "
                          f"in the node (the pod's interfaces besides lo: "
                          f"{', '.join(link.name for link in links)})")
        if any(link.name == "eth0" for link in paired):
            return "eth0", ""
        if len(paired) > 1:
            raise Uncertain(f"{len(paired)} interfaces of the pod are paired with the node: "
                            f"{', '.join(link.name for link in paired)}")
        return paired[0].name, ""


class Uncertain(Exception):
    """A state the model does not follow: static mode says "undecidable" instead of guessing."""


def simulate(lab: Lab, spec: WiringSpec, commands) -> tuple[World, list[Ran]]:
    world = World(lab, spec)
    return world, [world.run(c) for c in commands]
