"""report.html in a real browser (headless Chromium): no console error or CSP violation, nothing
wider than the window at 1280 and 800 pixels, the chain graph legible, and duplicate and dead
rules visibly marked. Screenshots go to reports/browser/ (a CI artifact).

Chromium is a test-only package of lab_runner/system-packages.txt: `make test` installs it
(`make test-deps`). Without it this test fails, saying so, unless KPLAB_SKIP_BROWSER=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from headless_browser import Browser
from lab_runner import system_deps
from lab_runner.grading import formats
from lab_runner.grading.report_html import CSP, MAX_NODES
from lab_runner.grading.results import CheckResult, GradeResult

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "reports" / "browser"
SOLUTION = ROOT / "labs/lab-3-clusterip/solutions/ex3-random-selection.rules"
WIDTHS = (1280, 800)
MIN_FONT_PX = 10.0  # the graph's 11-unit text may shrink this far and no further
RULE = "-A KUBE-SVC-Q7IJ732UBZY4AJKA -m comment --comment stateful-apps/my-app:http-svc"
ODDS = "-m statistic --mode random --probability"
# Exercise 3 with the second endpoint's rule written twice (line 5 repeats line 4) and a rule
# after the unconditional last one (line 8, after line 7).
WRONG = f"""# exercise 3, wrong twice over
*nat
{RULE} {ODDS} 0.2500000000 -j KUBE-SEP-TWZJG7ZWZYI5EC7J
{RULE} {ODDS} 0.3333333333 -j KUBE-SEP-LCP7KINQA756A5JS
{RULE} {ODDS} 0.3333333333 -j KUBE-SEP-LCP7KINQA756A5JS
{RULE} {ODDS} 0.5000000000 -j KUBE-SEP-XCVGJ5SWPGOUASPD
{RULE} -j KUBE-SEP-56377YKM7VKGGV6C
{RULE} -j KUBE-SEP-TWZJG7ZWZYI5EC7J
COMMIT
"""


def chromium() -> str:
    found = system_deps.find_tool("chromium")  # the "#test:" line of system-packages.txt
    if found:
        return found
    if os.environ.get("KPLAB_SKIP_BROWSER") == "1":
        pytest.skip("KPLAB_SKIP_BROWSER=1: the HTML report is not checked in a browser")
    pytest.fail("chromium is not installed: run `sudo make test-deps` (the test-only packages of "
                "lab_runner/system-packages.txt), or set KPLAB_SKIP_BROWSER=1 to leave this out")


@pytest.fixture(scope="module")
def browser():
    opened = Browser(chromium())
    try:
        yield opened
    finally:
        opened.close()


def graded(tmp: Path, rules: Path) -> Path:
    """report.html of a static grading of exercise 3, made by the command a teacher runs."""
    out = tmp / rules.stem
    done = subprocess.run([sys.executable, "-m", "lab_runner", "grade", "lab-3", "-e", "3",
                           str(rules), "--static", "--format", "html", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert (out / "report.html").is_file(), done.stdout + done.stderr
    return out / "report.html"


def big_result() -> GradeResult:
    """A live result whose node has more chains than the graph draws: 24 Services of 5
    endpoints, counts up to millions, and a chain name of iptables' longest, 28 characters."""
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]",
             ":KUBE-MARK-MASQ - [0:0]", ":STUDENT-OWN-CHAIN-OF-28-CHRS - [0:0]",
             "[900000:1] -A PREROUTING -j KUBE-SERVICES",
             "[5:1] -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
             "[7:1] -A KUBE-SERVICES -d 10.96.0.99/32 -p tcp -m tcp --dport 80 "
             "-j STUDENT-OWN-CHAIN-OF-28-CHRS",
             "[7:1] -A STUDENT-OWN-CHAIN-OF-28-CHRS -p tcp -j DNAT --to-destination "
             "172.17.255.254:65535"]
    for s in range(24):
        svc = f"KUBE-SVC-{s:016d}"
        lines.insert(2, f":{svc} - [0:0]")
        lines.append(f"[{100_000 * (s + 1)}:1] -A KUBE-SERVICES -d 10.96.1.{s}/32 -p tcp -m tcp "
                     f"--dport 80 -j {svc}")
        lines.append(f"[{3 * s}:1] -A {svc} ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ")
        for e in range(5):
            sep = f"KUBE-SEP-{s:08d}{e:08d}"
            lines.insert(2, f":{sep} - [0:0]")
            odds = f"-m statistic --mode random --probability {1 / (5 - e):.10f} " if e < 4 else ""
            lines.append(f"[{4000 * s * (e + 1)}:1] -A {svc} {odds}-j {sep}")
            lines.append(f"[{4000 * s * (e + 1)}:1] -A {sep} -p tcp -m tcp -j DNAT "
                         f"--to-destination 172.17.{s}.{e + 10}:8080")
    lines.append("COMMIT")
    return GradeResult("lab-3-clusterip", "5", "Capstone", "big.rules", "live", seconds=9.9,
                       checks=[CheckResult("a", "every Service answers", 3, 3, "passed", "ok")],
                       evidence={"counters": "\n".join(lines) + "\n", "submission": "*nat\n"})


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("reports")
    wrong = tmp / "wrong.rules"
    wrong.write_text(WRONG)
    [big] = formats.write(big_result(), "html", tmp / "big")
    return {"reference": graded(tmp, SOLUTION), "wrong": graded(tmp, wrong), "big": big}


# What the page's layout says, measured in it: overflow, each SVG's box, the graph's text size,
# and text that runs out of its box in the graph.
LAYOUT = """(() => {
  const root = document.documentElement, view = root.clientWidth;
  const svgs = [...document.querySelectorAll('svg')].map(s => {
    const r = s.getBoundingClientRect();
    return {left: r.left, right: r.right, scale: r.width / s.viewBox.baseVal.width,
            label: s.getAttribute('aria-label')};
  });
  const spills = [...document.querySelectorAll('svg g.node')].flatMap(g => {
    const box = g.querySelector('rect').getBBox();
    return [...g.querySelectorAll('text')].filter(t => {
      const b = t.getBBox(); return b.x + b.width > box.x + box.width + 0.5;
    }).map(t => t.textContent);
  });
  return {scrollWidth: root.scrollWidth, view, svgs, spills};
})()"""
# Marked rules as the reader sees them: their text, and whether they show and stand out.
MARKED = """[...document.querySelectorAll('.lint-dead, .lint-duplicate')].map(e => {
  const r = e.getBoundingClientRect(), style = getComputedStyle(e);
  return {kind: e.classList.contains('lint-dead') ? 'dead' : 'duplicate', text: e.textContent,
          shown: r.width > 0 && r.height > 0 && style.visibility === 'visible',
          folded: e.closest('details:not([open])') !== null, background: style.backgroundColor};
})"""


def test_the_harness_sees_errors_and_overflow(browser, tmp_path):
    """The checks below can fail: under the report's own policy, a blocked inline script, a
    too-wide element, a graph shrunk below legibility and a name wider than its box are seen."""
    page_file = tmp_path / "bad.html"
    page_file.write_text(
        f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '</head><body><script>1</script><div style="width:3000px">wide</div>'
        '<svg viewBox="0 0 3000 40" style="width:100%" aria-label="nat chains, squeezed">'
        '<g class="node"><rect width="50" height="20"/><text y="12">KUBE-SEP-TWZJG7ZWZYI5EC7J'
        "</text></g></svg></body></html>")
    page = browser.page(page_file.as_uri(), 800)
    try:
        assert any("Content Security Policy" in e for e in page.errors()), page.errors()
        layout = page.evaluate(LAYOUT)
        assert layout["scrollWidth"] > layout["view"]
        assert layout["svgs"][0]["scale"] * 11 < MIN_FONT_PX
        assert layout["spills"] == ["KUBE-SEP-TWZJG7ZWZYI5EC7J"]
    finally:
        page.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", ["reference", "wrong", "big"])
def test_report_fits_the_window_without_errors(browser, pages, case, width):
    page = browser.page(pages[case].as_uri(), width)
    try:
        shot = page.screenshot(SHOTS / f"{case}-{width}.png")
        assert shot.stat().st_size > 10_000
        assert page.errors() == []
        layout = page.evaluate(LAYOUT)
        assert layout["scrollWidth"] <= layout["view"], \
            f"the page is {layout['scrollWidth']} px wide in a {layout['view']} px window ({shot})"
        [graph] = [s for s in layout["svgs"] if s["label"].startswith("nat chains")]
        for svg in layout["svgs"]:
            assert 0 <= svg["left"] and svg["right"] <= layout["view"], (svg, shot)
        assert graph["scale"] * 11 >= MIN_FONT_PX, \
            f"the graph's text is {graph['scale'] * 11:.1f} px at {width} px ({shot})"
        assert layout["spills"] == [], f"text wider than its box: {layout['spills']}"
    finally:
        page.close()


def test_duplicate_and_dead_rules_are_marked(browser, pages):
    page = browser.page(pages["wrong"].as_uri(), 800)
    try:
        marked = page.evaluate(MARKED)
        dead = [m for m in marked if m["kind"] == "dead"]
        duplicate = [m for m in marked if m["kind"] == "duplicate"]
        # The list of findings, the submission's lines (open), the legend.
        assert any("never reached: after line 7" in m["text"] for m in dead), marked
        assert any("duplicate of line 4" in m["text"] for m in duplicate), marked
        assert any(m["text"].startswith("8 -A") and "never reached" in m["text"] for m in dead)
        assert any(m["text"].startswith("5 -A") and "duplicate of line 4" in m["text"]
                   for m in duplicate)
        unfolded = [m for m in marked if not m["folded"]]
        assert len(unfolded) >= 6 and all(m["shown"] for m in unfolded), marked
        backgrounds = {m["kind"]: m["background"] for m in marked}
        assert len(set(backgrounds.values()) | {"rgba(0, 0, 0, 0)"}) == 3, backgrounds
        # The graph: the edge of the repeated rule stands out (the dead one shares its edge with
        # line 3, which is reached).
        assert page.evaluate("document.querySelectorAll('svg g.edge-duplicate').length") == 1
        assert "duplicate of line 4" in page.evaluate(
            "document.querySelector('svg g.edge-duplicate title').textContent")
    finally:
        page.close()


def test_the_reference_answer_has_nothing_marked(browser, pages):
    page = browser.page(pages["reference"].as_uri(), 1280)
    try:
        assert page.evaluate(MARKED) == []
        assert page.evaluate("document.querySelectorAll('svg g.node').length") == 6
    finally:
        page.close()


def test_the_big_graph_draws_its_limit_and_says_the_rest_is_cut(browser, pages):
    page = browser.page(pages["big"].as_uri(), 800)
    try:
        nodes = page.evaluate("document.querySelectorAll('svg g.node').length")
        assert nodes == MAX_NODES  # chains; their DNATs are lines in their boxes
        dnat_shown = page.evaluate(
            "[...document.querySelectorAll('svg g.node')].filter(g => g.textContent"
            ".startsWith('KUBE-SEP-')).map(g => [...g.querySelectorAll('text')]"
            ".some(t => t.textContent.startsWith('DNAT 172.17.')))")
        assert len(dnat_shown) > 90 and all(dnat_shown)
        texts = page.evaluate("[...document.querySelectorAll('svg g.node text')]"
                              ".map(t => t.lastChild.textContent)")
        # Too long for one line with its count: two lines, nothing cut off.
        assert "DNAT 172.17.255.254:65535" in texts and "  7 pkts" in texts
        assert "more chains than can be drawn" in page.evaluate("document.body.textContent")
    finally:
        page.close()
