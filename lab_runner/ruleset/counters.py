"""Packet/byte counters of a ruleset at one moment, and what changed between two moments."""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # parse imports this module; only type names are needed from it here
    from lab_runner.ruleset.parse import Rule, Ruleset


@dataclass(frozen=True)
class Counters:
    """A packet and byte count, as iptables keeps per rule and per built-in chain policy."""

    packets: int = 0
    bytes: int = 0

    def __add__(self, other: "Counters") -> "Counters":
        return Counters(self.packets + other.packets, self.bytes + other.bytes)

    def __sub__(self, other: "Counters") -> "Counters":
        return Counters(self.packets - other.packets, self.bytes - other.bytes)


@dataclass(frozen=True)
class Snapshot:
    """A ruleset read with `iptables-save -c`: every rule and built-in policy carries counters."""

    ruleset: "Ruleset"

    @classmethod
    def parse(cls, text: str, source: str = "<iptables-save -c>") -> "Snapshot":
        from lab_runner.ruleset.parse import parse

        ruleset = parse(text, source, check=False)  # iptables-save's own text
        missing = next((r for r in ruleset.rules() if r.counters is None), None)
        if missing is not None:
            raise ValueError(f"{source}, line {missing.line_no}: no counters on this rule; "
                             "take snapshots with `iptables-save -c`")
        return cls(ruleset)


@dataclass(frozen=True)
class RuleDelta:
    """How much one rule's counters grew; `number` is its 1-based position in the later snapshot."""

    table: str
    chain: str
    number: int
    text: str
    change: Counters


@dataclass(frozen=True)
class Delta:
    """Per-rule and per-chain growth between two snapshots.

    A user chain's change is what *entered* it: the growth of the rules that jump or go to it
    (KUBE-MARK-MASQ +40 means 40 packets were sent there). A built-in chain's change is the growth
    of its policy counters, the packets that fell through to the policy.
    """

    rules: tuple[RuleDelta, ...]
    chains: dict[tuple[str, str], Counters] = field(default_factory=dict)

    def chain(self, name: str, table: str = "nat") -> Counters:
        return self.chains.get((table, name), Counters())

    def rule(self, table: str, chain: str, number: int) -> Counters:
        found = next((r for r in self.rules
                      if (r.table, r.chain, r.number) == (table, chain, number)), None)
        return found.change if found else Counters()

    def summary(self, table: str = "nat", prefix: str = "KUBE-") -> str:
        """E.g. "KUBE-MARK-MASQ +40, KUBE-SEP-TWZJG7ZWZYI5EC7J +9": chains that grew, by name."""
        grown = sorted((name, c.packets) for (t, name), c in self.chains.items()
                       if t == table and name.startswith(prefix) and c.packets)
        return ", ".join(f"{name} +{packets}" for name, packets in grown) or "(no change)"


def _ruleset(value: "Snapshot | Ruleset") -> "Ruleset":
    return value.ruleset if isinstance(value, Snapshot) else value


def _keyed(ruleset: "Ruleset") -> dict[tuple[str, str, str, int], tuple[int, "Rule"]]:
    """(1-based position, rule) keyed by (table, chain, text, occurrence), so inserted rules do
    not shift the others."""
    seen: Tally = Tally()
    keyed = {}
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for number, rule in enumerate(chain.rules, start=1):
                key = (rule.table, rule.chain, rule.spec)
                keyed[(*key, seen[key])] = number, rule
                seen[key] += 1
    return keyed


def delta(before: "Snapshot | Ruleset", after: "Snapshot | Ruleset") -> Delta:
    """What the counters gained from `before` to `after` (a rule new in `after` counts from 0)."""
    old, new = _ruleset(before), _ruleset(after)
    old_rules = _keyed(old)
    rule_deltas = []
    chains: dict[tuple[str, str], Counters] = {}
    zero = Counters()
    for key, (number, rule) in _keyed(new).items():
        earlier = old_rules.get(key)
        change = (rule.counters or zero) - ((earlier[1].counters if earlier else None) or zero)
        rule_deltas.append(RuleDelta(rule.table, rule.chain, number, rule.text, change))
        if rule.target and new.has_chain(rule.table, rule.target):
            into = (rule.table, rule.target)
            chains[into] = chains.get(into, zero) + change
    for table in new.tables.values():
        for chain in table.chains.values():
            if chain.builtin and chain.counters is not None:
                start = old.chain(table.name, chain.name).counters \
                    if old.has_chain(table.name, chain.name) else None
                chains[(table.name, chain.name)] = chain.counters - (start or zero)
    return Delta(tuple(rule_deltas), chains)
