"""Shared helpers for lab 6's checks: session affinity asked alike in both modes.

Where a sticky Service sends a connection depends on history (the node's `recent` lists), which
the trace of one new connection does not show. So both modes answer questions about a short
history that starts from empty lists (a *round*): the first caller connects, connects again,
and then a second caller connects for the first time.

- Live mode plays rounds on the node: each round empties every list (`echo /` to each file in
  /proc/net/xt_recent, in the node's namespace) and then makes the round's connections, one
  after another, each a new TCP connection from the caller's own namespace; the pod's app says
  which pod answered.
- Static mode traces them. The tracer follows a first connection from empty lists; a later one
  is traced over the rules as the earlier connection left the lists: each `-m recent` lookup is
  decided by the entries the earlier connection's way `--set` (rule gone when it cannot match,
  match dropped when it must), within the timeout.

Either way a check gets Rounds: the pods each connection of each round reached.
"""

from __future__ import annotations

import re
import shlex
import weakref
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from types import SimpleNamespace

from lab_runner.evidence import sampling
from lab_runner.evidence.probing import Target
from lab_runner.grading.outcomes import spec_words
from lab_runner.grading.sandbox import Undecidable
from lab_runner.ruleset import semantics, tracer
from lab_runner.ruleset.parse import parse

WEB = Target("10.96.0.60", 80, "tcp")
FIRST, SECOND = "client", "client2"  # two callers on the node network, 192.168.49.1 and .11
# A round: the first caller three times, then the second caller once.
ROUND = (FIRST, FIRST, FIRST, SECOND)
ROUNDS = 48  # a share of 1/3 is never a first choice in 48 rounds with p = (2/3)^48, about 4e-9
NO_ANSWER = "no answer"

# -m recent's options: those that take a value, and those that do not.
RECENT_VALUED = {"--name", "--seconds", "--hitcount", "--mask"}
RECENT_FLAGS = {"--set", "--rcheck", "--update", "--remove", "--reap", "--rttl", "--rsource",
                "--rdest"}


@dataclass(frozen=True)
class Rounds:
    """The pods each round's connections reached, in ROUND's order.

    live: `rounds` lists what each measured round saw (weight 1 each); static: each distinct
    history with its exact probability as the weight.
    """

    rounds: tuple[tuple[tuple[str, ...], Fraction], ...]
    how: str

    def firsts(self, at: int = 0) -> dict[str, Fraction]:
        """Share of the rounds whose connection number `at` reached each pod."""
        total = sum(w for _, w in self.rounds)
        out: Counter = Counter()
        for pods, w in self.rounds:
            out[pods[at]] += w
        return {pod: Fraction(n) / total for pod, n in out.items()}


_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def rounds(sandbox) -> Rounds:
    """The rounds of this submission (measured or traced once per graded submission)."""
    found = _cache.get(sandbox)
    if found is None:
        play = _live_rounds if sandbox.mode == "live" else _static_rounds
        found = _cache[sandbox] = play(sandbox)
    return found


# -- live --------------------------------------------------------------------------------------

def _live_rounds(sandbox) -> Rounds:
    lab = sandbox.lab
    forget = "for f in /proc/net/xt_recent/*; do [ -e \"$f\" ] && echo / >\"$f\"; done"
    # bash's /dev/tcp makes one real TCP connection; the app answers with its pod's name.
    ask = (f"exec 3<>/dev/tcp/{WEB.ip}/{WEB.port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 "
           "&& cat <&3")
    steps = []
    for who in ROUND:
        ns = lab.place(who).netns
        steps.append(f"printf '\\n@@ {who}\\n'; ip netns exec {shlex.quote(ns)} "
                     f"timeout 2 bash -c {shlex.quote(ask)} 2>/dev/null")
    script = (f"for r in $(seq {ROUNDS}); do {forget}; printf '\\n@@ round\\n'; "
              + "; ".join(steps) + "; done")
    result = lab.exec("node", ["sh", "-c", script], timeout=300)
    measured = []
    for chunk in result.stdout.split("@@ round")[1:]:
        seen = []
        for part in chunk.split("@@ ")[1:]:
            found = re.search(r'"pod": "([^"]+)"', part)
            seen.append(found.group(1) if found else NO_ANSWER)
        if len(seen) == len(ROUND):
            measured.append((tuple(seen), Fraction(1)))
    return Rounds(tuple(measured), f"{len(measured)} rounds of new connections on the node, "
                                   "its affinity lists emptied before each")


# -- static ------------------------------------------------------------------------------------

def _packet(sandbox, who: str) -> tracer.Packet:
    return tracer.Packet(src=sandbox.caller_ip(who), dst=WEB.ip, protocol=WEB.proto, sport=40000,
                         dport=WEB.port, in_interface=sandbox.inbound(who),
                         **sampling.node_facts(sandbox.model))


def _trace(sandbox, ruleset, who: str) -> tracer.Trace:
    try:
        return tracer.trace(ruleset, _packet(sandbox, who))
    except tracer.UnsupportedRule as exc:
        raise Undecidable(f"the rule tracer does not model this rule: {exc}") from exc


def _recent_span(words: list[str]) -> tuple[int, int] | None:
    """Where the `-m recent` match and its options are among a rule's words: [start, end)."""
    for i in range(len(words) - 1):
        if words[i] in ("-m", "--match") and words[i + 1] == "recent":
            j = i + 2
            while j < len(words):
                word = words[j]
                if word == "!" and j + 1 < len(words) and words[j + 1] in RECENT_FLAGS:
                    j += 2
                elif word in RECENT_FLAGS:
                    j += 1
                elif word in RECENT_VALUED:
                    j += 2
                else:
                    break
            return i, j
    return None


def _entries_set(outcome: tracer.Outcome, src: str) -> tuple[tuple[str, str], ...]:
    """The (list, address) entries the `--set`/`--update` matches on an outcome's way leave.
    In the nat table's PREROUTING the packet's destination is still the Service's address."""
    state = SimpleNamespace(src=src, dst=WEB.ip)
    out = []
    for step in outcome.path:
        match = step.rule.match("recent") if step.rule is not None else None
        if match is not None and ("--set" in match.args or "--update" in match.args):
            out.append(semantics.recent_entry(match.args, state))
    return tuple(out)


def _after(sandbox, ruleset, entries: tuple[tuple[str, str], ...], who: str):
    """The ruleset as a later connection from `who` meets it: each recent lookup decided by
    `entries` (within its timeout), the lists' effects of this connection itself left out."""
    state = SimpleNamespace(src=sandbox.caller_ip(who), dst=WEB.ip)
    lines = []
    for table in ruleset.tables.values():
        lines.append(f"*{table.name}")
        lines += [f":{c.name} {c.policy if c.builtin else '-'} [0:0]"
                  for c in table.chains.values()]
        for chain in table.chains.values():
            for rule in chain.rules:
                words = spec_words(rule)
                span = _recent_span(words)
                if span is not None:
                    match = rule.match("recent")
                    args = list(match.args)
                    if "--remove" in args:
                        raise Undecidable(f"{chain.name}: a `-m recent --remove` rule; the "
                                          "grader follows --set and --rcheck only")
                    if "--rcheck" in args or "--update" in args:
                        hits = entries.count(semantics.recent_entry(args, state))
                        needed = int(args[args.index("--hitcount") + 1]) \
                            if "--hitcount" in args else 1
                        inverted = any(args[i] == "!" and args[i + 1] in ("--rcheck", "--update")
                                       for i in range(len(args) - 1))
                        if (hits >= needed) == inverted:
                            continue  # this lookup cannot match: the rule is as good as absent
                    words = words[:span[0]] + words[span[1]:]
                lines.append(shlex.join(["-A", chain.name, *words]))
        lines.append("COMMIT")
    return parse("\n".join(lines) + "\n", "<the rules as the lists leave them>", check=False)


def _static_rounds(sandbox) -> Rounds:
    rules = sandbox.rules
    histories: list[tuple[tuple[str, ...], Fraction]] = [((), Fraction(1))]
    entries_of: dict[tuple[str, ...], tuple] = {(): ()}
    for who in ROUND:
        grown = []
        for pods, weight in histories:
            entries = entries_of[pods]
            ruleset = rules if not entries else _after(sandbox, rules, entries, who)
            for o in _trace(sandbox, ruleset, who).outcomes:
                if not o.probability:
                    continue
                pod = (sandbox.pod_serves(o.dnat[0], o.dnat[1], WEB.proto) or
                       f"{o.dnat[0]}:{o.dnat[1]}") if o.dnat and o.verdict == "ACCEPT" \
                    else NO_ANSWER
                key = pods + (pod,)
                grown.append((key, weight * o.probability))
                entries_of[key] = entries + _entries_set(o, sandbox.caller_ip(who))
        merged: dict[tuple[str, ...], Fraction] = {}
        for key, w in grown:
            merged[key] = merged.get(key, Fraction(0)) + w
        histories = list(merged.items())
    return Rounds(tuple(histories), "exact, from the rule tracer over your rules")


# -- what checks read ---------------------------------------------------------------------------

def lookups(sandbox) -> list:
    """The node's rules (after the submission) that look a caller up in a list."""
    ruleset = sandbox.rules_now()
    found = []
    for rule in ruleset.rules("nat"):
        match = rule.match("recent")
        if match is not None and ("--rcheck" in match.args or "--update" in match.args):
            found.append(rule)
    return found


def pods_of(sandbox) -> list[str]:
    return sorted(sandbox.endpoints(WEB).values())


def share(x) -> str:
    """A share (Fraction or float) as a percentage."""
    return f"{float(x) * 100:.1f} %"
