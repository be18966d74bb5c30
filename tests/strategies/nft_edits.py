"""Hypothesis strategies for student-like edits of lab 7's nft document (kube-proxy's `table ip
kube-proxy` as the kit renders it, with the `add table` + `delete table` head that makes one
`nft -f` replace the table a node holds).

The nftables counterpart of edits.py, for tests/integration/test_differential_nft.py. An edit
is a small frozen value that picks one line by what it holds (the numgen vmap, a hairpin rule, a
`dnat to`, service-ips's element, mark-for-masquerade, masquerading, `ct state new`) and its
index among such lines, so Hypothesis shrinks a failing list to the fewest, simplest edits and
prints each in words. Classes: the numgen modulus; a vmap element dropped, copied under another
key, retargeted, `goto` turned `jump`, rekeyed; service-ips's element to another port,
protocol, chain or `jump`; two endpoints' `dnat to` addresses or ports swapped, or one retargeted;
the hairpin rule dropped, moved below the DNAT or given another address; the mark's operation and
value; masquerading's rules dropped or their mask changed; `ct state` conditions; any rule
dropped, copied or moved. Some variants are ones nft refuses (a duplicate vmap key, mod 0, a
goto to a chain that does not exist): the kit's intake must refuse them too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.strategies.edits import Document

NUMGEN = r"numgen random mod"
SERVICE_IPS = r"^add element ip kube-proxy service-ips "
SERVICE_MARK = r"^add rule ip kube-proxy service-\S+ ip daddr \S+ ip saddr "
HAIRPIN = r"^add rule ip kube-proxy endpoint-\S+ ip saddr \S+ jump mark-for-masquerade"
DNAT = r" dnat to "
MARK = r"^add rule ip kube-proxy mark-for-masquerade "
MASQUERADING = r"^add rule ip kube-proxy masquerading "
CT_STATE = r" ct state new "
RULE = r"^add (rule|element) "
BASE_CHAIN = r"^add chain ip kube-proxy \S+ \{ type "
# Chains of lab 7's render that an element or rule can be pointed at instead.
ENDPOINT_CHAIN = re.compile(r"endpoint-\S+?__[\d.]+/\d+")
MARK_SPELLINGS = ("mark set mark xor 0x00004000", "mark set 0x00004000", "mark set 0x0",
                  "mark set mark or 0x00008000", "mark set mark and 0x00004000",
                  "meta mark set meta mark | 0x4000", "meta mark set meta mark or 16384")
MASK_TESTS = ("mark and 0x00008000 == 0", "mark and 0x00004000 != 0", "mark and 0x0000c000 == 0",
              "mark & 0x4000 == 0")
CT_CONDITIONS = (" ", " ct state established ", " ct state != new ",
                 " ct state new,established ", " ct state invalid ")
DESTINATIONS = ("172.17.0.5:80", "172.17.0.99:80", "172.17.0.2:8080", "172.17.0.2",
                "172.17.0.1:80", "192.168.49.1:80", "10.104.5.205:8080")
MASQUERADES = ("masquerade", "masquerade random,persistent", "snat to 172.17.0.1",
               "snat to 192.168.49.2", "accept")
# A base chain's head: another priority, another hook, policy drop.
HEADS = ((r"priority -?\d+ ;", "priority 100 ;"), (r"priority -?\d+ ;", "priority -300 ;"),
         (r"priority -?\d+ ;", "priority dstnat ;"), (r"; \}$", "; policy drop ; }"),
         (r"hook \w+", "hook input"), (r"type nat", "type filter"))
SOURCES = ("172.17.0.5", "!= 172.17.0.2", "172.17.0.0/16", "10.244.0.0/16", "192.168.49.1")


@dataclass(frozen=True)
class NftDocument(Document):
    """An `nft -f` document as lines (one command a line, as the kit renders it)."""

    def pick(self, where: str, at: int) -> int | None:
        """The index of the `at`-th (modulo their number) line that holds `where`, or None."""
        found = [i for i, line in enumerate(self.lines) if re.search(where, line)]
        return found[at % len(found)] if found else None

    def with_lines(self, index: int, new: tuple[str, ...]) -> NftDocument:
        return NftDocument(self.lines[:index] + new + self.lines[index + 1:])


class Edit:
    """One change a student might make; apply() returns the edited document (unchanged when the
    edit finds no line it fits)."""

    def apply(self, doc: NftDocument) -> NftDocument:
        raise NotImplementedError


@dataclass(frozen=True)
class Replace(Edit):
    """In the `at`-th line holding `where`, the first match of the regular expression `old`
    replaced by `new`."""

    where: str
    at: int
    old: str
    new: str

    def apply(self, doc):
        index = doc.pick(self.where, self.at)
        if index is None:
            return doc
        changed, n = re.subn(self.old, lambda _: self.new, doc.lines[index], count=1)
        return doc.with_lines(index, (changed,)) if n else doc


@dataclass(frozen=True)
class Drop(Edit):
    where: str
    at: int

    def apply(self, doc):
        index = doc.pick(self.where, self.at)
        return doc if index is None else doc.with_lines(index, ())


@dataclass(frozen=True)
class DropAll(Edit):
    """Every line holding `where` dropped (a chain emptied)."""

    where: str

    def apply(self, doc):
        return NftDocument(tuple(line for line in doc.lines if not re.search(self.where, line)))


@dataclass(frozen=True)
class Copy(Edit):
    """The line copied below itself (a duplicated rule or element)."""

    where: str
    at: int

    def apply(self, doc):
        index = doc.pick(self.where, self.at)
        return doc if index is None else doc.with_lines(index, (doc.lines[index],) * 2)


@dataclass(frozen=True)
class MoveDown(Edit):
    """The line swapped with the next line (a rule moved below the one after it: for a hairpin
    rule, below its chain's `dnat to`, which ends the chain)."""

    where: str
    at: int

    def apply(self, doc):
        index = doc.pick(self.where, self.at)
        if index is None or index + 1 >= len(doc.lines):
            return doc
        return NftDocument(doc.lines[:index] + (doc.lines[index + 1], doc.lines[index])
                           + doc.lines[index + 2:])


ELEMENT_ACTIONS = ("drop", "copy", "retarget", "jump", "rekey", "range")


@dataclass(frozen=True)
class Element(Edit):
    """One element of the braced `key : verdict` list in the line holding `where` (the numgen
    vmap): dropped, copied under key `arg`, retargeted to element `arg`'s chain, its goto made a
    jump, given key `arg`, or the keys `arg` to `arg` + 1 (an interval)."""

    where: str
    at: int
    action: str
    arg: int = 0

    def apply(self, doc):
        index = doc.pick(self.where, self.at)
        line = doc.lines[index] if index is not None else ""
        match = re.search(r"\{ (.*) \}", line)
        if not match:
            return doc
        items = [item.strip() for item in match.group(1).split(" , ")]
        k = self.at % len(items)
        key, _, verdict = items[k].partition(" : ")
        other = items[self.arg % len(items)].partition(" : ")[2]
        if self.action == "drop":
            items.pop(k)
        elif self.action == "copy":
            items.append(f"{self.arg} : {verdict}")
        elif self.action == "retarget":
            items[k] = f"{key} : {other}"
        elif self.action == "jump":
            items[k] = f"{key} : {verdict.replace('goto ', 'jump ', 1)}"
        elif self.action == "rekey":
            items[k] = f"{self.arg} : {verdict}"
        else:
            items[k] = f"{self.arg}-{self.arg + 1} : {verdict}"
        if not items:
            return doc
        braced = "{ " + " , ".join(items) + " }"
        return doc.with_lines(index, (line[:match.start()] + braced + line[match.end():],))


@dataclass(frozen=True)
class SwapDnat(Edit):
    """Two endpoint chains' `dnat to` destinations exchanged: the address, the port, or both."""

    a: int
    b: int
    part: str

    def apply(self, doc):
        i, j = doc.pick(DNAT, self.a), doc.pick(DNAT, self.b)
        if i is None or i == j:
            return doc
        (ai, pi), (aj, pj) = (_destination(doc.lines[n]) for n in (i, j))
        new_i = (aj if self.part != "port" else ai, pj if self.part != "address" else pi)
        new_j = (ai if self.part != "port" else aj, pi if self.part != "address" else pj)
        lines = list(doc.lines)
        for n, (address, port) in ((i, new_i), (j, new_j)):
            lines[n] = re.sub(r"dnat to \S+", f"dnat to {address}:{port}", lines[n])
        return NftDocument(tuple(lines))


def _destination(line: str) -> tuple[str, str]:
    address, _, port = re.search(r"dnat to (\S+)", line).group(1).partition(":")
    return address, port


def _at() -> st.SearchStrategy[int]:
    return st.integers(0, 5)


def numgen_edits():
    return st.one_of(
        st.builds(Replace, st.just(NUMGEN), st.just(0), st.just(r"mod \d+"),
                  st.sampled_from(("mod 0", "mod 1", "mod 2", "mod 3", "mod 5", "mod 8",
                                   "mod 4 offset 1", "mod 3 offset 1"))),
        st.builds(Replace, st.just(NUMGEN), st.just(0), st.just("numgen random"),
                  st.sampled_from(("numgen inc", "jhash ip saddr"))),
        st.builds(Element, st.just(NUMGEN), _at(), st.sampled_from(ELEMENT_ACTIONS),
                  st.integers(0, 5)))


def service_ips_edits():
    retargets = ("goto endpoint-FHQJOZEV-stateful-apps/my-app/tcp/http-svc__172.17.0.5/80",
                 "goto no-such-chain", "goto masquerading", "jump mark-for-masquerade")
    return st.one_of(
        st.builds(Replace, st.just(SERVICE_IPS), st.just(0), st.just(r"\. 8080 :"),
                  st.sampled_from((". 8081 :", ". 80 :", ". 8080-8090 :"))),
        st.builds(Replace, st.just(SERVICE_IPS), st.just(0), st.just(r"\. tcp \."),
                  st.sampled_from((". udp .", ". 6 .", ". sctp ."))),
        st.builds(Replace, st.just(SERVICE_IPS), st.just(0), st.just(r"goto service-\S+"),
                  st.sampled_from(retargets)),
        st.builds(Replace, st.just(SERVICE_IPS), st.just(0), st.just("goto "), st.just("jump ")),
        st.builds(Drop, st.just(SERVICE_IPS), st.just(0)),
        st.builds(Replace, st.just(SERVICE_MARK), st.just(0), st.just(r"10\.244\.0\.0/16"),
                  st.sampled_from(("172.17.0.0/16", "0.0.0.0/0", "192.168.49.0/24"))),
        st.builds(Drop, st.just(SERVICE_MARK), st.just(0)))


def endpoint_edits():
    return st.one_of(
        st.builds(SwapDnat, _at(), _at(), st.sampled_from(("address", "port", "both"))),
        st.builds(Replace, st.just(DNAT), _at(), st.just(r"dnat to \S+"),
                  st.sampled_from(DESTINATIONS).map(lambda d: f"dnat to {d}")),
        st.builds(Drop, st.just(HAIRPIN), _at()),
        st.builds(MoveDown, st.just(HAIRPIN), _at()),
        st.builds(Replace, st.just(HAIRPIN), _at(), st.just(r"ip saddr \S+"),
                  st.sampled_from(SOURCES).map(lambda s: f"ip saddr {s}")))


def masquerade_edits():
    return st.one_of(
        st.builds(Replace, st.just(MARK), st.just(0), st.just(r"mark set .*"),
                  st.sampled_from(MARK_SPELLINGS)),
        st.builds(Drop, st.just(MARK), st.just(0)),
        st.builds(Drop, st.just(MASQUERADING), st.integers(0, 2)),
        st.just(DropAll(MASQUERADING)),
        st.builds(Replace, st.just(MASQUERADING), st.just(0), st.just(r"mark and \S+ == 0"),
                  st.sampled_from(MASK_TESTS)),
        st.builds(Replace, st.just(MASQUERADING), st.just(0), st.just("masquerade fully-random"),
                  st.sampled_from(MASQUERADES)))


def generic_edits():
    return st.one_of(
        st.builds(lambda at, head: Replace(BASE_CHAIN, at, *head), st.integers(0, 7),
                  st.sampled_from(HEADS)),
        st.builds(Replace, st.just(CT_STATE), st.integers(0, 6), st.just(CT_STATE),
                  st.sampled_from(CT_CONDITIONS)),
        st.builds(Drop, st.just(RULE), st.integers(0, 40)),
        st.builds(Copy, st.just(RULE), st.integers(0, 40)),
        st.builds(MoveDown, st.just(RULE), st.integers(0, 40)))


def nft_edit():
    return st.one_of(numgen_edits(), service_ips_edits(), endpoint_edits(),
                     masquerade_edits(), generic_edits())


def nft_edit_lists(max_size: int = 3):
    return st.lists(nft_edit(), min_size=1, max_size=max_size)


def edited(doc: NftDocument, edits) -> NftDocument:
    for edit in edits:
        doc = edit.apply(doc)
    return doc
