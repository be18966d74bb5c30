"""`lab-runner scale-sweep`: kube-proxy's iptables and nftables modes measured at N Services."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from lab_runner.cli import cli, console
from lab_runner.errors import LabError


def _sizes(ctx, param, value: str) -> list[int]:
    try:
        sizes = [int(word.replace("_", "")) for word in value.split(",") if word.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: a comma-separated list of numbers, e.g. 10,100,1000")
    if not sizes or min(sizes) < 1 or max(sizes) > 20_000:
        raise click.BadParameter(f"{value!r}: each N must be 1..20,000")
    return sizes


def _modes(ctx, param, value: str) -> list[str]:
    from lab_runner.scale.sweep import MODES

    modes = [word.strip() for word in value.split(",") if word.strip()]
    wrong = [m for m in modes if m not in MODES]
    if wrong or not modes:
        raise click.BadParameter(f"{', '.join(wrong) or value!r}: the modes are {', '.join(MODES)}")
    return modes


@cli.command(name="scale-sweep")
@click.option("--services", "sizes", default="10,100,1000", show_default=True, callback=_sizes,
              help="the N to measure, comma-separated.")
@click.option("--endpoints", type=click.IntRange(1, 100), default=10, show_default=True,
              help="endpoints per Service.")
@click.option("--modes", default="iptables,nftables", show_default=True, callback=_modes,
              help="kube-proxy modes, comma-separated.")
@click.option("--flows", type=click.IntRange(20, 2000), default=200, show_default=True,
              help="new connections timed per target (first and last Service).")
@click.option("--full-sync-max", type=click.IntRange(1), default=None,
              help="skip the full-sync timing above this N (nftables' one-transaction rewrite "
                   "of 10,000 Services takes minutes).")
@click.option("--iptables", "variant", type=click.Choice(["nft", "legacy"]), default="nft",
              show_default=True, help="iptables mode's backend: iptables-nft or iptables-legacy.")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="directory for scale.txt, scale.json, scale.png and index.html.")
def scale_sweep(sizes, endpoints, modes, flows, full_sync_max, variant, out) -> None:
    """Measure both proxy modes at N Services: ruleset write time, one endpoint changed (partial
    and full sync), kernel memory, and the first-packet latency to the first and last Service.

    Each (mode, N) point runs in three throw-away namespaces (client, node, pods) removed when it
    ends, Ctrl-C included; nothing else on the machine is touched.

    \b
    Examples:
      sudo lab-runner scale-sweep --services 10,1000 --flows 100
      sudo lab-runner scale-sweep --services 10,100,1000,10000 --out sweep/
    """
    from lab_runner.cli.lifecycle import require_root
    from lab_runner.scale import report
    from lab_runner.scale.sweep import sweep

    require_root()
    with console.status("scale sweep…") as status:
        points = sweep(sizes, endpoints, modes, flows, full_sync_max=full_sync_max,
                       variant=variant, progress=lambda text: status.update(escape(text)))
    console.print(escape(report.table(points)), end="", soft_wrap=True)
    for mode in modes:
        mine = [p for p in points if p.mode == mode]
        if not mine:
            raise LabError(f"no point was measured for {mode}")
        console.print(f"{mode}: the last Service's first packet takes x{mine[0].ratio:.2f} the "
                      f"first's at N={mine[0].services:,}, x{mine[-1].ratio:.2f} at "
                      f"N={mine[-1].services:,}", soft_wrap=True)
    if out:
        written = report.write_all(points, flows, Path(out))
        for path in written:
            console.print(f"wrote {escape(str(path))}")
        if not any(p.name == "scale.png" for p in written):
            console.print(f"[yellow]{escape(report.NO_PLOT)}[/]")
