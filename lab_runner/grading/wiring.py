"""Wiring exercises: the student wires a pod into its node by hand, with `ip` commands as data.

An exercise is a wiring exercise when its directory holds `wiring.yaml` (lab 1, exercise 1):

    # the pod to wire: scheduled, given an address by IPAM, but with no network at all
    pod: {name: web-5d8f7c9b6-x7vq4, node: node-a, ip: 10.244.0.5, labels: {…},
          ports: [{name: http, containerPort: 8080}]}
    max_commands: 40          # optional

The submission is a text file of `ip` commands, one per line (`#` starts a comment). It is data,
never shell: each line is split with shlex, matched against an allow-list and turned into an argv
list the kit builds itself. Two namespace names exist for the student, `node` (the pod's node) and
`pod` (the pod's own namespace, which the student creates); the kit maps them to the sandbox's
real, prefixed names. Allowed, and nothing else:

    ip netns add pod
    ip -n NS link add NAME type veth peer name NAME [netns NS]
    ip -n NS link set [dev] NAME up | down | master BRIDGE | nomaster | netns NS | name NAME
    ip -n NS link del [dev] NAME
    ip -n pod addr add ADDRESS/PREFIX dev NAME        (an address of the node's pod subnet)
    ip -n pod route add default|NETWORK [via GATEWAY] [dev NAME]

In the node only links the submission created may be changed; the node's own (lo, eth0, the
bridge, the other pods' veths) never, the bridge being usable as a `master`. Anything else is
refused before anything runs, with the file and line.

Live mode builds the lab, runs the commands one by one in the real namespaces (`ip -n …`, never
the host's own namespace), records each one's exit status and message, then starts the pod's
app in the pod's namespace, if the submission made one, as kubelet would once the network is set
up. Static mode runs the same commands on a model of namespaces, links, addresses and routes that
follows the kernel's rules where they matter here (a link moved to another namespace comes down
and loses its addresses; a link taken down loses its routes; a gateway must be on a connected
route; …) and answers reachability from it. A few unusual states it does not model (the pod's
address on several links, several of the pod's links on the bridge, renaming a link that is up,
which kernels before 6.2 refuse) make it say "undecidable" rather than guess.

One hook outside this module makes `lab-runner grade` use it (lab_runner/grading/grade.py, at the
top of grade()):

    if wiring.applies(ex): return wiring.grade(lab, which, path, mode)

Until then: `python -m lab_runner.grading.wiring LAB FILE -e N [--static] [--json]`.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab_runner import lab_file
from lab_runner.errors import LabError, LabFileError, SubmissionError
from lab_runner.grading import exercise as exercises
from lab_runner.grading.results import GradeResult
from lab_runner.model import Lab, Pod

SPEC_FILE = "wiring.yaml"
MAX_BYTES = 8 * 1024
DEFAULT_MAX_COMMANDS = 40
NAMESPACES = ("node", "pod")
LINK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")  # IFNAMSIZ - 1, no '/', no spaces
PREFIX_RANGE = (8, 32)
SUFFIX = ".ip"  # what a wiring submission file is called (answer.ip), as .rules for iptables


# -- the exercise ----------------------------------------------------------------------------
@dataclass(frozen=True)
class WiringSpec:
    """What a wiring exercise gives the student: the pod to wire, on which node, which address."""

    pod: Pod
    max_commands: int = DEFAULT_MAX_COMMANDS

    @property
    def address(self) -> ipaddress.IPv4Address:
        return self.pod.ip


def applies(ex: exercises.Exercise) -> bool:
    return (ex.directory / SPEC_FILE).is_file()


def load_spec(ex: exercises.Exercise) -> WiringSpec:
    path = ex.directory / SPEC_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LabFileError(str(path), [f"cannot read: {exc}"]) from exc
    raw = data.get("pod") or {}
    problems = [f"{key}: unknown field; valid fields are: pod, max_commands"
                for key in data if key not in ("pod", "max_commands")]
    try:
        # The pod goes through the lab file's own checks: put it in a copy of the lab's file.
        text = Path(ex.lab.source).read_text(encoding="utf-8")
        lab_data = yaml.safe_load(text)
        lab_data["pods"] = list(lab_data.get("pods") or []) + [raw]
        checked = lab_file.parse(yaml.safe_dump(lab_data), f"{path} (pod)")
        pod = checked.pods[-1]
    except (LabError, KeyError, TypeError) as exc:
        raise LabFileError(str(path), problems + [f"pod: {exc}"]) from exc
    if problems:
        raise LabFileError(str(path), problems)
    return WiringSpec(pod, int(data.get("max_commands", DEFAULT_MAX_COMMANDS)))


# -- the submission: parsed and checked, never run by a shell ----------------------------------
@dataclass(frozen=True)
class Command:
    """One allowed command, normalised: `op` and its arguments, with the line it came from."""

    line: int
    text: str  # as the student wrote it (for messages)
    op: str  # netns-add, link-add, link-set, link-del, addr-add, route-add
    ns: str | None  # "node" or "pod" (None for netns-add)
    args: dict = field(default_factory=dict, hash=False)

    def argv(self, real: dict[str, str]) -> list[str]:
        """The argv the kit runs, with namespace names mapped to the sandbox's real ones."""
        a = self.args
        if self.op == "netns-add":
            return ["ip", "netns", "add", real["pod"]]
        head = ["ip", "-n", real[self.ns]]
        if self.op == "link-add":
            peer_ns = ["netns", real[a["peer_ns"]]] if a["peer_ns"] else []
            return head + ["link", "add", a["name"], "type", "veth", "peer", "name",
                           a["peer"]] + peer_ns
        if self.op == "link-set":
            value = a["value"]
            action = {"up": ["up"], "down": ["down"], "nomaster": ["nomaster"],
                      "master": ["master", value], "name": ["name", value],
                      "netns": ["netns", real.get(value, "")]}[a["action"]]
            return head + ["link", "set", "dev", a["dev"]] + action
        if self.op == "link-del":
            return head + ["link", "del", "dev", a["dev"]]
        if self.op == "addr-add":
            return head + ["addr", "add", str(a["address"]), "dev", a["dev"]]
        route = head + ["route", "add", "default" if a["dest"] is None else str(a["dest"])]
        if a["via"] is not None:
            route += ["via", str(a["via"])]
        if a["dev"] is not None:
            route += ["dev", a["dev"]]
        return route


@dataclass(frozen=True)
class WiringSubmission:
    path: str
    text: str
    commands: tuple[Command, ...]


LINK_ACTIONS = ("up", "down", "master", "nomaster", "netns", "name")
OBJECTS = {"link": "link", "addr": "addr", "address": "addr", "route": "route", "netns": "netns"}
VERBS = {"add": "add", "set": "set", "del": "del", "delete": "del"}
ALLOWED = ("ip netns add pod; ip -n node|pod link add NAME type veth peer name NAME [netns node|pod]; "
           "ip -n NS link set [dev] NAME up|down|master BRIDGE|nomaster|netns NS|name NAME; "
           "ip -n NS link del [dev] NAME; ip -n pod addr add ADDRESS/PREFIX dev NAME; "
           "ip -n pod route add default|NETWORK [via GATEWAY] [dev NAME]")


def read(path: str | Path, ex: exercises.Exercise, spec: WiringSpec) -> WiringSubmission:
    """Read and check a wiring submission; every refusal names the file and, where it can, the line."""
    path = Path(path)
    name = str(path)
    try:
        if path.is_symlink() or not path.is_file():
            raise SubmissionError(f"{name}: not a regular file (links and directories are refused)")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SubmissionError(f"{name}: {size} bytes is over the limit of {MAX_BYTES} bytes "
                                  "for a submission")
        raw = path.read_bytes()
    except PermissionError as exc:
        raise SubmissionError(f"{name}: cannot be read ({exc.strerror})") from exc
    except OSError as exc:
        raise SubmissionError(f"{name}: cannot be read ({exc})") from exc
    return from_bytes(raw, name, ex, spec)


def from_bytes(raw: bytes, name: str, ex: exercises.Exercise, spec: WiringSpec) -> WiringSubmission:
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise SubmissionError(f"{name}, line {line}: binary data (a NUL byte); a submission is a "
                              "text file of `ip` commands")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SubmissionError(f"{name}, line {line}: not UTF-8 text") from exc
    checker = _Checker(name, ex.lab, spec)
    commands = []
    for number, line in enumerate(text.splitlines(), start=1):
        if any(ord(c) < 32 and c not in "\t\r" for c in line):
            raise SubmissionError(f"{name}, line {number}: control characters are not allowed")
        command = checker.line(number, line)
        if command is not None:
            commands.append(command)
    if not commands:
        raise SubmissionError(f"{name}: no command in the file; write one `ip` command per line, "
                              "starting with `ip netns add pod`")
    if len(commands) > spec.max_commands:
        raise SubmissionError(f"{name}: {len(commands)} commands is over the limit of "
                              f"{spec.max_commands} for this exercise")
    return WiringSubmission(name, text, tuple(commands))


class _Checker:
    """The allow-list, one line at a time."""

    def __init__(self, name: str, lab: Lab, spec: WiringSpec):
        self.name = name
        self.node = lab.node(spec.pod.node)
        self.subnet = self.node.pod_subnet
        self.used = {str(p.ip): p.name for p in lab.pods}
        self.used[str(self.node.bridge_address.ip)] = f"the bridge {self.node.bridge}"
        self.spec = spec
        from lab_runner.backends.netns import veth_name

        self.protected = {"lo", "eth0", self.node.bridge} | {
            veth_name(p.name) for p in lab.pods if p.node == self.node.name}

    def refuse(self, number: int, message: str):
        return SubmissionError(f"{self.name}, line {number}: {message}")

    def line(self, number: int, line: str) -> Command | None:
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise self.refuse(number, f"cannot be read as a command ({exc})") from None
        if not words:
            return None
        if words[0] == "sudo":
            words = words[1:]
        if not words or words[0] != "ip":
            first = words[0] if words else "sudo"
            raise self.refuse(number, f"only `ip` commands are accepted, not {first!r}; a "
                                      f"submission is data, never shell. Allowed: {ALLOWED}")
        for word in words:
            if any(c in word for c in ";|&`$<>\\"):
                raise self.refuse(number, f"{word!r}: shell syntax is not accepted; one `ip` "
                                          "command per line, nothing else")
        rest = words[1:]
        ns = None
        if rest[:1] in (["-n"], ["-netns"], ["--netns"]):
            if len(rest) < 2:
                raise self.refuse(number, f"`{rest[0]}` needs a namespace name: node or pod")
            ns = self.namespace(number, rest[1])
            rest = rest[2:]
        elif rest and rest[0].startswith("-"):
            raise self.refuse(number, f"option {rest[0]!r} is not accepted; the only option is "
                                      "`-n node` or `-n pod`, which says where the command runs")
        if len(rest) < 2:
            raise self.refuse(number, f"incomplete command; allowed: {ALLOWED}")
        obj, verb = OBJECTS.get(rest[0]), VERBS.get(rest[1])
        if obj is None or verb is None:
            raise self.refuse(number, f"`ip {' '.join(rest[:2])}` is not part of this exercise; "
                                      f"allowed: {ALLOWED}")
        args = rest[2:]
        if obj == "netns":
            if verb != "add" or args != ["pod"] or ns is not None:
                raise self.refuse(number, "the only netns command is `ip netns add pod` (the pod's "
                                          "namespace; the node's exists already)")
            return Command(number, line.strip(), "netns-add", None, {"name": "pod"})
        if ns is None:
            raise self.refuse(number, f"say where `ip {obj} {verb}` runs: `ip -n node {obj} …` or "
                                      f"`ip -n pod {obj} …` (never on the machine itself)")
        handler = getattr(self, f"{obj}_{verb}", None)
        if handler is None:
            raise self.refuse(number, f"`ip {obj} {verb}` is not part of this exercise; allowed: "
                                      f"{ALLOWED}")
        return handler(number, line.strip(), ns, args)

    # -- names and addresses -------------------------------------------------------------------
    def namespace(self, number: int, word: str) -> str:
        if word not in NAMESPACES:
            raise self.refuse(number, f"unknown namespace {word!r}: the namespaces are `node` "
                                      "(the pod's node) and `pod` (the pod's own)")
        return word

    def link_name(self, number: int, word: str, ns: str, *, change: bool = True) -> str:
        if not LINK_NAME.match(word):
            raise self.refuse(number, f"{word!r} is not a valid interface name (1 to 15 letters, "
                                      "digits, '-', '_' or '.')")
        if change and ns == "node" and word in self.protected:
            what = "the bridge" if word == self.node.bridge else \
                "another pod's veth" if word.startswith("veth") and word not in ("lo", "eth0") \
                else "one of the node's own interfaces"
            raise self.refuse(number, f"{word!r} is {what}: this exercise may only change the "
                                      "interfaces it creates in the node")
        return word

    # -- link ------------------------------------------------------------------------------------
    def link_add(self, number, text, ns, args) -> Command:
        words = list(args)
        if words[:1] in (["name"], ["dev"]):
            words = words[1:]
        pattern = "link add NAME type veth peer name NAME [netns node|pod]"
        if len(words) < 5 or words[1:3] != ["type", "veth"] or words[3] != "peer":
            raise self.refuse(number, f"only veth pairs can be made here: `ip -n {ns} {pattern}`")
        name = self.link_name(number, words[0], ns)
        rest = words[4:]
        if rest[:1] == ["name"]:
            rest = rest[1:]
        if not rest:
            raise self.refuse(number, f"the peer needs a name: `ip -n {ns} {pattern}`")
        peer_ns = None
        if len(rest) == 3 and rest[1] == "netns":
            peer_ns = self.namespace(number, rest[2])
        elif len(rest) != 1:
            raise self.refuse(number, f"unexpected {' '.join(rest[1:])!r}; write `ip -n {ns} "
                                      f"{pattern}`")
        peer = self.link_name(number, rest[0], peer_ns or ns)
        return Command(number, text, "link-add", ns, {"name": name, "peer": peer,
                                                      "peer_ns": peer_ns})

    def link_set(self, number, text, ns, args) -> Command:
        words = list(args)
        if words[:1] == ["dev"]:
            words = words[1:]
        if len(words) < 2:
            raise self.refuse(number, f"`ip -n {ns} link set NAME up|down|master BRIDGE|nomaster|"
                                      "netns NS|name NAME`")
        dev = self.link_name(number, words[0], ns)
        action, values = words[1], words[2:]
        if action not in LINK_ACTIONS:
            raise self.refuse(number, f"`link set … {action}` is not part of this exercise; "
                                      f"the changes allowed are: {', '.join(LINK_ACTIONS)}")
        wants_value = action in ("master", "netns", "name")
        if len(values) != (1 if wants_value else 0):
            extra = " ".join(values)
            raise self.refuse(number, f"one change per `link set` line (got {action} "
                                      f"{extra!r}); put each change on a line of its own"
                              if not wants_value or len(values) > 1 else
                              f"`link set {dev} {action}` needs a value")
        value = values[0] if values else None
        if action == "master" and value != self.node.bridge:
            raise self.refuse(number, f"the only master a pod's veth may have is the node's "
                                      f"bridge, {self.node.bridge}")
        if action == "netns":
            value = self.namespace(number, value)
        if action == "name":
            value = self.link_name(number, value, ns)
        return Command(number, text, "link-set", ns, {"dev": dev, "action": action, "value": value})

    def link_del(self, number, text, ns, args) -> Command:
        words = list(args)
        if words[:1] == ["dev"]:
            words = words[1:]
        if len(words) != 1:
            raise self.refuse(number, f"`ip -n {ns} link del NAME`")
        return Command(number, text, "link-del", ns, {"dev": self.link_name(number, words[0], ns)})

    # -- addresses and routes --------------------------------------------------------------------
    def addr_add(self, number, text, ns, args) -> Command:
        if ns != "pod":
            raise self.refuse(number, "addresses go in the pod's namespace (`ip -n pod addr add …`); "
                                      f"the node's side of the pair needs none: the bridge "
                                      f"{self.node.bridge} has the node's address")
        if len(args) != 3 or args[1] != "dev":
            raise self.refuse(number, "`ip -n pod addr add ADDRESS/PREFIX dev NAME`")
        try:
            address = ipaddress.IPv4Interface(args[0])
        except ValueError:
            raise self.refuse(number, f"{args[0]!r} is not an IPv4 address with a prefix length, "
                                      "like 10.244.0.9/24") from None
        if "/" not in args[0]:
            raise self.refuse(number, f"{args[0]!r} needs its prefix length (/N): it decides which "
                                      "addresses the pod reaches directly")
        if not PREFIX_RANGE[0] <= address.network.prefixlen <= PREFIX_RANGE[1]:
            raise self.refuse(number, f"prefix length /{address.network.prefixlen}: choose one from "
                                      f"/{PREFIX_RANGE[0]} to /{PREFIX_RANGE[1]}")
        ip = address.ip
        if ip not in self.subnet or ip in (self.subnet.network_address,
                                           self.subnet.broadcast_address):
            raise self.refuse(number, f"{ip} is not an address of node {self.node.name}'s pod "
                                      f"subnet {self.subnet}: a pod's address comes from its node's "
                                      "subnet")
        if str(ip) in self.used:
            raise self.refuse(number, f"{ip} belongs to {self.used[str(ip)]}; the pod's address "
                                      f"is the one IPAM gave it, {self.spec.address}")
        dev = self.link_name(number, args[2], ns)
        if dev == "lo":
            raise self.refuse(number, "lo keeps 127.0.0.1: the pod's address goes on its end of "
                                      "the veth pair")
        return Command(number, text, "addr-add", ns, {"address": address, "dev": dev})

    def route_add(self, number, text, ns, args) -> Command:
        if ns != "pod":
            raise self.refuse(number, "routes go in the pod's namespace (`ip -n pod route add …`); "
                                      "the node's routes are not part of this exercise")
        if not args:
            raise self.refuse(number, "`ip -n pod route add default|NETWORK [via GATEWAY] [dev NAME]`")
        dest = None
        if args[0] != "default":
            try:
                dest = ipaddress.IPv4Network(args[0], strict=True)
            except ValueError:
                raise self.refuse(number, f"{args[0]!r} is not `default` or a network like "
                                          "10.96.0.0/12") from None
            if dest.prefixlen == 0:
                dest = None
        via = dev = None
        rest = list(args[1:])
        while rest:
            key = rest.pop(0)
            if key not in ("via", "dev") or not rest:
                raise self.refuse(number, f"{key!r}: a route here takes `via GATEWAY` and/or "
                                          "`dev NAME`, nothing else")
            value = rest.pop(0)
            if key == "via":
                try:
                    via = ipaddress.IPv4Address(value)
                except ValueError:
                    raise self.refuse(number, f"{value!r} is not an IPv4 address") from None
                if via not in self.subnet:
                    raise self.refuse(number, f"gateway {via} is outside the pod subnet "
                                              f"{self.subnet}: a pod's gateway is on its own link")
            else:
                dev = self.link_name(number, value, ns)
        if via is None and dev is None:
            raise self.refuse(number, "a route needs `via GATEWAY`, `dev NAME` or both")
        return Command(number, text, "route-add", ns, {"dest": dest, "via": via, "dev": dev})


# -- the model: namespaces, links, addresses, routes -------------------------------------------
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
        self.bridge_pods = [p for p in lab.pods if p.node == self.node.name]
        elsewhere = Link("peer", "elsewhere", "veth", True)
        self.links += [Link("lo", "node", "loopback", True),
                       Link("eth0", "node", "veth", True, peer=elsewhere,
                            addresses=[ipaddress.IPv4Interface(
                                f"{self.node.ip}/{lab.node_network.prefixlen}")]),
                       Link(self.node.bridge, "node", "bridge", True,
                            addresses=[self.node.bridge_address])]
        from lab_runner.backends.netns import veth_name

        for pod in lab.pods:
            if pod.node == self.node.name:
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


# -- sandboxes -------------------------------------------------------------------------------------
class WiringSandbox:
    """The questions a wiring check asks; answered live (real namespaces) or static (the model)."""

    mode = "?"

    def __init__(self, ex: exercises.Exercise, submission: WiringSubmission, spec: WiringSpec):
        self.exercise = ex
        self.submission = submission
        self.spec = spec
        self.model: Lab = ex.lab
        self.pod = spec.pod
        self.ran: list[Ran] = []
        self.evidence: dict = {}

    def caller_ip(self, host: str) -> str:
        node = self.model.node(self.pod.node)
        if host in ("node", node.name):
            return str(node.bridge_address.ip)  # the node reaches its pods from its bridge address
        address = self.model.caller_address(host)
        if address is None:
            raise LabError(f"no host {host!r} in {self.model.id}")
        return str(address)

    def failed_commands(self) -> list[Ran]:
        return [r for r in self.ran if not r.ok]

    def close(self) -> None:
        pass


class StaticWiringSandbox(WiringSandbox):
    mode = "static"

    def __init__(self, ex, submission, spec):
        super().__init__(ex, submission, spec)
        self.world, self.ran = simulate(ex.lab, spec, submission.commands)
        self.evidence["commands"] = [r.__dict__ for r in self.ran]

    def _ask(self, question, *args):
        from lab_runner.grading.sandbox import Undecidable

        if self.world.uncertain:
            raise Undecidable("the model does not follow this: " + "; ".join(self.world.uncertain))
        try:
            return question(*args)
        except Uncertain as exc:
            raise Undecidable(f"the model does not follow this: {exc}") from None

    def reach(self, source: str) -> tuple[bool, str | None, str]:
        """(answered, the source the pod saw, why not)."""
        ok, why = self._ask(self.world.reach, self.caller_ip(source))
        return ok, self.caller_ip(source) if ok else None, why

    def pod_interface(self) -> tuple[str | None, str]:
        return self._ask(self.world.pod_link_name)


class LiveWiringSandbox(WiringSandbox):
    mode = "live"

    def __init__(self, ex, submission, spec):
        super().__init__(ex, submission, spec)
        from lab_runner.backends.netns import node_ns, pod_ns
        from lab_runner.lab import LiveLab

        self.lab = LiveLab.start(ex.lab, transient=True)
        try:
            run = self.lab.run
            self.real = {"node": node_ns(run.run_id, spec.pod.node),
                         "pod": pod_ns(run.run_id, self.pod.name)}
            run.namespaces.append(self.real["pod"])  # recorded first: `down` removes it, always
            run.save()
            shown = {real: name for name, real in self.real.items()}
            for command in submission.commands:
                result = self.lab.runner.run(command.argv(self.real), check=False, timeout=20)
                message = (result.stderr or result.stdout).strip()
                for real, name in shown.items():
                    message = message.replace(real, name)
                self.ran.append(Ran(command.line, command.text, result.ok, message))
            self.evidence["commands"] = [r.__dict__ for r in self.ran]
            self.pod_started = self._start_pod()
        except BaseException:
            self.lab.down()
            raise

    def _start_pod(self) -> bool:
        """Start the pod's app in its namespace, as kubelet does once the network is set up."""
        from lab_runner.backends.netns import list_netns

        if self.real["pod"] not in list_netns():
            return False
        model = self.lab.model.with_changes(pods=self.lab.model.pods + (self.pod,))
        self.lab.backend.start_pods(model, self.lab.run, [self.pod])
        self.lab.model = model
        return True

    def close(self):
        self.lab.down()

    def reach(self, source: str) -> tuple[bool, str | None, str]:
        from lab_runner.evidence.probing import Target, probe

        if not self.pod_started:
            return False, None, "the pod's namespace was never created (`ip netns add pod`)"
        port = self.pod.ports[0].container_port
        report = probe(self.lab, source, Target(str(self.pod.ip), port, "tcp"), "http",
                       capture=False, counters=False, timeout=1.0)
        if report.answered and report.pod == self.pod.name:
            return True, report.pod_view.src, ""
        answer = report.answer.get("answer", "?")
        return False, None, f"no answer from {self.pod.ip}:{port} ({answer})"

    def pod_interface(self) -> tuple[str | None, str]:
        import json

        if not self.pod_started:
            return None, "the pod's namespace was never created (`ip netns add pod`)"
        pod_links = json.loads(self.lab.runner.run(["ip", "-n", self.real["pod"], "-j", "-d", "link",
                                                    "show"]).stdout or "[]")
        node_links = json.loads(self.lab.runner.run(["ip", "-n", self.real["node"], "-j", "link",
                                                     "show"]).stdout or "[]")
        node_index = {link["ifindex"]: link for link in node_links}
        paired = []
        for link in pod_links:
            kind = (link.get("linkinfo") or {}).get("info_kind")
            peer = node_index.get(link.get("link_index"))
            if kind == "veth" and "link_netnsid" in link and peer and \
                    peer.get("link_index") == link["ifindex"]:
                paired.append(link["ifname"])
        if paired:
            return ("eth0" if "eth0" in paired else paired[0]), ""
        names = ", ".join(link["ifname"] for link in pod_links if link["ifname"] != "lo") or "none"
        return None, (f"no interface of the pod is the end of a veth pair whose other end is in "
                      f"the node (the pod's interfaces besides lo: {names})")


def open_sandbox(mode: str, ex, submission, spec) -> WiringSandbox:
    if mode == "static":
        return StaticWiringSandbox(ex, submission, spec)
    if mode == "live":
        return LiveWiringSandbox(ex, submission, spec)
    raise LabError(f"unknown grading mode {mode!r}; choose live or static")


# -- grading ---------------------------------------------------------------------------------------
def grade(lab: str, which: str | int, path: str | Path, mode: str = "live") -> GradeResult:
    """Score a wiring submission: grading.grade.grade() reads it with `read` and `open_sandbox`."""
    from lab_runner.grading.grade import grade as grade_any

    return grade_any(lab, which, path, mode)


def main(argv: list[str] | None = None) -> int:
    """`python -m lab_runner.grading.wiring LAB FILE -e N [--static] [--json]` until `lab-runner grade`
    dispatches here (see the module's docstring)."""
    import argparse

    from rich.console import Console

    from lab_runner.grading import formats

    parser = argparse.ArgumentParser(prog="python -m lab_runner.grading.wiring",
                                     description="grade a wiring submission (`ip` commands)")
    parser.add_argument("lab")
    parser.add_argument("submission")
    parser.add_argument("-e", "--exercise", required=True)
    parser.add_argument("--static", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead")
    args = parser.parse_args(argv)
    try:
        result = grade(args.lab, args.exercise, args.submission, "static" if args.static else "live")
    except LabError as exc:
        Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False)
        return 1
    if args.json:
        import json

        print(json.dumps(result.to_dict(), indent=1))
    else:
        formats.terminal(result, Console())
    return 0 if not result.error and result.score == result.max_score else 1


if __name__ == "__main__":
    raise SystemExit(main())
