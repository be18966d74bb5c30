"""One self-contained HTML page per graded submission: no external asset, no script.

The page shows the header (lab, exercise, submission, mode, score), every check with its
feedback, the endpoint shares the checks measured (observed vs expected, inline SVG bars, from
`evidence["spreads"]`) and the nat path KUBE-SERVICES → KUBE-SVC-… → KUBE-SEP-… → DNAT with
each edge's packet count (from `evidence["counters"]`, the node's `iptables-save -c -t nat` at
the end of live grading; in static mode from the submission applied to the starting state,
without counts).

A submission is hostile input: its name, its rules and the feedback quoting them reach this page
only through `esc()`, and the page forbids scripts outright (Content-Security-Policy).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from lab_runner.grading.formats import plain
from lab_runner.grading.results import GradeResult
from lab_runner.ruleset.parse import Ruleset, parse

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "undecidable": "#9a6700", "error": "#cf222e"}
# Chains off the Service path: a jump there is shown as a note on its chain, not as a node.
SIDE_CHAINS = ("KUBE-MARK-MASQ", "KUBE-MARK-DROP", "KUBE-NODEPORTS", "KUBE-POSTROUTING")
MAX_NODES = 120
NODE_W, NODE_H, COL_GAP, ROW_GAP = 210, 46, 110, 14
SVG_FONT = 'font-family="ui-monospace,monospace" font-size="11"'  # also outside the page's CSS

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#1f2328;
 padding:0 1em}
h1{font-size:1.4em;margin-bottom:.2em}
h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #d0d7de}
.meta{color:#57606a}.meta td{padding:0 1.2em 0 0;vertical-align:top}
.score{font-size:1.3em;font-weight:600}
table.checks,table.edges{border-collapse:collapse}table.checks{width:100%}
table.checks td,table.checks th,table.edges td,table.edges th{border-bottom:1px solid #d0d7de;
 padding:.35em .5em;text-align:left;vertical-align:top}
table.edges{font-size:.9em}
.status{font-weight:600;white-space:nowrap}.pts{white-space:nowrap;text-align:right}
pre,.fb{white-space:pre-wrap;word-break:break-word;font:12.5px/1.4 ui-monospace,monospace;margin:0}
.error{background:#ffebe9;border:1px solid #cf222e;padding:.6em;border-radius:4px}
.note{color:#57606a;font-size:.92em}
svg text{font:11px ui-monospace,monospace}
"""


def esc(value) -> str:
    """Text for HTML: markup escaped, control characters (from file names) shown as �."""
    return html.escape(plain(str(value)), quote=True)


def render(result: GradeResult) -> str:
    """The whole page for one result."""
    title = f"{result.lab} exercise {result.exercise}: {result.submission}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        _header(result), _checks(result), _spreads(result), _graph(result), _submission(result),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


# -- header and checks -------------------------------------------------------------------------
def _header(result: GradeResult) -> str:
    colour = COLOURS["passed"] if result.max_score and result.score >= result.max_score \
        else COLOURS["failed"]
    rows = [("lab", result.lab), ("exercise", f"{result.exercise}: {result.exercise_title}"),
            ("submission", result.submission), ("mode", result.mode),
            ("graded in", f"{result.seconds:.1f} s")]
    meta = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    error = (f'<p class="error"><strong>Not graded:</strong> <span class="fb">{esc(result.error)}'
             "</span></p>") if result.error else ""
    return (f"<h1>{esc(result.lab)} — exercise {esc(result.exercise)}</h1>"
            f'<table class="meta">{meta}</table>'
            f'<p class="score" style="color:{colour}">score {result.score:g}/{result.max_score:g}'
            f" — {esc(result.summary_line())}</p>{error}")


def _checks(result: GradeResult) -> str:
    rows = []
    for c in result.checks:
        feedback = "" if c.status == "passed" else c.output
        rows.append(f'<tr><td class="status" style="color:{COLOURS.get(c.status, "#000")}">'
                    f'{esc(c.status)}</td><td class="pts">{c.points:g}/{c.max_points:g}</td>'
                    f'<td>{esc(c.title)}<div class="fb">{esc(feedback)}</div></td></tr>')
    return ("<h2>Checks</h2><table class=\"checks\"><tr><th>result</th><th>points</th>"
            f"<th>check and feedback</th></tr>{''.join(rows)}</table>")


# -- endpoint shares ---------------------------------------------------------------------------
def _spreads(result: GradeResult) -> str:
    spreads = [s for s in result.evidence.get("spreads") or [] if isinstance(s, dict)]
    if not spreads:
        return ""
    charts = [_spread_chart(s) for s in spreads]
    return ("<h2>Endpoint distribution</h2><p class=\"note\">The share of new connections each "
            "destination got (observed) and the share kube-proxy's rules give it (expected).</p>"
            + "".join(charts))


def _share(value) -> float:
    try:
        return max(0.0, min(1.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


def _spread_chart(spread: dict) -> str:
    observed = {str(k): _share(v) for k, v in (spread.get("observed") or {}).items()}
    expected = {str(k): _share(v) for k, v in (spread.get("expected") or {}).items()}
    dests = sorted(set(observed) | set(expected))[:MAX_NODES]
    label_w, bar_w, row_h = 190, 360, 34
    top = 24
    height = top + row_h * len(dests) + 8
    scale = max([*observed.values(), *expected.values(), 0.01])
    items = [f'<rect x="{label_w}" y="4" width="12" height="10" fill="#0969da"/>'
             f'<text x="{label_w + 16}" y="13">observed</text>'
             f'<rect x="{label_w + 100}" y="4" width="12" height="10" fill="none" '
             f'stroke="#57606a" stroke-dasharray="3 2"/>'
             f'<text x="{label_w + 116}" y="13">expected</text>']
    for i, dest in enumerate(dests):
        y = top + i * row_h
        got, want = observed.get(dest, 0.0), expected.get(dest, 0.0)
        items.append(f'<text x="0" y="{y + 17}"><title>{esc(dest)}</title>{esc(_short(dest, 26))}'
                     "</text>")
        items.append(f'<rect x="{label_w}" y="{y + 2}" width="{bar_w * got / scale:.1f}" '
                     f'height="13" fill="#0969da"/>')
        items.append(f'<rect x="{label_w}" y="{y + 16}" width="{bar_w * want / scale:.1f}" '
                     'height="13" fill="none" stroke="#57606a" stroke-dasharray="3 2"/>')
        items.append(f'<text x="{label_w + bar_w + 8}" y="{y + 13}">{got * 100:.1f} %</text>')
        items.append(f'<text x="{label_w + bar_w + 8}" y="{y + 27}" fill="#57606a">'
                     f"{want * 100:.1f} %</text>")
    verdict = "as expected" if spread.get("passed") else "not as expected"
    colour = COLOURS["passed"] if spread.get("passed") else COLOURS["failed"]
    return (f"<h3>{esc(spread.get('source', '?'))} → {esc(spread.get('target', '?'))}: "
            f'<span style="color:{colour}">{verdict}</span></h3>'
            f'<p class="note">{esc(spread.get("detail", ""))}</p>'
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{label_w + bar_w + 70}" '
            f'height="{height}" {SVG_FONT} aria-label="observed and expected shares per destination">'
            f"{''.join(items)}</svg>")


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- chain graph -------------------------------------------------------------------------------
@dataclass
class Edge:
    source: str
    target: str
    packets: int | None  # None: no counters (static mode)
    rules: list[str] = field(default_factory=list)
    probability: str = ""  # a `-m statistic --probability` on the rule, shown when no counts


@dataclass
class Graph:
    columns: list[list[str]]
    edges: list[Edge]
    notes: dict[str, str]  # node → "marks n" etc.
    cut: bool = False


def column_of(name: str) -> int:
    if name == "KUBE-SERVICES":
        return 0
    if name.startswith("KUBE-SEP-"):
        return 2
    if name.startswith("DNAT "):
        return 3
    return 1  # KUBE-SVC-…, KUBE-EXT-…, KUBE-FW-…, or a chain of the student's own


def chain_graph(ruleset: Ruleset) -> Graph:
    """The nat path from KUBE-SERVICES: every chain it reaches, and DNAT destinations as leaves."""
    table = ruleset.table("nat")
    if "KUBE-SERVICES" not in table.chains:
        raise KeyError("the nat table has no KUBE-SERVICES chain")
    seen = {"KUBE-SERVICES": None}  # in the order reached: SEP i and its DNAT share a row
    queue, edges, notes = ["KUBE-SERVICES"], {}, {}
    cut = False
    while queue:
        name = queue.pop(0)
        marked: int | None = 0
        for rule in table.chains[name].rules:
            packets = rule.counters.packets if rule.counters is not None else None
            if rule.target in SIDE_CHAINS:
                if rule.target == "KUBE-MARK-MASQ":
                    marked = None if packets is None or marked is None else marked + packets
                    notes[name] = "→ KUBE-MARK-MASQ" + (f": {marked} pkts" if marked is not None
                                                         else "")
                continue
            if rule.target == "DNAT":
                target = "DNAT " + _dnat_destination(rule.target_args)
            elif rule.target in table.chains and not table.chains[rule.target].builtin:
                target = rule.target
            else:
                continue
            if target not in seen:
                if len(seen) >= MAX_NODES:
                    cut = True
                    continue
                seen[target] = None
                if not target.startswith("DNAT "):
                    queue.append(target)
            edge = edges.setdefault((name, target), Edge(name, target, 0))
            edge.packets = None if packets is None or edge.packets is None else edge.packets + packets
            edge.rules.append(rule.text)
            edge.probability = _probability(rule) or edge.probability
    columns: list[list[str]] = [[], [], [], []]
    for name in seen:
        columns[column_of(name)].append(name)
    return Graph(columns, list(edges.values()), notes, cut)


def _probability(rule) -> str:
    match = rule.match("statistic")
    args = list(match.args) if match else []
    if "--probability" in args and args.index("--probability") + 1 < len(args):
        return args[args.index("--probability") + 1]
    return ""


def _dnat_destination(args) -> str:
    args = list(args)
    for i, word in enumerate(args):
        if word == "--to-destination" and i + 1 < len(args):
            return args[i + 1]
    return " ".join(args) or "?"


def _graph_ruleset(result: GradeResult) -> tuple[Ruleset | None, str]:
    """The ruleset to draw and where it comes from, or None and why not."""
    evidence = result.evidence or {}
    try:
        if evidence.get("counters"):
            return parse(evidence["counters"], "<iptables-save -c -t nat>", check=False), (
                "the node's nat table at the end of grading (iptables-save -c): each edge's "
                "count is the packets its rule(s) matched during grading")
        if evidence.get("submission") and evidence.get("start"):
            base = parse(evidence["start"], "<starting state>")
            return parse(evidence["submission"], "<submission>", base=base), (
                "the submission applied to the starting state (static mode: no packets were "
                "sent, so there are no counts)")
    except Exception as exc:  # noqa: BLE001 - a report never fails on odd evidence
        return None, f"the ruleset could not be read: {exc}"
    return None, "no ruleset was recorded for this submission"


def _graph(result: GradeResult) -> str:
    ruleset, source = _graph_ruleset(result)
    head = "<h2>The nat path, with counters</h2>"
    if ruleset is None:
        return "" if result.error and "no ruleset" in source else \
            f'{head}<p class="note">{esc(source)}</p>'
    try:
        graph = chain_graph(ruleset)
    except KeyError as exc:
        return f'{head}<p class="note">{esc(exc.args[0] if exc.args else exc)}</p>'
    return (f'{head}<p class="note">From {esc(source)}.</p>{_graph_svg(graph)}'
            + ('<p class="note">(more chains than can be drawn: the rest are left out)</p>'
               if graph.cut else "") + _edge_table(graph))


def _graph_svg(graph: Graph) -> str:
    pos = {}
    for c, names in enumerate(graph.columns):
        for r, name in enumerate(names):
            pos[name] = (10 + c * (NODE_W + COL_GAP), 10 + r * (NODE_H + ROW_GAP))
    rows = max((len(col) for col in graph.columns), default=1) or 1
    width = 10 + 4 * (NODE_W + COL_GAP)
    height = 20 + rows * (NODE_H + ROW_GAP)
    top = max((e.packets or 0 for e in graph.edges), default=0) or 1
    items = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
             'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path '
             'd="M0,0L10,5L0,10z" fill="#57606a"/></marker></defs>']
    for edge in graph.edges:
        (x1, y1), (x2, y2) = pos[edge.source], pos[edge.target]
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
        if x2 <= x1:  # same column or backwards: loop around underneath
            x2, y2 = x2 + NODE_W / 2, y2 + NODE_H
        mid = (x1 + x2) / 2
        zero = edge.packets == 0
        stroke = 1.2 + 4 * (edge.packets or 0) / top
        dash = ' stroke-dasharray="4 3"' if zero or edge.packets is None else ""
        items.append(f'<path d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} '
                     f'{x2:.0f},{y2:.0f}" fill="none" stroke="{"#afb8c1" if zero else "#57606a"}" '
                     f'stroke-width="{stroke:.1f}"{dash} marker-end="url(#arrow)"/>')
        label = f"{edge.packets} pkts" if edge.packets is not None else \
            (f"p {_short(edge.probability, 12)}" if edge.probability else "")
        if label:  # above the arrow's end: fanned-out edges keep apart
            items.append(f'<text x="{x2 - 8:.0f}" y="{y2 - 5:.0f}" text-anchor="end" '
                         f'fill="{"#8c959f" if zero else "#1f2328"}">{esc(label)}</text>')
    for name, (x, y) in pos.items():
        fill = "#ddf4ff" if not name.startswith("DNAT ") else "#dafbe1"
        note = graph.notes.get(name, "")
        items.append(f'<g><title>{esc(name)}{(" — " + esc(note)) if note else ""}</title>'
                     f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="5" '
                     f'fill="{fill}" stroke="#54aeff"/>'
                     f'<text x="{x + 8}" y="{y + 19}">{esc(_short(name, 29))}</text>'
                     f'<text x="{x + 8}" y="{y + 35}" fill="#57606a">{esc(_short(note, 30))}'
                     "</text></g>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
            f'{SVG_FONT} aria-label="nat chains from KUBE-SERVICES with packet counts">'
            f'{"".join(items)}</svg>')


def _edge_table(graph: Graph) -> str:
    rows = "".join(
        f"<tr><td>{esc(e.source)}</td><td>{esc(e.target)}</td>"
        f"<td>{'–' if e.packets is None else e.packets}</td>"
        f"<td><pre>{esc(chr(10).join(e.rules))}</pre></td></tr>" for e in graph.edges)
    notes = "".join(f"<tr><td>{esc(k)}</td><td colspan=\"3\">{esc(v)}</td></tr>"
                    for k, v in sorted(graph.notes.items()))
    return ("<details><summary>Edges and the rules behind them</summary>"
            "<table class=\"edges\"><tr><th>from</th><th>to</th><th>packets</th><th>rule(s)</th>"
            f"</tr>{rows}{notes}</table></details>")


def _submission(result: GradeResult) -> str:
    text = (result.evidence or {}).get("submission")
    if not text:
        return ""
    return ("<h2>The submission</h2><details><summary>show the rules as submitted</summary>"
            f"<pre>{esc(text)}</pre></details>")
