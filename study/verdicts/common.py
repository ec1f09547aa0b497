"""What the verdicts share: the confidence level, the thresholds of "learned" and of a meaningful
effect, Holm's correction, the t interval of a mean (described beside the medians, never decided on),
and JSON-safe numbers.

Every verdict is a decision on the seed as the unit of replication: where both twins trained a
network of one seed, the two count as one network (`per_seed`), never as two samples.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CI_LEVEL = 0.95  # all confidence intervals, independent of the test level alpha
LEARNED = 0.5  # a net "learned" when its error is below this (10 classes: chance is 0.9)
MARGIN_EFFECT = 0.02  # smallest meaningful rise of plain-net error with depth (`study.verdicts.degradation`)


def as_float(value) -> float | None:
    """A finite number as a plain float; NaN/inf/None as None."""
    return float(value) if value is not None and math.isfinite(value) else None


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values over the defined (not None) entries; None stays None.

    Written out (the same numbers as statsmodels' `multipletests(method="holm")`, tests/test_stats.py)
    because that function runs a full garbage collection on every call: 46 ms, which the simulated
    studies of the calibration harness would pay thousands of times.
    """
    defined = [i for i, p in enumerate(pvalues) if p is not None]
    adjusted = list(pvalues)
    if defined:
        raw = np.array([pvalues[i] for i in defined], float)
        order = np.argsort(raw, kind="stable")
        stepped = np.minimum(1.0, np.maximum.accumulate(raw[order] * (len(raw) - np.arange(len(raw)))))
        values = np.empty_like(raw)
        values[order] = stepped
        for i, p in zip(defined, values, strict=True):
            adjusted[i] = float(p)
    return adjusted


def per_seed(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """One value per seed and `keys` cell: where several twins trained the network of one seed, their
    mean (the twins share the seed's initial weights and data order: one network, not two)."""
    return frame.groupby([*keys, "seed"], as_index=False)[value].mean()


def t_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[float | None, float | None]:
    """The t interval of a mean (None with fewer than 2 values)."""
    if len(values) < 2:
        return None, None
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return mean - half, mean + half
