"""Random selection measured: N new flows, counted per DNAT rule, tested against the exact expectation."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from lab_runner.errors import LabError
from lab_runner.evidence.probing import Target
from lab_runner.model import Lab
from lab_runner.probes import stats
from lab_runner.probes.launch import run_agent
from lab_runner.ruleset import semantics, tracer
from lab_runner.ruleset.counters import Snapshot, delta
from lab_runner.ruleset.parse import Ruleset

NO_DNAT = "(no DNAT)"
DEFAULT_ALPHA = 1e-6


@dataclass
class SampleReport:
    """Observed and expected shares of each destination, and the goodness-of-fit verdict."""

    target: Target
    source: str
    flows: int
    observed: dict[str, int]
    expected: dict[str, Fraction]
    chains: dict[str, str]  # destination -> the KUBE-SEP (or other) chain holding its DNAT rule
    result: stats.GofResult
    seconds: float

    @property
    def passed(self) -> bool:
        return self.result.passed


def service_target(lab: Lab, service_port: str) -> Target:
    """`namespace/name:port` (or `namespace/name` for a one-port service) -> its ClusterIP target."""
    for service in lab.services:
        for port in service.ports:
            names = {service.port_name(port)}
            if len(service.ports) == 1:
                names.add(f"{service.namespace}/{service.name}")
            if service_port in names:
                return Target(str(service.cluster_ip), port.port, port.protocol.lower())
    choices = ", ".join(s.port_name(p) for s in lab.services for p in s.ports)
    raise LabError(f"no service port {service_port!r} in {lab.id}; the service ports are: {choices}")


def node_addresses(lab: Lab, node: str | None = None) -> tuple[str, ...]:
    chosen = lab.node(node) if node else lab.nodes[0]
    return (str(chosen.ip), str(chosen.bridge_address.ip), "127.0.0.1")


UPLINK = "eth0"  # a node's link to the node network, as every backend names it


def node_routes(lab: Lab, node: str | None = None) -> tuple[tuple[str, str], ...]:
    """The node's routes as (network, interface), as `ip route` in a lab's node shows them: its
    pod subnet on its bridge; the node network, the other nodes' pod subnets and the default
    route by the uplink. The tracer reads `-o` (and addrtype's subnet broadcasts) from them."""
    chosen = lab.node(node) if node else lab.nodes[0]
    others = tuple((str(n.bridge_address.network), UPLINK) for n in lab.nodes if n is not chosen)
    return ((str(chosen.bridge_address.network), chosen.bridge), *others,
            (str(lab.node_network), UPLINK), ("0.0.0.0/0", UPLINK))


def node_facts(lab: Lab, node: str | None = None) -> dict:
    """What the tracer's Packet needs to know of the node: its addresses, routes and bridges
    (every node's pod bridge has br_netfilter on)."""
    chosen = lab.node(node) if node else lab.nodes[0]
    return {"local_addresses": node_addresses(lab, node), "routes": node_routes(lab, node),
            "bridges": (chosen.bridge,)}


def expected_distribution(ruleset: Ruleset, lab: Lab, source_ip: str, target: Target,
                          *, sport: int = 20000, in_interface: str | None = "eth0") -> dict[str, Fraction]:
    """The exact probability of each DNAT destination for a new flow, from the rule tracer."""
    packet = tracer.Packet(src=source_ip, dst=target.ip, protocol=target.proto, sport=sport,
                           dport=target.port, in_interface=in_interface,
                           **node_facts(lab))
    out: dict[str, Fraction] = {}
    for dest, p in tracer.trace(ruleset, packet).dnat_distribution().items():
        key = f"{dest[0]}:{dest[1]}" if dest else NO_DNAT
        out[key] = out.get(key, Fraction(0)) + p
    return out


def reference_expected(lab, source: str, target: Target) -> dict[str, Fraction]:
    """What kube-proxy's chain set for this lab says (not what the node holds now)."""
    from lab_runner.ruleset.parse import parse

    inbound = "eth0" if lab.resolve(source)[0] == "client" else lab.model.nodes[0].bridge
    rules = parse(lab.rendered_rules(), "<kube-proxy>", check=False)
    return expected_distribution(rules, lab.model, host_ip(lab, source), target,
                                 in_interface=inbound)


def dnat_counts(before: Snapshot, after: Snapshot, dport: int | None = None
                ) -> tuple[dict[str, int], dict[str, str]]:
    """Packets each DNAT rule sent, keyed by where it sent them ("ip:port", as the tracer's
    expected_distribution keys it), and the chain of that rule. The rule is read by the parser,
    however it is spelled; a DNAT without a port keeps the connection's own, `dport`."""
    counts: dict[str, int] = {}
    chains: dict[str, str] = {}
    rules = {(r.table, r.chain, r.text): r for r in after.ruleset.rules()}
    for change in delta(before, after).rules:
        rule = rules.get((change.table, change.chain, change.text))
        if change.table != "nat" or rule is None or rule.target != "DNAT":
            continue
        dest = destination_key(rule, dport)
        counts[dest] = counts.get(dest, 0) + change.change.packets
        chains.setdefault(dest, change.chain)
    return counts, chains


def destination_key(rule, dport: int | None) -> str:
    """A DNAT rule's destination as the tracer names it: "ip:port", the connection's own port
    where the rule gives none (without `dport`, the address alone)."""
    try:
        address, port = semantics.dnat_destination(rule)
    except semantics.UnsupportedRule:  # a range the tracer does not model: the rule's words
        return " ".join(rule.target_args)
    port = port if port is not None else dport
    return address if port is None else f"{address}:{port}"


def host_ip(lab, host: str) -> str:
    kind, name = lab.resolve(host)
    if kind == "client":
        return str(next(c.ip for c in lab.model.clients if c.name == name))
    if kind == "pod":
        return str(lab.model.pod(name).ip)
    return str(lab.model.node(name).ip)


def sample(lab, target: Target, flows: int, *, source: str = "client",
           alpha: float = DEFAULT_ALPHA, sport_base: int = 20000,
           expected: dict[str, Fraction] | None = None) -> SampleReport:
    """Send `flows` new connections from `source` and test the spread over the DNAT rules.

    `expected` defaults to what the node's own rules say (the rule tracer over iptables-save);
    a grader passes the reference answer's distribution instead. The node's conntrack table is
    flushed first: a flow whose 5-tuple conntrack still knows would skip the nat table and not
    be a fresh draw.
    """
    if flows < 1 or sport_base + flows > 65536:
        raise LabError(f"--flows must be from 1 to {65536 - sport_base}")
    if expected is None:
        ruleset = Snapshot.parse(lab.save()).ruleset
        inbound = "eth0" if lab.resolve(source)[0] == "client" else lab.model.nodes[0].bridge
        expected = expected_distribution(ruleset, lab.model, host_ip(lab, source), target,
                                         sport=sport_base, in_interface=inbound)
    caller = host_ip(lab, source)
    forget_unfinished_flows(lab, caller, target)
    before = Snapshot.parse(lab.save())
    sent = run_agent(lab.runner, lab.place(source), "burst", dst=target.ip, dport=target.port,
                     flows=flows, proto=target.proto, sport_base=sport_base, wait=120)
    counts, chains = dnat_counts(before, Snapshot.parse(lab.save()), target.port)
    forget_unfinished_flows(lab, caller, target)  # the half-open flows would linger for minutes
    missing = int(sent["sent"]) - sum(counts.values())
    if missing > 0:
        counts[NO_DNAT] = counts.get(NO_DNAT, 0) + missing
    counts = {k: v for k, v in counts.items() if v or k in expected}
    result = stats.gof(counts, expected, alpha=alpha)
    return SampleReport(target, source, int(sent["sent"]), counts, expected, chains, result,
                        float(sent["seconds"]))


UNFINISHED_TCP_STATES = ("SYN_SENT", "SYN_RECV", "CLOSE")  # a burst flow's whole life


def forget_unfinished_flows(lab, caller: str, target: Target) -> None:
    """Delete the conntrack entries a burst leaves (never an established connection)."""
    base = ["conntrack", "-D", "-p", target.proto, "--orig-src", caller, "--orig-dst", target.ip,
            "--dport", str(target.port)]
    states = UNFINISHED_TCP_STATES if target.proto == "tcp" else (None,)
    for state in states:
        # conntrack exits 1 when nothing matched: that is the usual, fine case.
        lab.exec("node", base + (["--state", state] if state else []))


def wrong_alternative(n: int) -> dict[str, Fraction]:
    """What n endpoints all written with 1/n would give: the realistic mistake the test must catch."""
    share, left, out = Fraction(1, n), Fraction(1), {}
    for i in range(n - 1):
        out[str(i)] = left * share
        left -= left * share
    out[str(n - 1)] = left
    return out


def flows_needed(n_endpoints: int, alpha: float = DEFAULT_ALPHA, power: float = 0.9999) -> int:
    """Sample size that catches the all-1/n mistake with the given power (at least 1,000)."""
    if n_endpoints < 2:
        return 200
    even = {str(i): Fraction(1, n_endpoints) for i in range(n_endpoints)}
    wrong = wrong_alternative(n_endpoints)
    if wrong == even:  # with two endpoints "all 1/n" is right; guard against a 60/40 skew instead
        wrong = {"0": Fraction(3, 5), "1": Fraction(2, 5)}
    # The noncentral approximation is slightly optimistic this far in the tail: add 10 %.
    return max(1000, int(stats.sample_size(even, wrong, alpha, power) * 1.1))
