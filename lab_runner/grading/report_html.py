"""One self-contained HTML page per graded submission: no external asset, no script.

The page shows the header (lab, exercise, submission, mode, score), every check with its
feedback, the endpoint shares the checks measured (observed vs expected, inline SVG bars, from
`evidence["spreads"]`) and the nat path KUBE-SERVICES → KUBE-SVC-… → KUBE-SEP-… → DNAT with
each edge's packet count (from `evidence["counters"]`, the node's `iptables-save -c -t nat` at
the end of live grading; in static mode from the submission applied to the starting state,
without counts). The graph is drawn in three columns (KUBE-SERVICES, KUBE-SVC-… and other
chains, KUBE-SEP-…) with each chain's DNAT destinations inside its box, and scales down with the
page (an SVG viewBox) so it fits an 800-pixel-wide window at full size.

Duplicate rules and rules no packet reaches (rule_lint) are marked where the page shows rules:
a list of them after the checks, the submission's numbered lines, and the graph's edges.

A submission is hostile input: its name, its rules and the feedback quoting them reach this page
only through `esc()`, and the page forbids scripts outright (Content-Security-Policy).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from lab_runner.grading.formats import plain
from lab_runner.grading.results import GradeResult
from lab_runner.grading.rule_lint import Finding, by_rule, lint
from lab_runner.ruleset.parse import Rule, Ruleset, parse

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "undecidable": "#9a6700", "error": "#cf222e"}
# Chains off the Service path: a jump there is shown as a note on its chain, not as a node.
SIDE_CHAINS = ("KUBE-MARK-MASQ", "KUBE-MARK-DROP", "KUBE-NODEPORTS", "KUBE-POSTROUTING")
MAX_NODES = 120  # chains drawn at most (their DNATs are lines in their boxes)
# Three columns of 200 + two gaps of 70 + margins: 760 user units, which an 800-pixel window
# shows at 0.996 (its body is 757 px beside the scrollbar) and wider ones at full size; names of
# 28 characters (iptables' longest) fit a box at 11 px. Narrower windows scale it down.
NODE_W, COL_GAP, ROW_GAP, LINE_H, PAD, MARGIN = 200, 70, 12, 15, 8, 10
BOX_CHARS = 28  # characters of 11-px monospace a box holds
DRAWN_COLUMNS = 3  # the fourth column of Graph (DNAT destinations) is drawn inside the boxes
MARK_COLOURS = {"dead": "#cf222e", "duplicate": "#bf8700"}
DASHED = ' stroke-dasharray="4 3"'
HALO = 'stroke="#fff" stroke-width="3" paint-order="stroke"'  # a label stays legible over lines
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
svg.fit{width:100%;height:auto;display:block}
.lint-dead{background:#ffebe9}.lint-duplicate{background:#fff8c5}
.mark{font-weight:600}.mark-dead{color:#a40e26}.mark-duplicate{color:#7d4e00}
table.lint{border-collapse:collapse;width:100%}table.lint td,table.lint th{padding:.3em .5em;
 vertical-align:top;text-align:left;border-bottom:1px solid #d0d7de}
.legend span.key{display:inline-block;padding:0 .4em;margin-right:.3em;border-radius:3px}
.listing{font:12.5px/1.45 ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}
.listing .ln{color:#8c959f;user-select:none}
"""


def esc(value) -> str:
    """Text for HTML: markup escaped, control characters (from file names) shown as �."""
    return html.escape(plain(str(value)), quote=True)


def render(result: GradeResult) -> str:
    """The whole page for one result."""
    title = f"{result.lab} exercise {result.exercise}: {result.submission}"
    marks = submission_marks(result)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        _header(result), _checks(result), _lint_section(marks), _spreads(result),
        _graph(result, marks), _submission(result, marks), "</body></html>",
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
            + svg(label_w + bar_w + 70, height, "observed and expected shares per destination",
                  "".join(items)))


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg(width: float, height: float, label: str, body: str) -> str:
    """An inline SVG drawn at width × height that scales down to fit a narrower page: the viewBox
    keeps its proportions; max-width stops it growing past its own size."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="fit" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
            f'style="max-width:{width:.0f}px" {SVG_FONT} aria-label="{esc(label)}">{body}</svg>')


# -- duplicate and dead rules ------------------------------------------------------------------
@dataclass
class Marks:
    """The submission applied to the starting state, the findings about it, and id() of the
    starting state's rules (they have no line in the submission)."""

    ruleset: Ruleset | None = None
    findings: list[Finding] = field(default_factory=list)
    kept: set[int] = field(default_factory=set)
    error: str = ""  # why the submission could not be applied

    def where(self, rule: Rule) -> str:
        return "starting state" if id(rule) in self.kept else f"line {rule.line_no}"


def submission_marks(result: GradeResult) -> Marks:
    """Duplicate and dead rules that involve the submission's own rules; the texts name its
    lines ("duplicate of line 5") and quote a starting-state rule, which has no line there."""
    evidence = result.evidence or {}
    if not (evidence.get("submission") and evidence.get("start")):
        return Marks()
    try:
        base = parse(evidence["start"], "<starting state>")
        ruleset = parse(evidence["submission"], "<submission>", base=base)
    except Exception as exc:  # noqa: BLE001 - a report never fails on odd evidence (lab 1: ip)
        return Marks(error=str(exc))
    kept = {id(rule) for rule in base.rules()}

    def where(rule: Rule) -> str:
        return f"the starting state's “{_short(rule.spec, 60)}”" if id(rule) in kept \
            else f"line {rule.line_no}"

    own = [rule for rule in ruleset.rules() if id(rule) not in kept]
    return Marks(ruleset, _lint(ruleset, own, where), kept)


def _lint(ruleset: Ruleset, own: list[Rule] | None, where) -> list[Finding]:
    """rule_lint's findings; none if a rule it cannot read stops it (the page still renders)."""
    try:
        return lint(ruleset, own, where)
    except Exception:  # noqa: BLE001 - a report never fails on odd evidence
        return []


LEGEND = ('<p class="legend note"><span class="key lint-duplicate mark mark-duplicate">duplicate'
          "</span>a rule its chain already has (the same in effect, comments aside); "
          '<span class="key lint-dead mark mark-dead">never reached</span>a rule no packet gets '
          "to: it follows a rule every packet leaves the chain by, or no rule that packets reach "
          "jumps to its chain.</p>")


def _lint_section(marks: Marks) -> str:
    if not marks.findings:
        return ""
    rows = "".join(
        f'<tr class="lint-{f.kind}"><td>{esc(marks.where(f.rule))}</td><td><pre>'
        f'{esc(f.rule.text)}</pre></td><td><span class="mark mark-{f.kind}">{esc(f.text)}'
        "</span></td></tr>" for f in marks.findings)
    return (f"<h2>Rules to look at</h2>{LEGEND}"
            f'<table class="lint"><tr><th>where</th><th>rule</th><th>why</th></tr>{rows}</table>')


# -- chain graph -------------------------------------------------------------------------------
@dataclass
class Edge:
    source: str
    target: str
    packets: int | None  # None: no counters (static mode)
    rules: list[str] = field(default_factory=list)
    probability: str = ""  # a `-m statistic --probability` on the rule, shown when no counts
    marks: list[Finding] = field(default_factory=list)  # duplicate or dead rules behind it
    live: bool = False  # some rule behind it is reached

    @property
    def mark(self) -> str:
        """What the edge shows: "dead" when no rule behind it is reached, "duplicate" when one
        repeats an earlier rule, else ""."""
        if not self.live and self.marks:
            return "dead"
        return "duplicate" if any(f.kind == "duplicate" for f in self.marks) else ""


@dataclass
class Graph:
    columns: list[list[str]]
    edges: list[Edge]
    notes: dict[str, str]  # node → "marks n" etc.
    cut: bool = False
    dead_notes: set[str] = field(default_factory=set)  # nodes whose side jumps are never reached


def column_of(name: str) -> int:
    if name == "KUBE-SERVICES":
        return 0
    if name.startswith("KUBE-SEP-"):
        return 2
    if name.startswith("DNAT "):
        return 3
    return 1  # KUBE-SVC-…, KUBE-EXT-…, KUBE-FW-…, or a chain of the student's own


def chain_graph(ruleset: Ruleset, marks: dict[int, list[Finding]] | None = None) -> Graph:
    """The nat path from KUBE-SERVICES: every chain it reaches, and DNAT destinations as leaves.
    `marks` (rule_lint.by_rule) puts each rule's findings on the edge it makes."""
    table = ruleset.table("nat")
    if "KUBE-SERVICES" not in table.chains:
        raise KeyError("the nat table has no KUBE-SERVICES chain")
    marks = marks or {}
    seen = {"KUBE-SERVICES": None}  # in the order reached: SEP i and its DNAT share a row
    queue, edges, notes, side_live = ["KUBE-SERVICES"], {}, {}, {}
    cut, chains = False, 1
    while queue:
        name = queue.pop(0)
        marked: int | None = 0
        for rule in table.chains[name].rules:
            packets = rule.counters.packets if rule.counters is not None else None
            dead = any(f.kind == "dead" for f in marks.get(id(rule), ()))
            if rule.target in SIDE_CHAINS:
                if rule.target == "KUBE-MARK-MASQ":
                    marked = None if packets is None or marked is None else marked + packets
                    notes[name] = "→ KUBE-MARK-MASQ" + (f": {marked} pkts" if marked is not None
                                                         else "")
                    side_live[name] = side_live.get(name, False) or not dead
                continue
            if rule.target == "DNAT":
                target = "DNAT " + _dnat_destination(rule.target_args)
            elif rule.target in table.chains and not table.chains[rule.target].builtin:
                target = rule.target
            else:
                continue
            if target not in seen:
                leaf = target.startswith("DNAT ")  # a line in its chain's box, not a box
                if not leaf and chains >= MAX_NODES:
                    cut = True
                    continue
                seen[target] = None
                if not leaf:
                    queue.append(target)
                    chains += 1
            edge = edges.setdefault((name, target), Edge(name, target, 0))
            edge.packets = None if packets is None or edge.packets is None \
                else edge.packets + packets
            edge.rules.append(rule.text)
            edge.probability = _probability(rule) or edge.probability
            edge.marks += marks.get(id(rule), [])
            edge.live = edge.live or not dead
    columns: list[list[str]] = [[], [], [], []]
    for name in seen:
        columns[column_of(name)].append(name)
    return Graph(columns, list(edges.values()), notes, cut,
                 {name for name, live in side_live.items() if not live})


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


def _graph_ruleset(result: GradeResult, marks: Marks) -> tuple[Ruleset | None, str, dict]:
    """The ruleset to draw, where it comes from and its rules' findings; or None and why not."""
    evidence = result.evidence or {}
    try:
        if evidence.get("counters"):
            saved = parse(evidence["counters"], "<iptables-save -c -t nat>", check=False)
            # The node's listing has no submission lines: a rule is named by its place in its
            # chain, as `iptables -t nat -L CHAIN --line-numbers` numbers it.
            place = {id(rule): f"rule {n} of {chain.name}" for chain in saved.table("nat")
                     .chains.values() for n, rule in enumerate(chain.rules, start=1)}
            found = _lint(saved, None, lambda rule: place[id(rule)])
            return saved, (
                "the node's nat table at the end of grading (iptables-save -c): each edge's "
                "count is the packets its rule(s) matched during grading"), by_rule(found)
        if marks.ruleset is not None:
            return marks.ruleset, (
                "the submission applied to the starting state (static mode: no packets were "
                "sent, so there are no counts)"), by_rule(marks.findings)
        if marks.error:
            return None, f"the ruleset could not be read: {marks.error}", {}
    except Exception as exc:  # noqa: BLE001 - a report never fails on odd evidence
        return None, f"the ruleset could not be read: {exc}", {}
    return None, "no ruleset was recorded for this submission", {}


def _graph(result: GradeResult, marks: Marks) -> str:
    ruleset, source, found = _graph_ruleset(result, marks)
    head = "<h2>The nat path, with counters</h2>"
    if ruleset is None:
        return "" if result.error and "no ruleset" in source else \
            f'{head}<p class="note">{esc(source)}</p>'
    try:
        graph = chain_graph(ruleset, found)
    except KeyError as exc:
        return f'{head}<p class="note">{esc(exc.args[0] if exc.args else exc)}</p>'
    legend = (LEGEND if any(e.mark for e in graph.edges) or graph.dead_notes else "")
    return (f'{head}<p class="note">From {esc(source)}.</p>{_graph_svg(graph)}{legend}'
            + ('<p class="note">(more chains than can be drawn: the rest are left out)</p>'
               if graph.cut else "") + _edge_table(graph))


@dataclass
class Box:
    """A chain drawn as a box: its name, the DNATs it ends in, its side jumps."""

    name: str
    x: float
    y: float
    lines: list[tuple[str, str, str]]  # (text, colour, full text for the tooltip)

    @property
    def height(self) -> float:
        return 2 * PAD + LINE_H * len(self.lines)


def _count(packets: int) -> str:
    """A packet count short enough for the gap between columns."""
    if packets < 100_000:
        return f"{packets} pkts"
    return f"{packets / 1e6:.1f}M pkts" if packets >= 1_000_000 else f"{packets // 1000}k pkts"


def _boxes(graph: Graph) -> dict[str, Box]:
    dnats: dict[str, list[Edge]] = {}
    for edge in graph.edges:
        if edge.target.startswith("DNAT "):
            dnats.setdefault(edge.source, []).append(edge)
    boxes: dict[str, Box] = {}
    for c, names in enumerate(graph.columns[:DRAWN_COLUMNS]):
        y = MARGIN
        for name in names:
            lines = [(name, "#1f2328", name)]
            for edge in dnats.get(name, []):
                lines += _dnat_lines(edge)
            note = graph.notes.get(name, "")
            if name in graph.dead_notes:
                lines.append(("→ MARK-MASQ: never reached", MARK_COLOURS["dead"],
                              f"{note}: never reached"))
            elif note:
                lines.append((note, "#57606a", note))
            box = Box(name, MARGIN + c * (NODE_W + COL_GAP), y, lines)
            boxes[name] = box
            y += box.height + ROW_GAP
    return boxes


def _dnat_lines(edge: Edge) -> list[tuple[str, str, str]]:
    """`DNAT 172.17.0.2:80 · 23 pkts`, the count on a line of its own where both do not fit."""
    count = "" if edge.packets is None else _count(edge.packets)
    colour = MARK_COLOURS.get(edge.mark, "#116329")
    full = " · ".join(filter(None, [edge.target, count, edge.mark and edge.marks[0].text]))
    if not count or len(edge.target) + len(count) + 3 <= BOX_CHARS:
        return [(" · ".join(filter(None, [edge.target, count])), colour, full)]
    return [(edge.target, colour, full), ("  " + count, colour, full)]


def _graph_svg(graph: Graph) -> str:
    boxes = _boxes(graph)
    width = 2 * MARGIN + DRAWN_COLUMNS * NODE_W + (DRAWN_COLUMNS - 1) * COL_GAP
    height = max((b.y + b.height for b in boxes.values()), default=0) + 2 * MARGIN
    top = max((e.packets or 0 for e in graph.edges), default=0) or 1
    reached = {e.target for e in graph.edges if e.mark != "dead"}
    drawn = [_edge_svg(edge, boxes, top) for edge in graph.edges if edge.target in boxes]
    # Lines first, then boxes, then the edge labels: a label is never under another edge.
    items = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
             'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path '
             'd="M0,0L10,5L0,10z" fill="#57606a"/></marker></defs>',
             *(path for path, _ in drawn),
             *(_box_svg(box, name != "KUBE-SERVICES" and name not in reached)
               for name, box in boxes.items()),
             *(label for _, label in drawn)]
    return svg(width, height, "nat chains from KUBE-SERVICES with packet counts", "".join(items))


def _edge_svg(edge: Edge, boxes: dict[str, Box], top: int) -> tuple[str, str]:
    """The edge's line (with a tooltip: its rules' probability and findings) and its label."""
    src, dst = boxes[edge.source], boxes[edge.target]
    x1, y1 = src.x + NODE_W, src.y + src.height / 2
    x2, y2 = dst.x, dst.y + dst.height / 2
    if x2 <= x1:  # same column or backwards: loop around underneath
        x2, y2 = x2 + NODE_W / 2, dst.y + dst.height
    mid = (x1 + x2) / 2
    zero = edge.packets == 0
    colour = MARK_COLOURS.get(edge.mark, "#afb8c1" if zero else "#57606a")
    stroke = 1.2 + 4 * (edge.packets or 0) / top
    dash = DASHED if zero or edge.packets is None or edge.mark else ""
    kind = f"edge edge-{edge.mark}" if edge.mark else "edge"
    title = (f"{edge.source} → {edge.target}" + (f" p {edge.probability}" if edge.probability
                                                   else "")
             + "".join(f" — {f.text}" for f in edge.marks))
    path = (f'<g class="{kind}"><title>{esc(title)}</title><path d="M{x1:.0f},{y1:.0f} '
            f'C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}" fill="none" '
            f'stroke="{colour}" stroke-width="{stroke:.1f}"{dash} marker-end="url(#arrow)"/></g>')
    label = _count(edge.packets) if edge.packets is not None else \
        (f"p {_probability_short(edge.probability)}" if edge.probability else "")
    if not label:
        return path, ""
    # Above the arrow's end: edges fanned out from one chain keep their labels apart.
    return path, (f'<text class="{kind}" x="{x2 - 6:.0f}" y="{y2 - 5:.0f}" text-anchor="end" '
                  f'{HALO} fill="{"#8c959f" if zero and not edge.mark else colour}">'
                  f"<title>{esc(title)}</title>{esc(label)}</text>")


def _box_svg(box: Box, dead: bool) -> str:
    lines = "".join(
        f'<text x="{box.x + PAD}" y="{box.y + PAD + 11 + i * LINE_H}" fill="{colour}">'
        f"<title>{esc(full)}</title>{esc(_short(text, BOX_CHARS))}</text>"
        for i, (text, colour, full) in enumerate(box.lines))
    return (f'<g class="node{" node-dead" if dead else ""}"><title>{esc(box.name)}'
            f'{" — never reached" if dead else ""}</title>'
            f'<rect x="{box.x}" y="{box.y}" width="{NODE_W}" height="{box.height}" rx="5" '
            f'fill="{"#ffebe9" if dead else "#ddf4ff"}" '
            f'stroke="{MARK_COLOURS["dead"] if dead else "#54aeff"}"{DASHED if dead else ""}/>'
            f"{lines}</g>")


def _probability_short(value: str) -> str:
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return _short(value, 8)


def _row_class(mark: str) -> str:
    return f' class="lint-{mark}"' if mark else ""


def _edge_table(graph: Graph) -> str:
    rows = "".join(
        f"<tr{_row_class(e.mark)}><td>{esc(e.source)}</td>"
        f"<td>{esc(e.target)}</td><td>{'–' if e.packets is None else e.packets}</td>"
        f"<td><pre>{esc(chr(10).join(e.rules))}</pre>"
        + "".join(f'<div class="mark mark-{f.kind}">{esc(f.text)}</div>' for f in e.marks)
        + "</td></tr>" for e in graph.edges)
    notes = "".join(f"<tr><td>{esc(k)}</td><td colspan=\"3\">{esc(v)}</td></tr>"
                    for k, v in sorted(graph.notes.items()))
    return ("<details><summary>Edges and the rules behind them</summary>"
            "<table class=\"edges\"><tr><th>from</th><th>to</th><th>packets</th><th>rule(s)</th>"
            f"</tr>{rows}{notes}</table></details>")


# -- the submission ----------------------------------------------------------------------------
def _submission(result: GradeResult, marks: Marks) -> str:
    """The submission's numbered lines, each marked rule with its finding; open when any is."""
    text = (result.evidence or {}).get("submission")
    if not text:
        return ""
    on_line: dict[int, list[Finding]] = {}
    for finding in marks.findings:
        if id(finding.rule) not in marks.kept:
            on_line.setdefault(finding.rule.line_no, []).append(finding)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    width = len(str(len(lines)))
    out = []
    for number, line in enumerate(lines, start=1):
        found = on_line.get(number, [])
        kind = f' lint-{found[0].kind}' if found else ""
        flags = "".join(f' <span class="mark mark-{f.kind}">← {esc(f.text)}</span>'
                        for f in found)
        out.append(f'<div class="line{kind}"><span class="ln">{number:>{width}} </span>'
                   f"{esc(line)}{flags}</div>")
    return ("<h2>The submission</h2>"
            f"<details{' open' if on_line else ''}><summary>show the rules as submitted"
            f'</summary><div class="listing">{"".join(out)}</div></details>')
