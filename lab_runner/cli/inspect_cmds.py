"""Commands that show the rules: `rules` (rendered, or diffed against a file) and `iptables` in a host."""

from __future__ import annotations

import subprocess
import sys

import click

from lab_runner.cli import cli, err_console
from lab_runner.cli.lifecycle import require_root


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--lab", "-l", help="lab id or run id (default: the only running lab).")
@click.argument("host")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def iptables(lab: str | None, host: str, args: tuple[str, ...]) -> None:
    """Run iptables (the lab's variant) in HOST, usually `node`.

    \b
    As in the seed:
      sudo lab-runner iptables node -- -t nat -L KUBE-SVC-Q7IJ732UBZY4AJKA -v
    """
    from lab_runner.lab import LiveLab

    require_root()
    live = LiveLab.attach(lab)
    if live.nftables:
        # Not silently: the tables are empty of KUBE-* chains, and that is the lesson's point.
        err_console.print(f"[yellow]note:[/] run {live.run.run_id} runs kube-proxy in nftables "
                          "mode: its rules are in `table ip kube-proxy` (`lab-runner exec node "
                          "-- nft list table ip kube-proxy`), not in iptables", highlight=False)
    args = args[1:] if args[:1] == ("--",) else args
    argv = live.place(host).prefix() + live.command_in(host, ["iptables", *args])
    sys.exit(subprocess.call(argv))
