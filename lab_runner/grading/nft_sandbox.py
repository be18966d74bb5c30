"""The grading sandboxes for a lab in kube-proxy's nftables mode: the same questions, nft answers.

Checks ask an nftables sandbox what they ask an iptables one (connect, spread, address_spread,
outcome and differs, rules_now) and get answers of the same shape. Static mode
traces with nft_tracer (a `numgen random mod N` draw is exactly 1/N a way); live mode builds the
lab, applies the starting state and then the submission with `nft -f` (one transaction each:
a refused submission changes nothing, and the message names its line), and measures with real
connections. kube-proxy's nftables rules carry no counters, so live mode counts flows by where
the node forwards them (nft_sampling.burst, the kit's own counting table), and tells which rules
connections met (rules_hit, observe) from the kernel's own trace of their first packets
(`nft monitor trace`), never from rule counters. A rule met is an NftHit: its chain and its
statements, so a rule read back from the node equals the one the submission wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab_runner.evidence import nft_sampling, nft_trace, probing
from lab_runner.grading.sandbox import (FIRST_PACKET_TIMEOUT, SPORT_BASE, LiveSandbox, Sandbox,
                                        StaticSandbox, _tries)
from lab_runner.errors import LabError
from lab_runner.ruleset import nft_render, nft_tracer
from lab_runner.ruleset.nft_model import NftRuleset, Rule
from lab_runner.ruleset.nft_parse import parse_nft



@dataclass(frozen=True)
class NftHit:
    """An nftables rule a new connection's first packet matched: its chain and statements."""

    chain: str
    key: tuple = field(repr=False)
    rule: Rule = field(compare=False, hash=False)

    @classmethod
    def of(cls, rule: Rule) -> "NftHit":
        return cls(rule.chain, rule.statements, rule)


def rule_at(ruleset: NftRuleset, table: str, chain: str, number: int) -> Rule | None:
    """Rule `number` (1-based) of a chain of the table named `table`; None for a policy (0)."""
    found = next((t for (_, name), t in ruleset.tables.items() if name == table), None)
    rules = found.chains[chain].rules if found is not None and chain in found.chains else []
    return rules[number - 1] if 0 < number <= len(rules) else None


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

    def reference_spread(self, source, target):
        shares, _ = nft_sampling.expected_distribution(
            self.reference, self.model, self.caller_ip(source), target,
            in_interface=self.inbound(source))
        return shares

    def reference_endpoint_chains(self, source, target):
        raise LabError("in nftables mode no DNAT rule names its chain by a target: ask "
                       "rules_hit() for the endpoint chains' `dnat to` rules")

    def node_rules(self, table, chain=None):
        raise LabError("in nftables mode a check reads kube-proxy's table with rules_now()")

    def lost_rules(self) -> list:
        """Nothing: an nft submission only adds (nft_submission), so the start stays whole."""
        return []


class NftStaticSandbox(NftRules, StaticSandbox):
    """The submission applied to the starting state, traced by nft_tracer."""

    def rules_hit(self, source, target):
        return {NftHit.of(rule) for o in self._trace(source, target).outcomes if o.probability
                for step in o.path
                if (rule := rule_at(self.rules, step.table, step.chain, step.number))}


class NftLiveSandbox(NftRules, LiveSandbox):
    """A fresh lab: the starting state and then the submission applied with `nft -f`."""

    def __init__(self, exercise, submission):
        self._hits: dict[tuple[str, str], set[NftHit]] = {}
        super().__init__(exercise, submission)

    def rules_now(self):
        return parse_nft(self.lab.save())

    def observe(self, source, target):
        return self.connect(source, target), self.rules_hit(source, target)

    def rules_hit(self, source, target):
        """The rules of kube-proxy's table that the first packets of new connections matched,
        as the kernel traced them, over as many connections as reach every endpoint's pod."""
        key = (source, str(target))
        if key not in self._hits:
            pods = set(self.endpoints(target).values())
            paths, _ = nft_trace.trace_connections(self.lab, source, target, lambda: (
                probing.connections(self.lab, source, target, count=_tries(pods),
                                    until_pods=pods, counters=False,
                                    timeout=FIRST_PACKET_TIMEOUT)))
            held = self.rules_now().tables.get(("ip", nft_trace.KUBE_PROXY_TABLE))
            by_text = {(r.chain, r.text): r for c in (held.chains.values() if held else ())
                       for r in c.rules}
            self._hits[key] = {NftHit.of(by_text[(hop.chain, hop.rule)]) for path in paths
                               for hop in path.hops if (hop.chain, hop.rule) in by_text}
        return self._hits[key]

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
