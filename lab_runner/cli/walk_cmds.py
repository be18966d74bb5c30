"""`walk` (the executable lesson of a lab) and `kubectl` (the lab's kubectl-like views)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from lab_runner import lab_file
from lab_runner.cli import cli, console, err_console
from lab_runner.cli.lifecycle import IPTABLES_CHOICE, require_root
from lab_runner.errors import LabError

ROOT = Path(__file__).resolve().parents[2]


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("lab")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(lab: str, args: tuple[str, ...]) -> None:
    """kubectl-like views of LAB, from its model: get svc|pod|endpoints|nodes, describe svc.

    A running lab (named by run id, or by lab id when one run of it is up) shows its pods as
    they are now; with no run, the lab file's. AGE counts from the lab's start when it runs,
    else from now.

    \b
    Examples:
      lab-runner kubectl lab-3 -- -n stateful-apps describe svc my-app
      lab-runner kubectl 3fa2c1 -- get pods -o wide
    """
    from lab_runner.errors import AmbiguousRun
    from lab_runner.lab import LiveLab
    from lab_runner.runs import find_run
    from lab_runner.views.kubectl import kubectl as view

    try:
        run = find_run(lab)
        model = LiveLab.attach(run.run_id).model
        started = datetime.fromtimestamp(run.created, timezone.utc)
    except AmbiguousRun:
        raise  # the lab file's model would show neither run as it is
    except LabError:
        model, started = lab_file.load(lab), datetime.now(timezone.utc)
    console.print(view(model, _after_dashes(args), started), end="", highlight=False, markup=False,
                  soft_wrap=True)


@cli.command()
@click.argument("lab")
@click.option("--step", type=int, default=1, show_default=True, help="start at this step.")
@click.option("--no-pause", is_flag=True, help="run straight through (the default without a terminal).")
@click.option("--check", is_flag=True,
              help="fail if any step's output lacks its marks (for CI: the lesson can never drift).")
@click.option("--keep", is_flag=True, help="leave the lab up afterwards (`lab-runner down` later).")
@click.option("--iptables", "variant", type=IPTABLES_CHOICE, default="nft", show_default=True)
def walk(lab: str, step: int, no_pause: bool, check: bool, keep: bool, variant: str) -> None:
    """The guided walkthrough of LAB, run for real: each step explains, runs, shows the output.

    Enter goes to the next step, q + Enter stops. Ctrl-C stops too, and the lab is torn down
    unless --keep.

    \b
    Examples:
      sudo lab-runner walk lab-3
      sudo lab-runner walk lab-3 --step 5 --keep
    """
    from lab_runner import walkthrough
    from lab_runner.lab import LiveLab

    require_root()
    model = lab_file.load(lab)
    lesson = walkthrough.parse(Path(model.source).parent / "walkthrough.md")
    pause = not no_pause and not check and sys.stdin.isatty()
    started = time.monotonic()
    with console.status(f"building {model.id}…"):
        # Transient unless --keep, like a grader's lab: if walk dies without its `finally`
        # (SIGKILL), `clean` sees an orphan, not a lab that is up on purpose.
        live = LiveLab.start(model, iptables_variant=variant, transient=not keep)
    try:
        console.print(f"[dim]{model.id} is up as run {live.run.run_id} "
                      f"({time.monotonic() - started:.2f} s)[/]")
        execute = LessonExecutor(live)
        result = walkthrough.run(lesson, execute, start_step=step, pause=pause, check=check,
                                 console=console, prompts=execute.prompts())
    finally:
        if keep:
            console.print(f"the lab stays up (run {live.run.run_id}): `sudo lab-runner ssh "
                          f"{lab}`, and `sudo lab-runner down {live.run.run_id}` when done")
        else:
            live.down()
    console.print(f"[dim]walkthrough took {time.monotonic() - started:.1f} s[/]")
    if check and not result.ok:
        raise LabError(f"{len(result.failed)} step(s) of {lesson.source} lack their marks")


def _after_dashes(args: tuple[str, ...]) -> list[str]:
    """Click passes a leading `--` through when options are not interspersed; drop it."""
    return list(args[1:]) if args[:1] == ("--",) else list(args)


class LessonExecutor:
    """Runs a lesson's commands in the lab: `kubectl` as a view, `lab-runner` for this run, the rest
    in the node, client or pod through `sh -c` (lesson text is the instructor's, not a student's)."""

    def __init__(self, live):
        self.live = live
        self.started = datetime.fromtimestamp(live.run.created, timezone.utc)

    def prompts(self) -> dict[str, str]:
        nodes = self.live.model.nodes
        prompts = {"node": f"docker@{nodes[0].name}:~$ ", "host": "$ ", "client": "{name}:~$ ",
                   "pod": "root@{name}:/# "}
        prompts.update({f"node {n.name}": f"docker@{n.name}:~$ " for n in nodes})
        return prompts

    def __call__(self, where: str, command: str) -> tuple[int, str]:
        kind, _, name = where.partition(" ")
        if kind == "host":
            return self.on_host(command)
        host = name or kind
        result = self.live.exec(host, ["sh", "-c", command], timeout=120)
        return result.rc, result.stdout + result.stderr

    def on_host(self, command: str) -> tuple[int, str]:
        argv = shlex.split(command)
        if argv and argv[0] == "sudo":
            argv = argv[1:]
        if argv and argv[0] == "kubectl":
            from lab_runner.lab import LiveLab
            from lab_runner.views.kubectl import kubectl as view

            # Re-read the run: an earlier `lab-runner scale …` step may have changed its pods.
            model = LiveLab.attach(self.live.run.run_id).model
            return 0, view(model, argv[1:], self.started)
        if argv and argv[0] == "lab-runner":
            env = dict(os.environ, KPLAB_RUN=self.live.run.run_id, COLUMNS="120",
                       PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            done = subprocess.run([sys.executable, "-m", "lab_runner", *argv[1:]], cwd=ROOT,
                                  env=env, capture_output=True, text=True, timeout=300)
            return done.returncode, done.stdout + done.stderr
        err_console.print(f"[red]a host command must be kubectl or lab-runner: {command}[/]")
        return 127, f"not a lab command: {command}"
