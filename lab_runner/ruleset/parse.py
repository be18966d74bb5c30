"""Parse iptables-save (-c or not) and iptables-restore text into tables, chains and rules."""

from __future__ import annotations

import copy
import gc
import re
import shlex
from dataclasses import dataclass, field

from lab_runner.errors import LabError
from lab_runner.ruleset.counters import Counters, Delta, Snapshot, delta  # noqa: F401 (re-exported)
from lab_runner.ruleset.tokens import Match, read_parts

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
# Targets that are extensions or verdicts, not chains: a jump to anything else needs a chain.
TARGET_EXTENSIONS = frozenset({
    "ACCEPT", "DROP", "RETURN", "REJECT", "QUEUE", "NFQUEUE", "MARK", "CONNMARK", "DNAT", "SNAT",
    "MASQUERADE", "REDIRECT", "NETMAP", "LOG", "NFLOG", "ULOG", "TRACE", "CT", "NOTRACK", "TCPMSS",
    "CLASSIFY", "TPROXY", "AUDIT", "CHECKSUM", "DSCP", "TOS", "TTL", "HL", "SECMARK",
    "CONNSECMARK", "SET", "IDLETIMER", "LED", "HMARK", "TEE", "SYNPROXY", "NFLOG",
})
_COUNTERS = re.compile(r"^\[(\d+):(\d+)\]$")
_ZERO = Counters(0, 0)
# A word of a line whose only quoting is double quotes, without escapes: unquoted runs and
# "…" runs, glued together (`a"b c"d` is one word, `ab cd`); shlex's whitespace separates words.
_DQ_WORD = re.compile(r'(?:[^ \t\r\n"]+|"[^"]*")+')


class RulesetSyntaxError(LabError):
    """A ruleset document that is not valid iptables-restore / iptables-save text."""

    def __init__(self, source: str, line_no: int, line: str, problem: str):
        self.source = source
        self.line_no = line_no
        self.line = line
        self.problem = problem
        super().__init__(f"{source}, line {line_no}: {problem}\n    {line}")


# Flags whose presence sends a rule's parts to be read at once, because its target, goto flag
# or counters cannot be told from a plain "-j TARGET" (read_parts decides those cases).
_READ_AT_ONCE = frozenset({"--jump", "-g", "--goto", "-c", "--set-counters"})


class Rule:
    """One rule as written: its text, shlex tokens and the parts iptables distinguishes.

    `target`, `goto` and `counters` are known from the start. The tokens and the other parts
    (`basic`, `matches`, `target_args`) may be read from the text the first time one is asked
    for, so a read-back of 100,000s of rules where only counters are wanted never pays for them;
    a problem found then is a RulesetSyntaxError naming the source and line.
    `parse(check=True)`, the default, reads them during the parse. Rules are values: treat every
    attribute as read-only.
    """

    __slots__ = ("table", "chain", "line_no", "text", "target", "goto", "counters", "_tokens",
                 "_parts", "_reader")

    def __init__(self, table: str, chain: str, line_no: int, text: str,
                 tokens: tuple[str, ...] | None, target: str | None, goto: bool,
                 counters: Counters | None, parts: tuple | None,
                 reader: "_PartsReader | None" = None):
        self.table = table
        self.chain = chain
        self.line_no = line_no
        self.text = text  # the rule without counters, e.g. "-A KUBE-SVC-X -m comment … -j KUBE-SEP-Y"
        self.target = target
        self.goto = goto
        self.counters = counters
        self._tokens = tokens  # None: split(text), when first asked for
        self._parts = parts  # (basic, matches, target_args) once read
        self._reader = reader

    @property
    def tokens(self) -> tuple[str, ...]:
        """The words as iptables-restore splits the rule, `-A` and the chain first."""
        tokens = self._tokens
        if tokens is None:
            tokens = self._tokens = tuple(split(self.text))
        return tokens

    def _read(self) -> tuple:
        parts = self._parts
        if parts is None:
            assert self._reader is not None
            parts = self._parts = self._reader.parts(self)
        return parts

    @property
    def basic(self) -> tuple[tuple[str, bool, str], ...]:
        """(s|d|p|i|o|f, inverted, value) of each basic option, in order."""
        return self._read()[0]

    @property
    def matches(self) -> tuple[Match, ...]:
        return self._read()[1]

    @property
    def target_args(self) -> tuple[str, ...]:
        return self._read()[2]

    def option(self, name: str) -> tuple[bool, str] | None:
        """A basic option (s, d, p, i, o or f) as (inverted, value), or None when absent."""
        return next(((inv, val) for key, inv, val in self.basic if key == name), None)

    def match(self, module: str) -> Match | None:
        return next((m for m in self.matches if m.module == module), None)

    @property
    def spec(self) -> str:
        """The rule as written, after `-A CHAIN`."""
        parts = self.text.split(None, 2)
        if parts[:1] == ["-A"] or parts[:1] == ["--append"]:  # then the first token is the same
            return parts[2] if len(parts) > 2 else ""
        return shlex.join(self.tokens[2:])

    def _key(self) -> tuple:  # the parts follow from the tokens, so these decide equality
        return (self.table, self.chain, self.line_no, self.text, self.tokens, self.counters)

    def __eq__(self, other: object) -> bool:
        return self is other or (type(other) is Rule and self._key() == other._key())

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Rule(table={self.table!r}, chain={self.chain!r}, line_no={self.line_no}, "
                f"text={self.text!r}, counters={self.counters!r})")

    def __copy__(self) -> "Rule":
        return self

    def __deepcopy__(self, memo: dict) -> "Rule":  # a value: copies of a ruleset share it
        return self


class _PartsReader:
    """Reads a rule's parts for one document: its source (for errors) and its shared Matches."""

    __slots__ = ("source", "shared")

    def __init__(self, source: str):
        self.source = source
        self.shared: dict = {}  # equal matches share one Match (read_parts)

    def read(self, line_no: int, text: str, tokens: tuple[str, ...]) -> tuple:
        """read_parts of the tokens after `-A CHAIN`, or the RulesetSyntaxError naming the line."""
        try:
            return read_parts(tokens[2:], self.shared)
        except ValueError as exc:
            raise RulesetSyntaxError(self.source, line_no, text, str(exc)) from exc

    def parts(self, rule: Rule) -> tuple:
        basic, matches, target, target_args, goto, _ = self.read(rule.line_no, rule.text,
                                                                 rule.tokens)
        if (target, goto) != (rule.target, rule.goto):  # only a malformed rule gets here
            raise RulesetSyntaxError(self.source, rule.line_no, rule.text,
                                     f"the target reads as {target!r} here but as "
                                     f"{rule.target!r} at first: write one plain -j TARGET")
        return basic, matches, target_args


def quick_target(tokens: list[str] | tuple[str, ...]) -> tuple[str | None] | None:
    """(target,) of a rule whose only target flag is one plain `-j TARGET` or that has none,
    as read_parts would read it; None when read_parts must decide (goto, counters, odd forms)."""
    if not _READ_AT_ONCE.isdisjoint(tokens):
        return None
    jumps = tokens.count("-j")
    if jumps == 0:
        return (None,)
    if jumps > 1:
        return None
    at = tokens.index("-j")
    # Only a flag ("!", -s, -m, …) can swallow the word after it, so after any other word this
    # "-j" is the jump read_parts finds.
    if at < 2 or at + 1 >= len(tokens) or tokens[at - 1][:1] in ("-", "!"):
        return None
    return (tokens[at + 1],)


@dataclass
class Chain:
    """A chain: built-in (with a policy and its counters) or user-defined (policy None)."""

    name: str
    builtin: bool
    policy: str | None = None
    counters: Counters | None = None
    rules: list[Rule] = field(default_factory=list)
    line_no: int | None = None

    def rule(self, number: int) -> Rule:
        """The rule at 1-based position `number`, as `iptables -L --line-numbers` counts."""
        if not 1 <= number <= len(self.rules):
            raise IndexError(f"chain {self.name} has {len(self.rules)} rule(s), not a rule {number}")
        return self.rules[number - 1]


@dataclass
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)

    @classmethod
    def empty(cls, name: str) -> "Table":
        table = cls(name)
        for chain in BUILTIN_CHAINS[name]:
            table.chains[chain] = Chain(chain, True, "ACCEPT")
        return table


@dataclass
class Ruleset:
    """Tables by name, each with its chains in declaration order."""

    tables: dict[str, Table] = field(default_factory=dict)
    source: str = "<ruleset>"

    def table(self, name: str) -> Table:
        if name not in self.tables:
            raise KeyError(f"{self.source} has no table {name!r}; it has: "
                           f"{', '.join(self.tables) or '(none)'}")
        return self.tables[name]

    def chain(self, table: str, name: str) -> Chain:
        chains = self.table(table).chains
        if name not in chains:
            raise KeyError(f"{self.source} has no chain {name!r} in table {table}; it has: "
                           f"{', '.join(chains)}")
        return chains[name]

    def has_chain(self, table: str, name: str) -> bool:
        return table in self.tables and name in self.tables[table].chains

    def counters(self, table: str, chain: str, number: int | None = None) -> Counters:
        """A rule's counters (1-based `number`), or a built-in chain's policy counters."""
        found = self.chain(table, chain)
        value = found.counters if number is None else found.rule(number).counters
        if value is None:
            raise ValueError(f"{self.source} has no counters for {table} {chain}"
                             f"{'' if number is None else f' rule {number}'}: "
                             "take it with `iptables-save -c`")
        return value

    def rules(self, table: str | None = None):
        """Every rule, table by table and chain by chain."""
        for t in self.tables.values():
            if table is None or t.name == table:
                for chain in t.chains.values():
                    yield from chain.rules


def split(body: str) -> list[str]:
    """shlex.split(body), the way iptables-restore splits a line; ValueError on unbalanced quotes.

    shlex reads character by character and is most of the parse time, so the common lines take
    a faster way to the same words: no quote or escape at all, str.split; double quotes only
    (kube-proxy's comments), str.split around whole quoted words, or a regular expression.
    """
    if "'" in body or "\\" in body:
        return shlex.split(body)
    if '"' not in body:
        return body.split()
    if body.count('"') % 2:
        return shlex.split(body)  # raises shlex's own "No closing quotation"
    # Most often each quoted run is a whole word (`--comment "… cluster IP" -m …`): between the
    # quotes one word, around them str.split. Otherwise (a quote inside a word) the expression.
    pieces = body.split('"')
    outside = pieces[0::2]
    if all(piece[-1:].isspace() for piece in outside[1:-1] + outside[:1] if piece) and \
            all(piece[:1].isspace() for piece in outside[1:] if piece) and \
            all(outside[1:-1]):
        words = outside[0].split()
        for quoted, after in zip(pieces[1::2], outside[1:]):
            words.append(quoted)
            words += after.split()
        return words
    return [word.replace('"', "") if '"' in word else word for word in _DQ_WORD.findall(body)]


def parse(text: str, source: str = "<ruleset>", *, base: Ruleset | None = None,
          check: bool = True) -> Ruleset:
    """Parse a whole document; raises RulesetSyntaxError naming the first bad line.

    With `base`, the document is applied on top of a copy of it, as `iptables-restore --noflush`
    applies it to a node: a declared chain is flushed, other chains and their rules are kept.
    check=False is for text iptables-save or the kit's renderer wrote: the document's structure
    (tables, chains, jump targets, counters) is still checked, but each rule's matches and options
    are read on first use (see Rule), which makes reading back a big node's counters several
    times faster.
    """
    # The cyclic garbage collector waits until the document is read: as 100,000s of rules pile
    # up, its full collections would walk all of them again and again (10,000 services x 10:
    # ~15 % of the parse, net of the walk it makes once it is back on).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Parser(source, base, check).run(text)
    finally:
        if collecting:
            gc.enable()


class _Parser:
    """Applies the document line by line, as iptables-restore would to empty tables."""

    def __init__(self, source: str, base: Ruleset | None = None, check: bool = True):
        self.ruleset = Ruleset(copy.deepcopy(base.tables) if base else {}, source)
        self.check = check
        self.declared: dict[tuple[str, str], int] = {}  # chains declared by this document
        self.table: Table | None = None
        self.opened: tuple[int, str] = (0, "")
        self.pending: list[Rule] = []  # this table's rules, checked for jump targets at COMMIT
        # Chains this document flushed that had rules before it: iptables-restore (nf_tables)
        # still counts the flushed rules when it numbers positions, so numbers there are refused.
        self.flushed: set[tuple[str, str]] = set()
        self.reader = _PartsReader(source)

    def fail(self, line_no: int, line: str, problem: str) -> RulesetSyntaxError:
        return RulesetSyntaxError(self.ruleset.source, line_no, line, problem)

    def run(self, text: str) -> Ruleset:
        # The loop reads the commonest line itself, `[packets:bytes] -A CHAIN …` for a declared
        # chain: it is most of a document, and each call saved counts. Every other line goes to
        # dispatch(), which reads it or refuses it with the reason.
        chains: dict[str, Chain] | None = None  # the open table's
        zero, read_counters = _ZERO, _COUNTERS.match
        for line_no, line in enumerate(text.split("\n"), start=1):  # as iptables-restore counts
            line = line.strip()
            if not line or line[0] == "#":
                continue
            if chains is not None and (line[0] == "-" or line[0] == "["):
                body, counters = line, None
                if line[0] == "[":
                    head, _, body = line.partition(" ")
                    if head == "[0:0]":
                        counters = zero
                    elif found := read_counters(head):
                        counters = Counters(int(found[1]), int(found[2]))
                    else:
                        body = ""  # dispatch() names the bad counters
                if body.startswith("-A "):
                    if '"' not in body and "'" not in body and "\\" not in body:
                        tokens = body.split()  # split(), without its call: no quoting to undo
                    else:
                        try:
                            tokens = split(body)
                        except ValueError:
                            tokens = []  # dispatch() names the unbalanced quotes
                    chain = chains.get(tokens[1]) if len(tokens) > 1 and tokens[0] == "-A" \
                        else None
                    if chain is not None:
                        chain.rules.append(self.rule(line_no, body, tokens, counters))
                        continue
            self.dispatch(line_no, line)
            chains = self.table.chains if self.table is not None else None
        if self.table is not None:
            no, line = self.opened
            raise self.fail(no, line, f"table {self.table.name!r} is never committed: "
                                      "missing COMMIT at the end of the table")
        return self.ruleset

    def dispatch(self, line_no: int, line: str) -> None:
        if line.startswith("*"):
            self.open_table(line_no, line)
        elif line == "COMMIT":
            self.commit(line_no, line)
        elif self.table is None:
            raise self.fail(line_no, line, "this line comes before any `*table` line "
                                           "(start the table with *filter, *nat, …)")
        elif line.startswith(":"):
            self.declare(line_no, line)
        else:
            self.command(line_no, line)

    def open_table(self, line_no: int, line: str) -> None:
        name = line[1:].strip()
        if self.table is not None:
            raise self.fail(line_no, line, f"table {self.table.name!r} (line {self.opened[0]}) "
                                           "is not committed yet: missing COMMIT before this line")
        if name not in BUILTIN_CHAINS:
            raise self.fail(line_no, line, f"unknown table {name!r}; the tables are: "
                                           f"{', '.join(BUILTIN_CHAINS)}")
        self.table = self.ruleset.tables.setdefault(name, Table.empty(name))
        self.opened = (line_no, line)

    def commit(self, line_no: int, line: str) -> None:
        if self.table is None:
            raise self.fail(line_no, line, "COMMIT without an open table")
        for rule in self.pending:
            target = rule.target
            if target and target not in TARGET_EXTENSIONS and target not in self.table.chains:
                raise self.fail(rule.line_no, rule.text,
                                f"{'goes' if rule.goto else 'jumps'} to {target!r}, which is neither "
                                f"a chain of table {self.table.name} nor a known target")
        self.pending.clear()
        self.table = None

    def declare(self, line_no: int, line: str) -> None:
        parts = line[1:].split()
        if not 2 <= len(parts) <= 3:
            raise self.fail(line_no, line, "a chain line is `:NAME POLICY [packets:bytes]`")
        name, policy = parts[0], parts[1]
        counters = self.counters(line_no, line, parts[2]) if len(parts) == 3 else None
        assert self.table is not None
        builtin = name in BUILTIN_CHAINS[self.table.name]
        if builtin:
            if policy not in ("ACCEPT", "DROP"):
                raise self.fail(line_no, line, f"bad policy {policy!r} for built-in chain {name}: "
                                               "use ACCEPT or DROP")
            chain = self.table.chains[name]
            chain.policy, chain.counters, chain.line_no = policy, counters, line_no
            return
        if policy != "-":
            raise self.fail(line_no, line, f"user-defined chain {name} cannot have a policy "
                                           f"({policy!r}): write `-`")
        key = (self.table.name, name)
        if key in self.declared:
            raise self.fail(line_no, line, f"chain {name} is declared twice in table "
                                           f"{self.table.name} (first at line {self.declared[key]})")
        self.declared[key] = line_no
        if name in self.table.chains and self.table.chains[name].rules:
            self.flushed.add(key)
        self.table.chains[name] = Chain(name, False, None, counters, [], line_no)

    def counters(self, line_no: int, line: str, text: str) -> Counters:
        if text == "[0:0]":  # every chain line of a document to restore: one shared (frozen) zero
            return _ZERO
        found = _COUNTERS.match(text)
        if not found:
            raise self.fail(line_no, line, f"bad counters {text!r}: expected [packets:bytes]")
        return Counters(int(found.group(1)), int(found.group(2)))

    def command(self, line_no: int, line: str) -> None:
        counters = None
        body = line
        if line.startswith("["):
            head, _, body = line.partition(" ")
            counters = self.counters(line_no, line, head)
        try:
            tokens = split(body)
        except ValueError as exc:
            raise self.fail(line_no, line, f"unbalanced quotes ({exc})") from exc
        if not tokens:
            raise self.fail(line_no, line, "counters without a rule")
        verb = tokens[0]
        handler = _VERBS.get(verb)
        if handler is None:
            raise self.fail(line_no, line, f"unknown command {verb!r}: expected -A, -I, -D, -R, -N, "
                                           "-X, -F, -Z, -P, a :CHAIN line, a *table line or COMMIT")
        handler(self, line_no, body, tokens, counters)

    def existing_chain(self, line_no: int, line: str, tokens: list[str]) -> Chain:
        assert self.table is not None
        if len(tokens) < 2:
            raise self.fail(line_no, line, f"{tokens[0]} needs a chain name")
        name = tokens[1]
        if name not in self.table.chains:
            raise self.fail(line_no, line, f"chain {name} is not declared in table "
                                           f"{self.table.name}: add `:{name} - [0:0]` before "
                                           "its rules")
        return self.table.chains[name]

    def rule(self, line_no: int, text: str, tokens: list[str], counters: Counters | None) -> Rule:
        assert self.table is not None
        frozen = tuple(tokens)
        quick = None if self.check else quick_target(frozen)
        if quick is None:  # read now: a bad rule fails the parse; -c and goto are known
            basic, matches, target, target_args, goto, own = self.reader.read(line_no, text, frozen)
            rule = Rule(self.table.name, tokens[1], line_no, text, frozen, target, goto,
                        own or counters, (basic, matches, target_args), self.reader)
        else:  # an appended rule's words are split again if asked for: 100,000s kept fill memory
            kept = None if tokens[0] == "-A" else frozen  # -I N, -R N: not the text's words
            rule = Rule(self.table.name, tokens[1], line_no, text, kept, quick[0], False,
                        counters, None, self.reader)
        self.pending.append(rule)
        return rule

    def append(self, line_no, line, tokens, counters) -> None:
        chain = self.existing_chain(line_no, line, tokens)
        chain.rules.append(self.rule(line_no, line, tokens, counters))

    def insert(self, line_no, line, tokens, counters) -> None:
        chain = self.existing_chain(line_no, line, tokens)
        position = 1
        if len(tokens) > 2 and tokens[2].isdigit():
            position = int(tokens[2])
            tokens = tokens[:2] + tokens[3:]
            if position > 1:
                self._refuse_flushed_numbering(line_no, line, chain, position)
            if not 1 <= position <= len(chain.rules) + 1:
                raise self.fail(line_no, line, f"cannot insert at position {position}: chain "
                                               f"{chain.name} has {len(chain.rules)} rule(s)")
        chain.rules.insert(position - 1, self.rule(line_no, line, tokens, counters))

    def new_chain(self, line_no, line, tokens, counters) -> None:
        if len(tokens) != 2:
            raise self.fail(line_no, line, "-N takes exactly one chain name")
        self.declare(line_no, f":{tokens[1]} -")

    def delete_chain(self, line_no, line, tokens, counters) -> None:
        chain = self.existing_chain(line_no, line, tokens)
        if chain.builtin:
            raise self.fail(line_no, line, f"cannot delete built-in chain {chain.name}")
        assert self.table is not None
        # The kernel refuses to delete a chain that still has rules or that a rule jumps to.
        if chain.rules:
            raise self.fail(line_no, line, f"cannot delete chain {chain.name}: it still has "
                                           f"{len(chain.rules)} rule(s) (flush it first)")
        users = [f"{c.name}" for c in self.table.chains.values()
                 for r in c.rules if r.target == chain.name]
        if users:
            raise self.fail(line_no, line, f"cannot delete chain {chain.name}: rules in "
                                           f"{', '.join(sorted(set(users)))} still jump to it")
        del self.table.chains[chain.name]

    def _numbered(self, line_no, line, chain: Chain, text: str) -> int:
        number = int(text)
        self._refuse_flushed_numbering(line_no, line, chain, number)
        if not 1 <= number <= len(chain.rules):
            raise self.fail(line_no, line, f"chain {chain.name} has no rule {number} (it has "
                                           f"{len(chain.rules)})")
        return number - 1

    def _refuse_flushed_numbering(self, line_no, line, chain: Chain, number: int | None) -> None:
        """Refuse a rule number (None: a -D by rule) in a chain this document flushed."""
        assert self.table is not None
        if (self.table.name, chain.name) in self.flushed:
            what = "deleting by rule" if number is None else f"rule number {number}"
            raise self.fail(line_no, line, f"{what} in chain {chain.name}, which this file "
                                           "flushed: iptables-restore (nf_tables) still counts "
                                           "the flushed rules there and would act on another "
                                           "rule; write the chain's rules in order instead")

    def delete_rule(self, line_no, line, tokens, counters) -> None:
        """-D CHAIN N, or -D CHAIN <rule>: the first rule that means the same (as iptables does)."""
        from lab_runner.ruleset.compare import normalize

        chain = self.existing_chain(line_no, line, tokens)
        if len(tokens) == 3 and tokens[2].isdigit():
            del chain.rules[self._numbered(line_no, line, chain, tokens[2])]
            return
        self._refuse_flushed_numbering(line_no, line, chain, None)  # it may find a flushed rule
        wanted = normalize(self.rule(line_no, line, tokens, counters))
        self.pending.pop()  # the pattern is not a rule of the table
        for i, rule in enumerate(chain.rules):
            if normalize(rule) == wanted:
                del chain.rules[i]
                return
        raise self.fail(line_no, line, f"no such rule in chain {chain.name} to delete")

    def replace_rule(self, line_no, line, tokens, counters) -> None:
        chain = self.existing_chain(line_no, line, tokens)
        if len(tokens) < 3 or not tokens[2].isdigit():
            raise self.fail(line_no, line, "-R needs a chain, a rule number and the new rule")
        index = self._numbered(line_no, line, chain, tokens[2])
        if chain.rules[index]._reader is self.reader:  # added by this document, not before it
            raise self.fail(line_no, line, f"replaces rule {tokens[2]} of {chain.name}, which this "
                                           f"file added (line {chain.rules[index].line_no}); "
                                           "iptables-restore (nf_tables) crashes on that: write "
                                           "the rule as it should be where it is added")
        chain.rules[index] = self.rule(line_no, line, tokens[:2] + tokens[3:], counters)

    def zero(self, line_no, line, tokens, counters) -> None:
        if len(tokens) > 1:
            self.existing_chain(line_no, line, tokens)  # counters are not modelled further

    def policy(self, line_no, line, tokens, counters) -> None:
        chain = self.existing_chain(line_no, line, tokens)
        if not chain.builtin or len(tokens) != 3 or tokens[2] not in ("ACCEPT", "DROP"):
            raise self.fail(line_no, line, "-P takes a built-in chain and ACCEPT or DROP")
        chain.policy = tokens[2]

    def flush(self, line_no, line, tokens, counters) -> None:
        assert self.table is not None
        chains = [self.existing_chain(line_no, line, tokens)] if len(tokens) > 1 \
            else list(self.table.chains.values())
        for chain in chains:
            if chain.rules:
                self.flushed.add((self.table.name, chain.name))
            chain.rules.clear()


_VERBS = {"-A": _Parser.append, "--append": _Parser.append, "-I": _Parser.insert,
          "--insert": _Parser.insert, "-N": _Parser.new_chain, "--new-chain": _Parser.new_chain,
          "-X": _Parser.delete_chain, "--delete-chain": _Parser.delete_chain,
          "-F": _Parser.flush, "--flush": _Parser.flush, "-D": _Parser.delete_rule,
          "--delete": _Parser.delete_rule, "-R": _Parser.replace_rule,
          "--replace": _Parser.replace_rule, "-Z": _Parser.zero, "--zero": _Parser.zero,
          "-P": _Parser.policy, "--policy": _Parser.policy}
