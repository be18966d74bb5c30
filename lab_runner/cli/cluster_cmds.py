"""Changes a cluster makes while the lab runs: scale a deployment, pod readiness, terminate or
delete a pod."""

from __future__ import annotations

import click

from lab_runner.cli import cli, console
from lab_runner.cli.lifecycle import require_root


def _attach(lab):
    from lab_runner.lab import LiveLab

    require_root()
    return LiveLab.attach(lab)


@cli.command()
@click.argument("lab")
@click.argument("deployment")
@click.argument("replicas", type=int)
def scale(lab, deployment, replicas) -> None:
    """Scale DEPLOYMENT (e.g. my-app) of the running LAB to REPLICAS pods, live.

    New pods start first; then kube-proxy's chains are re-rendered for the new endpoints and
    applied in one atomic iptables-restore (stale KUBE-SEP chains deleted in the same step);
    then removed pods stop. Open connections keep their pod through conntrack.

    \b
    Example:
      sudo lab-runner scale lab-3 my-app 5
    """
    live = _attach(lab)
    added, removed = live.scale(deployment, replicas)
    for name in added:
        pod = live.model.pod(name)
        console.print(f"pod {name} created ({pod.ip})", highlight=False)
    for name in removed:
        console.print(f"pod {name} deleted", highlight=False)
    console.print(f"{deployment}: {replicas} replica(s); chains re-synced", highlight=False)


@cli.command()
@click.argument("lab")
@click.argument("pod")
@click.argument("state", type=click.Choice(["ready", "not-ready"]))
def readiness(lab, pod, state) -> None:
    """Mark POD ready or not ready; a pod that is not ready drops out of the endpoints.

    \b
    Example:
      sudo lab-runner readiness lab-3 dfrdh not-ready
    """
    live = _attach(lab)
    name = live.set_ready(pod, state == "ready")
    console.print(f"pod {name} is {state}; chains re-synced", highlight=False)


@cli.command()
@click.argument("lab")
@click.argument("pod")
@click.option("--not-serving", is_flag=True,
              help="its readiness probe fails too (serving: false in the slice).")
def terminate(lab, pod, not_serving) -> None:
    """Start deleting POD, as `kubectl delete pod` does during a rollout: the pod keeps running
    through its grace period, listed in its EndpointSlice as terminating (not ready; serving
    while its readiness probe passes, --not-serving once it fails).

    kube-proxy sends new connections only to ready endpoints while a Service has any; when it
    has none, v1.26+ falls back to the serving-terminating ones (`lab-runner rules` shows it).
    `lab-runner delete-pod LAB POD` ends the deletion.

    \b
    Example:
      sudo lab-runner terminate lab-6 web-a1
    """
    live = _attach(lab)
    name = live.terminate(pod, serving=not not_serving)
    state = "terminating, not serving" if not_serving else "terminating, still serving"
    console.print(f"pod {name} is {state}; chains re-synced", highlight=False)


@cli.command("delete-pod")
@click.argument("lab")
@click.argument("pod")
def delete_pod(lab, pod) -> None:
    """Delete POD; its Deployment starts a replacement with a new name and a new address.

    \b
    Example:
      sudo lab-runner delete-pod lab-3 qtc2q
    """
    live = _attach(lab)
    old, new = live.recreate(pod)
    console.print(f"pod {old} deleted; pod {new} created ({live.model.pod(new).ip})",
                  highlight=False)
