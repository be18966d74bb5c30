"""`explain`'s two answers, as text for a terminal (80-column tables) or as JSON for scripts."""

from __future__ import annotations

import textwrap
from fractions import Fraction

from rich.console import Console
from rich.text import Text

from lab_runner.explain.packet import Explanation, ended_by, marked_by, nat_rules
from lab_runner.explain.services import ServicePort, comment
from lab_runner.ruleset.counters import Counters
from lab_runner.ruleset.tracer import Outcome, Step

VERDICTS = {"ACCEPT": "accepted", "DROP": "DROPPED", "REJECT": "REJECTED"}
ROUTES = {"forward": "forwarded", "local": "delivered to the node itself",
          "output": "sent out by the node", "dropped": "not routed"}


def percent(share: Fraction) -> str:
    """A share as a percentage with the digits that tell kernel-rounded shares apart."""
    value = float(share) * 100
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return f"{text} %"


def exact(share: Fraction) -> str:
    return str(share.numerator) if share.denominator == 1 else \
        f"{share.numerator}/{share.denominator}"


# Joins words that must stay on one line ("ext 192.168.99.22:80"); printed as a plain space.
GLUE = "\u00a0"


def say(console: Console, text: str, indent: str = "", bold: str = "", fold: bool = False) -> None:
    """Print text wrapped at spaces to the console's width, its later lines under `indent`: a word
    (a Service or chain name, an address) is never split, even one longer than the width, unless
    `fold` lets such a word (an exact share of hundreds of digits) go on to the next line; `bold`
    is a part of the first line to set in bold."""
    lines = textwrap.wrap(text, console.width, subsequent_indent=indent, break_long_words=fold,
                          break_on_hyphens=False) or [""]
    for number, line in enumerate(lines):
        shown = Text(line.replace(GLUE, " "))
        if number == 0 and bold:
            shown.highlight_words([bold], "bold")
        # soft_wrap: rich must not wrap again what fits, nor fold the one word that does not.
        console.print(shown, highlight=False, soft_wrap=True)


def _counters(counters: Counters | None) -> str:
    return "" if counters is None else f"[{counters.packets}:{counters.bytes}]"


def _line(step: Step) -> int | None:
    return step.rule.line_no if step.rule is not None else None


def _spec(step: Step) -> str:
    return step.rule.spec if step.rule is not None else step.text


def _destination(fate: Outcome) -> str:
    return f"{fate.dnat[0]}:{fate.dnat[1]}" if fate.dnat else "not DNATed"


def _dnat_words(fate: Outcome) -> str:
    return f"DNAT to {_destination(fate)}" if fate.dnat else "not DNATed"


def _why_masqueraded(fate: Outcome) -> str:
    if fate.snat:
        return f"SNAT to {fate.snat[0]}" + (f":{fate.snat[1]}" if fate.snat[1] else "")
    if not fate.masquerade:
        return "not masqueraded: the destination sees the caller's own address"
    marks = ", ".join(f"line {_line(s)} ({s.chain} rule {s.number})" for s in marked_by(fate))
    by = f"marked by {marks} -> KUBE-MARK-MASQ" if marks else "no KUBE-MARK-MASQ jump on the way"
    rules = ", ".join(f"line {_line(s)} ({s.chain})" for s in nat_rules(fate))
    return f"masqueraded: {by}" + (f"; MASQUERADE at {rules}" if rules else "")


def _verdict(fate: Outcome) -> str:
    return verdict_words(fate, ended_by,
                         lambda ended: (ended.rule is None, _line(ended), _comment_of(ended)))


def verdict_words(fate, last_step, where) -> str:
    """The fate's verdict in words, with the rule that ended it (iptables and nftables alike):
    last_step(fate) is that step or None, where(step) gives (ended by the chain's policy, its
    line, kube-proxy's reason or None)."""
    verdict = VERDICTS.get(fate.verdict, fate.verdict)
    if fate.verdict == "ACCEPT":
        return f"{verdict}, {ROUTES.get(fate.route, fate.route)}"
    ended = last_step(fate)
    if ended is None:
        return verdict
    by_policy, line, said = where(ended)
    if by_policy:
        return f"{verdict} by the policy of {ended.table} {ended.chain}"
    return f"{verdict} by line {line} ({ended.table} {ended.chain})" + \
        (f": \"{said}\"" if said else "")


def _comment_of(step: Step) -> str | None:
    return comment(step.rule) if step.rule is not None else None


def _print_steps(console: Console, steps: tuple[Step, ...], counters: bool) -> None:
    """One line per step (file line, table, chain and rule number, counters), its rule beneath:
    a rule has words as long as a chain or a quoted Service name, too many to share 80 columns
    with the rest, so it gets the line's whole width and wraps only between its words."""
    heads = [(str(_line(step) or "-"), step.table,
              f"{step.chain} #{step.number}" if step.number else step.chain,
              _counters(step.rule.counters if step.rule else None) if counters else "")
             for step in steps]
    header = ("LINE", "TABLE", "CHAIN #RULE", "[PACKETS:BYTES]" if counters else "")
    widths = [max(len(head[i]) for head in [header, *heads]) for i in range(3)]

    def show(head: tuple[str, ...], spec: str, bold: str) -> None:
        line = "  ".join(cell.ljust(width) for cell, width in zip(head, widths))
        say(console, f" {line}  {head[3]}".rstrip(), " " * 8, bold=bold)
        say(console, f"{' ' * 8}{spec}", " " * 8)

    show(header, "RULE", "")
    for step, head in zip(steps, heads):
        show(head, _spec(step), head[2])


def print_explanation(console: Console, e: Explanation) -> None:
    p = e.packet
    where = "sent by the node itself (OUTPUT)" if p.local else f"in on {p.in_interface}"
    say(console, f"{e.source}: a new {p.protocol} connection {p.src}:{p.sport} -> "
        f"{p.dst}:{p.dport}, {where}", "  ", bold=e.source)
    say(console, f"Service: {e.service or '(no kube-proxy Service on the way)'}", "  ")
    for note in e.assumptions:
        say(console, f"Assumed: {note}", "  ")
    before, after = e.split_path()
    if len(e.fates) == 1:
        console.print("\n[bold]Rules it matched[/] (in the order the packet meets them):")
        _print_steps(console, e.fates[0].path, e.counters)
    else:
        console.print("\n[bold]Rules every way matched[/] (in the order the packet meets them):")
        _print_steps(console, before, e.counters)
        console.print(f"\n[bold]Then {len(e.fates)} ways[/] (probabilities sum to exactly 1):")
    shared = set(before) | set(after)
    for number, fate in enumerate(e.fates, start=1):
        console.print()
        say(console, f"{number}. {percent(fate.probability)} (exactly {exact(fate.probability)}):"
            f" {_dnat_words(fate)}; {_verdict(fate)}", "   ", bold=percent(fate.probability),
            fold=True)
        if fate.verdict == "ACCEPT":
            say(console, f"   {_why_masqueraded(fate)}", "     ")
        own = tuple(s for s in fate.path if s not in shared)
        if own and len(e.fates) > 1:
            _print_steps(console, own, e.counters)
    if after and len(e.fates) > 1:
        console.print("\n[bold]Then, on every way[/]:")
        _print_steps(console, after, e.counters)
    if e.left_out:
        console.print("\n[bold]Not modelled[/] (rules on this packet's way the kit does not model):")
        for item in e.left_out:
            say(console, f"  {item.describe()}", "    ")
    console.print()
    say(console, f"Verdict: {summary_line(e)}", "  ", bold="Verdict:")


def summary_line(e: Explanation) -> str:
    """One sentence: accepted to N endpoints, rejected (no endpoints), dropped, or a mix."""
    by_verdict: dict[str, Fraction] = {}
    for fate in e.fates:
        by_verdict[fate.verdict] = by_verdict.get(fate.verdict, Fraction(0)) + fate.probability
    parts = []
    for verdict, share in by_verdict.items():
        ways = [f for f in e.fates if f.verdict == verdict]
        if verdict == "ACCEPT":
            targets = {f.dnat for f in ways if f.dnat}
            what = f"accepted, DNATed to {len(targets)} endpoint(s)" if targets else \
                "accepted, not DNATed (no Service rule matched it)"
        else:
            what = _verdict(ways[0])
        parts.append(what if share == 1 else f"{what} ({percent(share)})")
    return "; ".join(parts)


def explanation_json(e: Explanation) -> dict:
    p = e.packet
    return {
        "file": e.source,
        "packet": {"src": p.src, "sport": p.sport, "dst": p.dst, "dport": p.dport,
                   "protocol": p.protocol, "in_interface": p.in_interface, "local": p.local,
                   "node_addresses": list(p.local_addresses)},
        "service": e.service,
        "assumptions": list(e.assumptions),
        "fates": [{
            "probability": exact(f.probability), "percent": float(f.probability) * 100,
            "verdict": f.verdict, "route": f.route,
            "dnat": _destination(f) if f.dnat else None,
            "masqueraded": f.masquerade,
            "snat": None if not f.snat else f"{f.snat[0]}" + (f":{f.snat[1]}" if f.snat[1] else ""),
            "marked_by": [_step_json(s) for s in marked_by(f)],
            "ended_by": _step_json(ended_by(f)) if ended_by(f) else None,
            "path": [_step_json(s) for s in f.path],
        } for f in e.fates],
        "not_modelled": [{"line": i.rule.line_no, "table": i.rule.table, "chain": i.rule.chain,
                          "what": i.what, "message": i.describe()} for i in e.left_out],
        "verdict": summary_line(e),
    }


def _step_json(step: Step) -> dict:
    counters = step.rule.counters if step.rule is not None else None
    return {"line": _line(step), "table": step.table, "chain": step.chain, "number": step.number,
            "rule": _spec(step),
            "counters": None if counters is None else [counters.packets, counters.bytes]}


# -- the summary -----------------------------------------------------------------------------

def _addresses(port: ServicePort) -> str:
    parts = []
    if port.cluster_ip:
        parts.append(f"{port.cluster_ip}:{port.port}")
    parts += [f"node:{n}" for n in port.node_ports]
    parts += [f"ext {a}" for a in port.external_ips]
    parts += [f"lb {a}" for a in port.load_balancer_ips]
    return "\n".join(parts) or "-"


def _endpoints(port: ServicePort, counters: bool) -> str:
    if not port.endpoints:
        return "<none>"
    return "\n".join(f"{e.address} {float(e.share) * 100:.4g} %" +
                     (f" {_counters(e.counters)}" if counters and e.counters else "")
                     for e in port.endpoints)


# Beyond this many Service ports (a node of 10,000) the summary is written as kubectl writes a
# wide listing: padded columns, no wrapping, each line one address to grep for. (The name is
# from when the shorter summary was a rich table; cli/explain_cmds.py reads it.)
RICH_ROWS = 500
HEADERS = ("SERVICE PORT", "PROTO", "ADDRESSES", "ENDPOINTS (share of new connections)")


def print_summary(console: Console, source: str, ports: list[ServicePort], counters: bool) -> None:
    say(console, f"{source}: {len(ports)} Service port(s)", "  ", bold=source)
    if not ports:
        return
    if len(ports) <= RICH_ROWS:
        # Two header lines for the two levels: a Service port, its endpoints indented beneath.
        say(console, "SERVICE PORT  PROTO  ADDRESSES")
        say(console, "    ENDPOINT  SHARE (of new connections)" +
            ("  [PACKETS:BYTES]" if counters else ""), " " * 8)
        for port in ports:
            _print_port(console, port, counters)
    else:
        rows = [(port.name, port.protocol, _addresses(port), _endpoints(port, counters))
                for port in ports]
        console.file.write(plain_table(HEADERS, rows))
    notes = [(port, note) for port in ports for note in port.notes]
    if notes:
        console.print("\nNotes:")
        for port, note in notes:
            say(console, f"  {port.name}/{port.protocol}: {note}", "      ")


def _print_port(console: Console, port: ServicePort, counters: bool) -> None:
    """A Service port on one line, its endpoints indented beneath (as `kubectl describe` lists
    them): a name or an address wraps whole to the next line, never across two."""
    addresses = "  ".join(a.replace(" ", GLUE) for a in _addresses(port).split("\n"))
    say(console, f"{port.name}  {port.protocol}  {addresses}", " " * 6, bold=port.name)
    if not port.endpoints:
        say(console, "    <none>")
        return
    shares = [f"{float(e.share) * 100:.4g} %" for e in port.endpoints]
    width, share_width = max(len(e.address) for e in port.endpoints), max(map(len, shares))
    for e, share in zip(port.endpoints, shares):
        shown = f"  {_counters(e.counters)}" if counters and e.counters else ""
        say(console, f"    {e.address.ljust(width)}  {share.rjust(share_width)}{shown}", " " * 8)


def plain_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest line, a cell's lines under each other (kubectl-like)."""
    widths = [max(len(line) for cell in [h, *(r[i] for r in rows)] for line in cell.split("\n"))
              for i, h in enumerate(headers)]
    out: list[str] = []
    for row in [headers, *rows]:
        cells = [cell.split("\n") for cell in row]
        for depth in range(max(map(len, cells))):
            parts = [(c[depth] if depth < len(c) else "").ljust(w) for c, w in zip(cells, widths)]
            out.append("  ".join(parts).rstrip())
    return "\n".join(out) + "\n"


def summary_json(source: str, ports: list[ServicePort]) -> dict:
    return {"file": source, "services": [{
        "name": p.name, "protocol": p.protocol, "cluster_ip": p.cluster_ip, "port": p.port,
        "node_ports": p.node_ports, "external_ips": p.external_ips,
        "load_balancer_ips": p.load_balancer_ips, "chain": p.chain, "line": p.line_no,
        "endpoints": [{"address": e.address, "probability": exact(e.share),
                       "percent": float(e.share) * 100, "chain": e.chain, "line": e.line_no,
                       "counters": None if e.counters is None else
                       [e.counters.packets, e.counters.bytes]} for e in p.endpoints],
        "notes": p.notes,
    } for p in ports]}
