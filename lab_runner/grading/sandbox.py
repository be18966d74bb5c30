"""Where a submission is graded: a live sandbox (real kernel) or a static one (the rule tracer).

Checks ask both the same questions and get answers of the same shape, so a check never knows
which mode runs it. What static mode cannot know raises Undecidable; the exercise file says how
such a check scores.
"""

from __future__ import annotations

import contextlib
import math
import re
import shlex
from dataclasses import dataclass, field, replace
from fractions import Fraction

from lab_runner.endpoints import endpoints_for
from lab_runner.errors import LabError, RestoreFailed, SubmissionError
from lab_runner.evidence import probing, sampling
from lab_runner.evidence.probing import Target
from lab_runner.grading import outcomes
from lab_runner.grading.exercise import Exercise
from lab_runner.grading.submission import Submission
from lab_runner.model import Lab
from lab_runner.probes import stats
from lab_runner.ruleset import nft_apply, semantics, tracer
from lab_runner.ruleset.compare import normalize
from lab_runner.ruleset.parse import Rule, parse
from lab_runner.ruleset.render import render

# The kit's own table that counts the marks premarked packets leave with: at the postrouting
# hook after kube-proxy's source NAT (srcnat, 100), so what nat POSTROUTING did to a mark counts.
PREMARK_TABLE = "kplab-premark"
PREMARK_PRIORITY = 300
_PREMARK_COUNTED = re.compile(r'counter packets (\d+) bytes \d+ comment "([^"]+)"')
MISS_RATE = 1e-6  # chance that probing misses a reachable endpoint of a correct answer
MAX_LIVE_FLOWS = 64_000  # new flows one caller can make: one per source port
SPORT_BASE = 1024
SELF_TRIES = 200  # more connections for a pod to find itself: misses a 7 % share with p < 1e-6
# Both modes grade a connection by its first packet's fate. TCP retransmits an unanswered SYN
# after 1 s (the initial RTO); where the SYN waited unconfirmed (sent to an address nobody holds,
# it waits in the bridge's neighbour queue), that retransmission is a new connection and draws
# its endpoint again, so a retrying client (curl) may get an answer late instead of none. The
# tracer gives first-packet fates; live probes give up before the first retransmission, so they
# see the same thing (README, Grading: "first packets").
TCP_FIRST_RETRANSMISSION = 1.0
FIRST_PACKET_TIMEOUT = 0.5  # an answer takes ~1 ms; well before the first retransmission
NO_ANSWER_TIMEOUT = 0.25  # where no pod should answer at all


class Undecidable(Exception):
    """This question needs a real kernel; static mode cannot answer it."""


@dataclass(frozen=True)
class Observation:
    """What happened to one new connection (live) or one possible fate of it (static)."""

    answered: bool
    pod: str | None
    dnat: str | None  # "ip:port" the connection was sent to
    saw_src: str | None  # the source address the pod saw
    masqueraded: bool | None
    probability: Fraction | None = None  # static only: how likely this fate is
    detail: str = ""


@dataclass(frozen=True)
class Hit:
    """A nat rule a new connection's first packet matched: its chain and the rule as the parser
    reads it. Hits are equal when their rules mean the same (compare.normalize), so a rule written
    `--append … --jump MARK --set-xmark 0x4000/0x4000` is the one the node reads back."""

    chain: str
    key: tuple = field(repr=False)
    rule: Rule = field(compare=False, hash=False)

    @classmethod
    def of(cls, rule: Rule) -> "Hit":
        return cls(rule.chain, normalize(rule, comments=False), rule)

    @property
    def target(self) -> str | None:
        return self.rule.target

    @property
    def target_args(self) -> tuple[str, ...]:
        return tuple(self.rule.target_args)


@dataclass(frozen=True)
class Spread:
    """The share of new connections each destination got, judged against the reference."""

    observed: dict[str, float]
    expected: dict[str, float]
    passed: bool
    detail: str


class Sandbox:
    """The questions a check may ask; answered by LiveSandbox or StaticSandbox."""

    mode = "?"

    def __init__(self, exercise: Exercise, submission: Submission):
        self.exercise = exercise
        self.submission = submission
        self.model: Lab = exercise.lab
        self.reference = self._reference_rules()
        self.evidence: dict = {"spreads": []}  # what reports show: observed vs expected shares
        self.rules = self._rules_traced(submission)
        self._reference_outcomes: dict[outcomes.PacketClass, outcomes.Outcome] = {}

    # -- the rule language (nft_sandbox.py overrides these for kube-proxy's nftables mode) -----
    def _reference_rules(self):
        return parse(render(self.model, self.model.profile), "<reference>", check=False)

    def _rules_traced(self, submission):
        # Round robin (`--mode nth`) read as the random choice it amounts to over many
        # connections, so that both modes judge the same rules; exercise.round_robin decides
        # whether a spread check accepts it.
        return outcomes.as_random(submission.ruleset)

    def _counting_rules(self) -> list:
        """Rules that choose by counting (round robin), which a spread check may refuse."""
        return outcomes.round_robin_rules(self.submission.ruleset)

    def trace_packet(self, ruleset, packet):
        return tracer.trace(ruleset, packet)

    def traced(self, ruleset, cls: outcomes.PacketClass) -> outcomes.Outcome:
        """The exact outcome of a packet class through `ruleset` (the rule tracer)."""
        return outcomes.traced(self, ruleset, cls)

    # -- shared helpers ----------------------------------------------------------------------
    def caller_ip(self, host: str) -> str:
        if host == "node":  # its connections leave by the default route, from its own address
            return str(self.model.nodes[0].ip)
        if host == outcomes.CLUSTER_CALLER:
            return outcomes.cluster_caller_ip(self.model)
        address = self.model.caller_address(host)
        if address is None:
            raise LabError(f"no host {host!r} in {self.model.id}")
        return str(address)

    def inbound(self, host: str) -> str | None:
        """The node's interface a caller's packets come in by; None for the node's own."""
        if host == "node":
            return None
        if host == outcomes.CLUSTER_CALLER:
            return "eth0"
        is_client = any(host in (c.name, "client") for c in self.model.clients)
        return "eth0" if is_client else self.model.nodes[0].bridge

    def pod_at(self, ip: str) -> str | None:
        return next((p.name for p in self.model.pods if str(p.ip) == ip), None)

    def pod_serves(self, ip: str, port: int, proto: str) -> str | None:
        """The pod answering at ip:port/proto, if its app listens there."""
        for pod in self.model.pods:
            if str(pod.ip) == ip and any(cp.container_port == port and cp.protocol.lower() == proto
                                         for cp in pod.ports):
                return pod.name
        return None

    def endpoints(self, target: Target) -> dict[str, str]:
        """The reference endpoints of the service port at target: {"ip:port": pod}."""
        for service in self.model.services:
            for port in service.ports:
                if (str(service.cluster_ip), port.port, port.protocol.lower()) == \
                        (target.ip, target.port, target.proto):
                    return {e.address: e.pod for e in endpoints_for(self.model, service, port)}
        return {}

    def reference_spread(self, source: str, target: Target) -> dict[str, Fraction]:
        return sampling.expected_distribution(self.reference, self.model, self.caller_ip(source),
                                              target, in_interface=self.inbound(source))

    def reference_outcome(self, cls: outcomes.PacketClass) -> outcomes.Outcome:
        """What kube-proxy's rules for this lab make of the class, exactly (the tracer)."""
        if cls not in self._reference_outcomes:
            self._reference_outcomes[cls] = self.traced(self.reference, cls)
        return self._reference_outcomes[cls]

    def differs(self, cls: outcomes.PacketClass, focus=None) -> str | None:
        """How the submission's outcome for the class differs from the reference, or None;
        `focus(cls, fate)` keeps the fates a check is about."""
        want, got = self.reference_outcome(cls), self.outcome(cls)
        if focus is not None:
            want, got = (replace(o, fates=frozenset(f for f in o.fates if focus(cls, f)))
                         for o in (want, got))
        return outcomes.difference(self, cls, want, got)

    def endpoint_chains(self, source: str, target: Target) -> dict[str, set[str]]:
        """{chain: {"ip:port"}}: where the DNAT rules that new connections met sent them."""
        return _dnat_chains(self.rules_hit(source, target))

    def reference_endpoint_chains(self, source: str, target: Target) -> dict[str, set[str]]:
        return _dnat_chains(_hits(_trace(self, self.reference, source, target)))

    def lost_rules(self) -> list:
        """Rules of the starting state the task did not concern that are gone or out of order."""
        start = parse(self.exercise.start_document, "<starting state>", check=False)
        return outcomes.lost_rules(start, self.rules_now(), set(self.exercise.concerned))

    def _judge_spread(self, got: dict, want: dict, n: int | None, how: str, **extra) -> Spread:
        """The one decision rule of both modes: every share within the exercise's tolerance."""
        tolerance = self.exercise.tolerance
        counting = self._counting_rules()
        if counting and self.exercise.round_robin == "refuse":
            spread = Spread({k: float(v) for k, v in got.items()}, {k: float(v) for k, v in want.items()},
                            False, f"{counting[0].chain} chooses by counting (`--mode nth`: round "
                            "robin), where this exercise asks for a random choice")
        else:
            verdict = stats.within_tolerance(got, want, tolerance, n=n)
            wrong = "; ".join(f"{k} got {share * 100:.2f} % of new connections, where its share is "
                              f"{float(w) * 100:.2f} %" for k, share, w in verdict.outside)
            spread = Spread({k: float(v) for k, v in got.items()}, {k: float(v) for k, v in want.items()},
                            verdict.passed, f"{how}; {wrong or 'every share'} (tolerance "
                            f"± {tolerance * 100:g} percentage points)")
        self.evidence["spreads"].append({**extra, **spread.__dict__})
        return spread

    # -- questions ---------------------------------------------------------------------------
    def connect(self, source: str, target: Target) -> list[Observation]:
        """The fates of a new connection: static, every branch with its probability; live, the
        distinct fates of connections made until every endpoint answered."""
        raise NotImplementedError

    def spread(self, source: str, target: Target) -> Spread:
        raise NotImplementedError

    def rules_hit(self, source: str, target: Target) -> set[Hit]:
        """Every nat rule a new connection's first packet matched, on any of its branches (live:
        counted over connect()'s connections), as parsed rules (Hit)."""
        raise NotImplementedError

    def reply_sources(self, source: str, target: Target) -> list[str | None]:
        """Where the answer to a crafted SYN came from ("ip:port"), None for no answer."""
        raise NotImplementedError

    def node_rules(self, table: str, chain: str | None = None) -> list[str]:
        """The node's rules as `iptables -S` prints them (`-N CHAIN`, `-A CHAIN …` lines)."""
        raise NotImplementedError

    def outcome(self, cls: outcomes.PacketClass) -> outcomes.Outcome:
        """The submission's outcome for a packet class: exact (static) or measured (live)."""
        raise NotImplementedError

    def rules_now(self):
        """The node's whole ruleset after the submission (parsed by the kit's parser)."""
        raise NotImplementedError

    def address_spread(self, source: str, target: Target) -> Spread:
        """spread(), with each destination's share summed over its ports: keys are addresses.

        For a check about random selection alone: a KUBE-SEP chain that DNATs to the right pod
        but the wrong port still counts for that pod (another check judges the port).
        """
        raise NotImplementedError

    def observe(self, source: str, target: Target) -> tuple[list[Observation], set[Hit]]:
        """connect() and rules_hit() of the same connections."""
        return self.connect(source, target), self.rules_hit(source, target)

    def close(self) -> None:
        pass


class StaticSandbox(Sandbox):
    """Answers from the rule tracer over the submission applied to the starting state."""

    mode = "static"

    def _trace(self, source: str, target: Target) -> tracer.Trace:
        try:
            return _trace(self, self.rules, source, target)
        except tracer.UnsupportedRule as exc:
            raise Undecidable(f"the rule tracer does not model this rule: {exc}") from exc

    def outcome(self, cls):
        try:
            return self.traced(self.rules, cls)
        except tracer.UnsupportedRule as exc:
            raise Undecidable(f"the rule tracer does not model this rule: {exc}") from exc

    def rules_now(self):
        return self.submission.ruleset

    def connect(self, source, target):
        caller = self.caller_ip(source)
        cls = outcomes.PacketClass(source, target)
        observations = []
        for outcome in self._trace(source, target).outcomes:
            if outcome.probability == 0:
                continue
            ip, port = outcome.dnat if outcome.dnat else (target.ip, target.port)
            fate = outcomes.fate(self, cls, outcome)  # as the kernel makes it (live's answer)
            detail = _static_fate(outcome, ip, port, target, self.pod_at(ip) is not None)
            if not fate.answered and outcome.verdict == "ACCEPT" and self.pod_serves(
                    ip, port, target.proto) == source:
                detail = (f"sent back to {source} itself with its own address as source, which "
                          "it drops as a packet from its own address arriving from outside; "
                          "the connection times out")
            observations.append(Observation(
                answered=fate.answered, pod=fate.pod or None,
                dnat=f"{ip}:{port}" if outcome.dnat else None,
                saw_src=fate.saw_src or None,
                masqueraded=(fate.saw_src != caller) if fate.answered else None,
                probability=outcome.probability, detail=detail))
        return observations

    def spread(self, source, target):
        got: dict[str, Fraction] = {}
        for dest, p in self._trace(source, target).dnat_distribution().items():
            key = f"{dest[0]}:{dest[1]}" if dest else sampling.NO_DNAT
            got[key] = got.get(key, Fraction(0)) + p
        return self._judge_spread(got, self.reference_spread(source, target), None,
                                  "exact shares from the rules", source=source, target=str(target))

    def address_spread(self, source, target):
        got = _by_address({(f"{d[0]}:{d[1]}" if d else sampling.NO_DNAT): p for d, p in
                           self._trace(source, target).dnat_distribution().items()})
        return self._judge_spread(got, _by_address(self.reference_spread(source, target)), None,
                                  "exact shares from the rules", source=source,
                                  target=str(target), by="address")

    def reply_sources(self, source, target):
        # An answered, DNATed connection is un-NATed by conntrack on the way back: the reply
        # comes from the address the caller used. An answer without DNAT would be the pod's own.
        return [f"{target.ip}:{target.port}" if o.answered and o.dnat else
                (o.dnat if o.answered else None) for o in self.connect(source, target)]

    def node_rules(self, table, chain=None):
        ruleset = self.submission.ruleset
        chains = [chain] if chain else list(ruleset.table(table).chains)
        lines = []
        for name in chains:
            lines.append(f"-N {name}")
            lines += [shlex.join(["-A", name, *outcomes.spec_words(r)])
                      for r in ruleset.chain(table, name).rules]
        return lines

    def rules_hit(self, source, target):
        return _hits(self._trace(source, target))


class LiveSandbox(Sandbox):
    """A fresh lab on the real kernel with the starting state and then the submission applied."""

    mode = "live"

    def __init__(self, exercise, submission):
        super().__init__(exercise, submission)
        from lab_runner.lab import LiveLab

        self._seen: dict[tuple[str, str], tuple[list[Observation], set[tuple[str, str]]]] = {}
        self._outcomes: dict[outcomes.PacketClass, outcomes.Outcome] = {}
        self._reports: dict[tuple[str, str], tuple[list, list]] = {}
        self.lab = LiveLab.start(self.model, rules=False, transient=True)
        try:
            self.lab.restore(exercise.start_document)
            try:
                self.lab.restore(submission.text)  # one iptables-restore: all of it, or none
            except RestoreFailed as exc:
                where = f", line {exc.line_no}" if exc.line_no else ""
                reason = " ".join(line.strip() for line in (exc.stderr or str(exc)).splitlines()
                                  if line.strip() and not line.startswith("Try `"))
                raise SubmissionError(f"{submission.path}{where}: the kernel refused it: {reason}"
                                      + (f"\n{exc.context}" if exc.context else "")) from exc
        except BaseException:
            self.lab.down()
            raise

    def close(self):
        self.lab.down()

    def _observation(self, source, report) -> Observation:
        view = report.pod_view
        if not report.answered or view is None:
            return Observation(False, None, None, None, None, detail=_answer(report))
        return Observation(True, view.pod, f"{view.dst}:{view.dport}", view.src,
                           view.src != self.caller_ip(source), detail=_answer(report))

    def connect(self, source, target):
        return self._connections(source, target)[0]

    def outcome(self, cls):
        """Measured: the distinct fates of new connections from the class's caller until each
        endpoint's pod answered; for a class with mark bits, the bits counted as they leave."""
        if cls not in self._outcomes:
            added = frozenset()
            if cls.premark:
                with self._premarked(cls) as counted:
                    reports, moved = self._probe(cls.caller, cls.target)
                kept = frozenset(k for (what, k), packets in counted.items()
                                 if what == "kept" and packets)
                added = frozenset(k for (what, k), packets in counted.items()
                                  if what == "added" and packets)
            elif cls.caller == outcomes.CLUSTER_CALLER:
                with self._inside_the_cluster_cidr(cls.target):
                    reports, moved = self._probe("client", cls.target)
                kept = frozenset()
            else:
                self._connections(cls.caller, cls.target)
                reports, moved = self._reports[(cls.caller, str(cls.target))]
                kept = frozenset()
            rules = self._moved_rules(moved) if any(r.pod == cls.caller for r in reports) else []
            fates = frozenset(self._fate(cls, r, rules) for r in reports)
            self._outcomes[cls] = outcomes.Outcome(fates, kept, added)
        return self._outcomes[cls]

    def _fate(self, cls, report, rules) -> outcomes.Fate:
        """rules: _moved_rules() of the class's connections."""
        view = report.pod_view
        if not report.answered or view is None:
            return outcomes.NO_ANSWER
        hairpin = None
        if view.pod == cls.caller:  # did its endpoint's chain mark it (counters of its rules)?
            chains = {(c, n) for (_, c, n, _), rule in rules
                      if rule.target == "DNAT" and _dnat_address(rule) == view.dst}
            hairpin = any(c == chain and m < n and outcomes.marks(rule)
                          for (_, c, m, _), rule in rules for chain, n in chains)
        return outcomes.Fate(True, view.pod, view.src, hairpin)

    def _moved_rules(self, moved) -> list[tuple[tuple, Rule]]:
        """Each moved counter (packets, chain, number, text) with its rule as the parser reads
        it (from the node's nat table as iptables-save prints it)."""
        if not moved:
            return []
        return probing.with_rules(moved, parse(self.lab.save(table="nat"),
                                               "<the node's nat table>", check=False))

    @contextlib.contextmanager
    def _premarked(self, cls):
        """Kit rules in the node (never writable by a submission): the class's packets get
        cls.premark in iptables' mangle table before the nat table sees them (a mark does not
        cross a veth), and are counted as they leave by the kit's own nftables table at the
        postrouting hook after source NAT (PREMARK_PRIORITY), so a mark a submission changes in
        nat POSTROUTING counts as static mode counts it: with and without the other bits, with
        and without bits they neither came with nor are 0x4000. Yields
        {("kept" | "added", bool): count}."""
        ip = self.caller_ip(cls.caller)
        bits = cls.premark & ~outcomes.MASQ_BIT
        hook = "OUTPUT" if cls.caller == "node" else "PREROUTING"
        marking = [hook, "-s", ip, "-d", cls.target.ip, "-p", cls.target.proto, "--dport",
                   str(cls.target.port), "-j", "MARK", "--or-mark", hex(cls.premark)]
        others = ~(cls.premark | outcomes.MASQ_BIT) & 0xFFFFFFFF
        tests = {("kept", True): f"and {bits:#x} == {bits:#x}",
                 ("kept", False): f"and {bits:#x} != {bits:#x}",
                 ("added", False): f"and {others:#x} == 0x0",
                 ("added", True): f"and {others:#x} != 0x0"}
        # The first packet of each new connection from the caller, by its address before NAT.
        new_from = f"add rule ip {PREMARK_TABLE} out ct state new ct original ip saddr {ip}"
        document = "\n".join(
            [f"add table ip {PREMARK_TABLE}",
             f"add chain ip {PREMARK_TABLE} out {{ type filter hook postrouting priority "
             f"{PREMARK_PRIORITY} ; }}",
             *(f'{new_from} meta mark {test} counter comment "{what}-{value}"'.lower()
               for (what, value), test in tests.items())]) + "\n"
        node = self.lab.place("node")
        counted: dict[tuple[str, bool], int] = {}
        try:
            nft_apply.apply(self.lab.runner, node, document)
            self.lab.exec("node", ["iptables", "-t", "mangle", "-A", *marking], check=True)
            yield counted
            listing = nft_apply.save(self.lab.runner, node, table=PREMARK_TABLE)
            found = {key: int(n) for n, key in _PREMARK_COUNTED.findall(listing)}
            for what, value in tests:
                counted[(what, value)] = found.get(f"{what}-{value}".lower(), 0)
        finally:
            self.lab.exec("node", ["iptables", "-t", "mangle", "-D", *marking])
            self.lab.exec("node", ["nft", "delete", "table", "ip", PREMARK_TABLE])

    @contextlib.contextmanager
    def _inside_the_cluster_cidr(self, target):
        """The client, for a while, calls `target` from an address inside the cluster CIDR (as a
        pod on another node would), and the node routes the answers to that address back to it.
        Only kit-made namespaces change; the client's own class is probed outside this block."""
        address = outcomes.cluster_caller_ip(self.model)
        client = self.caller_ip("client")
        node = str(self.model.nodes[0].ip)
        steps = [("client", ["ip", "addr", "add", f"{address}/32", "dev", "eth0"],
                  ["ip", "addr", "del", f"{address}/32", "dev", "eth0"]),
                 ("client", ["ip", "route", "add", f"{target.ip}/32", "via", node, "src", address],
                  ["ip", "route", "del", f"{target.ip}/32"]),
                 ("node", ["ip", "route", "add", f"{address}/32", "via", client],
                  ["ip", "route", "del", f"{address}/32"])]
        done = []
        try:
            for host, add, remove in steps:
                self.lab.exec(host, add, check=True)
                done.append((host, remove))
            yield
        finally:
            for host, remove in reversed(done):
                self.lab.exec(host, remove)

    def _probe(self, source, target):
        pods = set(self.endpoints(target).values())
        # Where no pod should answer, the counters say what the probe met; a shorter wait for
        # the answer that should not come keeps negative checks cheap (answers take ~1 ms).
        # A pod that calls also waits for itself: whether the Service sends it back to itself
        # (hairpin) is part of its outcome, even when it is no endpoint and should not be.
        caller = {source} if pods and any(p.name == source for p in self.model.pods) else set()
        reports, counters = probing.connections(self.lab, source, target,
                                                timeout=FIRST_PACKET_TIMEOUT if pods
                                                else NO_ANSWER_TIMEOUT,
                                                count=_tries(pods), until_pods=pods | caller)
        moved = probing.moved(counters)
        if source in pods and all(r.answered for r in reports) and \
                not any(r.pod == source for r in reports):
            # A pod that never reached itself although every connection was answered: its own
            # share may just be small (a wrong spread). Try on, so that whether it can reach
            # itself at all is decided as surely as static mode decides it.
            more, counters = probing.connections(self.lab, source, target,
                                                 timeout=FIRST_PACKET_TIMEOUT,
                                                 count=SELF_TRIES, until_pods={source})
            reports, moved = reports + more, moved + probing.moved(counters)
        return reports, moved

    def rules_now(self):
        return parse(self.lab.save(), "<the node's rules>", check=False)

    def _connections(self, source, target) -> tuple[list[Observation], set[tuple[str, str]]]:
        """The distinct fates of new connections from `source` until each endpoint's pod has
        answered (at most probe_limit of them, in one agent) and the nat rules they moved.

        A rule that chooses at random is so judged on every branch, as static mode judges it,
        never on one lucky draw. Cached: several checks ask, and the answer does not change.
        """
        key = (source, str(target))
        if key not in self._seen:
            reports, moved = self._probe(source, target)
            self._reports[key] = reports, moved
            observations = list(dict.fromkeys(self._observation(source, r) for r in reports))
            hit = {Hit.of(rule) for _, rule in self._moved_rules(moved)}
            self._seen[key] = observations, hit
        return self._seen[key]

    def spread(self, source, target):
        want = self.reference_spread(source, target)
        counts = self._burst(source, target, want)
        total = sum(counts.values()) or 1
        return self._judge_spread({k: v / total for k, v in counts.items()}, want, total,
                                  f"{total} new flows", source=source, target=str(target))

    def address_spread(self, source, target):
        want = _by_address(self.reference_spread(source, target))
        counts = _by_address(self._burst(source, target, want))
        total = sum(counts.values()) or 1
        return self._judge_spread({k: v / total for k, v in counts.items()}, want, total,
                                  f"{total} new flows", source=source, target=str(target),
                                  by="address")

    def _burst(self, source, target, want) -> dict[str, int]:
        """New flows counted per DNAT destination: as many as the tolerance rule needs."""
        flows = self._flows_needed(want)
        report = sampling.sample(self.lab, target, flows, source=source, sport_base=SPORT_BASE,
                                 expected=self.reference_spread(source, target))
        return report.observed

    def _flows_needed(self, want) -> int:
        """As many new flows as the tolerance rule needs for the shares `want`."""
        flows = stats.flows_for_tolerance({k: v for k, v in want.items() if k != sampling.NO_DNAT},
                                          self.exercise.tolerance)
        if flows > MAX_LIVE_FLOWS:
            raise LabError(f"a tolerance of {self.exercise.tolerance * 100:g} percentage points "
                           f"needs {flows} new flows, more than one caller can make "
                           f"({MAX_LIVE_FLOWS}): give the exercise a larger `tolerance`")
        return flows

    def node_rules(self, table, chain=None):
        """Read from the node with testinfra (its iptables module, in the node's namespace)."""
        from lab_runner.backends.docker import node_host
        from lab_runner.backends.netns import node_ns

        host = node_host(self.lab.run, node_ns(self.lab.run.run_id, self.model.nodes[0].name))
        return host.iptables.rules(table, chain) if chain else host.iptables.rules(table)

    def rules_hit(self, source, target):
        return self._connections(source, target)[1]

    def reply_sources(self, source, target):
        """The distinct sources of the answers to crafted SYNs (UDP: datagrams), as many as
        connect() would make: an answer wrong on some branches cannot pass on one draw."""
        kind = "udp" if target.proto == "udp" else "syn"
        pods = set(self.endpoints(target).values())
        reports, _ = probing.connections(self.lab, source, target, kind=kind, counters=False,
                                         timeout=FIRST_PACKET_TIMEOUT, budget=5,
                                         count=_tries(pods),
                                         until_pods=pods if kind == "udp" else ())
        return list(dict.fromkeys(
            f"{a['src']}:{a['sport']}" if r.answered and (a := r.answer).get("src") else None
            for r in reports))

    def observe(self, source, target):
        return self._connections(source, target)


def _trace(sandbox: Sandbox, ruleset, source: str, target: Target) -> tracer.Trace:
    packet = tracer.Packet(src=sandbox.caller_ip(source), dst=target.ip, protocol=target.proto,
                           sport=40000, dport=target.port, in_interface=sandbox.inbound(source),
                           **sampling.node_facts(sandbox.model))
    return sandbox.trace_packet(ruleset, packet)


def _hits(trace: tracer.Trace) -> set[Hit]:
    hit = set()
    for outcome in trace.outcomes:
        if outcome.probability:
            hit |= {Hit.of(step.rule) for step in outcome.path
                    if step.table == "nat" and step.rule is not None}
    return hit


def _dnat_chains(hit: set[Hit]) -> dict[str, set[str]]:
    """{chain: {"ip:port"}} of the DNAT rules hit (a DNAT without a port: "ip")."""
    out: dict[str, set[str]] = {}
    for h in hit:
        if h.target == "DNAT":
            out.setdefault(h.chain, set()).add(sampling.destination_key(h.rule, None))
    return out


def _dnat_address(rule: Rule) -> str | None:
    try:
        return semantics.dnat_destination(rule)[0]
    except semantics.UnsupportedRule:
        return None


def _by_address(shares: dict) -> dict:
    """{"ip:port": share} summed per "ip" (NO_DNAT stays as it is)."""
    out: dict = {}
    for key, share in shares.items():
        address = key if key == sampling.NO_DNAT else key.rsplit(":", 1)[0]
        out[address] = out.get(address, 0) + share
    return out


def _tries(pods: set[str]) -> int:
    """Connections to make for a target with these endpoint pods: enough to reach each of them
    (probe_limit); one where there is none (traffic the Service must not take meets fixed rules)."""
    return probe_limit(len(pods)) if pods else 1


def probe_limit(endpoints: int) -> int:
    """Probes needed so that each of n equally likely endpoints is seen, but for MISS_RATE."""
    if endpoints <= 1:
        return 3
    return math.ceil(math.log(endpoints / MISS_RATE) / -math.log(1 - 1 / endpoints))


# What a client that retries sees, said wherever a first packet was DNATed and got no answer.
RETRY_NOTE = ("; graded on the first packet: a client that retries may draw another endpoint, "
              "as its first SYN was never confirmed by conntrack")


def _static_fate(outcome, ip: str, port: int, target, pod_exists: bool = False) -> str:
    """What happened to a connection, in words, for static feedback."""
    if outcome.verdict != "ACCEPT":
        return {"DROP": "dropped", "REJECT": "rejected"}.get(outcome.verdict, outcome.verdict) + \
            " by the rules"
    if not outcome.dnat:
        return f"not sent to any pod (no DNAT: it still goes to {target.ip}:{target.port})"
    if outcome.route == "local":  # REDIRECT, or a DNAT to one of the node's own addresses
        return f"delivered to the node itself at {ip}:{port}, where nothing listens (it refuses)"
    if pod_exists:
        return f"sent to {ip}:{port}, where its pod does not listen (it refuses)"
    return f"sent to {ip}:{port}, where no pod is (it times out{RETRY_NOTE})"


def _answer(report) -> str:
    """The probe's answer in words; an unanswered SYN as static mode says it (RETRY_NOTE)."""
    answer = str(report.answer.get("answer", "?"))
    return f"it times out{RETRY_NOTE}" if answer == "timeout" else answer


def open_sandbox(mode: str, exercise: Exercise, submission: Submission) -> Sandbox:
    if exercise.format == "nft":
        from lab_runner.grading import nft_sandbox

        return nft_sandbox.open_sandbox(mode, exercise, submission)
    if mode == "static":
        return StaticSandbox(exercise, submission)
    if mode == "live":
        return LiveSandbox(exercise, submission)
    raise LabError(f"unknown grading mode {mode!r}; choose live or static")
