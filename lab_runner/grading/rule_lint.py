"""Rules a report marks: duplicates (a rule its chain already has) and dead rules (no packet gets
to them: they follow a rule every packet leaves the chain by, or sit in a chain nothing reaches).

The findings are sound rather than complete: a rule is called dead only when the ruleset alone
proves it, so a student is never told that a rule which can match never does. "Every packet
leaves the chain" means an unconditional rule (comments aside) whose target ends the chain's
walk: a verdict (ACCEPT, DROP, REJECT, RETURN, QUEUE), a NAT target (DNAT, SNAT, MASQUERADE,
REDIRECT, NETMAP: terminating in the kernel), a goto, or a jump to a chain that itself decides
every packet it gets. A `-p tcp` alone counts as unconditional in a chain only TCP can enter
(KUBE-SEP-… chains, reached from KUBE-SERVICES' `-p tcp` rule through KUBE-SVC-…).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from lab_runner.ruleset.compare import normalize
from lab_runner.ruleset.parse import Rule, Ruleset, Table

# Targets after which a packet never comes back to the rule below.
ENDS_WALK = frozenset({"ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "NFQUEUE", "DNAT", "SNAT",
                       "MASQUERADE", "REDIRECT", "NETMAP"})
ANY = None  # a chain any protocol may enter


@dataclass(frozen=True)
class Finding:
    """One marked rule: `kind` is "duplicate" or "dead"; `cause` the earlier rule it repeats or
    follows (None: its chain is never reached); `text` says it, e.g. "duplicate of line 5"."""

    rule: Rule
    kind: str
    cause: Rule | None
    text: str


def lint(ruleset: Ruleset, own: Iterable[Rule] | None = None,
         where: Callable[[Rule], str] | None = None) -> list[Finding]:
    """Findings for every table, in rule order. With `own` (the submission's rules), only
    findings that involve one of them: its rule, or its rule as the cause. `where` names a
    rule in the texts ("line 7"; default: its line number)."""
    mine = None if own is None else {id(rule) for rule in own}
    name = where or (lambda rule: f"line {rule.line_no}")
    found = []
    for table in ruleset.tables.values():
        for finding in _table(table, name):
            if mine is None or id(finding.rule) in mine or id(finding.cause) in mine:
                found.append(finding)
    return found


def by_rule(findings: Iterable[Finding]) -> dict[int, list[Finding]]:
    """The findings keyed by id() of their rule, for marking rules where they are shown."""
    marks: dict[int, list[Finding]] = {}
    for finding in findings:
        marks.setdefault(id(finding.rule), []).append(finding)
    return marks


def _table(table: Table, name: Callable[[Rule], str]) -> list[Finding]:
    facts = _Facts(table)
    found: list[Finding] = []
    dead: set[int] = set()
    for chain in table.chains.values():
        seen: dict[tuple, Rule] = {}
        stop: Rule | None = None
        for rule in chain.rules:
            key = facts.key(rule)
            if key in seen:
                found.append(Finding(rule, "duplicate", seen[key],
                                     f"duplicate of {name(seen[key])}"))
            else:
                seen[key] = rule
            if stop is not None:
                found.append(Finding(rule, "dead", stop, f"never reached: after {name(stop)}, "
                                     "which every packet leaves the chain by"))
                dead.add(id(rule))
            elif facts.unconditional(rule) and facts.ends_walk(rule):
                stop = rule
    # A table whose built-in chains have no rule is a fragment, as kube-proxy's own restore
    # document (the jumps from PREROUTING and OUTPUT are made outside it): nothing is "unreached".
    if any(chain.builtin and chain.rules for chain in table.chains.values()):
        reached = _reached(table, dead)
        jumped = {rule.target for chain in table.chains.values() for rule in chain.rules}
        for chain in table.chains.values():
            if chain.name in reached:
                continue
            why = (f"only rules no packet reaches jump to {chain.name}" if chain.name in jumped
                   else f"nothing jumps to {chain.name}")
            found += [Finding(rule, "dead", None, f"never reached: {why}")
                      for rule in chain.rules if id(rule) not in dead]
    found.sort(key=lambda f: f.rule.line_no)
    return found


class _Facts:
    """What one table's rules mean for the walk: each rule's normalised form (read once), the
    protocols that can enter each chain, and which chains decide every packet they get."""

    def __init__(self, table: Table):
        self.table = table
        self._keys: dict[int, tuple] = {}
        self._decides: dict[str, bool] = {}
        self.entry = self._entry_protocols()

    def key(self, rule: Rule) -> tuple:
        """compare.normalize without comments: equal for rules that do the same."""
        found = self._keys.get(id(rule))
        if found is None:
            found = self._keys[id(rule)] = normalize(rule, comments=False)
        return found

    def _protocol(self, rule: Rule) -> str | None:
        """The protocol a rule requires (normalised, not inverted), or None."""
        return next((value for key, inverted, value in self.key(rule)[0]
                     if key == "p" and not inverted), None)

    def _entry_protocols(self) -> dict[str, frozenset[str] | None]:
        """Per chain, the protocols a packet entering it can have (None: any). Every jump
        counts, dead ones too: more ways in only ever makes fewer rules unconditional."""
        chains = self.table.chains
        entry: dict[str, frozenset[str] | None] = {
            name: (ANY if chain.builtin else frozenset()) for name, chain in chains.items()}
        changed = True
        while changed:  # each chain's set only grows, towards None: this ends
            changed = False
            for chain in chains.values():
                for rule in chain.rules:
                    target = chains.get(rule.target or "")
                    if target is None or target.builtin or entry[target.name] is ANY:
                        continue
                    proto = self._protocol(rule)
                    came = frozenset({proto}) if proto else entry[chain.name]
                    new = ANY if came is ANY else entry[target.name] | came
                    if new != entry[target.name]:
                        entry[target.name] = new
                        changed = True
        return entry

    def unconditional(self, rule: Rule) -> bool:
        """Whether every packet that gets to the rule matches it."""
        basic, matches, _ = self.key(rule)
        if matches:
            return False
        if not basic:
            return True
        # `-p tcp` where only TCP enters matches every packet (normalize drops a bare `-m tcp`).
        entry = self.entry.get(rule.chain, ANY)
        return entry is not ANY and len(entry) == 1 and basic == {("p", False, *entry)}

    def ends_walk(self, rule: Rule) -> bool:
        """Whether a packet that matches `rule` never gets to the rule below it."""
        if rule.target in ENDS_WALK:
            return True
        chain = self.table.chains.get(rule.target or "")
        if chain is None or chain.builtin:
            return False
        return rule.goto or self.decides(chain.name)

    def decides(self, name: str) -> bool:
        """Whether every packet entering chain `name` ends there, none going back to its caller."""
        if name in self._decides:
            return self._decides[name]
        self._decides[name] = False  # a loop (the intake refuses them) decides nothing
        for rule in self.table.chains[name].rules:
            target = self.table.chains.get(rule.target or "")
            if rule.target == "RETURN" or (rule.goto and target is not None
                                           and not self.decides(target.name)):
                break  # some packets go back to the caller
            if self.unconditional(rule) and self.ends_walk(rule):
                self._decides[name] = True
                break
        return self._decides[name]


def _reached(table: Table, dead: set[int]) -> set[str]:
    """The chains built-in chains reach through rules that are not dead (ids in `dead`)."""
    reached = {name for name, chain in table.chains.items() if chain.builtin}
    todo = list(reached)
    while todo:
        for rule in table.chains[todo.pop()].rules:
            target = rule.target or ""
            if id(rule) not in dead and target in table.chains and target not in reached:
                reached.add(target)
                todo.append(target)
    return reached
