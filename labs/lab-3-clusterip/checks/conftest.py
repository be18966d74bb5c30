"""Shared words for lab-3's checks: the Service under test and how to describe what was seen."""

from __future__ import annotations

import pytest

from lab_runner.evidence.probing import Target
from lab_runner.grading.outcomes import marks

SERVICE = Target("10.104.5.205", 8080, "tcp")
SVC_CHAIN = "KUBE-SVC-Q7IJ732UBZY4AJKA"


def seen(observations) -> str:
    """A student-readable account of what happened to the connections."""
    parts = []
    for o in observations:
        share = f" (probability {float(o.probability):.4f})" if o.probability is not None else ""
        if o.answered:
            parts.append(f"answered by {o.pod}, which saw the caller as {o.saw_src}{share}")
        else:
            parts.append(f"no pod answered ({o.detail}){share}")
    return "; ".join(parts) or "nothing"


def node_address(sandbox) -> str:
    """The address a masqueraded connection leaves the node with, towards its pods."""
    return str(sandbox.model.nodes[0].bridge_address.ip)


def unmasqueraded(sandbox, target: Target) -> str | None:
    """What was wrong with a client's connection to `target`, as kube-proxy masquerades callers
    from outside the cluster CIDR (a rule sends it to KUBE-MARK-MASQ, or sets the 0x4000 mark,
    and the pod sees the node's address); None when nothing was. A pod must answer: with none
    answering there is nothing masqueraded to see."""
    observations, hit = sandbox.observe("client", target)
    # KUBE-POSTROUTING's own MARK (--xor-mark 0x4000, undoing the mark as the packet leaves)
    # says it was marked before, not where: the marking rules are those before it.
    marked = any(h.chain == "KUBE-MARK-MASQ" or marks(h.rule) for h in hit
                 if h.chain not in ("KUBE-POSTROUTING", "POSTROUTING"))
    answered = [o for o in observations if o.answered]
    if marked and answered and all(o.saw_src == node_address(sandbox) for o in answered):
        return None
    said = f"The client ({sandbox.caller_ip('client')}) connected to {target.ip}:{target.port}: "
    if not marked:
        return said + "no rule sent it to KUBE-MARK-MASQ (its counter stayed 0)."
    if not answered:
        return (f"No pod answered the client's connection to {target.ip}:{target.port} "
                f"({seen(observations)}).")
    return said + seen(observations) + "."


def unanswering_pods(sandbox, target: Target) -> tuple[list[str], str]:
    """The endpoints' pods that never answered a connection to `target` on their own address and
    port (each endpoint is tried), and what the connections saw."""
    observations = sandbox.connect("client", target)
    addresses = sandbox.endpoints(target)  # {"ip:port": pod}, ready pods only
    right = {o.pod for o in observations if o.answered and addresses.get(o.dnat or "") == o.pod}
    account = (f"Connections to {target.ip}:{target.port}: {seen(observations)}"
               + "".join(f"; one was sent to {o.dnat} and got no answer"
                         for o in observations if not o.answered and o.dnat))
    return sorted(set(addresses.values()) - right), account


def shares(spread) -> str:
    """A spread's observed shares, for feedback (the detail names any share outside the tolerance)."""
    return ", ".join(f"{k} {v * 100:.2f} %" for k, v in sorted(spread.observed.items()))


def jumps_into(hit: set, chain_prefix: str, from_chain: str | None = None) -> bool:
    """Whether a rule hit jumps or goes (-j/--jump/-g/--goto) to a chain named so."""
    return any((h.rule.target or "").startswith(chain_prefix)
               and (from_chain is None or h.chain == from_chain) for h in hit)


@pytest.fixture
def service():
    return SERVICE

