"""The power of the twins' paired tests (`study.verdicts.agreement`): the exact power of the paired
TOST, the seeds it needs, and the smallest difference the "beyond the margin" test detects.

What an undecided cell states (its detectable difference, the seeds that would settle it) and what
`resnet-study run --settle` plans its second look with; the calibration harness
(tests/calibration.py) checks these numbers against simulated studies.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

POWER = 0.8  # of the detectable difference and the seeds that would settle a cell
MAX_SEEDS = 10_000

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(96)  # Gauss-Legendre on [-1, 1]


def tost_power(sd: float, n: int, margin: float, level: float, true: float = 0.0) -> float:
    """Exact power of the paired TOST at `level` (equivalence within ±margin) with n pairs whose
    differences have standard deviation `sd` and mean `true`: the probability that
    |mean| + t(1 − level, n − 1) · s/√n < margin, over the sampling distributions of the mean (normal)
    and of s (chi). Integrated over the quantiles of s² (Gauss-Legendre), so it stays exact for any n."""
    if n < 2:
        return 0.0
    if sd == 0:
        return float(abs(true) < margin)
    df, scale = n - 1, sd / math.sqrt(n)
    critical = stats.t.ppf(1 - level, df)
    limit = df * (margin / (critical * scale)) ** 2  # s² · df / sd² beyond this cannot pass, whatever the mean
    top = stats.chi2.cdf(limit, df)
    if top == 0:
        return 0.0
    u = (_NODES + 1) * top / 2  # quantiles of the chi-square up to the limit
    x = stats.chi2.ppf(u, df)
    half = np.maximum(margin - critical * scale * np.sqrt(x / df), 0.0)
    inside = stats.norm.cdf((half - true) / scale) - stats.norm.cdf((-half - true) / scale)
    return float(min(1.0, top / 2 * np.dot(_WEIGHTS, inside)))


def seeds_needed(sd: float, margin: float, level: float, power: float = POWER) -> int | None:
    """The fewest pairs for which the paired TOST at `level` has `power` at a true difference of 0
    (None: more than MAX_SEEDS). The power grows with the pairs: a bisection."""
    if sd == 0:
        return 2
    if tost_power(sd, MAX_SEEDS, margin, level) < power:
        return None
    low, high = 1, MAX_SEEDS  # power(low) < power <= power(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if tost_power(sd, mid, margin, level) >= power else (mid, high)
    return high


def beyond_mdd(sd: float, n: int, margin: float, level: float, power: float = POWER) -> float:
    """The smallest |Δ| that the "beyond the margin" test (each one-sided test at level/2) detects with
    `power`: margin + δ·se, δ the noncentrality at which the noncentral t passes the critical value
    with that probability."""
    df, se = n - 1, sd / math.sqrt(n)
    critical = stats.t.ppf(1 - level / 2, df)
    gap = lambda nc: stats.nct.sf(critical, df, nc) - power  # noqa: E731
    high = critical + 20.0
    while gap(high) < 0:  # few degrees of freedom: a heavy tail, so look further
        if high > 1e6:
            return math.inf
        high *= 4
    return margin + optimize.brentq(gap, 0.0, high, xtol=1e-10) * se
