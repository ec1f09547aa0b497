"""Exact sign tests: claims about the typical seed that hold whatever the runs' distribution.

Five seeds cannot show that their errors are normal, and a test of a *mean* cannot keep its error
rate without that (or a bound on what the unseen seeds may hold: errors live in [0, 1], and five
seeds that all learned do not exclude that up to 45 % of seeds fail). So every claim a verdict makes
about a quantity of the runs is a claim about the **typical seed**: more than half of all seeds (the
population the study's seeds are drawn from) lie beyond the threshold — the median lies beyond it.

Its test counts the seeds beyond the threshold, k of n; a seed exactly at the threshold counts
against the claim (the callers pass the seeds that ran: a missing run is no seed). At the claim's
boundary (exactly half the seeds beyond) k is Binomial(n, 1/2) whatever the distribution — skewed
either way, heavy-tailed, bimodal, made of
rare failures, identical in every run — so p = P(Binomial(n, 1/2) >= k) keeps the false-claim rate
at most the level, exactly. Its price: the smallest p of n seeds is 2^-n (5 seeds: 1/32 = 0.031), so
a claim at level alpha needs n >= log2(1/alpha) seeds beyond the threshold (5 at 0.05, 6 at 0.025,
8 at 0.05/12).

What the claim leaves open is stated beside it: the seeds on the other side (`tail_bound`: the
Clopper-Pearson upper bound of their share — "5 of 5 beyond does not exclude that up to 45 % of seeds
are not"), and the median's distribution-free interval from the order statistics (`median_interval`,
with its exact coverage, which at 5 seeds is 93.75 %, the most 5 seeds can give).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

MAX_SEEDS = 10_000
CI_LEVEL = 0.95


@lru_cache(maxsize=4096)
def sign_p(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) >= k): the exact one-sided p of k seeds of n beyond the threshold."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if n <= 200:  # exact in integers
        return math.fsum(math.comb(n, j) for j in range(k, n + 1)) / 2.0**n
    return float(stats.binom.sf(k - 1, n, 0.5))


@lru_cache(maxsize=4096)
def critical(n: int, level: float) -> int | None:
    """The fewest seeds of n beyond the threshold that show the claim at `level` (None: not even all n)."""
    if sign_p(n, n) > level:
        return None
    k = max(0, int(stats.binom.isf(level, n, 0.5)) - 2)  # just below it; then step up, exactly
    while sign_p(k, n) > level:
        k += 1
    while k > 0 and sign_p(k - 1, n) <= level:
        k -= 1
    return k


def fewest_seeds(level: float) -> int:
    """The fewest seeds with which any claim can be shown at `level` (all of them beyond): 2^-n <= level."""
    return max(1, math.ceil(math.log2(1 / level) - 1e-12))


def power(q: float, n: int, level: float) -> float:
    """The test's power with n seeds when each seed lies beyond the threshold with probability q."""
    c = critical(n, level)
    if c is None:
        return 0.0
    if n <= 200:  # exact, and 50 times faster than scipy's for the calibration's thousands of calls
        return min(1.0, math.fsum(math.comb(n, j) * q**j * (1 - q) ** (n - j) for j in range(c, n + 1)))
    return float(stats.binom.sf(c - 1, n, q))


@lru_cache(maxsize=4096)  # q is a share of seeds (Laplace's rule): few distinct values
def seeds_for(q: float, level: float, wanted: float = 0.8) -> int | None:
    """The fewest seeds giving `wanted` power when a seed lies beyond with probability q (None: q <= 1/2,
    or more than MAX_SEEDS). Started a little below the normal approximation's answer and stepped up
    exactly (the binomial's steps make the power saw-toothed in n: the first n that reaches it)."""
    if q <= 0.5:
        return None
    z_level, z_power = stats.norm.isf(level), stats.norm.isf(1 - wanted)
    approx = ((0.5 * z_level + z_power * math.sqrt(q * (1 - q))) / (q - 0.5)) ** 2
    if approx > 2 * MAX_SEEDS:
        return None
    n = max(fewest_seeds(level), int(0.8 * approx) - 2)
    while n <= MAX_SEEDS:
        if power(q, n, level) >= wanted:
            return n
        n += 1
    return None


def family_seeds(tests: list[dict], wanted: float = 0.8) -> int | None:
    """The seeds per cell that give a claim made of all of `tests` (an intersection-union test: every one
    shown at its level) `wanted` power at each test's observed share of seeds beyond its threshold
    (Laplace's rule), whatever the dependence between the tests: each gets 1 - (1 - wanted) / T of power
    (Bonferroni over its T tests). None without tests, or where a test's typical seed lies on the other
    side (no number of seeds would show it)."""
    if not tests:
        return None
    each = 1 - (1 - wanted) / len(tests)
    seeds = [seeds_for((t["beyond"] + 1) / (t["n"] + 2), t["level"], each) for t in tests]
    return max(seeds) if all(seeds) else None


def tost_power(below: float, above: float, n: int, level: float) -> float:
    """The sign TOST's power with n seeds, each lying at or below -margin with probability `below`, at
    or above +margin with probability `above` (else within): P(#(d < margin) >= c and #(d > -margin) >= c),
    c = `critical`(n, level) — exactly, over the trinomial: the count below, then the count above
    among the rest (binomial)."""
    c = critical(n, level)
    if c is None:
        return 0.0
    most = n - c  # at most this many seeds on either side
    b = np.arange(most + 1)
    rest = above / (1 - below) if below < 1 else 0.0
    p_b = stats.binom.pmf(b, n, below)
    p_a = stats.binom.cdf(most, n - b, rest)
    return float(min(1.0, np.dot(p_b, p_a)))


@lru_cache(maxsize=4096)
def tost_seeds(below: float, above: float, level: float, wanted: float = 0.8) -> int | None:
    """The fewest seeds giving the sign TOST `wanted` power (None: a side holds half the seeds or more,
    or more than MAX_SEEDS); started below the one-sided answer for the seeds within, stepped up exactly."""
    if below >= 0.5 or above >= 0.5:
        return None
    start = seeds_for(1 - max(below, above), level, wanted)
    if start is None:
        return None
    n = max(fewest_seeds(level), int(0.7 * start) - 2)
    while n <= MAX_SEEDS:
        if tost_power(below, above, n, level) >= wanted:
            return n
        n += 1
    return None


def shares(counts: tuple[int, ...]) -> tuple[float, ...]:
    """Observed shares of seeds by category, shrunk by Laplace's rule ((k + 1) / (n + categories))."""
    total = sum(counts) + len(counts)
    return tuple((k + 1) / total for k in counts)


@lru_cache(maxsize=4096)
def tail_bound(others: int, n: int, level: float = CI_LEVEL) -> float:
    """Clopper-Pearson upper bound of the share of seeds on the other side, `others` of n seen."""
    if n == 0:
        return 1.0
    if others >= n:
        return 1.0
    return float(stats.beta.ppf(level, others + 1, n - others))


def median_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float | None, float | None, float]:
    """The distribution-free interval of the median from the order statistics: (x_(r), x_(n-r+1)) with
    the largest r whose coverage 1 - 2 P(Binomial(n, 1/2) < r) is at least `level`, else the widest
    (r = 1, the range) with the coverage it has; (None, None, 0) below 2 values."""
    values = np.sort(np.asarray(values, float))
    n = len(values)
    if n < 2:
        return None, None, 0.0
    r, coverage = 1, 1 - 2 * sign_p(n, n)  # the range: the median lies outside only if all are on one side
    for candidate in range(2, n // 2 + 1):
        cover = 1 - 2 * (1 - sign_p(candidate, n))
        if cover < level:
            break
        r, coverage = candidate, cover
    return float(values[r - 1]), float(values[n - r]), float(coverage)


@dataclass(frozen=True)
class SignTest:
    """The claim "the typical seed's value lies `direction` `threshold`" on the values of n seeds."""

    values: np.ndarray
    threshold: float
    direction: str  # "above" | "below"

    @property
    def n(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.values)))

    @property
    def beyond(self) -> int:
        v = self.values[~np.isnan(self.values)]
        return int(np.count_nonzero(v > self.threshold if self.direction == "above" else v < self.threshold))

    @property
    def p(self) -> float:
        return sign_p(self.beyond, self.n)

    def to_dict(self, level: float) -> dict:
        """What a verdict's test records: the counts, p, whether shown at `level`, the median with its
        distribution-free interval, the mean (described, not tested), what the seeds leave open."""
        v = self.values[~np.isnan(self.values)]
        low, high, coverage = median_interval(v)
        n, k = self.n, self.beyond
        return {
            "n": n, "beyond": k, "threshold": self.threshold, "direction": self.direction, "p": self.p,
            "level": level, "shown": n > 0 and self.p <= level,
            "estimate": float(np.median(v)) if n else None, "ci_low": low, "ci_high": high, "ci_coverage": coverage,
            "mean": float(np.mean(v)) if n else None,
            "tail_bound": tail_bound(n - k, n),
            # at the observed share, shrunk by Laplace's rule ((k + 1) / (n + 2)): k of k is not certainty
            "seeds_needed": seeds_for((k + 1) / (n + 2), level) if n and self.p > level else None,
            "method": "exact sign test (median)",
        }  # fmt: skip


def sign_test(values, threshold: float, direction: str, level: float) -> dict:
    """`SignTest(values, threshold, direction).to_dict(level)`."""
    return SignTest(np.asarray(values, float), threshold, direction).to_dict(level)


def open_text(test: dict, what: str) -> str:
    """One clause on what a shown claim leaves open, e.g. "5 of 5 seeds do not exclude that up to 45 %
    of seeds are not ..."."""
    return (f"{test['beyond']} of {test['n']} seeds do not exclude that up to {100 * test['tail_bound']:.0f} % "
            f"of seeds {what}")  # fmt: skip
