"""A submission in nftables mode: `nft -f` commands confined to kube-proxy's table, read as data.

What a student writes is what kube-proxy's own transaction is made of, one command a line:

    add rule ip kube-proxy CHAIN STATEMENTS…
    insert rule ip kube-proxy CHAIN STATEMENTS…
    add element ip kube-proxy MAP { KEY : VERDICT, … }
    add chain ip kube-proxy NAME             (a regular chain: no hook, no options)

Everything else is refused with the file and line, before any lab is built: other verbs
(`flush ruleset`, `delete`, `replace`, `reset`…), `include` and `define`, other tables and
families, the listing form (`table ip kube-proxy { … }`), several commands on one line (`;`),
chains and maps the exercise does not open (exercise.allowed, under the key `kube-proxy`),
jumps to chains that do not exist, and statements the nft tracer does not model (static mode
could not grade them, so neither mode takes them). The commands are read on top of the
exercise's starting state (nft_render's document with the task's lines removed), as `nft -f`
would apply them in one transaction.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from lab_runner.errors import SubmissionError
from lab_runner.grading.exercise import Exercise
from lab_runner.grading.text_file import decode, read_limited
from lab_runner.ruleset.nft_model import (Lookup, MarkSet, Match, Nat, NftRuleset, SetUpdate,
                                          Unmodelled, Verdict)
from lab_runner.ruleset.nft_names import TABLE
from lab_runner.ruleset.nft_parse import NftSyntaxError, parse_nft, tokens, unquote

FORMAT = "nft"  # exercise.yaml `format: nft`
VERBS = {"rule": ("add", "insert"), "element": ("add",), "chain": ("add",)}
MAX_LINE = 4096  # characters: kube-proxy's longest lines (a vmap of many endpoints) fit
EXAMPLE = "add rule ip kube-proxy CHAIN … or add element ip kube-proxy MAP { … }"


@dataclass(frozen=True)
class NftSubmission:
    path: str
    text: str
    ruleset: NftRuleset  # the starting state with the submission's commands applied


def read(path: str | Path, exercise: Exercise) -> NftSubmission:
    """Read and validate one nft submission file; every refusal names the file and line."""
    name, raw = read_limited(path, exercise.max_bytes)
    return from_bytes(raw, name, exercise)


def from_bytes(raw: bytes, name: str, exercise: Exercise) -> NftSubmission:
    text = decode(raw, name, exercise.max_bytes, "a text file of nft commands")
    if not text.strip():
        raise SubmissionError(f"{name}: the file is empty; submit nft commands, one a line "
                              f"({EXAMPLE})")
    for number, line in enumerate(text.split("\n"), start=1):
        confine_line(line, name, number, exercise)
    ruleset = applied(exercise.start_document, text, name)
    refuse_unknown_targets(ruleset, text, name)
    refuse_bad_keys(ruleset, text, name)
    refuse_loops(ruleset, exercise.start_document, name)
    refuse_unmodelled(ruleset, exercise.start_document, name)
    refuse_invalid_values(ruleset, exercise.start_document, name)
    return NftSubmission(name, text, ruleset)


def _submitted_rules(ruleset: NftRuleset, start: str):
    """(line in the submission, rule) of each rule the submission added."""
    offset = start.count("\n") + (0 if start.endswith("\n") else 1)
    for chain in ruleset.table("ip", TABLE).chains.values():
        for rule in chain.rules:
            if rule.line_no > offset:
                yield rule.line_no - offset, rule


def refuse_invalid_values(ruleset: NftRuleset, start: str, name: str) -> None:
    """Values nft itself refuses (it names them; the kit's reader does not check them): an
    address that is none, a port or mark out of range, a `dnat to ADDRESS:PORT` without a
    protocol matched before it in the rule."""
    for number, rule in _submitted_rules(ruleset, start):
        problem = _invalid_value(rule)
        if problem:
            raise SubmissionError(f"{name}, line {number}: {problem}; nft refuses the file\n    "
                                  f"{rule.text}")


def _invalid_value(rule) -> str | None:
    protocol_matched = False
    for statement in rule.statements:
        if isinstance(statement, Match):
            kinds = [selector.split()[-1] for selector in statement.selectors]
            protocol_matched |= any(k in ("l4proto", "protocol") for k in kinds) or any(
                selector.split()[0] in ("tcp", "udp", "sctp") for selector in statement.selectors)
            kind = kinds[0] if len(kinds) == 1 else None  # a concatenation: not checked here
            for value in statement.values:
                if kind in ("saddr", "daddr") and not _address(value):
                    return f"`{value}` is not an IPv4 address or network"
                if kind in ("dport", "sport") and not _port(value):
                    return f"`{value}` is not a port (0 to 65535)"
        elif isinstance(statement, MarkSet) and not 0 <= statement.value <= 0xFFFFFFFF:
            return f"the mark value {statement.value:#x} does not fit in 32 bits"
        elif isinstance(statement, Nat) and statement.kind in ("dnat", "snat"):
            if statement.address is not None and not _address(statement.address):
                return f"`{statement.address}` is not an IPv4 address"
            if statement.port is not None and not protocol_matched:
                return ("a port in `dnat to ADDRESS:PORT` needs the protocol matched first in "
                        "the rule (kube-proxy writes `meta l4proto tcp dnat to …`)")
            if statement.port is not None and not 0 <= statement.port <= 65535:
                return f"the port {statement.port} is out of range (0 to 65535)"
    return None


def _address(value: str) -> bool:
    try:
        for part in value.split("-"):
            ipaddress.ip_network(part, strict=False)
        return True
    except ValueError:
        return False


def _port(value: str) -> bool:
    try:
        return all(0 <= int(part, 0) <= 65535 for part in value.split("-"))
    except ValueError:
        return not value[:1].isdigit()  # a service name (`http`): nft looks it up


def confine_line(line: str, name: str, number: int, exercise: Exercise) -> None:
    """Refuse a line that is not one command on kube-proxy's table the exercise opens."""
    where = f"{name}, line {number}"
    if "\r" in line:
        raise SubmissionError(f"{where}: a carriage return (a Windows CRLF line ending); save "
                              "the file with Unix (LF) line endings, e.g. `dos2unix FILE`")
    if not line.isascii():
        raise SubmissionError(f"{where}: a character that is not ASCII; kube-proxy's names, "
                              "addresses and statements are all ASCII")
    if len(line) > MAX_LINE:
        raise SubmissionError(f"{where}: {len(line)} characters; the limit is {MAX_LINE}")
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return
    if stripped.endswith("\\"):
        raise SubmissionError(f"{where}: a line continued with `\\`; write each command on one "
                              "line")
    words = tokens(stripped)
    if words[0] in ("include", "define", "redefine", "undefine") or words[0].startswith("$"):
        raise SubmissionError(f"{where}: `{words[0]}` is not taken; a submission is commands "
                              f"alone ({EXAMPLE})")
    if words[0] == "table" or "{" in words[:3]:
        raise SubmissionError(f"{where}: the listing form (`table ip kube-proxy {{ … }}`) is not "
                              f"taken; write one command a line ({EXAMPLE})")
    if _outside_braces(words, ";"):
        raise SubmissionError(f"{where}: `;` puts several commands on one line; write one "
                              "command a line")
    if any(w.startswith("$") for w in words):
        raise SubmissionError(f"{where}: a `$variable`; write the value itself")
    verb, kind = words[0], words[1] if len(words) > 1 else ""
    if kind not in VERBS or verb not in VERBS[kind]:
        raise SubmissionError(f"{where}: `{' '.join(words[:2])}` is not taken; a submission may "
                              f"only add rules, chains and map elements ({EXAMPLE}), never "
                              "flush, delete or replace anything")
    if len(words) < 5:
        raise SubmissionError(f"{where}: `{verb} {kind}` needs the family, the table and the "
                              f"{kind}'s name: `{verb} {kind} ip {TABLE} NAME …`")
    family, table, target = words[2], unquote(words[3]), unquote(words[4])
    if (family, table) != ("ip", TABLE):
        raise SubmissionError(f"{where}: table {family} {table} is not part of this exercise; "
                              f"write only in table ip {TABLE}")
    if kind == "chain" and len(words) > 5:
        raise SubmissionError(f"{where}: a chain with options (a hook, a priority, a policy) is "
                              "not part of this exercise; declare a regular chain: "
                              f"`add chain ip {TABLE} NAME`")
    if not exercise.chain_allowed(TABLE, target):
        opened = ", ".join(exercise.allowed.get(TABLE, ())) or "nothing"
        what = "map" if kind == "element" else "chain"
        raise SubmissionError(f"{where}: {what} {target!r} is not part of this exercise; write "
                              f"only in: {opened}")


def _outside_braces(words: list[str], token: str) -> bool:
    depth = 0
    for word in words:
        depth += (word == "{") - (word == "}")
        if word == token and depth == 0:
            return True
    return False


def applied(start: str, text: str, name: str) -> NftRuleset:
    """The starting state with the submission applied, as one document is read; a syntax error
    in the submission names its own line."""
    offset = start.count("\n") + (0 if start.endswith("\n") else 1)
    try:
        return parse_nft(start + ("" if start.endswith("\n") else "\n") + text)
    except NftSyntaxError as exc:
        if exc.line_no <= offset:
            raise
        raise SubmissionError(f"{name}, line {exc.line_no - offset}: {exc.problem}\n    "
                              f"{exc.line.strip()}") from exc


def refuse_unknown_targets(ruleset: NftRuleset, text: str, name: str) -> None:
    """A jump or goto to a chain the table does not have: `nft -f` refuses the whole file."""
    table = ruleset.table("ip", TABLE)
    submitted = [(number, line) for number, line in enumerate(text.split("\n"), start=1)]
    for _, targets in _verdict_targets(table):
        for target in targets:
            chain = table.chains.get(target)
            if chain is None or chain.base:
                number = _line_naming(submitted, target)
                where = f"{name}, line {number}" if number else name
                what = ("does not have (nft refuses the file: \"No such file or directory\"); "
                        "declare it, or check its name") if chain is None else \
                    "has as a base chain (a hook's; nft refuses a jump or goto there)"
                raise SubmissionError(f"{where}: goes to chain {target!r}, which table ip {TABLE} "
                                      + what)


def refuse_loops(ruleset: NftRuleset, start: str, name: str) -> None:
    """Chains that jump (or goto) back to themselves, however far round: the kernel refuses
    the rule that closes the loop ("Too many links"), so neither mode takes the file."""
    table = ruleset.table("ip", TABLE)
    edges: dict[str, list[tuple[str, object]]] = {}
    for chain in table.chains.values():
        for rule in chain.rules:
            targets = [v.target for v in _verdicts(rule.statements) if v.target]
            for statement in rule.statements:
                if isinstance(statement, Lookup) and statement.map_ref in table.sets:
                    targets += [e.value.target for e in table.sets[statement.map_ref].elements
                                if isinstance(e.value, Verdict) and e.value.target]
            edges.setdefault(chain.name, []).extend((t, rule) for t in targets)
    lines = {rule.line_no: number for number, rule in _submitted_rules(ruleset, start)}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(chain: str, chains: list[str], rules: list) -> None:
        state[chain] = 1
        for target, rule in edges.get(chain, ()):
            if state.get(target) == 1:  # the loop: from target round to this rule
                loop = rules[chains.index(target):] + [rule] if target in chains else [rule]
                closing = max((r.line_no for r in loop if r.line_no in lines), default=None)
                where = f"{name}, line {lines[closing]}" if closing else name
                raise SubmissionError(f"{where}: chain {target!r} would jump back to itself "
                                      "(a loop: the kernel refuses it, \"Too many links\")")
            if target not in state:
                visit(target, chains + [target], rules + [rule])
        state[chain] = 2

    for chain in list(edges):
        if chain not in state:
            visit(chain, [chain], [])


# What nft takes as one part of a key, by the part's type (as kube-proxy's maps declare them).
KEY_PARTS = {"ipv4_addr": re.compile(r"\d{1,3}(\.\d{1,3}){3}(/\d{1,2}|-\d{1,3}(\.\d{1,3}){3})?"),
             "inet_proto": re.compile(r"tcp|udp|sctp|icmp|\d{1,3}"),
             "inet_service": re.compile(r"\d{1,5}(-\d{1,5})?|0x[0-9a-fA-F]{1,4}")}
NUMGEN_KEY = re.compile(r"\d{1,10}(-\d{1,10})?")


def refuse_bad_keys(ruleset: NftRuleset, text: str, name: str) -> None:
    """An element whose key does not fit its map's type (`10.104.5.205 . tcp` where the type is
    address . protocol . port), or a numgen map keyed by anything but numbers: nft refuses the
    file, so neither mode takes it."""
    table = ruleset.table("ip", TABLE)
    submitted = list(enumerate(text.split("\n"), start=1))
    for named in table.sets.values():
        types = [t.strip() for t in named.key_type.split(".")]
        for element in named.elements:
            if len(element.key) != len(types) or not all(
                    KEY_PARTS.get(t, NUMGEN_KEY).fullmatch(part) or t not in KEY_PARTS
                    for t, part in zip(types, element.key)):
                _bad_key(submitted, name, element.key, f"{named.name}'s key type is "
                         f"{named.key_type}")
    for chain in table.chains.values():
        for rule in chain.rules:
            for statement in rule.statements:
                if isinstance(statement, Lookup) and statement.numgen:
                    for element in statement.elements:
                        if len(element.key) != 1 or not NUMGEN_KEY.fullmatch(element.key[0]):
                            _bad_key(submitted, name, element.key, "numgen draws numbers")


def _bad_key(submitted, name: str, key: tuple[str, ...], why: str) -> None:
    number = _line_naming(submitted, key[0])
    where = f"{name}, line {number}" if number else name
    raise SubmissionError(f"{where}: the key `{' . '.join(key)}` does not fit ({why}); nft "
                          "refuses the file")


def _verdict_targets(table):
    for chain in table.chains.values():
        for rule in chain.rules:
            yield rule, [v.target for v in _verdicts(rule.statements) if v.target]
    for named in table.sets.values():
        yield named, [e.value.target for e in named.elements
                      if isinstance(e.value, Verdict) and e.value.target]


def _verdicts(statements):
    for statement in statements:
        if isinstance(statement, Verdict):
            yield statement
        elif isinstance(statement, Lookup):
            yield from (e.value for e in statement.elements if isinstance(e.value, Verdict))


def _line_naming(lines: list[tuple[int, str]], word: str) -> int | None:
    pattern = re.compile(rf"(?<![\w/.-]){re.escape(word)}(?![\w/.-])")
    return next((number for number, line in lines if pattern.search(line)), None)


def refuse_unmodelled(ruleset: NftRuleset, start: str, name: str) -> None:
    """A statement the nft tracer does not model, or a set update (`update @map …`, which
    would let packets rewrite kube-proxy's maps): neither mode takes the file."""
    for number, rule in _submitted_rules(ruleset, start):
        for statement in rule.statements:
            if isinstance(statement, (Unmodelled, SetUpdate)):
                what = statement.text if isinstance(statement, Unmodelled) else \
                    f"update @{statement.set_name}"
                raise SubmissionError(
                    f"{name}, line {number}: the kit cannot model `{what}` (neither grading "
                    "mode takes this file); write it with the statements kube-proxy's table "
                    f"uses\n    {rule.text}")
