"""The grading sandboxes for a lab in kube-proxy's nftables mode: the same questions, nft answers.

Checks ask an nftables sandbox what they ask an iptables one (connect, spread, address_spread,
outcome and differs, rules_now) and get answers of the same shape. Static mode
traces with nft_tracer (a `numgen random mod N` draw is exactly 1/N a way); live mode builds the
lab, applies the starting state and then the submission with `nft -f` (one transaction each:
a refused submission changes nothing, and the message names its line), and measures with real
connections. kube-proxy's nftables rules carry no counters, so live mode counts connections by
the pod that answered (nft_sampling), never by rule counters; and rules_hit (which rules a
connection met) is not answered in this mode: a check asks what happened to the packets.
"""

from __future__ import annotations

from lab_runner.evidence import nft_sampling, sampling
from lab_runner.grading import outcomes
from lab_runner.grading.sandbox import SPORT_BASE, LiveSandbox, Sandbox, StaticSandbox
from lab_runner.errors import LabError
from lab_runner.ruleset import nft_render, nft_tracer
from lab_runner.ruleset.nft_parse import parse_nft

NO_COUNTERS = ("kube-proxy's nftables rules carry no counters: in nftables mode a check asks "
               "what happened to the connections (connect, spread, outcome), not which rules "
               "they met")


class NftRules:
    """What differs from the iptables sandboxes: the reference, the tracer, the node's rules."""

    model: object
    exercise: object
    submission: object

    def _reference_rules(self):
        return parse_nft(nft_render.render(self.model, self.model.profile))

    def _rules_traced(self, submission):
        return submission.ruleset  # `numgen inc` (counting) is refused at intake

    def _counting_rules(self) -> list:
        return []

    def trace_packet(self, ruleset, packet):
        return nft_tracer.trace(ruleset, packet)

    def traced(self, ruleset, cls: outcomes.PacketClass) -> outcomes.Outcome:
        """outcomes.traced, through nft_tracer. A pod reaching itself is judged by what it sees
        (masqueraded or no answer), in both modes alike: no counters say which rule marked it."""
        packet = nft_tracer.Packet(src=self.caller_ip(cls.caller), dst=cls.target.ip,
                                   protocol=cls.target.proto, dport=cls.target.port,
                                   in_interface=self.inbound(cls.caller), mark=cls.premark,
                                   **sampling.node_facts(self.model))
        ways = [o for o in nft_tracer.trace(ruleset, packet).outcomes if o.probability]
        other = cls.premark & ~outcomes.MASQ_BIT
        accepted = [o.mark for o in ways if o.verdict == "ACCEPT"] if cls.premark else []
        return outcomes.Outcome(
            frozenset(outcomes.fate(self, cls, o) for o in ways),
            frozenset(mark & other == other for mark in accepted),
            frozenset(bool(mark & ~(cls.premark | outcomes.MASQ_BIT) & 0xFFFFFFFF)
                      for mark in accepted))

    def reference_spread(self, source, target):
        shares, _ = nft_sampling.expected_distribution(
            self.reference, self.model, self.caller_ip(source), target,
            in_interface=self.inbound(source))
        return shares

    def reference_endpoint_chains(self, source, target):
        raise LabError(NO_COUNTERS)

    def rules_hit(self, source, target):
        raise LabError(NO_COUNTERS)

    def node_rules(self, table, chain=None):
        raise LabError("in nftables mode a check reads kube-proxy's table with rules_now()")

    def lost_rules(self) -> list:
        """Nothing: an nft submission only adds (nft_submission), so the start stays whole."""
        return []


class NftStaticSandbox(NftRules, StaticSandbox):
    """The submission applied to the starting state, traced by nft_tracer."""


class NftLiveSandbox(NftRules, LiveSandbox):
    """A fresh lab: the starting state and then the submission applied with `nft -f`."""

    def rules_now(self):
        return parse_nft(self.lab.save())

    def _burst(self, source, target, want) -> dict[str, int]:
        """New flows counted by where the node forwarded them (nft_sampling.burst): at the
        reference's destinations and at those the submission's own rules name."""
        flows = self._flows_needed(want)
        named = nft_sampling.expected_distribution(
            self.rules, self.model, self.caller_ip(source), target,
            in_interface=self.inbound(source))[0]
        return nft_sampling.burst(self.lab, target, flows, set(want) | set(named),
                                  source=source, sport_base=SPORT_BASE)


def open_sandbox(mode: str, exercise, submission) -> Sandbox:
    if mode == "static":
        return NftStaticSandbox(exercise, submission)
    if mode == "live":
        return NftLiveSandbox(exercise, submission)
    raise LabError(f"unknown grading mode {mode!r}; choose live or static")
