"""Shared words for lab 1's checks.

Exercise 1 is a wiring exercise (lab_runner/grading/wiring/): its sandbox answers
`reach(source)` -> (answered, source the pod saw, why not) and `pod_interface()` -> (name, why
not), live with real probes into the pod's namespace, static from the model of namespaces,
links, addresses and routes the commands built. `sandbox.failed_commands()` lists the commands
that failed, with the message the kernel (or the model) gave.
"""

from __future__ import annotations

NEW_POD = "web-5d8f7c9b6-x7vq4"
NEW_POD_ADDRESS = "10.244.0.5:8080"
NODE = "node-a"
OTHER_POD = "web-5d8f7c9b6-k2xq7"
CLIENT = "client"


def failures(sandbox) -> str:
    """The commands that failed, for the feedback: a failed command is often the whole story."""
    failed = sandbox.failed_commands()
    if not failed:
        return ""
    listing = "; ".join(f"line {r.line} `{r.text}`: {r.message.rstrip('.')}" for r in failed[:5])
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return f" Commands that failed: {listing}{more}."


def reaches(sandbox, source: str, what: str) -> None:
    ok, saw, why = sandbox.reach(source)
    assert ok, (f"{what} connected to {NEW_POD_ADDRESS}: {why}. Expected: the new pod {NEW_POD} "
                f"answers.{failures(sandbox)}")
