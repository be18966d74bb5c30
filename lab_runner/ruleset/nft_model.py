"""nftables rules as data: tables, chains (hook, priority, policy), rules as statements, and
sets and maps with their elements. Pure data; nft_parse reads text into it, nft_tracer works on
it. A statement not modelled is kept as Unmodelled, so nothing read is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Verdict:
    kind: str  # accept, drop, reject, return, continue, jump, goto
    target: str | None = None  # the chain of jump / goto


@dataclass(frozen=True)
class Element:
    """One element of a set or map: its key (parts of a concatenation) and, in a map, its value."""

    key: tuple[str, ...]
    value: Verdict | str | None = None


@dataclass(frozen=True)
class Match:
    """`selector [!=] value`: selectors is one or a concatenation; values are literals (an
    anonymous set's items) or set_ref names a set (`@cluster-ips`)."""

    selectors: tuple[str, ...]
    negate: bool
    values: tuple[str, ...] = ()
    set_ref: str | None = None
    mask: int | None = None  # `mark and 0x4000 == 0`: the value compared is mark & mask


@dataclass(frozen=True)
class Lookup:
    """`selectors vmap {…}` or `vmap @map`: the element whose key matches gives the verdict.
    A `numgen random mod N offset K` selector draws its key uniformly from K..K+N-1."""

    selectors: tuple[str, ...]
    elements: tuple[Element, ...] = ()
    map_ref: str | None = None
    numgen: tuple[int, int] | None = None  # (mod, offset)


@dataclass(frozen=True)
class MarkSet:
    op: str  # set, or, xor, and
    value: int


@dataclass(frozen=True)
class Nat:
    kind: str  # dnat, snat, masquerade
    address: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class SetUpdate:
    """`update @set { ip saddr }`: records the key for later packets; a first packet's own
    outcome is unchanged (affinity is seen by the connections after it)."""

    set_name: str
    key: tuple[str, ...]


@dataclass(frozen=True)
class NoOp:
    word: str  # counter, log, comment


@dataclass(frozen=True)
class Unmodelled:
    text: str


Statement = Match | Lookup | MarkSet | Nat | SetUpdate | NoOp | Verdict | Unmodelled


@dataclass
class Rule:
    table: str
    chain: str
    line_no: int
    text: str
    statements: tuple = ()
    handle: int | None = None


@dataclass
class Chain:
    name: str
    line_no: int
    type: str | None = None  # filter, nat, route: None for a regular chain
    hook: str | None = None
    priority: int | None = None
    policy: str = "accept"
    comment: str | None = None
    rules: list[Rule] = field(default_factory=list)

    @property
    def base(self) -> bool:
        return self.hook is not None


@dataclass
class NamedSet:
    """A named set or map (`kind` says which); a map's data type is after the colon."""

    name: str
    kind: str  # set | map
    line_no: int
    key_type: str = ""
    data_type: str | None = None
    flags: tuple[str, ...] = ()
    comment: str | None = None
    elements: list[Element] = field(default_factory=list)


@dataclass
class Table:
    family: str
    name: str
    line_no: int
    comment: str | None = None
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NamedSet] = field(default_factory=dict)  # sets and maps share a namespace


# Where nf_nat runs a hook's NAT chains (NF_IP_PRI_NAT_DST / NF_IP_PRI_NAT_SRC): a nat chain's
# own priority orders it among the NAT chains of its hook only (the differential test found it:
# a nat output chain declared at priority 1 still DNATs before a filter chain at 0).
NAT_HOOK_PRIORITY = {"prerouting": -100, "output": -100, "postrouting": 100, "input": 100}


@dataclass
class NftRuleset:
    tables: dict[tuple[str, str], Table] = field(default_factory=dict)
    # (line, what) of everything read but not modelled: rules' statements, objects, commands.
    unmodelled: list[tuple[int, str]] = field(default_factory=list)

    def table(self, family: str, name: str) -> Table:
        return self.tables[(family, name)]

    def base_chains(self, hook: str, families=("ip", "inet")) -> list[tuple[Table, Chain]]:
        """Every base chain at `hook` of the tables that see IPv4, in the kernel's order: by
        priority, except that NAT chains all run where nf_nat hooks in (NAT_HOOK_PRIORITY), their
        own priorities ordering them among themselves; equal ones in the order they were read."""
        found = [(t, c) for t in self.tables.values() if t.family in families
                 for c in t.chains.values() if c.hook == hook]

        def order(table_chain: tuple[Table, Chain]) -> tuple[int, int]:
            chain = table_chain[1]
            if chain.type == "nat" and hook in NAT_HOOK_PRIORITY:
                return NAT_HOOK_PRIORITY[hook], chain.priority
            return chain.priority, 0
        return sorted(found, key=order)
