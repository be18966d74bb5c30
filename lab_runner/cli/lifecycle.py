"""Lifecycle commands: list, up, down, status, exec, shell, ssh, clean, doctor."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import click
from rich.table import Table

from lab_runner import lab_file
from lab_runner.cli import cli, console, err_console
from lab_runner.cli.params import CIDR, PROFILE
from lab_runner.views import tables
from lab_runner.errors import EnvironmentProblem, LabError
from lab_runner.runs import list_runs

IPTABLES_CHOICE = click.Choice(["nft", "legacy"])
PROXY_MODE_CHOICE = click.Choice(["iptables", "nftables"])
NFTABLES_DEFAULT_PROFILE = "v1.34"  # the one nftables profile lab files may name (lab_file)


def require_root() -> None:
    from lab_runner.doctor import has_net_admin

    if not sys.platform.startswith("linux"):
        raise EnvironmentProblem(f"this runs labs in Linux network namespaces, which {sys.platform} "
                                 "lacks: use the docker backend (`lab-runner up lab-3 --backend "
                                 "docker`) or the container (`docker compose run --rm lab`); the "
                                 "README's 'Without root: Docker' says what to install.")
    if not has_net_admin():
        raise EnvironmentProblem("this needs root (CAP_NET_ADMIN) to create network namespaces: "
                                 "run it with sudo, or use the container (`docker compose run "
                                 "--rm lab`). `lab-runner doctor` checks everything.")


@cli.command("list")
def list_labs() -> None:
    """The labs in this kit, with what each teaches.

    \b
    Example:
      lab-runner list
    """
    table = Table("lab", "title", "teaches", box=None)
    for lab_id in lab_file.available_labs():
        lab = lab_file.load(lab_id)
        table.add_row(lab.id, lab.title, lab.teaches)
    console.print(table)


@cli.command()
@click.argument("lab")
@click.option("--iptables", "variant", type=IPTABLES_CHOICE, default="nft", show_default=True,
              help="iptables flavour inside the node (tracing needs nft).")
@click.option("--profile", type=PROFILE,
              help="kube-proxy rule format; default: the lab's (lab-3: v1.23, as in the seed).")
@click.option("--cluster-cidr", type=CIDR,
              help="render with another cluster CIDR (e.g. 172.17.0.0/16 to cover lab-3's pods).")
@click.option("--proxy-mode", type=PROXY_MODE_CHOICE,
              help="kube-proxy's mode; default: the lab's (kubeProxy.mode). nftables writes "
                   "`table ip kube-proxy` instead of KUBE-* chains and needs profile v1.34 "
                   "(picked unless --profile says otherwise).")
@click.option("--backend", type=click.Choice(["netns", "docker"]), default="netns",
              show_default=True, help="netns: namespaces on this machine (root); docker: the node "
              "is a container (no root; DOCKER_HOST is honoured).")
@click.option("--image", envvar="KPLAB_IMAGE", default="kplab-node", show_default=True,
              help="the node image for --backend docker (`docker build -t kplab-node .`).")
def up(lab: str, variant: str, profile: str | None, cluster_cidr: str | None,
       proxy_mode: str | None, backend: str, image: str) -> None:
    """Build LAB: node, pods and clients in namespaces, kube-proxy's chains installed.

    The lab stays up until `lab-runner down LAB`. Ctrl-C while it starts leaves nothing behind.
    With --backend docker the node is a container and every command on the run works the same.

    \b
    Examples:
      sudo lab-runner up lab-3
      sudo lab-runner up lab-3 --proxy-mode nftables
      lab-runner up lab-3 --backend docker --iptables legacy
    """
    from lab_runner.lab import LiveLab

    model = lab_file.load(lab)  # a mistyped lab is named before root is asked for
    profile = _profile_for_mode(model, proxy_mode, profile)
    if backend == "docker":
        return _up_docker(lab, variant, profile, cluster_cidr, image, proxy_mode)
    require_root()
    started = time.monotonic()
    with console.status(f"building {model.id}: {len(model.nodes)} node(s), {len(model.pods)} pods, "
                        f"{len(model.clients)} client(s)…"):
        live = LiveLab.start(model, iptables_variant=variant, profile=profile,
                             cluster_cidr=cluster_cidr, proxy_mode=proxy_mode)
    mode = "nftables mode" if live.nftables else variant
    console.print(f"[green]up[/] {model.id} as run [bold]{live.run.run_id}[/] in "
                  f"{time.monotonic() - started:.2f} s ({mode}, profile {live.model.profile})")
    console.print(f"  hosts: {', '.join(live.hosts())}")
    console.print(f"  try:   sudo lab-runner ssh {model.id.split('-clusterip')[0]}   |   "
                  f"sudo lab-runner down {live.run.run_id}")


def _profile_for_mode(model, proxy_mode: str | None, profile: str | None) -> str | None:
    """--proxy-mode nftables on a lab of an iptables-only profile picks v1.34 (and says so);
    an explicit --profile is kept (LiveLab refuses one nftables mode cannot render)."""
    from lab_runner.lab_file import NFTABLES_PROFILES

    if proxy_mode != "nftables" or profile or model.profile in NFTABLES_PROFILES:
        return profile
    console.print(f"nftables mode: profile {NFTABLES_DEFAULT_PROFILE} instead of the lab's "
                  f"{model.profile} (kube-proxy's nftables mode is GA from v1.33)")
    return NFTABLES_DEFAULT_PROFILE


def _up_docker(lab: str, variant: str, profile: str | None, cluster_cidr: str | None,
               image: str, proxy_mode: str | None) -> None:
    from lab_runner.backends import docker

    model = lab_file.load(lab)
    started = time.monotonic()
    with console.status(f"building {model.id} in a node container ({image})…"):
        run = docker.up(model, lab, iptables_variant=variant, profile=profile,
                        cluster_cidr=cluster_cidr, image=image, proxy_mode=proxy_mode)
    mode = "nftables" if run.proxy_mode == "nftables" else variant
    console.print(f"[green]up[/] {model.id} as run [bold]{run.run_id}[/] in "
                  f"{time.monotonic() - started:.2f} s ({mode}, profile {run.profile}, "
                  f"container {docker.container_name(run.run_id)})")
    hosts = [n.name for n in model.nodes] + [c.name for c in model.clients] + \
        [p.name for p in model.pods]
    console.print(f"  hosts: {', '.join(hosts)}")
    console.print(f"  try:   lab-runner ssh {model.id.split('-clusterip')[0]}   |   "
                  f"lab-runner down {run.run_id}")


@cli.command()
@click.argument("lab", required=False)
@click.option("--all", "everything", is_flag=True, help="every running lab of this kit.")
def down(lab: str | None, everything: bool) -> None:
    """Tear LAB down (a lab id or run id; optional when only one lab runs).

    --all takes down every lab of the kit this state directory records, whoever started it.

    \b
    Examples:
      sudo lab-runner down lab-3
      sudo lab-runner down 3fa2c1         one run of several, by its run id
    """
    from lab_runner.backends import docker
    from lab_runner.lab import LiveLab
    from lab_runner.runs import find_run

    targets = list_runs() if everything else [find_run(lab)]
    for run in targets:
        if run.backend == "docker":
            problems = docker.destroy(run)
        else:
            require_root()
            problems = LiveLab.attach(run.run_id).down()
        if problems:
            raise LabError("; ".join(problems))
        console.print(f"[green]down[/] {run.lab_id} (run {run.run_id})")
    if not targets:
        console.print("no lab is running")


@cli.command()
def status() -> None:
    """What runs: each lab with its run id, age, backend and live pods.

    \b
    Example:
      sudo lab-runner status
    """
    from lab_runner.backends.netns import list_netns

    runs = list_runs()
    present = set(list_netns())
    if not runs:
        console.print("no lab is running" if _is_root() else "no lab of yours is running")
        _mention_other_users_labs(runs, present)
        return
    # Seven columns, not nine: backend, iptables and profile share one, pods and namespaces one,
    # so that at 80 columns the run id and the lab id are shown whole.
    table = tables.table("run id", "lab", "state", "age", "backend", "up")
    containers = _container_states(runs)
    orphans = 0
    for run in runs:
        alive = sum(1 for p in run.processes if p.alive())
        state = "orphaned" if run.orphaned() else run.state
        inside = f"container {containers.get(run.run_id, 'missing')}" if containers is not None \
            else "engine unreachable"
        if run.backend == "docker" and run.state == "up" and containers is not None \
                and containers.get(run.run_id) != "running":
            state = "orphaned"  # its node container stopped or was removed
        orphans += state == "orphaned"
        up = inside if run.backend == "docker" else (
            f"{alive}/{len(run.processes)} processes, "
            f"{len(present & set(run.namespaces))}/{len(run.namespaces)} namespaces")
        table.add_row(run.run_id, run.lab_id, state, _age(run.created),
                      f"{run.backend} {_rules_of(run)} {run.profile}", up)
    console.print(tables.keep_whole(table, 0, 1, 2))
    if orphans:
        console.print(f"{orphans} orphaned run(s), left by a crashed process: "
                      "`sudo lab-runner clean` removes them")
    _mention_other_users_labs(runs, present)


def _rules_of(run) -> str:
    """What writes the node's rules: the iptables variant, or kube-proxy's nftables mode."""
    return "nftables" if run.proxy_mode == "nftables" else run.iptables


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _mention_other_users_labs(runs, present: set[str]) -> None:
    """Without root, this user sees their own records only: say that root's labs may run too."""
    from lab_runner.runs import run_id_of, state_root

    if _is_root():
        return
    mine = {r.run_id for r in runs}
    others = sorted({rid for rid in map(run_id_of, present) if rid and rid not in mine})
    seen = (f"{len(others)} other run(s) have namespaces on this machine "
            f"({', '.join(others[:5])}{', …' if len(others) > 5 else ''}); " if others else "")
    console.print(f"[dim]{seen}labs started with sudo or by other users are not listed here (this "
                  f"list is the runs recorded in {state_root()}): `sudo lab-runner status` shows "
                  "root's[/]")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--lab", "-l", help="lab id or run id (default: the only running lab).")
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec(lab: str | None, host: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in HOST: `node`, `client`, or a pod (full name or last part, e.g. dfrdh).

    \b
    Example: sudo lab-runner exec dfrdh -- hostname
             sudo lab-runner exec node -- iptables -t nat -L KUBE-SERVICES -n
    """
    from lab_runner.lab import LiveLab

    require_root()
    live = LiveLab.attach(lab)
    command = command[1:] if command[:1] == ("--",) else command
    argv = live.place(host).prefix() + live.command_in(host, list(command))
    sys.exit(subprocess.call(argv))


def _shell(lab: str | None, host: str) -> None:
    from lab_runner.lab import LiveLab

    require_root()
    live = LiveLab.attach(lab)
    kind, name = live.resolve(host)
    prompt = f"docker@{name}:~$ " if kind == "node" else f"root@{name}:~# "
    env = dict(os.environ, PS1=prompt, KPLAB_RUN=live.run.run_id)
    shell = ["bash", "--norc", "--noprofile", "-i"]
    err_console.print(f"[dim]{kind} {name} (run {live.run.run_id}); `exit` to leave. "
                      f"You are root here: `sudo` is not needed.[/]")
    argv = live.place(host).prefix() + live.command_in(host, shell)
    sys.exit(subprocess.call(argv, env=env))


@cli.command()
@click.option("--lab", "-l", help="lab id or run id (default: the only running lab).")
@click.argument("host")
def shell(lab: str | None, host: str) -> None:
    """An interactive shell in HOST (node, client or a pod).

    \b
    Examples:
      sudo lab-runner shell client
      sudo lab-runner shell --lab 3fa2c1 dfrdh
    """
    _shell(lab, host)


@cli.command()
@click.argument("lab", required=False)
@click.option("--node", "-n", "node", default="node", help="which node (default: the first).")
def ssh(lab: str | None, node: str) -> None:
    """A shell on the node, like `minikube ssh`: the prompt is docker@minikube:~$.

    \b
    Examples:
      sudo lab-runner ssh lab-3
      sudo lab-runner ssh 3fa2c1           a run by its id (`lab-runner status` lists them)
    """
    _shell(lab, node)


@cli.command()
@click.option("--all", "everything", is_flag=True,
              help="also tear down labs that are up on purpose.")
def clean(everything: bool) -> None:
    """Remove what crashed runs left behind: only names with the kit's prefix and a run id.

    Labs that are up on purpose stay; --all removes them too (every lab of the kit).

    \b
    Example:
      sudo lab-runner clean
    """
    from lab_runner.cleanup import clean as do_clean
    from lab_runner.doctor import has_net_admin

    if not has_net_admin() and not any(r.backend == "docker" for r in list_runs()):
        require_root()
    report = do_clean(everything=everything, netns=has_net_admin())
    for run_id in report.removed_runs:
        console.print(f"removed run {run_id}")
    for run_id in report.kept_runs:
        console.print(f"kept run {run_id} (up on purpose; `clean --all` or `down` removes it)")
    if not report.removed_runs and not report.kept_runs:
        console.print("nothing to clean")
    if report.problems:
        raise LabError("; ".join(report.problems))


@cli.command()
def doctor() -> None:
    """Check root, tools, the iptables variant, kernel features and Python dependencies.

    \b
    Examples:
      sudo lab-runner doctor
      lab-runner doctor                    without root: can the docker backend run?
    """
    from lab_runner.doctor import diagnose

    findings = diagnose()
    # The fix goes on a line of its own under what failed: three columns fit 80 with every tool
    # name and path whole.
    table = tables.table("", "check", "found")
    for f in findings:
        mark = "[green]ok[/]" if f.ok else "[yellow]--[/]" if f.optional else "[red]FAIL[/]"
        table.add_row(mark, f.what, f.detail)
        if not f.ok and f.fix:
            table.add_row("", "", f"[bold]fix:[/] {f.fix}")
    console.print(tables.keep_whole(table, 0, 1, 2))
    failed = [f for f in findings if not f.ok and not f.optional]
    engine = [f for f in findings if f.what.startswith("docker engine")]
    if failed and engine and all(f.ok for f in engine):
        console.print(f"[yellow]{len(failed)} check(s) failed for the netns backend[/], but a "
                      "Docker engine answers: `lab-runner up LAB --backend docker`, or "
                      "`docker compose run --rm lab make lab-3`")
        return
    if failed:
        raise EnvironmentProblem(f"{len(failed)} check(s) failed; the fix column says what to do")
    console.print("[green]this machine can run the labs[/]")


def _container_states(runs) -> dict[str, str] | None:
    if not any(r.backend == "docker" for r in runs):
        return {}
    from lab_runner.backends import docker

    return docker.states()


def _age(created: float) -> str:
    seconds = int(time.time() - created)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
