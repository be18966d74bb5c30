"""Shared words for lab-3's checks: the Service under test and how to describe what was seen."""

from __future__ import annotations

import pytest

from lab_runner.evidence.probing import Target

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


def jumps_into(hit: set, chain_prefix: str, from_chain: str | None = None) -> bool:
    return any(f"-j {chain_prefix}" in spec and (from_chain is None or chain == from_chain)
               for chain, spec in hit)


@pytest.fixture
def service():
    return SERVICE
