"""Every verdict's false-positive rate and power, measured on simulated studies of known truth
(`tests/calibration.py`): a quick tier here, the full tier under `-m slow` (docs/design.md's table)."""

import pytest
from calibration import ALPHA, SKEWED_HOLDS_RATE, Condition, allowance, conditions, measure

import study.verdicts.degradation as degradation_module

QUICK, FULL = 200, 2000


def check(condition: Condition, studies: int) -> None:
    rate = measure(condition, studies)
    slack = allowance(ALPHA if condition.kind == "null" else rate, studies)
    if condition.kind == "null":
        assert rate <= ALPHA + slack, f"{condition.name}: {condition.claim} in {rate:.3f} of null studies"
    elif condition.kind == "skewed":
        assert rate == pytest.approx(SKEWED_HOLDS_RATE, abs=allowance(SKEWED_HOLDS_RATE, studies))
    elif condition.stated is not None:
        low, high = condition.stated
        assert low - slack <= rate <= high + slack, f"{condition.name}: power {rate:.3f}, stated {low:.3f}-{high:.3f}"
    else:
        assert rate >= 0.8, f"{condition.name}: power {rate:.3f}"


@pytest.mark.parametrize("condition", conditions(), ids=lambda c: f"{c.verdict}: {c.claim} | {c.name}")
def test_quick_calibration(condition):
    check(condition, QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("condition", conditions(), ids=lambda c: f"{c.verdict}: {c.claim} | {c.name}")
def test_full_calibration(condition):
    check(condition, FULL)


def test_the_harness_sees_a_verdict_with_the_wrong_minimum_effect(monkeypatch):
    """A degradation verdict that tests the residual rise against 5 points instead of 2 calls a 2-point
    rise "does not degrade": the harness measures that false-positive rate far above alpha."""
    monkeypatch.setattr(degradation_module, "MARGIN_EFFECT", 0.05)
    condition = next(c for c in conditions() if c.claim == "holds" and "heavy tails" in c.name)
    with pytest.raises(AssertionError, match="holds in"):
        check(condition, QUICK)
