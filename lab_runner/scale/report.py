"""A sweep's results as a table (text and JSON), a plot (PNG) and an HTML page holding both."""

from __future__ import annotations

import html
import io
import json
import os
import platform
from pathlib import Path
from typing import Sequence

from lab_runner.safe_files import make_dirs, write_file
from lab_runner.scale.sweep import Point

COLUMNS = (("mode", "{:<8}"), ("N", "{:>6,}"), ("E", "{:>3}"), ("up s", "{:>7.2f}"),
           ("write s", "{:>8.2f}"), ("partial s", "{:>9.3f}"), ("full s", "{:>8}"),
           ("kernel KiB", "{:>10,}"), ("listing KiB", "{:>11,.0f}"),
           ("first p50/p90 us", "{:>16}"), ("last p50/p90 us", "{:>15}"), ("last/first", "{:>10}"))


def _cells(point: Point) -> tuple:
    full = "-" if point.full_s is None else f"{point.full_s:.2f}"
    mode = f"{point.mode}-legacy" if point.variant == "legacy" else point.mode
    return (mode, point.services, point.endpoints, point.up_s, point.write_s, point.partial_s,
            full, point.kernel_kib, point.listing_kib,
            f"{point.first.median:.1f}/{point.first.p90:.1f}",
            f"{point.last.median:.1f}/{point.last.p90:.1f}", f"x{point.ratio:.2f}")


def table(points: Sequence[Point]) -> str:
    """The fixed-width table the command prints and writes to scale.txt."""
    widths = [max([len(name)] + [len(fmt.format(_cells(p)[i])) for p in points])
              for i, (name, fmt) in enumerate(COLUMNS)]
    lines = ["  ".join(name.rjust(w) if i else name.ljust(w)
                       for i, ((name, _), w) in enumerate(zip(COLUMNS, widths)))]
    for point in points:
        cells = [fmt.format(cell) for (_, fmt), cell in zip(COLUMNS, _cells(point))]
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(cells, widths))))
    return "\n".join(lines) + "\n"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(),
            "load_1min": round(os.getloadavg()[0], 2)}


def as_json(points: Sequence[Point], flows: int) -> str:
    return json.dumps({"machine": machine(), "flows_per_target": flows,
                       "points": [p.as_dict() for p in points]}, indent=2) + "\n"


# Why there is no scale.png, where matplotlib (the `plot` extra) is not installed.
NO_PLOT = ("no scale.png: matplotlib is not installed (`make venv` installs it, or "
           "`pip install 'lab-runner[plot]'`)")


def plot(points: Sequence[Point]) -> bytes | None:
    """Two panels against N (log scale): first-packet medians (p10-p90 as error bars) to the first
    and the last Service, and the write / partial-sync times; None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot

    figure, (latency, timing) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    for mode, colour in (("iptables", "tab:red"), ("nftables", "tab:blue")):
        mine = [p for p in points if p.mode == mode]
        if not mine:
            continue
        ns = [p.services for p in mine]
        for which, style in (("first", "--"), ("last", "-")):
            spreads = [getattr(p, which) for p in mine]
            latency.errorbar(ns, [s.median for s in spreads], capsize=3, linestyle=style,
                             color=colour, marker="o", label=f"{mode}, {which} Service",
                             yerr=[[s.median - s.p10 for s in spreads],
                                   [s.p90 - s.median for s in spreads]])
        timing.plot(ns, [p.write_s for p in mine], "-o", color=colour, label=f"{mode}: write all")
        timing.plot(ns, [p.partial_s for p in mine], ":s", color=colour,
                    label=f"{mode}: partial sync")
    latency.set(xscale="log", xlabel="Services (N)", ylabel="SYN -> SYN-ACK, microseconds",
                title="First packet of a new connection (median, p10-p90)")
    timing.set(xscale="log", yscale="log", xlabel="Services (N)", ylabel="seconds",
               title="Writing the ruleset / changing one endpoint")
    for axes in (latency, timing):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()


def page(points: Sequence[Point], image: str | None) -> str:
    """An HTML page with the plot (or why there is none) and the table."""
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(fmt.format(cell).strip())}</td>"
                                    for (_, fmt), cell in zip(COLUMNS, _cells(p))) + "</tr>\n"
                   for p in points)
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in COLUMNS)
    info = html.escape(", ".join(f"{k} {v}" for k, v in machine().items()))
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>Scale sweep</title>\n"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>\n"
            f"<h1>kube-proxy iptables vs nftables mode: scale sweep</h1>\n<p>{info}</p>\n"
            + (f"<img src='{html.escape(image)}' alt='first-packet latency and sync times'>\n"
               if image else f"<p>{html.escape(NO_PLOT)}</p>\n") +
            f"<table><tr>{head}</tr>\n{rows}</table>\n</body></html>\n")


def write_all(points: Sequence[Point], flows: int, out: Path) -> list[Path]:
    """scale.txt, scale.json, scale.png (with matplotlib) and index.html in `out`; the paths
    written."""
    make_dirs(out)
    png = plot(points)
    files = {"scale.txt": table(points), "scale.json": as_json(points, flows),
             **({"scale.png": png} if png else {}),
             "index.html": page(points, "scale.png" if png else None)}
    written = []
    for name, data in files.items():
        write_file(out / name, data)
        written.append(out / name)
    return written
