"""Chi-square statistics: known values, power and sample size, and a seeded simulation of the kit's case."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from lab_runner.probes.stats import (
    chi2_isf, chi2_sf, effect_size, gof, noncentral_chi2_sf, outcome_probabilities, power, sample_size,
    simulated_power, upper_gamma_regularized,
)

PODS = ["web-0", "web-1", "web-2", "web-3"]
# kube-proxy's rules for 4 endpoints: 1/4, 1/3, 1/2, then the rest.
CORRECT = dict(zip(PODS, outcome_probabilities([Fraction(1, 4), Fraction(1, 3), Fraction(1, 2), None])))
# The realistic mistake: every rule written with 0.25.
ALL_QUARTER = dict(zip(PODS, outcome_probabilities([0.25, 0.25, 0.25, None])))


def closed_form_sf(x: float, dof: int) -> float:
    """Exact chi-square tails for small dof, from erfc and finite sums (the test's reference)."""
    if dof % 2 == 0:
        half = x / 2
        return math.exp(-half) * sum(half**i / math.factorial(i) for i in range(dof // 2))
    total = math.erfc(math.sqrt(x / 2))
    term = math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    for k in range(1, (dof + 1) // 2):  # sf(x, k+2) = sf(x, k) + x^(k/2) e^(-x/2) / (2^(k/2) Γ(k/2+1))
        total += term
        term *= x / (2 * k + 1)
    return total


def test_outcome_probabilities_of_the_two_rulesets():
    assert list(CORRECT.values()) == [Fraction(1, 4)] * 4
    assert [float(p) for p in ALL_QUARTER.values()] == [0.25, 0.1875, 0.140625, 0.421875]


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 5, 6, 7, 10])
@pytest.mark.parametrize("x", [0.001, 0.5, 1.0, 3.0, 7.8, 16.0, 30.6636, 50.0, 80.0, 150.0])
def test_sf_matches_closed_forms_to_1e_12(x, dof):
    expected = closed_form_sf(x, dof)
    assert chi2_sf(x, dof) == pytest.approx(expected, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize(("x", "dof", "p"), [
    (30.6636, 3, 1.0006058738e-6),   # the kit's critical value at alpha = 1e-6
    (3.841458820694124, 1, 0.05),
    (7.814727903251178, 3, 0.05),
    (58.9197556832, 3, 1e-12),
])
def test_known_values(x, dof, p):
    assert chi2_sf(x, dof) == pytest.approx(p, rel=1e-9)


@pytest.mark.parametrize(("p", "dof"), [(0.05, 1), (1e-6, 3), (1e-12, 3), (0.5, 10)])
def test_isf_inverts_sf(p, dof):
    assert chi2_sf(chi2_isf(p, dof), dof) == pytest.approx(p, rel=1e-10)


def test_upper_gamma_edges():
    assert upper_gamma_regularized(2.0, 0.0) == 1.0
    assert upper_gamma_regularized(1.0, 5.0) == pytest.approx(math.exp(-5.0), rel=1e-14)
    with pytest.raises(ValueError):
        upper_gamma_regularized(0.0, 1.0)


def test_noncentral_reduces_to_central_and_grows_with_lambda():
    assert noncentral_chi2_sf(7.8, 3, 0.0) == chi2_sf(7.8, 3)
    tails = [noncentral_chi2_sf(30.66, 3, lam) for lam in (0.0, 10.0, 50.0, 100.0)]
    assert tails == sorted(tails)
    # Mean of a noncentral chi-square is dof + λ: its median sits near there.
    assert 0.4 < noncentral_chi2_sf(3 + 200, 3, 200) < 0.6


def test_noncentral_matches_a_poisson_mixture_by_simulation():
    rng = random.Random(5)
    lam, dof, x = 12.0, 3, 20.0
    draws = 40_000
    hits = sum(
        sum((rng.gauss(0, 1) + (math.sqrt(lam) if k == 0 else 0)) ** 2 for k in range(dof)) > x
        for _ in range(draws))
    assert hits / draws == pytest.approx(noncentral_chi2_sf(x, dof, lam), abs=0.01)


def test_effect_size_of_the_all_quarter_mistake():
    assert effect_size(CORRECT, ALL_QUARTER) == pytest.approx(0.181640625, rel=1e-12)


def test_power_rises_with_n_and_sample_size_is_the_first_n_that_reaches_it():
    n = sample_size(CORRECT, ALL_QUARTER, alpha=1e-6, power=0.9999)
    assert n == 458
    assert power(n, CORRECT, ALL_QUARTER) >= 0.9999 > power(n - 1, CORRECT, ALL_QUARTER)
    assert power(100, CORRECT, ALL_QUARTER) < power(200, CORRECT, ALL_QUARTER) < power(n, CORRECT, ALL_QUARTER)
    # Asking for less needs fewer samples; a looser alpha needs fewer too.
    assert sample_size(CORRECT, ALL_QUARTER, power=0.99) < n
    assert sample_size(CORRECT, ALL_QUARTER, alpha=1e-3) < n


def test_sample_size_refuses_indistinguishable_or_impossible_alternatives():
    with pytest.raises(ValueError, match="no N"):
        sample_size(CORRECT, CORRECT)
    with pytest.raises(ValueError, match="rules out"):
        sample_size(CORRECT, {**dict.fromkeys(PODS, 0.2), "stranger": 0.2})


def test_gof_on_exact_and_skewed_counts():
    fair = gof({p: 100 for p in PODS}, CORRECT)
    assert (fair.statistic, fair.dof, fair.p_value, fair.passed, fair.n) == (0.0, 3, 1.0, True, 400)
    skewed = gof({"web-0": 115, "web-1": 86, "web-2": 64, "web-3": 193}, CORRECT)
    assert not skewed.passed and skewed.p_value < 1e-6


def test_gof_fails_a_hit_on_a_pod_that_is_not_an_endpoint():
    result = gof({"web-0": 10, "web-1": 10, "web-2": 10, "web-3": 10, "db-0": 1}, CORRECT)
    assert not result.passed and result.p_value == 0.0


def test_gof_counts_missing_outcomes_as_zero_and_checks_its_input():
    assert not gof({"web-0": 458}, CORRECT).passed
    with pytest.raises(ValueError, match="sum to 1"):
        gof({"a": 1}, {"a": 0.5})
    with pytest.raises(ValueError, match="no observations"):
        gof({}, CORRECT)


def test_at_the_computed_n_the_correct_ruleset_passes_and_the_mistake_is_caught():
    """2,000 seeded runs each way at N = sample_size(...) = 458.

    Expected false failures: 2,000 × 1e-6, so none. Expected misses: the noncentral approximation
    promises 2,000 × 1e-4 = 0.2, but exact enumeration of the multinomial gives a miss rate of
    1.96e-4 at N = 458, so 0.39 misses (0 with probability 0.68, 4 or more with 7e-4). The test
    allows up to 3 rather than picking a seed that happens to show none.
    """
    n = sample_size(CORRECT, ALL_QUARTER)
    rng = random.Random(20240607)
    false_failure_rate = simulated_power(n, CORRECT, CORRECT, runs=2000, rng=rng)
    observed_power = simulated_power(n, CORRECT, ALL_QUARTER, runs=2000, rng=rng)
    assert false_failure_rate == 0
    assert observed_power >= 1 - 3 / 2000


def test_below_the_computed_n_the_mistake_slips_through_often():
    rng = random.Random(7)
    assert simulated_power(100, CORRECT, ALL_QUARTER, runs=500, rng=rng) < 0.5


# -- the tolerance rule shared by live and static grading ---------------------------------------

from lab_runner.probes.stats import flows_for_tolerance, normal_isf, within_tolerance  # noqa: E402

EVEN = {pod: Fraction(1, 4) for pod in PODS}


def test_normal_isf_known_values():
    assert normal_isf(0.5) == pytest.approx(0.0, abs=1e-9)
    assert normal_isf(0.025) == pytest.approx(1.959964, abs=1e-5)
    assert normal_isf(1e-4) == pytest.approx(3.719016, abs=1e-5)


def test_static_rule_is_exact_and_accepts_four_decimals():
    four_decimals = dict(zip(PODS, outcome_probabilities([0.25, 0.3333, 0.5, None])))
    assert within_tolerance(four_decimals, EVEN, 0.005).passed
    verdict = within_tolerance(ALL_QUARTER, EVEN, 0.005)
    assert not verdict.passed and {k for k, _, _ in verdict.outside} == {"web-1", "web-2", "web-3"}


def test_flows_grow_as_one_over_tolerance_squared():
    fine, coarse = flows_for_tolerance(EVEN, 0.005), flows_for_tolerance(EVEN, 0.025)
    assert 1_100_000 < fine < 1_250_000 and 45_000 < coarse < 50_000
    assert fine / coarse == pytest.approx(25, rel=0.05)


def _simulated_fail_rate(truth, n, runs, rng, tolerance=0.025):
    pods = list(truth)
    failed = 0
    for _ in range(runs):
        counts = dict.fromkeys(pods, 0)
        for pod in rng.choices(pods, [float(truth[p]) for p in pods], k=n):
            counts[pod] += 1
        failed += not within_tolerance({p: c / n for p, c in counts.items()}, EVEN, tolerance, n=n).passed
    return failed / runs


def test_live_rule_passes_a_spread_near_even_and_fails_one_off_by_the_tolerance():
    """Seeded simulation at the flows the formula picks: no run of a spread within a quarter of
    the tolerance fails; a spread with one endpoint off by 3 points (past 2.5) never passes."""
    rng = random.Random(12)
    n = flows_for_tolerance(EVEN, 0.025)
    assert _simulated_fail_rate(EVEN, n, 20, rng) == 0.0
    near = {"web-0": 0.256, "web-1": 0.244, "web-2": 0.25, "web-3": 0.25}
    assert _simulated_fail_rate(near, n, 20, rng) == 0.0
    off = {"web-0": 0.28, "web-1": 0.22, "web-2": 0.25, "web-3": 0.25}
    assert _simulated_fail_rate(off, n, 20, rng) == 1.0
