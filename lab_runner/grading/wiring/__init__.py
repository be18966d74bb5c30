"""Wiring exercises: the student wires a pod into its node by hand, with `ip` commands as data.

An exercise is a wiring exercise when its directory holds `wiring.yaml` (lab 1, exercise 1):

    # the pod to wire: scheduled, given an address by IPAM, but with no network at all
    pod: {name: web-5d8f7c9b6-x7vq4, node: node-a, ip: 10.244.0.5, labels: {…},
          ports: [{name: http, containerPort: 8080}]}
    max_commands: 40          # optional

The submission is a text file of `ip` commands, one per line (`#` starts a comment). It is data,
never shell: each line is split with shlex, matched against an allow-list and turned into an argv
list the kit builds itself. Two namespace names exist for the student, `node` (the pod's node) and
`pod` (the pod's own namespace, which the student creates); the kit maps them to the sandbox's
real, prefixed names. Allowed, and nothing else:

    ip netns add pod
    ip -n NS link add NAME type veth peer name NAME [netns NS]
    ip -n NS link set [dev] NAME up | down | master BRIDGE | nomaster | netns NS | name NAME
    ip -n NS link del [dev] NAME
    ip -n pod addr add ADDRESS/PREFIX dev NAME        (an address of the node's pod subnet)
    ip -n pod route add default|NETWORK [via GATEWAY] [dev NAME]

In the node only links the submission created may be changed; the node's own (lo, eth0, the
bridge, the other pods' veths) never, the bridge being usable as a `master`. Anything else is
refused before anything runs, with the file and line.

Live mode builds the lab, runs the commands one by one in the real namespaces (`ip -n …`, never
the host's own namespace), records each one's exit status and message, then starts the pod's
app in the pod's namespace, if the submission made one, as kubelet would once the network is set
up. Static mode runs the same commands on a model of namespaces, links, addresses and routes that
follows the kernel's rules where they matter here (a link moved to another namespace comes down
and loses its addresses; a link taken down loses its routes; a gateway must be on a connected
route; …) and answers reachability from it. A few unusual states it does not model (the pod's
address on several links, several of the pod's links on the bridge, renaming a link that is up,
which kernels before 6.2 refuse) make it say "undecidable" rather than guess.

`lab-runner grade` reads and sandboxes a wiring exercise's submissions through this package
(grading/grade.py, _intake); `python -m lab_runner.grading.wiring LAB FILE -e N [--static] [--json]`
grades one directly. The modules, in the order the data flows: spec (the exercise's pod),
commands (the submission, checked against the allow-list), world (the static model) and
sandboxes (live and static), both asked the same questions by the lab's checks.
"""

from __future__ import annotations

from lab_runner.grading.wiring.commands import Command, WiringSubmission, from_bytes, read
from lab_runner.grading.wiring.sandboxes import open_sandbox
from lab_runner.grading.wiring.spec import WiringSpec, applies, load_spec

__all__ = ["Command", "WiringSpec", "WiringSubmission", "applies", "from_bytes", "grade",
           "load_spec", "open_sandbox", "read"]


def grade(lab: str, which: str | int, path, mode: str = "live"):
    """Score a wiring submission: grading.grade.grade() reads it with `read` and `open_sandbox`."""
    from lab_runner.grading.grade import grade as grade_any

    return grade_any(lab, which, path, mode)
