"""Read an nftables ruleset as text (`nft -f` commands or `nft list ruleset` output) into data.

Two spellings of one thing are read into one model: the kit's render (`add table/chain/rule/set/
map/element …`, one command a line) and the kernel's listing (`table ip t { chain c { type nat
hook prerouting priority dstnat; policy accept; … } }`, with `counter packets N bytes M`,
comments and `# handle N` from `nft -a`). The model is nft_model's: tables, chains, rules as
statements, sets and maps. A statement this reader does not model stays in the rule as
`Unmodelled` and is listed in `NftRuleset.unmodelled` (never silently dropped). Malformed
text raises NftSyntaxError naming the line.
"""

from __future__ import annotations

import ipaddress
import re

from lab_runner.errors import LabError
from lab_runner.ruleset.nft_model import (Chain, Element, Lookup, MarkSet, Match, NamedSet, Nat,
                                          NftRuleset, NoOp, Rule, SetUpdate, Table, Unmodelled,
                                          Verdict)

# Named base-chain priorities of the ip/inet families (nft(8), "CHAINS").
PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
              "srcnat": 100}
# nft takes these two names only at their own hook (ip family; "dstnat" at output: refused).
NAMED_PRIORITY_HOOK = {"dstnat": "prerouting", "srcnat": "postrouting"}
CONNTRACK_PRIORITY = -200  # NF_IP_PRI_CONNTRACK: a nat chain must come after it
# The hooks of a nat chain each NAT statement may run at (the kernel's validation).
NAT_HOOKS = {"dnat": ("prerouting", "output"), "snat": ("postrouting", "input"),
             "masquerade": ("postrouting",)}
# Selectors a match or lookup may read; each names what the tracer compares.
SELECTORS = {("ip", "saddr"), ("ip", "daddr"), ("ip", "protocol"), ("meta", "l4proto"),
             ("meta", "mark"), ("meta", "iifname"), ("meta", "oifname"), ("th", "dport"),
             ("th", "sport"), ("tcp", "dport"), ("tcp", "sport"), ("udp", "dport"),
             ("udp", "sport"), ("sctp", "dport"), ("sctp", "sport"), ("ct", "state")}
SHORT_SELECTORS = {"mark": "meta mark", "iifname": "meta iifname", "oifname": "meta oifname",
                   "l4proto": "meta l4proto"}
VERDICTS = ("accept", "drop", "reject", "return", "continue", "jump", "goto")
_TOKEN = re.compile(r'"[^"]*"|!=|==|[{};,]|[^\s{};,"]+')
# A line's `#` comment (outside quotes); `nft -a` writes `# handle N` there.
_COMMENT = re.compile(r'^((?:[^"#]|"[^"]*")*)#(.*)$')
_HANDLE = re.compile(r"\s*handle\s+(\d+)\s*$")


class NftSyntaxError(LabError):
    """Text that is not an nftables ruleset this reader understands; names the line."""

    def __init__(self, line_no: int, line: str, problem: str):
        self.line_no = line_no
        self.line = line
        self.problem = problem
        super().__init__(f"nftables ruleset, line {line_no}: {problem}\n    {line.strip()}")


def tokens(text: str) -> list[str]:
    """Words of nft syntax: quoted strings whole; braces, semicolons and commas alone."""
    return _TOKEN.findall(text)


def unquote(word: str) -> str:
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word


def parse_nft(text: str) -> NftRuleset:
    """The ruleset `text` describes, in either form (they may be mixed, as in `nft -f`)."""
    return _Reader(text.splitlines()).read()


class _Reader:
    """Reads lines one by one; `stack` holds the open blocks of the listing form."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        self.ruleset = NftRuleset()
        self.stack: list = []  # Table, then Chain or NamedSet inside it
        self.i = 0

    def fail(self, line_no: int, problem: str):
        raise NftSyntaxError(line_no, self.lines[line_no - 1], problem)

    def read(self) -> NftRuleset:
        while self.i < len(self.lines):
            self.i += 1
            line_no, raw = self.i, self.lines[self.i - 1]
            text, handle = _uncomment(raw)
            if not text or text.startswith("#"):
                continue
            words = tokens(text)
            if words.count("{") > words.count("}") and not words[-1] == "{":
                words, text = self.join_until_balanced(words, text)
            if not self.stack:
                self.top_level(line_no, words, text)
            elif isinstance(self.stack[-1], Table):
                self.in_table(line_no, words)
            elif isinstance(self.stack[-1], Chain):
                self.in_chain(line_no, words, text, handle)
            else:
                self.in_set(line_no, words)
        if self.stack:
            self.fail(len(self.lines) or 1, f"end of text inside an open block "
                                            f"({type(self.stack[-1]).__name__.lower()} "
                                            f"{self.stack[-1].name}): a '}}' is missing")
        for table in self.ruleset.tables.values():
            _refuse_misplaced_nat(self, table)
        return self.ruleset

    def join_until_balanced(self, words: list[str], text: str) -> tuple[list[str], str]:
        """`elements = { a,` continued on the next lines, as the kernel wraps long sets."""
        start = self.i
        while words.count("{") > words.count("}"):
            if self.i >= len(self.lines):
                self.fail(start, "a '{' is never closed")
            self.i += 1
            text += " " + _uncomment(self.lines[self.i - 1])[0]
            words = tokens(text)
        return words, text

    # -- the listing form --------------------------------------------------------------------
    def top_level(self, line_no: int, words: list[str], text: str) -> None:
        if words[0] == "table" and len(words) == 4 and words[3] == "{":
            self.stack.append(self.ensure_table(line_no, words[1], words[2]))
        elif words[0] in ("add", "create", "insert", "delete", "destroy", "flush"):
            self.command(line_no, words, text)
        else:
            self.fail(line_no, f"expected `table FAMILY NAME {{` or a command (add, insert, "
                               f"delete, flush …), found {words[0]!r}")

    def in_table(self, line_no: int, words: list[str]) -> None:
        table = self.stack[-1]
        if words == ["}"]:
            self.stack.pop()
        elif words[0] == "comment" and len(words) == 2:
            table.comment = unquote(words[1])
        elif words[0] == "flags":
            pass  # table flags (dormant, owner) do not change what a packet meets
        elif words[0] == "chain" and len(words) == 3 and words[2] == "{":
            self.stack.append(self.ensure_chain(table, unquote(words[1]), line_no))
        elif words[0] in ("set", "map") and len(words) == 3 and words[2] == "{":
            self.stack.append(self.ensure_set(table, words[0], unquote(words[1]), line_no))
        elif len(words) >= 3 and words[-1] == "{":
            # flowtable, ct helper, counter, quota … objects: named, skipped whole.
            self.ruleset.unmodelled.append((line_no, f"{words[0]} {words[1]} (an nftables "
                                                     f"{words[0]} object)"))
            self.skip_block(line_no)
        else:
            self.fail(line_no, f"expected a chain, set or map of table {table.name}")

    def skip_block(self, line_no: int) -> None:
        depth = 1
        while depth:
            if self.i >= len(self.lines):
                self.fail(line_no, "a '{' is never closed")
            self.i += 1
            words = tokens(_uncomment(self.lines[self.i - 1])[0])
            depth += words.count("{") - words.count("}")

    def in_chain(self, line_no: int, words: list[str], text: str, handle: int | None) -> None:
        chain = self.stack[-1]
        if words == ["}"]:
            self.stack.pop()
        elif words[0] in ("type", "policy"):
            self.chain_spec(line_no, chain, words)
        elif words[0] == "comment" and len(words) == 2:
            chain.comment = unquote(words[1])
        else:
            table = self.stack[-2]
            chain.rules.append(self.rule(line_no, table, chain, text, words, handle))

    def in_set(self, line_no: int, words: list[str]) -> None:
        named = self.stack[-1]
        if words == ["}"]:
            self.stack.pop()
        else:
            self.set_spec(line_no, named, words)

    # -- the command form --------------------------------------------------------------------
    def command(self, line_no: int, words: list[str], text: str) -> None:
        verb, kind = words[0], words[1] if len(words) > 1 else ""
        if kind == "ruleset" and verb in ("flush", "delete"):
            self.ruleset.tables.clear()
            return
        if len(words) < 4:
            self.fail(line_no, f"`{verb} {kind}` needs a family and a table name")
        family, table_name = words[2], unquote(words[3])
        if kind == "table":
            self.table_command(line_no, verb, family, table_name, words[4:])
            return
        table = self.ruleset.tables.get((family, table_name))
        if table is None:
            self.fail(line_no, f"table {family} {table_name} does not exist here")
        if len(words) < 5:
            self.fail(line_no, f"`{verb} {kind}` needs the {kind}'s name")
        name, rest = unquote(words[4]), words[5:]
        if kind == "chain":
            self.chain_command(line_no, verb, table, name, rest)
        elif kind == "rule" and verb in ("add", "insert"):
            chain = table.chains.get(name)
            if chain is None:
                self.fail(line_no, f"rule for chain {name}, which is not declared before it")
            body = re.match(r"\s*\S+\s+rule\s+\S+\s+\S+\s+\S+\s*(.*)$", text).group(1)
            rule = self.rule(line_no, table, chain, body, words[5:], None)
            chain.rules.insert(0 if verb == "insert" else len(chain.rules), rule)
        elif kind in ("set", "map"):
            self.set_command(line_no, verb, table, kind, name, rest)
        elif kind == "element" and verb in ("add", "create", "delete", "destroy"):
            named = table.sets.get(name)
            if named is None:
                self.fail(line_no, f"elements for {name}, a set or map not declared before them")
            given = self.elements(line_no, self.braced(line_no, rest))
            keys = {element.key for element in given}
            if verb in ("add", "create"):
                _refuse_conflicts(self, line_no, named.elements, given)
                if "interval" not in named.flags and any(
                        "/" in part or re.fullmatch(r"[\w.:]+-[\w.:]+", part)
                        for e in given for part in e.key):
                    self.fail(line_no, f"a prefix or range in {name}, which has no `flags "
                                       "interval` (nft refuses it)")
            if verb in ("delete", "destroy"):  # kube-proxy's partial syncs delete elements
                named.elements = [e for e in named.elements if e.key not in keys]
            else:  # `add` of a key already there keeps the old element, as the kernel does
                had = {element.key for element in named.elements}
                named.elements += [e for e in given if e.key not in had]
        else:
            self.fail(line_no, f"`{verb} {kind}` is not a command this reader models")

    def set_command(self, line_no: int, verb: str, table: Table, kind: str, name: str,
                    rest: list[str]) -> None:
        if verb in ("add", "create"):
            named = self.ensure_set(table, kind, name, line_no)
            for part in _split_specs(self.braced(line_no, rest, optional=True)):
                self.set_spec(line_no, named, part)
        elif verb == "flush" and name in table.sets:
            table.sets[name].elements.clear()
        elif verb in ("delete", "destroy"):
            table.sets.pop(name, None)
        else:
            self.fail(line_no, f"`{verb} {kind}` of a {kind} that does not exist")

    def table_command(self, line_no: int, verb: str, family: str, name: str,
                      rest: list[str]) -> None:
        if verb in ("add", "create"):
            table = self.ensure_table(line_no, family, name)
            for part in _split_specs(self.braced(line_no, rest, optional=True)):
                if part[0] == "comment" and len(part) == 2:
                    table.comment = unquote(part[1])
                elif part[0] != "flags":
                    self.fail(line_no, f"table option {part[0]!r} is not one this reader knows")
        elif verb in ("delete", "destroy"):
            self.ruleset.tables.pop((family, name), None)
        elif verb == "flush" and (family, name) in self.ruleset.tables:
            table = self.ruleset.tables[(family, name)]
            for chain in table.chains.values():
                chain.rules.clear()
            for named in table.sets.values():
                named.elements.clear()

    def chain_command(self, line_no: int, verb: str, table: Table, name: str,
                      rest: list[str]) -> None:
        if verb in ("add", "create"):
            chain = self.ensure_chain(table, name, line_no)
            self.chain_spec(line_no, chain, self.braced(line_no, rest, optional=True))
        elif verb == "flush" and name in table.chains:
            table.chains[name].rules.clear()
        elif verb in ("delete", "destroy"):
            table.chains.pop(name, None)
        else:
            self.fail(line_no, f"`{verb} chain` of a chain that does not exist")

    def braced(self, line_no: int, words: list[str], optional: bool = False) -> list[str]:
        """The words between a command's outer braces."""
        if not words and optional:
            return []
        if not words or words[0] != "{" or words[-1] != "}":
            self.fail(line_no, "expected `{ … }` here")
        return words[1:-1]

    # -- objects ----------------------------------------------------------------------------
    def ensure_table(self, line_no: int, family: str, name: str) -> Table:
        if family not in ("ip", "ip6", "inet", "arp", "bridge", "netdev"):
            self.fail(line_no, f"unknown table family {family!r}")
        return self.ruleset.tables.setdefault((family, name), Table(family, unquote(name),
                                                                    line_no))

    @staticmethod
    def ensure_chain(table: Table, name: str, line_no: int) -> Chain:
        return table.chains.setdefault(name, Chain(name, line_no))

    @staticmethod
    def ensure_set(table: Table, kind: str, name: str, line_no: int) -> NamedSet:
        return table.sets.setdefault(name, NamedSet(name, kind, line_no))

    def chain_spec(self, line_no: int, chain: Chain, words: list[str]) -> None:
        """`type T hook H priority P ; policy X ;` (either form); also `comment "…"`. Refused
        as nft refuses them: dstnat/srcnat named at another hook than their own, two policies,
        a nat chain at conntrack's priority or before it."""
        parts = _split_specs(words)
        if sum(part[0] == "policy" for part in parts) > 1:
            self.fail(line_no, "a second policy (nft: \"you cannot set chain policy twice\")")
        for part in parts:
            if part[0] == "type" and len(part) >= 6 and part[2] == "hook" and part[4] == "priority":
                chain.type, chain.hook = part[1], part[3]
                chain.priority = self.priority(line_no, part[5:])
                if NAMED_PRIORITY_HOOK.get(part[5], chain.hook) != chain.hook:
                    self.fail(line_no, f"priority {part[5]} is only for hook "
                                       f"{NAMED_PRIORITY_HOOK[part[5]]} (nft: \"invalid priority "
                                       "expression value in this context\")")
                if chain.type == "nat" and chain.priority <= CONNTRACK_PRIORITY:
                    self.fail(line_no, f"a nat chain at priority {chain.priority}: NAT runs after "
                                       f"conntrack ({CONNTRACK_PRIORITY}), so the kernel refuses "
                                       "it (nft: \"Operation not supported\")")
            elif part[0] == "policy" and len(part) == 2 and part[1] in ("accept", "drop"):
                chain.policy = part[1]
            elif part[0] == "comment" and len(part) == 2:
                chain.comment = unquote(part[1])
            elif part[0] == "device" or part[0] == "devices":
                self.ruleset.unmodelled.append((line_no, f"chain {chain.name}: {' '.join(part)}"))
            else:
                self.fail(line_no, f"chain option {' '.join(part)!r} is not one this reader knows")

    def priority(self, line_no: int, words: list[str]) -> int:
        """`-110`, `dstnat`, `dstnat - 10`, `filter + 5`."""
        try:
            base = PRIORITIES[words[0]] if words[0] in PRIORITIES else int(words[0])
            if len(words) == 1:
                return base
            if len(words) == 3 and words[1] in "+-":
                return base + int(words[2]) * (1 if words[1] == "+" else -1)
        except ValueError:
            pass
        self.fail(line_no, f"priority {' '.join(words)!r}: expected a number or one of "
                           f"{', '.join(PRIORITIES)} (optionally ± a number)")

    def set_spec(self, line_no: int, named: NamedSet, words: list[str]) -> None:
        for part in _split_specs(words):
            head = part[0]
            if head in ("type", "typeof"):
                spec = " ".join(part[1:])
                key, _, data = spec.partition(" : ")
                named.key_type, named.data_type = key, (data or None)
            elif head == "flags":
                named.flags = tuple(w for w in part[1:] if w != ",")
            elif head == "comment" and len(part) == 2:
                named.comment = unquote(part[1])
            elif head == "elements" and len(part) >= 3 and part[1] == "=":
                named.elements += self.elements(line_no, self.braced(line_no, part[2:]))
            elif head in ("timeout", "gc-interval", "size", "policy", "counter", "auto-merge"):
                pass  # how long entries live, how the kernel stores them: not what matches
            else:
                self.fail(line_no, f"{named.kind} option {' '.join(part)!r} is not one this "
                                   "reader knows")

    def elements(self, line_no: int, words: list[str]) -> list[Element]:
        """`a . b . c comment "x" : goto chain , …` (a map) or `a , b/16 , …` (a set)."""
        found = []
        for item in _split_top(words, ","):
            if not item:
                continue
            key, value, j = [], None, 0
            while j < len(item):
                word = item[j]
                if word == ":":
                    value = self.element_value(line_no, item[j + 1:])
                    break
                # An element's options say how it is kept or counted, not what it matches.
                j += {"comment": 2, "timeout": 2, "expires": 2, "counter": 1, "packets": 2,
                      "bytes": 2}.get(word, 0)
                if word not in ("comment", "timeout", "expires", "counter", "packets", "bytes"):
                    key.append(word)
                    j += 1
            if not key or key[1::2] != ["."] * (len(key) // 2) or len(key) % 2 == 0:
                self.fail(line_no, f"element {' '.join(item)!r}: expected KEY or "
                                   "KEY . KEY … (then `: VALUE` in a map)")
            found.append(Element(tuple(key[0::2]), value))
        _refuse_conflicts(self, line_no, found, found)
        return found

    def element_value(self, line_no: int, words: list[str]) -> Verdict | str:
        if words and words[0] in VERDICTS:
            return self.verdict(line_no, words)
        if len(words) != 1:
            self.fail(line_no, f"element value {' '.join(words)!r}: expected one word or a verdict")
        return words[0]

    def verdict(self, line_no: int, words: list[str]) -> Verdict:
        if words[0] in ("jump", "goto"):
            if len(words) != 2:
                self.fail(line_no, f"`{words[0]}` needs exactly one chain name")
            return Verdict(words[0], unquote(words[1]))
        if words[0] == "reject" or len(words) == 1:
            return Verdict(words[0])
        self.fail(line_no, f"unexpected words after {words[0]!r}: {' '.join(words[1:])}")

    # -- rules ------------------------------------------------------------------------------
    def rule(self, line_no: int, table: Table, chain: Chain, text: str, words: list[str],
             handle: int | None) -> Rule:
        statements = _RuleReader(self, line_no, words).read()
        for statement in statements:
            if isinstance(statement, Unmodelled):
                self.ruleset.unmodelled.append((line_no, f"{chain.name}: {statement.text}"))
        return Rule(table.name, chain.name, line_no, text, tuple(statements), handle)


class _RuleReader:
    """One rule's words → statements. Only what kube-proxy writes, and plain neighbours of it,
    is modelled; an unknown statement becomes Unmodelled(the rest of the rule)."""

    def __init__(self, reader: _Reader, line_no: int, words: list[str]):
        self.reader = reader
        self.line_no = line_no
        self.words = words
        self.j = 0

    def fail(self, problem: str):
        self.reader.fail(self.line_no, problem)

    def peek(self, k: int = 0) -> str | None:
        return self.words[self.j + k] if self.j + k < len(self.words) else None

    def take(self, n: int = 1) -> list[str]:
        got = self.words[self.j:self.j + n]
        if len(got) < n:
            self.fail(f"the rule ends early after {' '.join(self.words)!r}")
        self.j += n
        return got

    def read(self) -> list:
        out = []
        while self.j < len(self.words):
            statement = self.statement()
            out.append(statement)
            if isinstance(statement, Unmodelled):
                break
        if not out:
            self.fail("an empty rule")
        return out

    def statement(self):
        word = self.peek()
        if word in VERDICTS:
            if word in ("jump", "goto"):
                return self.reader.verdict(self.line_no, self.take(2))
            self.take()
            if word == "reject" and self.peek() == "with":  # icmp type … or tcp reset: a reject
                while self.peek() not in (None, "comment"):
                    self.take()
            return Verdict(word)
        if word == "comment":
            self.take(2)
            return NoOp("comment")
        if word == "counter":
            self.take()
            if self.peek() == "packets":
                self.take(4)
            return NoOp("counter")
        if word == "log":  # logs, and the packet goes on unchanged
            self.take()
            while self.peek() in ("prefix", "level", "group", "snaplen", "queue-threshold",
                                  "flags"):
                self.take(2)
            return NoOp("log")
        if word in ("dnat", "snat"):
            return self.nat()
        if word == "masquerade":
            self.take()
            while self.peek() in ("fully-random", "random", "persistent", ","):
                self.take()
            return Nat("masquerade")
        if word in ("update", "add") and (self.peek(1) or "").startswith("@"):
            return self.set_update()
        if word == "mark" and self.peek(1) == "set" or word == "meta" and self.peek(1) == "mark" \
                and self.peek(2) == "set":
            return self.mark_set()
        selectors = self.selectors()
        if selectors is None:
            return Unmodelled(" ".join(self.words[self.j:]))
        return self.match_or_lookup(selectors)

    def selectors(self) -> tuple[str, ...] | None:
        """`ip daddr . meta l4proto . th dport`, `numgen random mod 4`, `fib daddr type`."""
        found = []
        while True:
            word = self.peek()
            if word in SHORT_SELECTORS:
                self.take()
                found.append(SHORT_SELECTORS[word])
            elif (word, self.peek(1)) in SELECTORS:
                found.append(" ".join(self.take(2)))
            elif word == "fib" and self.peek(2) == "type" and self.peek(1) in ("daddr", "saddr"):
                found.append(" ".join(self.take(3)))
            elif word == "numgen" and self.peek(1) == "random" and self.peek(2) == "mod":
                found.append(" ".join(self.take(4)))
                if self.peek() == "offset":
                    found[-1] += " " + " ".join(self.take(2))
            elif not found:
                return None
            else:
                self.fail(f"{word!r} after {found[-1]!r} is not a selector this reader knows")
            if self.peek() != ".":
                return tuple(found)
            self.take()

    def match_or_lookup(self, selectors: tuple[str, ...]):
        numgen = None
        if selectors[0].startswith("numgen"):
            parts = selectors[0].split()
            numgen = (_number(parts[3], self), _number(parts[5], self) if len(parts) > 5 else 0)
            if numgen[0] < 1:
                self.fail("`numgen random mod N` needs N of at least 1")
        if self.peek() == "vmap":
            self.take()
            if (self.peek() or "").startswith("@"):
                return Lookup(selectors, map_ref=self.take()[0][1:], numgen=numgen)
            items = self.reader.elements(self.line_no, self.braced())
            _refuse_overlaps(self, items)
            return Lookup(selectors, tuple(items), numgen=numgen)
        if numgen:
            self.fail("numgen is read only as a verdict map's key (`numgen … vmap`)")
        mask = None
        if self.peek() in ("and", "&"):
            self.take()
            mask = _number(self.take()[0], self)
        negate = False
        if self.peek() in ("!=", "=="):
            negate = self.take()[0] == "!="
        word = self.peek()
        if word is None:
            self.fail(f"{' '.join(selectors)} without a value")
        if word.startswith("@"):
            return Match(selectors, negate, set_ref=self.take()[0][1:], mask=mask)
        if word == "{":
            values = tuple(" ".join(item) for item in _split_top(self.braced(), ",") if item)
            return Match(selectors, negate, values, mask=mask)
        values = [self.take()[0]]
        while self.peek() == ",":  # ct state established,related
            self.take()
            values.append(self.take()[0])
        if selectors == ("meta mark",):  # 0 and 0x00000000 are one mark
            values = [str(_number(value, self)) for value in values]
        return Match(selectors, negate, tuple(values), mask=mask)

    def braced(self) -> list[str]:
        if self.peek() != "{":
            self.fail(f"expected '{{' after {self.words[self.j - 1]!r}")
        depth, start = 0, self.j
        while self.j < len(self.words):
            depth += {"{": 1, "}": -1}.get(self.words[self.j], 0)
            self.j += 1
            if depth == 0:
                return self.words[start + 1:self.j - 1]
        self.fail("a '{' is never closed")

    def nat(self) -> Nat:
        kind = self.take()[0]
        if self.peek() == "ip":
            self.take()
        if self.peek() != "to":
            self.fail(f"`{kind}` needs `to ADDRESS[:PORT]`")
        self.take()
        target = self.take()[0]
        address, _, port = target.partition(":")
        if not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", address) or (port and not port.isdigit()):
            return Unmodelled(f"{kind} to {target}")  # maps, ranges: not modelled
        while self.peek() in ("fully-random", "random", "persistent", ","):
            self.take()
        return Nat(kind, address, int(port) if port else None)

    def set_update(self) -> SetUpdate:
        _, name = self.take(2)
        key = self.braced()
        return SetUpdate(name[1:], tuple(w for w in key if w != "."))

    def mark_set(self) -> MarkSet:
        """`mark set mark or 0x4000` (the render) or `meta mark set meta mark | 0x00004000`
        (the listing), and `… set 0x1`."""
        self.take(2 if self.peek() == "mark" else 3)
        if self.peek() == "meta":
            self.take()
        if self.peek() == "mark":
            self.take()
            op = {"or": "or", "|": "or", "xor": "xor", "^": "xor", "and": "and",
                  "&": "and"}.get(self.take()[0])
            if op is None:
                self.fail("`mark set mark` needs or/|, xor/^ or and/& and a value")
            return MarkSet(op, _number(self.take()[0], self))
        return MarkSet("set", _number(self.take()[0], self))


def _refuse_conflicts(reader: _Reader, line_no: int, held: list[Element],
                      given: list[Element]) -> None:
    """A key given two different values (in one command, or one already in the map): nft
    refuses the element ("File exists")."""
    values = {}
    for element in held:
        values.setdefault(element.key, element.value)
    for element in given:
        if values.setdefault(element.key, element.value) != element.value:
            reader.fail(line_no, f"the key {' . '.join(element.key)} is given a second, "
                                 "different value (nft refuses it: \"File exists\")")


def _refuse_misplaced_nat(reader: _Reader, table: Table) -> None:
    """A NAT statement that a base chain reaches (by jump, goto or verdict map) though it is no
    nat chain at a hook the statement may run at: the kernel refuses the rule when the
    transaction commits ("Operation not supported"; nft_nat_validate, nft_masq_validate)."""
    for base in [chain for chain in table.chains.values() if chain.base]:
        seen: set[str] = set()
        todo = [base.name]
        while todo:
            name = todo.pop()
            if name in seen or name not in table.chains:
                continue
            seen.add(name)
            for rule in table.chains[name].rules:
                for statement in rule.statements:
                    if isinstance(statement, Nat) and (
                            base.type != "nat" or base.hook not in NAT_HOOKS[statement.kind]):
                        reader.fail(rule.line_no, f"{statement.kind} runs only in a nat chain at "
                                                  f"{' or '.join(NAT_HOOKS[statement.kind])}; "
                                                  f"{base.type} chain {base.name} at {base.hook} "
                                                  "reaches it (the kernel refuses it: "
                                                  "\"Operation not supported\")")
                    todo += _targets(statement, table)


def _targets(statement, table: Table) -> list[str]:
    """The chains a statement may jump or go to: its verdict, or its verdict map's."""
    if isinstance(statement, Verdict):
        return [statement.target] if statement.target else []
    if not isinstance(statement, Lookup):
        return []
    named = table.sets.get(statement.map_ref) if statement.map_ref else None
    elements = named.elements if named else statement.elements
    return [e.value.target for e in elements if isinstance(e.value, Verdict) and e.value.target]


def _refuse_overlaps(reader: _RuleReader, items: list[Element]) -> None:
    """Two keys of an anonymous verdict map that overlap without being equal (`0-1` and `1`,
    `10.0.0.0/8` and `10.1.0.5`): nft refuses the rule ("conflicting intervals specified"),
    whatever the verdicts. Single-part keys of numbers or addresses only."""
    spans = [(span, element) for element in items if len(element.key) == 1
             and (span := _interval(element.key[0])) is not None]
    for i, (a, first) in enumerate(spans):
        for b, second in spans[i + 1:]:
            if a != b and a[0] <= b[1] and b[0] <= a[1]:
                reader.fail(f"the keys {first.key[0]} and {second.key[0]} overlap (nft: "
                            "\"conflicting intervals specified\")")


def _interval(item: str) -> tuple[int, int] | None:
    """A key as the closed interval of numbers it covers (an address as its integer), or None
    when it is neither a number, an address, a prefix nor a range of them."""
    try:
        if "/" in item:
            net = ipaddress.ip_network(item, strict=False)
            return int(net.network_address), int(net.broadcast_address)
        low, _, high = item.partition("-")
        ends = [int(ipaddress.ip_address(w)) if "." in w else int(w, 0)
                for w in (low, high or low)]
    except ValueError:
        return None
    return ends[0], ends[1]


def _number(word: str, reader: _RuleReader) -> int:
    try:
        return int(word, 0)
    except ValueError:
        reader.fail(f"{word!r} is not a number")


def _uncomment(raw: str) -> tuple[str, int | None]:
    """The line without its `#` comment, and the handle that comment gave (nft -a)."""
    if "#" not in raw:
        return raw.strip(), None
    found = _COMMENT.match(raw)
    if not found:
        return raw.strip(), None
    handle = _HANDLE.fullmatch(found.group(2))
    return found.group(1).strip(), int(handle.group(1)) if handle else None


def _split_top(words: list[str], sep: str) -> list[list[str]]:
    """Split at `sep` outside nested braces."""
    out, cur, depth = [], [], 0
    for word in words:
        depth += {"{": 1, "}": -1}.get(word, 0)
        if word == sep and depth == 0:
            out.append(cur)
            cur = []
        else:
            cur.append(word)
    out.append(cur)
    return out


def _split_specs(words: list[str]) -> list[list[str]]:
    """`type filter hook input priority 0 ; policy accept ;` → one list per clause."""
    return [part for part in _split_top(words, ";") if part]
