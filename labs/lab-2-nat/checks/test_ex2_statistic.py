"""Exercise 2 (statistic): 10.96.0.200:80 spreads new connections evenly over web-a1 and web-a2."""

from fractions import Fraction

import pytest
from conftest import LOST_TOLERANCE, VIP, every_pod, percent, pod_caller_problem, seen, shares

PODS = {"web-a1": "10.244.0.11:8080", "web-a2": "10.244.0.12:8080"}
WANTED = {address: Fraction(1, 2) for address in PODS.values()}


@pytest.mark.check("both-pods-answer")
def test_both_pods_answer(sandbox):
    fates = every_pod(sandbox, "client", VIP, set(PODS))
    reached = {f.pod for f in fates if f.answered}
    assert set(PODS) <= reached, (
        f"Connections from the client to {VIP.ip}:{VIP.port}: {seen(fates)}. Never reached: "
        f"{', '.join(sorted(set(PODS) - reached))}. Expected: both web-a1 and web-a2 answer.")


@pytest.mark.check("spread-even")
def test_spread_even(sandbox):
    result = shares(sandbox, "client", VIP, WANTED)
    assert result.passed, (
        f"Shares of new connections to {VIP.ip}:{VIP.port}: {percent(result.observed)} "
        f"({result.detail}). Expected: {percent({k: float(v) for k, v in WANTED.items()})}.")


@pytest.mark.check("none-lost")
def test_none_lost(sandbox):
    result = shares(sandbox, "client", VIP, WANTED)
    tolerance = 0.0 if sandbox.mode == "static" else LOST_TOLERANCE
    assert result.lost <= tolerance, (
        f"{result.lost * 100:.1f} % of the new connections to {VIP.ip}:{VIP.port} matched no "
        f"DNAT rule ({percent(result.observed)}). Expected: every connection goes to one of the "
        "two pods; look at what the second rule sees.")


@pytest.mark.check("pod-reaches-vip")
def test_pod_reaches_vip(sandbox):
    problem = pod_caller_problem(sandbox, "web-a1", VIP, "web-a2")
    assert problem is None, (
        f"{problem} Expected: web-a2 answers web-a1 too, and sees web-a1's own address: a pod is "
        "a caller of the virtual IP, and its packets come in by node-a's pod bridge.")
