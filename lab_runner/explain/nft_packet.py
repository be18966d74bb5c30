"""One new connection through a node's nftables rules: nft_tracer, saying what it cannot model.

As packet.py does for iptables: a rule the tracer refuses (another program's table with
statements the kit does not model) is taken out of a copy of the ruleset, assumed not to match,
and listed with its line. The answer is packet.py's Explanation, its steps nft_tracer's NftStep
(table, chain, rule number, text, line of the file).
"""

from __future__ import annotations

from dataclasses import replace

from lab_runner.explain.nft_dump import NftDump
from lab_runner.explain.nft_services import port_of_chain
from lab_runner.explain.packet import (LIMITS, MAX_LEFT_OUT, ExplainError, Explanation, LeftOut,
                                       Question, _order)
from lab_runner.explain.packet import _packet as iptables_packet
from lab_runner.ruleset import nft_names as names
from lab_runner.ruleset.nft_model import NftRuleset, Rule, Table
from lab_runner.ruleset.nft_tracer import NftUnsupported, Packet, trace
from lab_runner.ruleset.semantics import TraceError


def explain(dump: NftDump, question: Question) -> Explanation:
    """Trace `question`'s packet through `dump`'s tables, leaving out what cannot be modelled."""
    packet, assumptions = _packet(dump, question)
    ruleset = dump.ruleset
    left_out: list[LeftOut] = []
    while True:  # each refusal names one rule: leave it out and trace again
        try:
            result = trace(ruleset, packet, LIMITS)
        except NftUnsupported as exc:
            if len(left_out) == MAX_LEFT_OUT:
                raise ExplainError(f"{dump.source}: more than {MAX_LEFT_OUT} rules on this "
                                   "packet's way are not modelled; no answer is given") from exc
            left_out.append(LeftOut(exc.rule, exc.what))
            ruleset = without(ruleset, exc.rule)
            continue
        except TraceError as exc:  # a tracer limit (TraceLimit), a jump loop
            raise ExplainError(f"{dump.source}: {exc}") from exc
        break
    fates = tuple(sorted(result.outcomes, key=_order))
    left_out.sort(key=lambda item: item.rule.line_no)
    return Explanation(dump.source, question, packet, fates, tuple(left_out), tuple(assumptions),
                       _service_name(fates), dump.has_counters)


def _kube_proxy(dump: NftDump) -> Table:
    return dump.ruleset.table("ip", names.TABLE)


def _keys(table: Table, map_name: str) -> set[tuple[str, ...]]:
    named = table.sets.get(map_name)
    return {e.key for e in named.elements} if named is not None else set()


class _NoChains:
    """packet._packet asks iptables rules (`has_chain`) whether the port is a NodePort; here the
    nftables maps have answered that already, so it is told there are no such chains."""

    @staticmethod
    def has_chain(table: str, chain: str) -> bool:
        return False


def _packet(dump: NftDump, q: Question) -> tuple[Packet, list[str]]:
    """The first packet, as packet.py builds it; a NodePort's address is the node's own."""
    table = _kube_proxy(dump)
    service_addresses = {key[0] for key in _keys(table, names.SERVICE_IPS)}
    node_port = (q.protocol, str(q.dport)) in _keys(table, names.SERVICE_NODEPORTS) | \
        _keys(table, names.NO_ENDPOINT_NODEPORTS)
    notes = []
    if not q.node_ips and not q.local and node_port and q.dst not in service_addresses:
        q = replace(q, node_ips=(q.dst,))
        notes.append(f"{q.dst} is taken to be the node's own address (port {q.dport} is a "
                     "NodePort; give --node-ip to say otherwise)")
    packet, assumptions = iptables_packet(_NoChains(), q)
    return packet, notes + assumptions


def without(ruleset: NftRuleset, rule: Rule) -> NftRuleset:
    """A copy of `ruleset` without `rule`; only its table and chain are new objects."""
    key = next(k for k, t in ruleset.tables.items() if t.name == rule.table and
               rule.chain in t.chains and any(r is rule for r in t.chains[rule.chain].rules))
    table = ruleset.tables[key]
    chain = table.chains[rule.chain]
    kept = replace(chain, rules=[r for r in chain.rules if r is not rule])
    tables = {**ruleset.tables, key: replace(table, chains={**table.chains, chain.name: kept})}
    return replace(ruleset, tables=tables)


def _service_name(fates) -> str | None:
    """The Service port whose service-/external- chain the packet went through, if any."""
    for fate in fates:
        for step in fate.path:
            found = port_of_chain(step.chain)
            if found is not None:
                return found[0]
    return None
