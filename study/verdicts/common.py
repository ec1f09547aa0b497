"""What the verdicts share: the confidence level, the thresholds of "learned" and of a meaningful
effect, Holm's correction, and JSON-safe numbers."""

from __future__ import annotations

import math

from statsmodels.stats.multitest import multipletests

CI_LEVEL = 0.95  # all confidence intervals, independent of the test level alpha
LEARNED = 0.5  # a net "learned" when its error is below this (10 classes: chance is 0.9)
MARGIN_EFFECT = 0.02  # smallest meaningful rise of plain-net error with depth (`study.verdicts.degradation`)


def as_float(value) -> float | None:
    """A finite number as a plain float; NaN/inf/None as None."""
    return float(value) if value is not None and math.isfinite(value) else None


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values over the defined (not None) entries; None stays None."""
    defined = [i for i, p in enumerate(pvalues) if p is not None]
    adjusted = list(pvalues)
    if defined:
        for i, p in zip(defined, multipletests([pvalues[i] for i in defined], method="holm")[1], strict=True):
            adjusted[i] = float(p)
    return adjusted
