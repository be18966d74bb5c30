"""`lab-runner import`: a real cluster's objects (and a node's rules) written as a lab.yaml."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click
from rich.markup import escape

from lab_runner.cli import cli, console, err_console
from lab_runner.cli.params import CIDR
from lab_runner.safe_files import write_file

PROFILES = ("v1.23", "v1.30", "v1.34")


@cli.command(name="import")
@click.argument("objects", nargs=-1, required=True)
@click.option("--rules", "rules", type=click.Path(dir_okay=False),
              help="the node's iptables-save: cluster CIDR and kube-proxy generation from it.")
@click.option("--cluster-cidr", type=CIDR, help="kube-proxy's --cluster-cidr (else from --rules "
              "or the nodes' podCIDRs).")
@click.option("--service-cidr", type=CIDR, help="the Service range (else one holding every "
              "cluster IP).")
@click.option("--node", help="the node whose rules the lab rebuilds (with several Nodes).")
@click.option("--profile", type=click.Choice(PROFILES),
              help="kube-proxy rule generation (else from --rules or the kubelet version).")
@click.option("--max-pods", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="leave out Services beyond this many pods (one process per pod on `up`).")
@click.option("--id", "lab_id", default="imported", show_default=True, help="the lab's id.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="the lab.yaml to write (`-` for standard output).")
def import_(objects, rules, cluster_cidr, service_cidr, node, profile, max_pods, lab_id,
            output) -> None:
    """Rebuild a real cluster's Services as a lab.yaml.

    OBJECTS are files of kubectl's YAML or JSON output (`-` reads standard input). Selector-less
    Services keep their EndpointSlices' endpoints, host-network endpoints become hostNetwork
    pods; what lab.yaml cannot express (IPv6, endpoints outside every pod and node, ...) is left
    out, listed here as warnings and written in the file as comments.

    \b
    On a machine with kubectl (and on the node, for --rules):
      kubectl get svc,endpointslices,pods,nodes -A -o yaml > cluster.yaml
      sudo iptables-save > node.rules
    Here:
      lab-runner import cluster.yaml --rules node.rules -o mine.yaml
      lab-runner rules mine.yaml --diff node.rules      where the kit and the node differ
      sudo lab-runner up mine.yaml                      the same Services with real packets
    """
    from lab_runner.importer import Options, import_lab

    options = Options(cluster_cidr=_network(cluster_cidr), service_cidr=_network(service_cidr),
                      node=node, profile=profile, max_pods=max_pods, lab_id=lab_id)
    text, result, lab = import_lab(list(objects), options, rules)
    if output == "-":
        click.echo(text, nl=False)
    else:
        # Through a temporary file renamed into place: a link planted at that name is replaced,
        # never followed (the command may run as root in a shared directory).
        write_file(Path(output), text)
    say = err_console if output == "-" else console
    say.print(f"wrote {escape(output)}: {len(lab.services)} Service(s), {len(lab.pods)} pod(s), "
              f"node {escape(lab.nodes[0].name)}, profile {lab.profile}", highlight=False,
              soft_wrap=True)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False,
                          soft_wrap=True)


def _network(value: str | None) -> ipaddress.IPv4Network | None:
    return ipaddress.IPv4Network(value) if value else None
