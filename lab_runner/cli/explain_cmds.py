"""`lab-runner explain`: a real node's iptables-save, explained offline and without privileges."""

from __future__ import annotations

import json

import click

from lab_runner.cli import cli, console
from lab_runner.cli.params import ADDRESS, TARGET

LOCAL_CALLERS = ("local", "node")


class CallerType(click.ParamType):
    """`--from`: an IPv4 address, or `local` / `node` for the node's own processes (OUTPUT)."""

    name = "IP|local|node"

    def convert(self, value, param, ctx):
        if value in LOCAL_CALLERS:
            return value
        return ADDRESS.convert(value, param, ctx)


@cli.command()
@click.argument("rules", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=TARGET, help="the packet's destination: IP:PORT[/tcp|udp].")
@click.option("--from", "caller", type=CallerType(),
              help="the caller's address (default: one outside the cluster), or `node` for "
                   "the node's own processes.")
@click.option("--in", "in_interface", default="eth0", show_default=True,
              help="the interface the packet comes in on.")
@click.option("--out", "out_interface",
              help="the interface it leaves by (models -o rules; without it they are left out "
                   "and listed).")
@click.option("--node-ip", "node_ips", multiple=True, type=ADDRESS,
              help="an address of the node (for NodePorts and addrtype LOCAL); repeatable.")
@click.option("--service", "wanted", metavar="NS/NAME[:PORT]",
              help="without --to: only this Service (or one port of it).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def explain(rules, target, caller, in_interface, out_interface, node_ips, wanted, fmt) -> None:
    """Explain a real node's kube-proxy rules (iptables-save or nft list ruleset), offline.

    With --to it follows one new connection: each rule it matches (line in the file, counters
    from -c), every endpoint it can reach with its exact probability, the DNAT, whether it is
    masqueraded and which rule marked it, and the verdict. Rules the kit does not model (ipsets,
    CNI or cloud agents' matches) are listed with what the answer assumes about them.

    \b
    On the node:  sudo iptables-save -c > node.rules   (nftables mode: sudo nft list ruleset)
    Here:
      lab-runner explain node.rules                       every Service port, its endpoints
      lab-runner explain node.rules --service default/web
      lab-runner explain node.rules --to 10.96.0.10:53/udp
      lab-runner explain node.rules --to 10.96.0.1:443 --from node
    """
    from lab_runner.explain import dump as dump_file
    from lab_runner.explain import nft_dump, report

    # An nftables listing (kube-proxy's nftables mode) reads the same questions from its maps.
    nft = nft_dump.looks_like_nft(rules)
    dump = nft_dump.read_file(rules) if nft else dump_file.read_file(rules)
    if target is None:
        if nft:
            from lab_runner.explain.nft_services import find_services as find_nft

            found = find_nft(dump)
        else:
            from lab_runner.explain.services import find_services

            found = find_services(dump.ruleset)
        ports = [p for p in found if not wanted or p.matches(wanted)]
        if wanted and not ports:
            names = sorted({p.name.split(":")[0] for p in found})
            listing = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12
                                               else "")
            raise click.UsageError(f"no Service port {wanted!r} in {rules} (give ns/name or "
                                   f"ns/name:port); its Services: {listing or 'none'}")
        if fmt == "json":  # indenting 100,000 endpoints would take longer than finding them
            click.echo(json.dumps(report.summary_json(dump.source, ports),
                                  indent=2 if len(ports) <= report.RICH_ROWS else None))
        else:
            report.print_summary(console, dump.source, ports, dump.has_counters)
        return
    if wanted:
        raise click.UsageError("--service narrows the summary; with --to the packet decides")
    from lab_runner.explain.packet import Question, explain as explain_packet

    if nft:
        from lab_runner.explain import nft_report as report  # noqa: F811 (nft_tracer's steps)
        from lab_runner.explain.nft_packet import explain as explain_packet  # noqa: F811

    local = caller in LOCAL_CALLERS
    question = Question(target.ip, target.port, target.proto,
                        src=None if caller is None or local else caller,
                        in_interface=in_interface, local=local, out_interface=out_interface,
                        node_ips=tuple(node_ips))
    answer = explain_packet(dump, question)
    if fmt == "json":
        click.echo(json.dumps(report.explanation_json(answer), indent=2))
    else:
        report.print_explanation(console, answer)
