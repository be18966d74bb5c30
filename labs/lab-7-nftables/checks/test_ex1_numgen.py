"""Exercise 1 (numgen): the Service's chain picks each endpoint chain with an even share."""

import pytest
from conftest import SERVICE, every_endpoint_reached_check

from lab_runner.grading.common_checks import every_caller_check

test_every_caller = every_caller_check(SERVICE)
test_every_endpoint_reached = every_endpoint_reached_check()


@pytest.mark.check("spread-even")
def test_spread_even(sandbox):
    spread = sandbox.spread("client", SERVICE)
    observed = ", ".join(f"{k} {v * 100:.2f} %" for k, v in sorted(spread.observed.items()))
    assert spread.passed, (f"Observed shares of new connections: {observed}; {spread.detail}. "
                           "Expected: every pod gets an equal share.")
