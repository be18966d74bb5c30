"""`explain --to` on nftables rules, as text or JSON: report.py's shape, with nft_tracer's steps
(a rule's text and its line in the listing; counters when the rule has a `counter`)."""

from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction

from rich.console import Console

from lab_runner.explain.nft_services import counters_of
from lab_runner.explain.packet import Explanation
from lab_runner.explain import report
from lab_runner.explain.report import exact, percent, say
from lab_runner.ruleset import nft_names as names
from lab_runner.ruleset.nft_tracer import NftStep, Outcome

MARKS = re.compile(rf"\b(?:jump|goto) {names.MARK_MASQ}\b")
SOURCE_NAT = re.compile(r"(?:^|\s)(?:masquerade|snat)\b")
RULE_COMMENT = re.compile(r'\bcomment "([^"]*)"')


def marked_by(fate: Outcome) -> tuple[NftStep, ...]:
    """The rules that jumped to mark-for-masquerade on the way (why it is masqueraded)."""
    return tuple(s for s in fate.path if MARKS.search(s.text))


def nat_rules(fate: Outcome) -> tuple[NftStep, ...]:
    """The masquerade / snat rules that rewrote the source."""
    return tuple(s for s in fate.path if SOURCE_NAT.search(s.text))


def ended_by(fate: Outcome) -> NftStep | None:
    """The rule (or base chain policy) that dropped or rejected the packet."""
    return fate.path[-1] if fate.verdict != "ACCEPT" and fate.path else None


def _where(step: NftStep) -> str:
    return f"line {step.line} ({step.chain})"


def _dnat(fate: Outcome) -> str | None:
    return f"{fate.dnat[0]}:{fate.dnat[1]}" if fate.dnat else None


def _why_masqueraded(fate: Outcome) -> str:
    if fate.snat:
        return f"SNAT to {fate.snat[0]}" + (f":{fate.snat[1]}" if fate.snat[1] else "")
    if not fate.masquerade:
        return "not masqueraded: the destination sees the caller's own address"
    marks = ", ".join(_where(s) for s in marked_by(fate))
    by = f"marked by {marks} -> {names.MARK_MASQ} (mark 0x4000)" if marks else \
        f"no jump to {names.MARK_MASQ} on the way"
    rules = ", ".join(_where(s) for s in nat_rules(fate))
    return f"masqueraded: {by}" + (f"; masquerade at {rules}" if rules else "")


def _verdict(fate: Outcome) -> str:
    def where(ended: NftStep) -> tuple[bool, int, str | None]:
        said = RULE_COMMENT.search(ended.text)  # kube-proxy says why: "Reject traffic to invalid …"
        return ended.number == 0, ended.line, said[1] if said else None
    return report.verdict_words(fate, ended_by, where)


def _counters(step: NftStep) -> str:
    found = counters_of(step.text)
    return f"[{found.packets}:{found.bytes}]" if found else ""


def _print_steps(console: Console, steps, counters: bool) -> None:
    """One line per step (line of the file, table, chain #rule, counters), its rule beneath."""
    heads = [(str(s.line or "-"), s.table, f"{s.chain} #{s.number}" if s.number else s.chain,
              _counters(s) if counters else "") for s in steps]
    header = ("LINE", "TABLE", "CHAIN #RULE", "[PACKETS:BYTES]" if counters else "")
    widths = [max(len(head[i]) for head in [header, *heads]) for i in range(3)]
    for head, text in [(header, "RULE"), *zip(heads, (s.text for s in steps))]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(head, widths))
        say(console, f" {line}  {head[3]}".rstrip(), " " * 8, bold=head[2] if text != "RULE"
            else "")
        say(console, f"{' ' * 8}{text}", " " * 8)


def print_explanation(console: Console, e: Explanation) -> None:
    """report.py's layout: the packet and what was assumed, the rules every way shares, each way
    (share, DNAT, verdict, why masqueraded, its own rules), the rules after, what was left out."""
    p = e.packet
    where = "sent by the node itself (output)" if p.local else f"in on {p.in_interface}"
    head = [f"{e.source}: a new {p.protocol} connection {p.src}:{p.sport} -> {p.dst}:{p.dport}, "
            f"{where}", f"Service: {e.service or '(no kube-proxy Service on the way)'}",
            *(f"Assumed: {note}" for note in e.assumptions)]
    for number, text in enumerate(head):
        say(console, text, "  ", bold=e.source if number == 0 else "")
    before, after = e.split_path()
    one = len(e.fates) == 1
    title = "Rules it matched" if one else "Rules every way matched"
    console.print(f"\n[bold]{title}[/] (in the order the packet meets them):")
    _print_steps(console, e.fates[0].path if one else before, e.counters)
    if not one:
        console.print(f"\n[bold]Then {len(e.fates)} ways[/] (probabilities sum to exactly 1):")
    for number, fate in enumerate(e.fates, start=1):
        _print_way(console, e, number, fate, () if one else set(before) | set(after))
    if after and not one:
        console.print("\n[bold]Then, on every way[/]:")
        _print_steps(console, after, e.counters)
    if e.left_out:
        console.print("\n[bold]Not modelled[/] (rules on this packet's way the kit does not "
                      "model):")
        for item in e.left_out:
            say(console, f"  {item.describe()}", "    ")
    console.print()
    say(console, f"Verdict: {summary_line(e)}", "  ", bold="Verdict:")


def _print_way(console: Console, e: Explanation, number: int, fate: Outcome, shared) -> None:
    """One way: its share, DNAT and verdict, why it is masqueraded, and its own rules."""
    console.print()
    share = percent(fate.probability)
    dnat = f"DNAT to {_dnat(fate)}" if fate.dnat else "not DNATed"
    say(console, f"{number}. {share} (exactly {exact(fate.probability)}): {dnat}; "
        f"{_verdict(fate)}", "   ", bold=share, fold=True)
    if fate.verdict == "ACCEPT":
        say(console, f"   {_why_masqueraded(fate)}", "     ")
    own = tuple(s for s in fate.path if s not in shared) if shared else ()
    if own:
        _print_steps(console, own, e.counters)


def summary_line(e: Explanation) -> str:
    """One sentence: accepted to N endpoints, rejected (no endpoints), dropped, or a mix."""
    accepted = tuple(f for f in e.fates if f.verdict == "ACCEPT")
    # report.py words the accepted ways alike in both modes; only how a way ended differs.
    parts = [report.summary_line(replace(e, fates=accepted))] if accepted else []
    for verdict in dict.fromkeys(f.verdict for f in e.fates if f.verdict != "ACCEPT"):
        ways = [f for f in e.fates if f.verdict == verdict]
        share = sum((f.probability for f in ways), Fraction(0))
        parts.append(_verdict(ways[0]) + ("" if share == 1 else f" ({percent(share)})"))
    return "; ".join(parts)


def explanation_json(e: Explanation) -> dict:
    """report.py's JSON (file, packet, service, assumptions, not_modelled), with nft's ways."""
    out = report.explanation_json(replace(e, fates=()))
    out["fates"] = [{
        "probability": exact(f.probability), "percent": float(f.probability) * 100,
        "verdict": f.verdict, "route": f.route, "dnat": _dnat(f),
        "masqueraded": f.masquerade, "mark": f.mark,
        "snat": None if not f.snat else f"{f.snat[0]}" + (f":{f.snat[1]}" if f.snat[1] else ""),
        "marked_by": [_step_json(s) for s in marked_by(f)],
        "ended_by": _step_json(ended_by(f)) if ended_by(f) else None,
        "path": [_step_json(s) for s in f.path],
    } for f in e.fates]
    out["verdict"] = summary_line(e)
    return out


def _step_json(step: NftStep) -> dict:
    found = counters_of(step.text)
    return {"line": step.line, "table": step.table, "chain": step.chain, "number": step.number,
            "rule": step.text, "counters": None if found is None else [found.packets, found.bytes]}
