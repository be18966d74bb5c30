"""Lab 7's checks (nftables mode): the Service under test, and the words for what was seen."""

from __future__ import annotations

import pytest

from lab_runner.evidence.probing import Target
from lab_runner.grading.outcomes import NO_ANSWER, PacketClass

SERVICE = Target("10.104.5.205", 8080, "tcp")


def account(observations) -> str:
    """What the connections met, in a student's words (static mode adds each fate's chance)."""
    def one(o) -> str:
        chance = "" if o.probability is None else f" ({float(o.probability) * 100:.1f} %)"
        if not o.answered:
            return f"no answer: {o.detail}{chance}"
        return f"{o.pod} answered and saw the caller as {o.saw_src}{chance}"
    return "; ".join(map(one, observations)) or "no connection"


def every_endpoint_reached_check(target: Target = SERVICE):
    """The `every-endpoint-reached` check: each pod of the Service answers some new connection
    from the client (static: some fate with a chance > 0 reaches it)."""

    @pytest.mark.check("every-endpoint-reached")
    def test_every_endpoint_reached(sandbox):
        observations = sandbox.connect("client", target)
        wanted = set(sandbox.endpoints(target).values())
        missed = wanted - {o.pod for o in observations if o.answered}
        assert not missed, (
            f"Observed, for new connections from the client to {target.ip}:{target.port}: "
            f"{account(observations)}. Never reached: {', '.join(sorted(missed))}. Expected: "
            "every pod of the Service answers some of them.")

    return test_every_endpoint_reached


def refused_like_kube_proxy(sandbox, targets) -> None:
    """Each target meets what kube-proxy's rules make of it; one they refuse must not reach a
    pod (outcomes.difference words the other differences)."""
    for target in targets:
        cls = PacketClass("client", target)
        problem = sandbox.differs(cls)
        if problem and sandbox.reference_outcome(cls).fates == {NO_ANSWER}:
            reached = sorted({f.pod for f in sandbox.outcome(cls).fates if f.answered})
            problem = (f"A connection from the client to {target.ip}:{target.port}/"
                       f"{target.proto} reached {', '.join(reached)}. Expected: refused, as "
                       "kube-proxy refuses it: a ClusterIP answers on its Service's ports "
                       f"alone ({SERVICE.port}/{SERVICE.proto.upper()} here).")
        assert problem is None, problem
