"""A wiring submission: `ip` commands read as data, checked line by line against the allow-list."""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from lab_runner.errors import SubmissionError
from lab_runner.grading import exercise as exercises
from lab_runner.grading.text_file import decode, read_limited
from lab_runner.grading.wiring.spec import WiringSpec
from lab_runner.model import Lab

MAX_BYTES = 8 * 1024
NAMESPACES = ("node", "pod")
LINK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")  # IFNAMSIZ - 1, no '/', no spaces
PREFIX_RANGE = (8, 32)


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
    name, raw = read_limited(path, MAX_BYTES)
    return from_bytes(raw, name, ex, spec)


def from_bytes(raw: bytes, name: str, ex: exercises.Exercise, spec: WiringSpec) -> WiringSubmission:
    text = decode(raw, name, MAX_BYTES, "a text file of `ip` commands")
    checker = _Checker(name, ex.lab, spec)
    commands = []
    for number, line in enumerate(text.splitlines(), start=1):
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
