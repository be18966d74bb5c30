"""Is an observed spread of hits over endpoints the one the rules promise? Chi-square, pure Python.

Pearson's goodness-of-fit test, the chi-square survival function it needs (no scipy: the kit does
not depend on it), and the sample size that makes the test catch a given wrong distribution.

The wrong ruleset the kit must catch: n endpoint rules all written `--probability 1/n` instead of
1/n, 1/(n-1), …, 1/2. The rules are tried in order, so the hits fall as `outcome_probabilities`
says (for 4 endpoints: 0.25, 0.1875, 0.140625, 0.421875), not evenly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Sequence

Probability = Fraction | float

_EPS = 1e-16  # relative size of the last term kept in a series or continued fraction
_TINY = 1e-300  # keeps Lentz's continued fraction away from division by zero


@dataclass(frozen=True)
class GofResult:
    """One goodness-of-fit verdict: the test passes when the p-value is at least alpha."""

    statistic: float
    dof: int
    p_value: float
    passed: bool
    alpha: float
    n: int


def outcome_probabilities(rule_probabilities: Sequence[Probability | None]) -> list[Fraction]:
    """Share of new connections each endpoint rule takes, given the `--probability` of each rule.

    Rules are tried in order and a connection falls through to the next rule when its random draw
    fails; `None` (no statistic match, kube-proxy's last rule) takes everything left.
    """
    left = Fraction(1)
    shares = []
    for p in rule_probabilities:
        take = left if p is None else left * Fraction(p)
        shares.append(take)
        left -= take
    return shares


def upper_gamma_regularized(a: float, x: float) -> float:
    """Q(a, x) = Γ(a, x) / Γ(a), accurate to about 1e-14 relative even where it is tiny."""
    if a <= 0:
        raise ValueError(f"shape a must be > 0, got {a}")
    if x <= 0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        # The series for P converges fast here, and Q = 1 - P is not small, so nothing cancels.
        term = total = 1.0 / a
        n = 0
        while abs(term) > abs(total) * _EPS:
            n += 1
            term *= x / (a + n)
            total += term
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    # Continued fraction for Q itself (modified Lentz), so tiny upper tails keep their precision.
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    i = 0
    while True:
        i += 1
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS or i > 10_000:
            break
    return math.exp(log_prefactor) * h


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for X chi-square with `dof` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    return upper_gamma_regularized(dof / 2.0, x / 2.0)


def chi2_isf(p: float, dof: int) -> float:
    """The x with chi2_sf(x, dof) == p: the critical value of a test at level p."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = 0.0, max(1.0, float(dof))
    while chi2_sf(hi, dof) > p:
        lo, hi = hi, hi * 2.0
    # Bisection is slow but cannot misbehave; 200 halvings exhaust a double's precision.
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        if chi2_sf(mid, dof) > p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def noncentral_chi2_sf(x: float, dof: int, noncentrality: float) -> float:
    """P(X > x) for X noncentral chi-square: a Poisson(λ/2) mixture of central chi-squares."""
    if noncentrality < 0:
        raise ValueError(f"noncentrality must be >= 0, got {noncentrality}")
    if noncentrality == 0:
        return chi2_sf(x, dof)
    half = noncentrality / 2.0

    def weight(j: int) -> float:
        return math.exp(-half + j * math.log(half) - math.lgamma(j + 1))

    # Sum outward from the Poisson mode, where the weights are largest, until they vanish.
    mode = int(half)
    total = 0.0
    for direction in (range(mode, 10**7), range(mode - 1, -1, -1)):
        for j in direction:
            w = weight(j)
            total += w * chi2_sf(x, dof + 2 * j)
            if w < 1e-17 and abs(j - half) > math.sqrt(half) + 1:
                break
    return min(1.0, total)


def _as_floats(probs: Mapping[str, Probability]) -> dict[str, float]:
    total = sum(Fraction(p) for p in probs.values())
    if abs(float(total) - 1.0) > 1e-9 or any(p < 0 for p in probs.values()):
        raise ValueError(f"probabilities must be >= 0 and sum to 1, got {dict(probs)} (sum {float(total)})")
    return {k: float(p) for k, p in probs.items()}


def gof(observed: Mapping[str, int], expected_probs: Mapping[str, Probability],
        alpha: float = 1e-6) -> GofResult:
    """Pearson's chi-square test of observed counts against expected probabilities.

    Outcomes missing from `observed` count as 0. An outcome seen but expected with probability 0
    (say, a pod that is not an endpoint) fails the test outright. Pearson's approximation wants
    every expected count to be 5 or more; use `sample_size` to pick N.
    """
    expected = _as_floats(expected_probs)
    n = sum(observed.values())
    if n <= 0:
        raise ValueError("no observations to test")
    impossible = [k for k, c in observed.items() if c > 0 and expected.get(k, 0.0) == 0.0]
    cells = [k for k, p in expected.items() if p > 0]
    dof = len(cells) - 1
    if impossible:
        return GofResult(math.inf, max(dof, 1), 0.0, False, alpha, n)
    if dof < 1:
        return GofResult(0.0, 0, 1.0, True, alpha, n)
    statistic = sum((observed.get(k, 0) - n * expected[k]) ** 2 / (n * expected[k]) for k in cells)
    p_value = chi2_sf(statistic, dof)
    return GofResult(statistic, dof, p_value, p_value >= alpha, alpha, n)


def effect_size(expected_probs: Mapping[str, Probability], alternative: Mapping[str, Probability]) -> float:
    """Cohen's w²: the noncentrality one observation adds when the truth is `alternative`."""
    expected = _as_floats(expected_probs)
    other = _as_floats(alternative)
    stray = [k for k, p in other.items() if p > 0 and expected.get(k, 0.0) == 0.0]
    if stray:
        raise ValueError(f"alternative puts weight on outcomes the expected distribution rules out: {stray}")
    return sum((other.get(k, 0.0) - p) ** 2 / p for k, p in expected.items() if p > 0)


def power(n: int, expected_probs: Mapping[str, Probability], alternative: Mapping[str, Probability],
          alpha: float = 1e-6) -> float:
    """Chance that the test at level alpha rejects `expected` with n samples drawn from `alternative`.

    The usual large-sample approximation: under the alternative, Pearson's statistic is
    noncentral chi-square with λ = n · w².
    """
    dof = sum(1 for p in expected_probs.values() if p > 0) - 1
    critical = chi2_isf(alpha, dof)
    return noncentral_chi2_sf(critical, dof, n * effect_size(expected_probs, alternative))


def sample_size(expected: Mapping[str, Probability], alternative: Mapping[str, Probability],
                alpha: float = 1e-6, power: float = 0.9999, *, limit: int = 10**9) -> int:
    """Smallest N whose test at level alpha catches `alternative` with probability `power`.

    Uses the noncentral approximation of `power`, which is a little optimistic this far into the
    tail: for 4 endpoints written all-0.25 it gives N = 458, where exact enumeration of the
    multinomial puts the miss rate at 1.96e-4 rather than 1e-4 (N = 477 reaches 1e-4).
    `simulated_power` checks a chosen N without the approximation.
    """
    if effect_size(expected, alternative) == 0:
        raise ValueError("the alternative equals the expected distribution: no N can tell them apart")
    dof = sum(1 for p in expected.values() if p > 0) - 1
    critical = chi2_isf(alpha, dof)
    w2 = effect_size(expected, alternative)
    target = power  # the argument shadows the module's power(); name it once

    def enough(n: int) -> bool:
        return noncentral_chi2_sf(critical, dof, n * w2) >= target

    hi = 1
    while not enough(hi):
        hi *= 2
        if hi > limit:
            raise ValueError(f"more than {limit} samples needed")
    lo = hi // 2  # enough(lo) is False, or lo == 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def simulated_power(n: int, expected_probs: Mapping[str, Probability], alternative: Mapping[str, Probability],
                    alpha: float = 1e-6, runs: int = 2000, rng: random.Random | None = None) -> float:
    """Share of `runs` simulated tests of n draws from `alternative` that reject `expected`.

    With `alternative` equal to `expected` this is the false-failure rate instead. Pass a seeded
    rng for a repeatable answer.
    """
    rng = rng or random.Random()
    outcomes = list(alternative)
    weights = [float(alternative[o]) for o in outcomes]
    rejected = 0
    for _ in range(runs):
        counts: dict[str, int] = dict.fromkeys(outcomes, 0)
        for outcome in rng.choices(outcomes, weights, k=n):
            counts[outcome] += 1
        rejected += not gof(counts, expected_probs, alpha).passed
    return rejected / runs


# ---- one decision rule for random selection, shared by live and static grading -----------------
#
# An answer's spread passes when every endpoint's share is within `tolerance` of its intended
# share. Static mode knows the exact shares and applies the rule as it stands. Live mode sees N
# new flows and estimates each share p̂ᵢ = countᵢ / N; it passes when every |p̂ᵢ − pᵢ| ≤ cᵢ.
# With k endpoints, z_a = Φ⁻¹(1 − α / 2k) (Bonferroni over the k two-sided tests) and
# z_b = Φ⁻¹(power), σ₀ = the largest √(q(1 − q)) for q within `inner` of pᵢ and σ₁ = the largest
# for q = pᵢ ± tolerance (a share on the tolerance's edge), N is the smallest with
#
#     z_a · σ₀ / √N + z_b · σ₁ / √N ≤ tolerance − inner        for every endpoint,
#
# and cᵢ = tolerance − z_b · σ₁ / √N. Then an answer whose every share is within `inner` of the
# intended one (inner = tolerance / 4: every rounding of 1/3 to two or more decimals) fails with
# probability ≤ α, and one with some share off by the tolerance or more passes with probability
# ≤ 1 − power (normal approximation to the binomial; N carries 10 % extra for the
# approximation's optimism this far in the tail). Between the two, static mode passes and live
# mode may go either way. N grows as 1 / tolerance²: at α = 1e-6, power 0.9999 and four
# endpoints, 0.5 points needs about 1,200,000 flows, 2.5 points about 48,000.

FLOW_MARGIN = 1.1


def normal_isf(p: float) -> float:
    """The z with P(Z > z) = p for a standard normal Z."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if 0.5 * math.erfc(mid / math.sqrt(2.0)) > p else (lo, mid)
    return (lo + hi) / 2.0


INNER = 0.25  # of the tolerance: shares this close to the intended ones pass live with 1 − α


def _sigma(shares: list[float]) -> float:
    """The largest binomial standard deviation √(q(1 − q)) for q in [min, max] of `shares`."""
    lo, hi = max(0.0, min(shares)), min(1.0, max(shares))
    q = 0.5 if lo <= 0.5 <= hi else (hi if hi < 0.5 else lo)
    return math.sqrt(q * (1 - q))


def _sigmas(share: float, tolerance: float) -> tuple[float, float]:
    inner = tolerance * INNER
    edges = [q for q in (share - tolerance, share + tolerance) if 0.0 <= q <= 1.0] or [share]
    return _sigma([share - inner, share + inner]), max(_sigma([q]) for q in edges)


def _z(cells: int, alpha: float, power_: float) -> tuple[float, float]:
    return normal_isf(alpha / (2 * max(cells, 1))), normal_isf(1.0 - power_)


def flows_for_tolerance(shares: Mapping[str, Probability], tolerance: float, alpha: float = 1e-6,
                        power_: float = 0.9999) -> int:
    """New flows a live grader needs to judge `shares` with `within_tolerance` (see above)."""
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance is a share in (0, 1), got {tolerance}")
    z_a, z_b = _z(len(shares), alpha, power_)
    worst = max(((z_a * s0 + z_b * s1) / (tolerance * (1 - INNER))) ** 2
                for s0, s1 in (_sigmas(float(p), tolerance) for p in [*shares.values(), 0.0]))
    return math.ceil(worst * FLOW_MARGIN)


@dataclass(frozen=True)
class ToleranceResult:
    """The verdict of the tolerance rule, and each destination whose share fell outside it."""

    passed: bool
    tolerance: float
    outside: tuple[tuple[str, float, float], ...]  # (destination, share, intended share)
    n: int | None  # flows measured; None: exact shares


def within_tolerance(shares: Mapping[str, Probability], intended: Mapping[str, Probability],
                     tolerance: float, *, n: int | None = None, alpha: float = 1e-6,
                     power_: float = 0.9999) -> ToleranceResult:
    """Every share within `tolerance` of its intended share: exactly (n=None, static mode), or
    measured over n flows with the live thresholds cᵢ defined above."""
    keys = sorted(set(shares) | set(intended))
    z_a, z_b = _z(len(intended), alpha, power_)
    outside = []
    for key in keys:
        got, want = float(shares.get(key, 0)), float(intended.get(key, 0))
        limit = tolerance
        if n is not None:
            limit = tolerance - z_b * _sigmas(want, tolerance)[1] / math.sqrt(n)
        if abs(got - want) > limit + 1e-12:
            outside.append((key, got, want))
    return ToleranceResult(not outside, tolerance, tuple(outside), n)
