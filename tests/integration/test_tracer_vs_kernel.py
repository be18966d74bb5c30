"""Differential test: the rule tracer's exact predictions against what a real kernel does.

For each topology the ruleset is read back from the live node (`iptables-save -c`), traced, and
compared with real traffic:

- the spread of a few thousand new flows over the DNAT rules (counter deltas) fits the tracer's
  exact probabilities (chi-square, alpha 1e-6);
- a negative control: the same machinery rejects a deliberately wrong ruleset (every endpoint rule
  at 1/n) when tested against the correct distribution, while the kernel still follows the wrong
  rules exactly as the tracer reads them;
- every HTTP / UDP answer comes from a destination the tracer gives a non-zero probability, at the
  port it says, and the pod sees the node's bridge address exactly when the tracer's outcome for
  that destination masquerades (client, in-cluster pod, pod outside the cluster CIDR, hairpin).
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Literal

import pytest

from lab_runner.endpoints import endpoints_for
from lab_runner.evidence import probing, sampling
from lab_runner.evidence.probing import Target
from lab_runner.lab import LiveLab
from lab_runner.model import Lab, Service, ServicePort
from lab_runner.probes import stats
from lab_runner.ruleset import names, tracer
from lab_runner.ruleset.counters import Snapshot
from lab_runner.ruleset.parse import Ruleset
from lab_runner.ruleset.render import probability, render

pytestmark = pytest.mark.needs_root

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "labs"
FLOWS = 3000  # per sampled (port, source): every expected count is >= 400
PROBES = 5  # socket probes per (port, caller)
Masquerading = Literal["always", "never", "hairpin"]


@dataclass(frozen=True)
class Topology:
    """A lab to realise: a lab id or file, and optionally another cluster CIDR."""

    spec: str
    cluster_cidr: str | None = None


TOPOLOGIES = {
    # The seed: pods on docker0 (172.17.0.0/16), outside clusterCIDR 10.244.0.0/16.
    "lab-3": Topology("lab-3"),
    # The same lab told that the pod bridge is the cluster CIDR: pod callers keep their address.
    "lab-3-podcidr": Topology("lab-3", cluster_cidr="172.17.0.0/16"),
    "multi-port": Topology(str(FIXTURES / "multi-port.yaml")),
    "seven": Topology(str(FIXTURES / "seven-endpoints.yaml")),
}


class LabPool:
    """Keeps at most one lab up; asking for another topology tears the current one down first."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.stack = ExitStack()

    def get(self, name: str) -> LiveLab:
        if name != self.name:
            self.close()
            topology = TOPOLOGIES[name]
            self.lab = self.stack.enter_context(
                LiveLab.up(topology.spec, cluster_cidr=topology.cluster_cidr))
            self.name = name
        return self.lab

    def close(self) -> None:
        self.stack.close()
        self.name = None


@pytest.fixture(scope="module")
def pool() -> Iterator[LabPool]:
    labs = LabPool()
    try:
        yield labs
    finally:
        labs.close()


# -- helpers -------------------------------------------------------------------------------------

def service_port(model: Lab, port_name: str) -> tuple[Service, ServicePort]:
    """The (service, port) whose servicePortName is `ns/name:port` (or `ns/name` when unnamed)."""
    return next((s, p) for s in model.services for p in s.ports if s.port_name(p) == port_name)


def inbound_interface(lab: LiveLab, host: str) -> str:
    """Where the host's packets enter the node: eth0 for a client, the pod bridge for a pod."""
    return "eth0" if lab.resolve(host)[0] == "client" else lab.model.nodes[0].bridge


def node_ruleset(lab: LiveLab) -> Ruleset:
    """The ruleset as the kernel holds it now, read back with iptables-save -c."""
    return Snapshot.parse(lab.save()).ruleset


def traced(lab: LiveLab, ruleset: Ruleset, caller: str, target: Target) -> tracer.Trace:
    """Every outcome of a new connection from `caller` to `target` through `ruleset`."""
    packet = tracer.Packet(src=sampling.host_ip(lab, caller), dst=target.ip,
                           protocol=target.proto, sport=40000, dport=target.port,
                           in_interface=inbound_interface(lab, caller),
                           local_addresses=sampling.node_addresses(lab.model))
    return tracer.trace(ruleset, packet)


def expected_spread(lab: LiveLab, ruleset: Ruleset, source: str,
                    target: Target) -> dict[str, Fraction]:
    """The tracer's exact probability of each DNAT destination for a new flow from `source`."""
    return sampling.expected_distribution(ruleset, lab.model, sampling.host_ip(lab, source),
                                          target, in_interface=inbound_interface(lab, source))


def with_uniform_picks(document: str, chain: str, n: int) -> str:
    """The document with every `--probability` of `chain` set to 1/n: the classic mistake."""
    pattern = re.compile(rf"^(-A {re.escape(chain)} .*--probability )\S+", re.MULTILINE)
    return pattern.sub(lambda m: m.group(1) + probability(n), document)


def chain_probabilities(document: str, chain: str) -> list[str]:
    """The `--probability` values of `chain`'s rules, in order."""
    return re.findall(rf"^-A {re.escape(chain)} .*--probability (\S+)", document, re.MULTILINE)


@dataclass(frozen=True)
class Observation:
    """One answered probe, checked against the trace: who answered and whether it was masqueraded."""

    pod: str
    destination: tuple[str, int]
    masqueraded: bool
    hairpin: bool


def probe_and_check(lab: LiveLab, trace: tracer.Trace, caller: str, target: Target) -> Observation:
    """Send one socket probe and assert the answer is one of the tracer's outcomes, NAT included."""
    kind = "http" if target.proto == "tcp" else "udp"
    report = probing.probe(lab, caller, target, kind, counters=False)
    assert report.answered and report.pod_view is not None, \
        f"{caller} -> {target} ({kind}) got no answer from a pod: {report.answer}"
    view = report.pod_view
    destination = (view.dst, view.dport)
    assert str(lab.model.pod(view.pod).ip) == view.dst, f"{view.describe()}: not that pod's address"
    outcomes = [o for o in trace.outcomes if o.dnat == destination and o.probability > 0]
    traced_to = sorted({o.dnat for o in trace.outcomes if o.probability > 0 and o.dnat})
    assert outcomes, f"{view.describe()}: the tracer gives {destination} no chance; it DNATs to {traced_to}"
    assert {o.verdict for o in outcomes} == {"ACCEPT"}, outcomes
    masquerade = {o.masquerade for o in outcomes}
    assert len(masquerade) == 1, f"the tracer is undecided about masquerading {destination}"
    bridge = str(lab.model.nodes[0].bridge_address.ip)
    caller_ip = sampling.host_ip(lab, caller)
    if masquerade == {True}:
        assert view.src == bridge, f"{view.describe()}: the tracer masquerades to {bridge}"
    else:
        assert view.src == caller_ip, f"{view.describe()}: the tracer leaves the source {caller_ip}"
    return Observation(view.pod, destination, view.src == bridge, view.dst == caller_ip)


# -- 1. the spread of new flows ------------------------------------------------------------------

SAMPLES = [  # (topology, service port, source)
    ("lab-3", "stateful-apps/my-app:http-svc", "client"),
    ("multi-port", "shop/api:http", "client"),
    ("multi-port", "shop/api:dns", "client"),
    ("multi-port", "shop/api:http", "api-3"),  # from a pod, not masqueraded
    ("seven", "batch/workers", "client"),
    ("seven", "batch/workers", "w-4"),  # from a pod, one flow in seven is a hairpin
]


@pytest.mark.parametrize(("topology", "port_name", "source"), SAMPLES)
def test_kernel_spreads_new_flows_as_the_tracer_predicts(pool, topology, port_name, source):
    lab = pool.get(topology)
    service, port = service_port(lab.model, port_name)
    target = sampling.service_target(lab.model, port_name)
    expected = expected_spread(lab, node_ruleset(lab), source, target)
    # The tracer, reading the kernel's rules, finds exactly the endpoints Kubernetes would pick
    # (not-ready pods out, named targetPorts resolved per pod).
    endpoints = {e.address for e in endpoints_for(lab.model, service, port)}
    assert set(expected) == endpoints and all(p > 0 for p in expected.values()), expected
    assert sum(expected.values()) == 1

    report = sampling.sample(lab, target, FLOWS, source=source)

    assert report.expected == expected
    assert report.flows == FLOWS and sum(report.observed.values()) == FLOWS
    assert sampling.NO_DNAT not in report.observed, report.observed
    assert report.passed, (f"{port_name} from {source}: observed {report.observed}, expected "
                           f"{ {k: float(v) for k, v in expected.items()} }, {report.result}")


# -- 2. negative control: a wrong ruleset must be caught ---------------------------------------

# Ordered so that the lab pool switches topology as rarely as possible between the tests.
NEGATIVE = [("seven", "batch/workers"), ("multi-port", "shop/api:dns"),
            ("lab-3", "stateful-apps/my-app:http-svc")]


@pytest.mark.parametrize(("topology", "port_name"), NEGATIVE)
def test_uniform_probabilities_are_rejected(pool, topology, port_name):
    lab = pool.get(topology)
    model = lab.model
    _, port = service_port(model, port_name)
    target = sampling.service_target(model, port_name)
    correct = expected_spread(lab, node_ruleset(lab), "client", target)
    n = len(correct)
    chain = names.service_chain(port_name, port.protocol.lower())
    document = render(model, base_jumps=False)
    wrong_document = with_uniform_picks(document, chain, n)
    assert chain_probabilities(document, chain) == [probability(n - i) for i in range(n - 1)]
    assert chain_probabilities(wrong_document, chain) == [probability(n)] * (n - 1)
    flows = sampling.flows_needed(n)

    lab.restore(wrong_document)
    try:
        wrong = expected_spread(lab, node_ruleset(lab), "client", target)
        assert set(wrong) == set(correct) and wrong != correct
        assert stats.power(flows, correct, wrong) >= 0.9999
        report = sampling.sample(lab, target, flows)
    finally:
        lab.restore(document)
    assert expected_spread(lab, node_ruleset(lab), "client", target) == correct

    # The kernel did what the (wrong) rules say, as the tracer reads them ...
    assert report.expected == wrong and report.passed, report.result
    # ... and the test against what kube-proxy's rules promise fails.
    verdict = stats.gof(report.observed, correct)
    assert not verdict.passed, (f"{n} endpoints at 1/{n} passed as correct with {flows} flows: "
                                f"{report.observed} vs {correct}, {verdict}")


# -- 3. who answers, and what source the pod saw ------------------------------------------------

PROBE_CASES = [  # (topology, service port, caller, which outcomes the tracer should masquerade)
    ("lab-3", "stateful-apps/my-app:http-svc", "client", "always"),
    ("lab-3", "stateful-apps/my-app:http-svc", "dfrdh", "always"),  # docker0 outside clusterCIDR
    ("lab-3-podcidr", "stateful-apps/my-app:http-svc", "client", "always"),
    ("lab-3-podcidr", "stateful-apps/my-app:http-svc", "dfrdh", "hairpin"),
    ("seven", "batch/workers", "client", "always"),
    ("seven", "batch/workers", "w-4", "hairpin"),
    ("multi-port", "shop/api:http", "client", "always"),
    ("multi-port", "shop/api:dns", "client", "always"),
    ("multi-port", "shop/api:http", "api-3", "never"),  # not ready: never its own endpoint
    ("multi-port", "shop/api:dns", "api-3", "never"),
    ("multi-port", "shop/api:http", "api-0", "hairpin"),
]


@pytest.mark.parametrize(("topology", "port_name", "caller", "masquerading"), PROBE_CASES)
def test_answers_come_from_traced_destinations_with_traced_masquerade(
        pool, topology, port_name, caller, masquerading: Masquerading):
    lab = pool.get(topology)
    target = sampling.service_target(lab.model, port_name)
    trace = traced(lab, node_ruleset(lab), caller, target)
    caller_ip = sampling.host_ip(lab, caller)
    # The case is the one it claims to be: the tracer's masquerade decisions per destination.
    for outcome in trace.outcomes:
        hairpin = outcome.dnat is not None and outcome.dnat[0] == caller_ip
        wanted = {"always": True, "never": False, "hairpin": hairpin}[masquerading]
        assert outcome.masquerade is wanted, (outcome.dnat, outcome.masquerade, masquerading)

    seen = [probe_and_check(lab, trace, caller, target) for _ in range(PROBES)]

    assert all(o.masqueraded == (masquerading == "always" or o.hairpin) for o in seen), seen


def test_hairpin_pod_reaches_itself_masqueraded(pool):
    """api-0 is the only endpoint of shop/solo: DNATed back to itself, it must see the bridge."""
    lab = pool.get("multi-port")
    target = sampling.service_target(lab.model, "shop/solo:http")
    trace = traced(lab, node_ruleset(lab), "api-0", target)
    assert trace.distribution() == {(("10.244.0.10", 8080), True, "ACCEPT"): 1}
    for _ in range(3):
        seen = probe_and_check(lab, trace, "api-0", target)
        assert (seen.pod, seen.hairpin, seen.masqueraded) == ("api-0", True, True)



# -- 4. round robin: --mode nth over whole cycles --------------------------------------------

def with_round_robin(document: str, chain: str) -> str:
    """The document with `chain`'s i-th of n endpoint rules at `--mode nth --every n-i`."""
    lines, i = [], 0
    for line in document.split("\n"):
        if line.startswith(f"-A {chain} ") and "--probability" in line:
            n = len(chain_probabilities(document, chain)) + 1
            line = re.sub(r"--mode random --probability \S+",
                          f"--mode nth --every {n - i} --packet 0", line)
            i += 1
        lines.append(line)
    return "\n".join(lines)


def test_nth_round_robin_spreads_whole_cycles_exactly_as_the_tracer_says(pool):
    """The tracer gives an nth rule 1/N of what reaches it; over whole cycles of new flows the
    kernel's counters give each endpoint exactly that share, not only on average."""
    lab = pool.get("lab-3")
    port_name = "stateful-apps/my-app:http-svc"
    target = sampling.service_target(lab.model, port_name)
    chain = names.service_chain(port_name, "tcp")
    document = render(lab.model, base_jumps=False)
    round_robin = with_round_robin(document, chain)
    assert round_robin.count("--mode nth") == 3
    lab.restore(round_robin)
    try:
        expected = expected_spread(lab, node_ruleset(lab), "client", target)
        assert set(expected.values()) == {Fraction(1, 4)}
        cycles = 100
        report = sampling.sample(lab, target, 4 * cycles)
    finally:
        lab.restore(document)
    assert report.observed == {dest: cycles for dest in expected}, report.observed
