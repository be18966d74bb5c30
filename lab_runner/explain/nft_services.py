"""Every Service port kube-proxy's nftables table describes: addresses, endpoints, exact shares.

Read from the table's maps and chain names, as kube-proxy's nftables proxier writes them: an
element of `service-ips` (`ip . proto . port : goto service-HASH-ns/name/proto/port`) is a
ClusterIP when its address is in the `cluster-ips` set, else an external or load balancer address
(the rules do not tell those two apart); `service-nodeports` elements are NodePorts; the
`no-endpoint-*` maps' elements (named by their comments) drop or reject. An endpoint's share is
what `numgen random mod N vmap` gives it, exactly k/N for its k of the N draws, for a caller
without an affinity entry. The objects are services.py's, so the summary prints either mode alike.
"""

from __future__ import annotations

import re
from fractions import Fraction

from lab_runner.explain.nft_dump import NftDump
from lab_runner.explain.services import LOCAL_POLICY, Endpoint, ServicePort
from lab_runner.ruleset.counters import Counters
from lab_runner.ruleset import nft_names as names
from lab_runner.ruleset.nft_model import Lookup, Match, Nat, Table, Verdict

# `service-HASH-ns/name/proto/portName` (and local-, external-, firewall-, endpoint-…__ip/port).
CHAIN_NAME = re.compile(r"^(?:service|local|external|firewall|endpoint)-[A-Z2-7]{8}-"
                        r"(?P<ns>[^/]+)/(?P<name>[^/]+)/(?P<proto>[^/]+)/(?P<port>[^/_]*)")
# A map element with a comment, in either spelling: `172.30.0.46 . tcp . 80 comment "ns6/svc6:p80"`.
ELEMENT_COMMENT = re.compile(r'([\w.:/-]+(?: \. [\w.:/-]+)*) comment "([^"]+)"')
COUNTER = re.compile(r"counter packets (\d+) bytes (\d+)")
TIMEOUT = re.compile(r"\btimeout (\w+)")
STOPS = {"drop": "DROP", "reject": "REJECT"}


def port_of_chain(chain: str) -> tuple[str, str] | None:
    """(ns/name:port, proto) of a per-Service chain name; None for another chain."""
    found = CHAIN_NAME.match(chain)
    if found is None:
        return None
    name = f"{found['ns']}/{found['name']}"
    return (f"{name}:{found['port']}" if found["port"] else name), found["proto"].lower()


def counters_of(text: str) -> Counters | None:
    found = COUNTER.search(text)
    return Counters(int(found[1]), int(found[2])) if found else None


def find_services(dump: NftDump) -> list[ServicePort]:
    """Every Service port in the table, sorted by name and protocol."""
    table = dump.ruleset.table("ip", names.TABLE)
    found: dict[tuple[str, str], ServicePort] = {}
    cluster_ips = {e.key[0] for e in _elements(table, names.CLUSTER_IPS)}
    firewalled = {e.key for e in _elements(table, names.FIREWALL_IPS)}
    for element in _elements(table, names.SERVICE_IPS):
        port = _port(table, found, element.value)
        if port is None or len(element.key) != 3:
            continue
        address, _, number = element.key
        if address in cluster_ips or element.value.target.startswith(names.SERVICE_PREFIX):
            port.cluster_ip, port.port = address, int(number)
            port.chain = element.value.target
            if port.chain.startswith(names.LOCAL_PREFIX):
                port.notes.append("internalTrafficPolicy Local (a local- chain: this node's "
                                  "endpoints only)")
        else:
            _add(port.external_ips, f"{address}:{number}")
            if element.key in firewalled:
                _add(port.notes, "loadBalancerSourceRanges (a firewall- chain: other sources "
                                 "are dropped)")
            _external_notes(table, port, element.value.target)
    for element in _elements(table, names.SERVICE_NODEPORTS):
        port = _port(table, found, element.value)
        if port is not None and element.key[-1].isdigit():
            _add(port.node_ports, int(element.key[-1]))
            _external_notes(table, port, element.value.target)
    _no_endpoints(dump, table, found, cluster_ips)
    for port in found.values():
        if port.chain is not None and not port.endpoints:
            port.endpoints, notes = spread(dump, table, port.chain)
            port.notes += [n for n in notes if n not in port.notes]
    return sorted(found.values(), key=lambda p: p.key)


def _elements(table: Table, name: str) -> list:
    named = table.sets.get(name)
    return named.elements if named is not None else []


def _add(listed: list, item) -> None:
    if item not in listed:
        listed.append(item)


def _port(table: Table, found: dict, value) -> ServicePort | None:
    """The Service port a map element's `goto CHAIN` names (created on first sight)."""
    if not isinstance(value, Verdict) or value.target not in table.chains:
        return None
    key = port_of_chain(value.target)
    if key is None:
        return None
    if key not in found:
        found[key] = ServicePort(*key, line_no=table.chains[value.target].line_no)
    return found[key]


def _targets(table: Table, chain: str) -> list[str]:
    """The chains a chain's rules jump or go to (plain verdicts only)."""
    return [s.target for rule in table.chains[chain].rules for s in rule.statements
            if isinstance(s, Verdict) and s.target]


def _external_notes(table: Table, port: ServicePort, chain: str) -> None:
    """externalTrafficPolicy Local: the external- chain goes to a local- chain (or nowhere)."""
    if not chain.startswith(names.EXTERNAL_PREFIX):
        return
    targets = _targets(table, chain)
    local = next((t for t in targets if t.startswith(names.LOCAL_PREFIX)), None)
    if local is not None:
        endpoints = [(e.address, e.share) for e in spread(None, table, local)[0]]
        reached = ", ".join(f"{a} ({float(s) * 100:.4g} %)" for a, s in endpoints)
        _add(port.notes, f"externalTrafficPolicy Local: outside callers reach only "
                         f"{reached or 'no endpoint'} ({local})")
    elif any("fib saddr type local" in r.text for r in table.chains[chain].rules):
        _add(port.notes, LOCAL_POLICY)  # its short-circuits, and no local endpoint to go to


def _no_endpoints(dump: NftDump, table: Table, found: dict, cluster_ips: set[str]) -> None:
    """`no-endpoint-services` / `-nodeports` elements: their comment names the Service port."""
    named = {key: comment for key, comment in ELEMENT_COMMENT.findall("\n".join(dump.lines))}
    for map_name in (names.NO_ENDPOINT_SERVICES, names.NO_ENDPOINT_NODEPORTS):
        for element in _elements(table, map_name):
            shown = " . ".join(element.key)
            proto = element.key[-2].lower() if len(element.key) >= 2 else "tcp"
            name = named.get(shown, f"(unnamed: {shown})").rstrip(":")
            line_no = table.sets[map_name].line_no
            port = found.setdefault((name, proto), ServicePort(name, proto, line_no=line_no))
            verdict = element.value
            what = "REJECT" if isinstance(verdict, Verdict) and verdict.target == \
                names.REJECT_CHAIN else STOPS.get(getattr(verdict, "kind", ""), str(verdict))
            if len(element.key) == 3:
                address, number = element.key[0], element.key[2]
                if address in cluster_ips and port.cluster_ip is None:
                    port.cluster_ip, port.port = address, int(number)
                where = f"{address}:{number}"
            else:
                where = f"node port {element.key[-1]}"
                if element.key[-1].isdigit():
                    _add(port.node_ports, int(element.key[-1]))
            kind = "has no endpoints" if port.cluster_ip and where.startswith(port.cluster_ip) \
                else "has no local endpoints"
            _add(port.notes, f"{kind}: {what} at {where} ({map_name})")


def spread(dump: NftDump | None, table: Table, chain: str) -> tuple[list[Endpoint], list[str]]:
    """The endpoints a service- (or local-) chain sends a caller's first connection to, with
    exact shares, and notes (session affinity, rules that are not kube-proxy's spread)."""
    endpoints: dict[str, Endpoint] = {}
    notes: list[str] = []
    left = Fraction(1)
    for rule in table.chains[chain].rules:
        if not left:
            break
        draws = [s for s in rule.statements if isinstance(s, Lookup) and s.numgen]
        sticky = [s for s in rule.statements if isinstance(s, Match) and s.set_ref and
                  s.set_ref.startswith(names.AFFINITY_PREFIX)]
        targets = [s.target for s in rule.statements if isinstance(s, Verdict) and s.target]
        if sticky:  # a first connection has no affinity entry (unless the live set holds it)
            _add(notes, _affinity_note(dump, table, sticky[0].set_ref))
        elif draws:
            mod, offset = draws[0].numgen
            share, hits = left / mod, 0
            for drawn in range(offset, offset + mod):
                element = next((e for e in draws[0].elements if _holds(e.key[0], drawn)), None)
                if element is None or not isinstance(element.value, Verdict):
                    continue  # no element for this draw: the packet goes on to the next rule
                hits += 1
                target = element.value.target
                had = endpoints[target].share if target in endpoints else 0
                endpoints[target] = _endpoint(table, target, had + share)
            left -= share * hits
        elif targets and targets[0].startswith(names.ENDPOINT_PREFIX):
            endpoints[targets[0]] = _endpoint(table, targets[0], left)
            left = Fraction(0)
        elif targets != [names.MARK_MASQ]:
            notes.append(f"line {rule.line_no} in {chain} is not an endpoint pick: not in the "
                         "shares")
    if left and endpoints:
        notes.append(f"{float(left) * 100:.4g} % of new connections fall through {chain} "
                     "unpicked")
    return list(endpoints.values()), notes  # in the order numgen's draws name them


def _holds(item: str, drawn: int) -> bool:
    low, _, high = item.partition("-")
    return low.isdigit() and int(low) <= drawn <= int(high or low)


def _affinity_note(dump: NftDump | None, table: Table, set_name: str) -> str:
    named = table.sets.get(set_name)
    timeout = None
    if named is not None and dump is not None:
        declared = "\n".join(dump.lines[max(named.line_no - 1, 0):named.line_no + 4])
        found = TIMEOUT.search(declared)
        timeout = found[1] if found else None
    return "sessionAffinity ClientIP" + (f" ({timeout})" if timeout else "") + \
        ": shares are a caller's first connection; later ones stick to its endpoint"


def _endpoint(table: Table, chain: str, share: Fraction) -> Endpoint:
    """An endpoint- chain's `dnat to` address, its rule's line and counters."""
    for rule in table.chains[chain].rules if chain in table.chains else []:
        for statement in rule.statements:
            if isinstance(statement, Nat) and statement.kind == "dnat":
                address = statement.address if statement.port is None else \
                    f"{statement.address}:{statement.port}"
                return Endpoint(address, share, chain, rule.line_no, counters_of(rule.text))
    line_no = table.chains[chain].line_no if chain in table.chains else 0
    return Endpoint("(no dnat rule)", share, chain, line_no, None)
