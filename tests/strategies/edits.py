"""Hypothesis strategies for student-like edits of an iptables-restore document.

Shared by the static tier (tests/unit/test_static_properties.py) and the live one
(tests/integration/test_differential_kernel.py). An edit is a small frozen value (what, where,
with what) applied to the document's lines, so Hypothesis shrinks a failing list of edits to the
fewest and simplest, and prints each in words. The classes follow issue 20's measurement:
probabilities set, flattened, reordered or with fewer decimals; rules dropped, duplicated, moved,
`-I N`; `!` and CIDRs; MARK spellings; DNAT to other pods, ports, no port, a missing host,
ranges, `--to-destination=`; `-p` removed, `6`, `TCP`; long options, netmasks; `-i`/`-o`;
LOG, RETURN, ACCEPT, `-g`; addrtype; conntrack; nth; REDIRECT.

Meaning-preserving edits (RESPELLINGS) are kept apart: a trace must not change under them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

RULE = re.compile(r"^(-A|-I|--append|--insert) ")
MARK_SPELLINGS = ("--set-xmark 0x4000/0x4000", "--set-mark 0x4000/0x4000", "--or-mark 0x4000",
                  "--set-xmark 16384/16384", "--set-mark 0x4000", "--xor-mark 0x4000",
                  "--and-mark 0x4000", "--set-xmark 0x4000/0xffffffff", "--set-mark 0x0",
                  "--or-mark 0x8000", "--set-xmark 0x4000/0x0")
PROBABILITIES = ("0", "1", "0.5", "0.25", "0.2500000000", "0.3333333333", "0.33", "0.3",
                 "0.33333333349", "0.5000000001", "0.75", "0.1", "0.9999999999", "1.0", "0.6667")
ADDRESSES = ("10.244.0.0/16", "172.17.0.0/16", "0.0.0.0/0", "172.17.0.2", "172.17.0.5/32",
             "192.168.49.0/24", "192.168.49.1", "10.104.5.205", "10.104.5.205/32",
             "172.17.0.2,172.17.0.5", "172.16.0.0/12")
DESTINATIONS = ("172.17.0.2:80", "172.17.0.5:80", "172.17.0.6:80", "172.17.0.7:80",
                "172.17.0.2:8080", "172.17.0.5", "172.17.0.99:80", "192.168.49.1:80",
                "172.17.0.2-172.17.0.5:80", "172.17.0.6:80-81", "10.104.5.205:8080",
                "172.17.0.1:80")
INTERFACES = ("-i eth0", "-i docker0", "-i docker+", "! -i lo", "-o docker0", "-o eth0",
              "! -o docker0", "-i veth+")
ADDRTYPES = ("LOCAL", "UNICAST", "BROADCAST", "MULTICAST", "LOCAL,BROADCAST", "UNSPEC")
CTSTATES = ("NEW", "ESTABLISHED", "DNAT", "RELATED,ESTABLISHED", "NEW,DNAT", "SNAT", "INVALID")
LONG = (("-A ", "--append "), (" -j ", " --jump "), (" -p ", " --protocol "),
        (" -d ", " --destination "), (" -s ", " --source "), (" -m ", " --match "),
        (" -i ", " --in-interface "), (" -o ", " --out-interface "))
NETMASKS = {"32": "255.255.255.255", "16": "255.255.0.0", "24": "255.255.255.0", "0": "0.0.0.0"}


# -- a document and its lines -------------------------------------------------------------------

@dataclass(frozen=True)
class Document:
    """An iptables-restore document as lines; rule lines are those an edit may act on."""

    lines: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> "Document":
        return cls(tuple(text.rstrip("\n").split("\n")))

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def rule_indexes(self) -> list[int]:
        return [i for i, line in enumerate(self.lines) if RULE.match(line)]

    def table_of(self, index: int) -> str:
        table = ""
        for line in self.lines[:index + 1]:
            if line.startswith("*"):
                table = line[1:].strip()
        return table

    def chains(self, table: str) -> list[str]:
        """Chains the document declares in `table` (and those its rules write)."""
        found, current = [], ""
        for line in self.lines:
            if line.startswith("*"):
                current = line[1:].strip()
            elif current == table and line.startswith(":"):
                found.append(line[1:].split()[0])
            elif current == table and RULE.match(line):
                found.append(line.split()[1])
        return list(dict.fromkeys(found))


def chain_of(line: str) -> str:
    return line.split()[1]


def spec_of(line: str) -> str:
    """The rule after `-A CHAIN` or `-I CHAIN [N]`."""
    words = line.split(" ")
    rest = words[2:]
    if words[0] in ("-I", "--insert") and rest and rest[0].isdigit():
        rest = rest[1:]
    return " ".join(rest)


def _pick(doc: Document, at: int) -> tuple[int, str] | None:
    rules = doc.rule_indexes()
    if not rules:
        return None
    index = rules[at % len(rules)]
    return index, doc.lines[index]


def _rule_count(doc: Document, index: int, chain: str) -> int:
    """Rules of `chain` the lines before `index` leave (appends and inserts; drops not counted)."""
    table = doc.table_of(index)
    return sum(1 for i in doc.rule_indexes()
               if i < index and doc.table_of(i) == table and chain_of(doc.lines[i]) == chain)


# -- edits ---------------------------------------------------------------------------------------

class Edit:
    """One change a student might make; apply() returns the edited document (or it unchanged
    when the edit does not fit the rule it lands on)."""

    def apply(self, doc: Document) -> Document:
        raise NotImplementedError


class LineEdit(Edit):
    """An edit of the one rule line `self.at` picks: rewrite() gives the new line or lines in
    its place, or None when the edit does not fit that rule."""

    at: int

    def apply(self, doc):
        picked = _pick(doc, self.at)
        new = self.rewrite(picked[1], doc, picked[0]) if picked else None
        if new is None:
            return doc
        return Document(doc.lines[:picked[0]] + tuple(new if isinstance(new, tuple) else (new,))
                        + doc.lines[picked[0] + 1:])

    def rewrite(self, line: str, doc: Document, index: int) -> str | tuple[str, ...] | None:
        raise NotImplementedError


def _sub(pattern: str, new: str, line: str) -> str | None:
    """The line with the first match of `pattern` replaced, or None when nothing matches."""
    changed, n = re.subn(pattern, new, line, count=1)
    return changed if n else None


def probability(at: int, value: str) -> Replace:
    return Replace(at, r"--probability \S+", f"--probability {value}")


def dnat_to(at: int, destination: str, equals: bool) -> Replace:
    return Replace(at, r"--to-destination[ =]\S+", f"--to-destination{'=' if equals else ' '}"
                                                     f"{destination}")


def protocol(at: int, spelling: str) -> Replace:
    """-p tcp removed (`""`) or spelled otherwise."""
    return Replace(at, " -p tcp", f" -p {spelling}" if spelling else "")


@dataclass(frozen=True)
class Replace(LineEdit):
    """The first match of the regular expression `old` in the rule replaced by `new` (when the
    rule has none, no edit): -p respelled or removed, -g for -j, a match added before -j, …"""

    at: int
    old: str
    new: str

    def rewrite(self, line, doc, index):
        return _sub(self.old, self.new, line)


@dataclass(frozen=True)
class Drop(LineEdit):
    at: int

    def rewrite(self, line, doc, index):
        return ()


@dataclass(frozen=True)
class Move(Edit):
    """The rule at `at` moved to where the rule at `to` stands, in its table (with copy=True,
    a copy of it put there: a duplicated rule)."""

    at: int
    to: int
    copy: bool = False

    def apply(self, doc):
        picked, where = _pick(doc, self.at), _pick(doc, self.to)
        if not picked or not where or doc.table_of(picked[0]) != doc.table_of(where[0]):
            return doc
        lines = list(doc.lines)
        line = lines[picked[0]] if self.copy else lines.pop(picked[0])
        lines.insert(where[0], line)
        return Document(tuple(lines))


@dataclass(frozen=True)
class InsertAt(LineEdit):
    """The rule written as `-I CHAIN N` where it stands, N from 1 to the rules before it + 1."""

    at: int
    position: int

    def rewrite(self, line, doc, index):
        chain = chain_of(line)
        n = 1 + self.position % (_rule_count(doc, index, chain) + 1)
        return f"-I {chain} {n} {spec_of(line)}"


@dataclass(frozen=True)
class FewerDecimals(LineEdit):
    at: int
    digits: int

    def rewrite(self, line, doc, index):
        found = re.search(r"--probability (\d\.\d+)", line)
        value = found and found.group(1)[:2 + self.digits].rstrip(".")
        return line.replace(found.group(0), f"--probability {value}") if found else None


def _probabilities(doc: Document, chain: str) -> list[int]:
    """The lines of `chain`'s rules that have a `--probability`."""
    return [i for i in doc.rule_indexes() if chain_of(doc.lines[i]) == chain
            and "--probability" in doc.lines[i]]


def _set_probabilities(doc: Document, values: dict[int, str]) -> Document:
    lines = list(doc.lines)
    for i, value in values.items():
        lines[i] = re.sub(r"--probability \S+", f"--probability {value}", lines[i])
    return Document(tuple(lines))


@dataclass(frozen=True)
class Flatten(Edit):
    """Every `--probability` of the rule's chain set to 1/n, n the chain's rules that choose an
    endpoint (the classic mistake)."""

    at: int
    decimals: int

    def apply(self, doc):
        picked = _pick(doc, self.at)
        mine = _probabilities(doc, chain_of(picked[1])) if picked else []
        value = f"{1 / (len(mine) + 1):.{self.decimals}f}"
        return _set_probabilities(doc, {i: value for i in mine})


@dataclass(frozen=True)
class Reorder(Edit):
    """The chain's probabilities rotated by `by` (the same values on other rules)."""

    at: int
    by: int

    def apply(self, doc):
        picked = _pick(doc, self.at)
        mine = _probabilities(doc, chain_of(picked[1])) if picked else []
        if len(mine) < 2:
            return doc
        values = [re.search(r"--probability (\S+)", doc.lines[i]).group(1) for i in mine]
        shift = 1 + self.by % (len(values) - 1)
        return _set_probabilities(doc, dict(zip(mine, values[shift:] + values[:shift])))


@dataclass(frozen=True)
class Negate(LineEdit):
    """`!` added to (or taken from) the rule's first -s, -d or --mark."""

    at: int

    def rewrite(self, line, doc, index):
        for option in (" -s ", " -d ", " --mark "):
            if f" !{option}" in line:
                return line.replace(f" !{option}", option, 1)
            if option in line:
                return line.replace(option, f" !{option}", 1)
        return None


@dataclass(frozen=True)
class Address(LineEdit):
    """The rule's -s or -d set to another address or CIDR (or added, as -s)."""

    at: int
    value: str

    def rewrite(self, line, doc, index):
        return _sub(r" (-s|-d) \S+", rf" \1 {self.value}", line) or \
            _sub(" -j ", f" -s {self.value} -j ", line)


@dataclass(frozen=True)
class MarkSpelling(LineEdit):
    at: int
    spelling: str

    def rewrite(self, line, doc, index):
        return line.split(" -j MARK ")[0] + f" -j MARK {self.spelling}" if " -j MARK " in line \
            else None


@dataclass(frozen=True)
class NewRule(LineEdit):
    """A rule of one of the extra kinds inserted before the rule at `at`, in its chain; a
    `{chain}` in it names another KUBE- chain of the table."""

    at: int
    rule: str  # the spec, after `-A CHAIN`

    def rewrite(self, line, doc, index):
        chain = chain_of(line)
        others = [c for c in doc.chains(doc.table_of(index))
                  if c != chain and c.startswith("KUBE-") and c != "KUBE-SERVICES"]
        if "{chain}" in self.rule and not others:
            return None
        spec = self.rule.replace("{chain}", others[len(self.rule) % len(others)]
                                 if others else "")
        return f"-A {chain} {spec}", line


# -- meaning-preserving edits ----------------------------------------------------------------------

@dataclass(frozen=True)
class LongOptions(LineEdit):
    at: int

    def rewrite(self, line, doc, index):
        if line.startswith("-A "):
            line = "--append " + line[3:]
        for short, long in LONG[1:]:
            line = line.replace(short, long)
        return line


@dataclass(frozen=True)
class Netmask(LineEdit):
    """`/32` as `/255.255.255.255` (and the other prefixes the labs use), a bare address as /32."""

    at: int

    def rewrite(self, line, doc, index):
        def spelled(m: re.Match) -> str:
            address, _, bits = m.group(2).partition("/")
            mask = None if "," in address else NETMASKS.get(bits or "32")
            return f"{m.group(1)}{address}/{mask}" if mask else m.group(0)

        return re.sub(r"( -[sd] )(\S+)", spelled, line)


@dataclass(frozen=True)
class MarkRespelled(MarkSpelling):
    """KUBE-MARK-MASQ's `--or-mark 0x4000` as `--set-xmark 0x4000/0x4000`, which it means."""

    def rewrite(self, line, doc, index):
        if not line.endswith(("-j MARK --or-mark 0x00004000", "-j MARK --or-mark 0x4000")):
            return None
        return super().rewrite(line, doc, index)


# -- strategies ---------------------------------------------------------------------------------

_AT = st.integers(0, 200)
EXTRA_RULES = st.one_of(
    st.sampled_from(("-j LOG", "-j RETURN", "-j ACCEPT", "-j LOG --log-prefix x",
                     "-m comment --comment \"a note\" -j RETURN", "-g {chain}", "-j {chain}",
                     "-p tcp -j REDIRECT --to-ports 80", "-p tcp -j REDIRECT",
                     "-m mark --mark 0x4000/0x4000 -j RETURN", "-j MARK --or-mark 0x4000",
                     "-p tcp -m tcp --dport 8080 -j RETURN", "-p udp -j RETURN")),
    st.builds(lambda t, inv, j: f"-m addrtype {inv}--dst-type {t} -j {j}",
              st.sampled_from(ADDRTYPES), st.sampled_from(("", "! ")),
              st.sampled_from(("RETURN", "LOG", "ACCEPT"))),
    st.builds(lambda t: f"-m addrtype --src-type {t} -j RETURN", st.sampled_from(ADDRTYPES)),
    st.builds(lambda s, j: f"-m conntrack --ctstate {s} -j {j}", st.sampled_from(CTSTATES),
              st.sampled_from(("RETURN", "LOG", "ACCEPT"))),
    st.builds(lambda every, packet, j: f"-m statistic --mode nth --every {every} "
                                       f"--packet {packet % every} -j {j}",
              st.integers(1, 4), st.integers(0, 3), st.sampled_from(("RETURN", "LOG"))),
    st.builds(lambda p, j: f"-m statistic --mode random --probability {p} -j {j}",
              st.sampled_from(PROBABILITIES), st.sampled_from(("RETURN", "LOG", "ACCEPT"))),
    st.builds(lambda m: f"{m} -j RETURN", st.sampled_from(INTERFACES)),
)

EDITS = st.one_of(
    st.builds(Drop, _AT), st.builds(Move, _AT, _AT, st.booleans()),
    st.builds(InsertAt, _AT, st.integers(0, 20)),
    st.builds(probability, _AT, st.sampled_from(PROBABILITIES)),
    st.builds(probability, _AT, st.integers(0, 10 ** 6).map(lambda n: f"{n / 10 ** 6:.6f}")),
    st.builds(FewerDecimals, _AT, st.integers(0, 9)), st.builds(Flatten, _AT, st.integers(1, 10)),
    st.builds(Reorder, _AT, st.integers(0, 5)), st.builds(Negate, _AT),
    st.builds(Address, _AT, st.sampled_from(ADDRESSES)),
    st.builds(MarkSpelling, _AT, st.sampled_from(MARK_SPELLINGS)),
    st.builds(dnat_to, _AT, st.sampled_from(DESTINATIONS), st.booleans()),
    st.builds(protocol, _AT, st.sampled_from(("", "6", "TCP", "udp", "all"))),
    st.builds(lambda at, match: Replace(at, " -j ", f" {match} -j "), _AT,
              st.sampled_from(INTERFACES)),
    st.builds(Replace, _AT, st.just(" -j KUBE-"), st.just(" -g KUBE-")),
    st.builds(NewRule, _AT, EXTRA_RULES), st.builds(LongOptions, _AT), st.builds(Netmask, _AT),
)

RESPELLINGS = st.one_of(
    st.builds(LongOptions, _AT), st.builds(Netmask, _AT),
    st.builds(Replace, _AT, st.just("--to-destination "), st.just("--to-destination=")),
    st.builds(protocol, _AT, st.sampled_from(("6", "TCP"))),
    st.builds(MarkRespelled, _AT, st.sampled_from(("--set-xmark 0x4000/0x4000",
                                                   "--set-mark 0x4000/0x4000",
                                                   "--set-xmark 16384/16384"))),
)


def edit_lists(max_edits: int = 4, edits=EDITS):
    return st.lists(edits, min_size=1, max_size=max_edits)


def edited(doc: Document, edits) -> Document:
    for edit in edits:
        doc = edit.apply(doc)
    return doc


# -- the documents edited ---------------------------------------------------------------------------

def nat_table(document: str) -> str:
    """The `*nat … COMMIT` part of a rendered document, for a whole-table restore."""
    start = document.index("*nat\n")
    return document[start:document.index("COMMIT\n", start) + len("COMMIT\n")]


def lab3_nat_document(profile: str | None = None) -> Document:
    from lab_runner import lab_file
    from lab_runner.ruleset.render import render

    lab = lab_file.load("lab-3")
    return Document.of(nat_table(render(lab, profile or lab.profile)))


def applied(start: str, answer: str) -> Document:
    """The nat table of `start` with `answer`'s nat lines added, as one whole-table document:
    its chain declarations after the start's, its rules before COMMIT (answers that only add
    chains and append rules, as lab 2's do)."""
    table = nat_table(start).rstrip("\n").split("\n")
    body = nat_table(answer).rstrip("\n").split("\n")[1:-1]
    declared = max(i for i, line in enumerate(table) if line.startswith(("*", ":")))
    chains = [line for line in body if line.startswith(":")]
    rules = [line for line in body if RULE.match(line)]
    return Document(tuple(table[:declared + 1] + chains + table[declared + 1:-1] + rules
                          + table[-1:]))


@dataclass(frozen=True)
class Base:
    """A document the live tier edits, on the lab model it runs on, and where callers connect."""

    name: str
    lab: str
    exercise: str
    document: Document
    target: tuple[str, int, str] | None = None  # (address, port, protocol); None: the Service


LAB2_VIP = ("10.96.0.200", 80, "tcp")  # lab 2's exercises' virtual IP (labs/lab-2-nat/lab.yaml)


def lab_bases(lab: str) -> list[Base]:
    """The documents generated edits start from in labs 2 and 4. Lab 2: the node's skeleton
    with an exercise's reference answer (the random spread of exercise 2; the mark, own chain
    and MASQUERADE towards the other node's pod of exercise 3). Lab 4: each exercise's starting
    rules (endpoints not yet synced: new pods unreached, a stale endpoint with no pod) and the
    synced chain set, on that exercise's own pods."""
    from lab_runner.grading import exercise as exercises
    from lab_runner.ruleset.render import render

    out = []
    for ex in exercises.all_exercises(lab):
        number = str(ex.number)
        if lab == "lab-2" and number in ("2", "3"):
            answer = ex.directory.parent.parent / "solutions" / f"{ex.directory.name}.rules"
            out.append(Base(f"lab-2 ex{number} answer", lab, number,
                            applied(ex.start_document, answer.read_text()), LAB2_VIP))
        elif lab == "lab-4":
            out.append(Base(f"lab-4 ex{number} start", lab, number,
                            Document.of(nat_table(ex.start_document))))
            out.append(Base(f"lab-4 ex{number} synced", lab, number,
                            Document.of(nat_table(render(ex.lab, ex.lab.profile)))))
    return out


def solutions(labs=("lab-2", "lab-3", "lab-4")) -> list[tuple[object, Document]]:
    """(exercise, its reference answer) of each rules exercise of the labs."""
    from lab_runner.grading import exercise as exercises

    out = []
    for lab in labs:
        for ex in exercises.all_exercises(lab):
            answer = ex.directory.parent.parent / "solutions" / f"{ex.directory.name}.rules"
            if answer.is_file():
                out.append((ex, Document.of(Path(answer).read_text())))
    return out
