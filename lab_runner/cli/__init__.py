"""The `lab-runner` command: groups the subcommands and is the only place that exits with a code."""

from __future__ import annotations

import signal
import sys

import click
from rich.console import Console
from rich.markup import escape

from lab_runner.errors import LabError

console = Console()
err_console = Console(stderr=True)

HELP = """Labs on how a Kubernetes ClusterIP Service works in kube-proxy's iptables mode,
done for real: network namespaces as the node and its pods, kube-proxy's exact chains,
scapy probes, counters, conntrack and kernel traces.

\b
Start here:
  sudo lab-runner doctor              can this machine run the labs?
  sudo lab-runner up lab-3            the seed's minikube: 1 node, 4 pods, 1 Service
  sudo lab-runner ssh lab-3           a shell in the node (docker@minikube:~$)
  sudo lab-runner walk lab-3          the guided walkthrough
  sudo lab-runner down lab-3          remove it again

LAB is a lab id (lab-3, lab-3-clusterip), a lab directory or a lab.yaml path. Commands that
act on a running lab take LAB or a run id; with one lab running it may be left out.
"""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C so every `finally` and teardown runs."""


def _on_sigterm(signum, frame):
    raise Terminated()


class _Group(click.Group):
    def resolve_command(self, ctx, args):
        """A command on a docker run runs in its node container (lab_runner/backends/docker.py)."""
        name, command, rest = super().resolve_command(ctx, args)
        from lab_runner.backends import docker

        code = docker.forward(ctx, name, command, rest)
        if code is not None:
            sys.exit(code)
        return name, command, rest


@click.group(cls=_Group, help=HELP, context_settings={"help_option_names": ["-h", "--help"],
                                                      "max_content_width": 100})
@click.version_option(package_name="lab-runner")
def cli() -> None:
    pass


# The modules whose import registers commands on `cli`, in the order `--help` lists them.
COMMAND_MODULES = ("lifecycle", "inspect_cmds", "walk_cmds", "evidence_cmds", "grade_cmds",
                   "cluster_cmds", "autograder_cmds", "explain_cmds", "import_cmds", "scale_cmds")


def load_commands() -> click.Group:
    """Import every command module (each registers its commands on `cli`) and return the group."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"lab_runner.cli.{name}")
    return cli


def main() -> None:
    load_commands()

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LabError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: cleaned up[/]")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
