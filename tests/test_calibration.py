"""Every verdict's false-positive rate and power, measured on simulated studies of known truth
(`tests/calibration.py`): a quick tier here, the full tier under `-m slow` (docs/design.md's table).
Each null condition is also shown to catch a broken procedure (`break_procedure`)."""

import numpy as np
import pytest
from calibration import ALPHA, Condition, allowance, conditions, measure
from scipy import stats as outcomes_stats

import study.verdicts.degradation as degradation_module
import study.verdicts.outcomes as outcomes
import study.verdicts.signs as signs

QUICK, FULL = 200, 2000
NULLS = [c for c in conditions() if c.kind == "null"]


def check(condition: Condition, studies: int) -> float:
    rate = measure(condition, studies)
    slack = allowance(ALPHA if condition.kind == "null" else rate, studies)
    if condition.kind == "null":
        assert rate <= ALPHA + slack, f"{condition.name}: {condition.claim} in {rate:.3f} of null studies"
    elif condition.kind == "declines":
        assert rate == 0, f"{condition.name}: {condition.claim} in {rate:.3f} of studies"
    elif condition.stated is not None:
        low, high = condition.stated
        assert low - slack <= rate <= high + slack, f"{condition.name}: power {rate:.3f}, stated {low:.3f}-{high:.3f}"
    elif condition.kind == "power":
        assert rate >= 0.8, f"{condition.name}: power {rate:.3f}"
    return rate


@pytest.mark.parametrize("condition", conditions(), ids=lambda c: f"{c.verdict}: {c.claim} | {c.name}")
def test_quick_calibration(condition):
    check(condition, QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("condition", conditions(), ids=lambda c: f"{c.verdict}: {c.claim} | {c.name}")
def test_full_calibration(condition):
    check(condition, FULL)


MOVED = {"degradation": 0.02, "lesion": 0.05, "norm": 0.02, "relu-skip": 0.05, "budget": 0.02}  # the nulls' scales
# Claims decided only after a stronger one is ruled out: the break favours the claim's own direction only
# (favouring both would turn the study into the stronger claim, not into a false one of these).
ONE_WAY = {("norm", "does_not_hold"): "above", ("budget", "gap_closes"): "below"}


def break_procedure(condition: Condition, monkeypatch) -> None:
    """A broken procedure for `condition`: a sign test that counts a seed on the threshold for the claim
    (identical runs), a threshold moved in the claim's favour by the scale of the null's spread
    (`MOVED`), the twins' margin widened for "equivalent", narrowed for "differs", by 5 points, or a
    divergence test 64 times too lenient."""
    kind = condition.verdict.split()[0]
    favours = ONE_WAY.get((kind, condition.claim), ("above", "below"))
    exact = signs.SignTest.beyond.fget
    if condition.verdict == "agreement (chaotic cell)":  # the distribution test 64 times too lenient, ties a shift
        paired = outcomes.paired_test

        def broken(d, margin, *args, **kwargs):
            out = paired(d, margin, *args, **kwargs)
            if out["p_diff"] is not None:
                out["p_diff"] = min(out["p_diff"] / 64, signs.sign_p(int(np.count_nonzero(d >= 0)), len(d)))
            return out

        monkeypatch.setattr(outcomes, "paired_test", broken)
    elif "identical" in condition.name:

        def tie(self):
            if self.direction not in favours:
                return exact(self)
            v = self.values
            return int((v >= self.threshold).sum() if self.direction == "above" else (v <= self.threshold).sum())

        monkeypatch.setattr(signs.SignTest, "beyond", property(tie))
    elif kind in MOVED:
        delta = MOVED[kind]

        def favoured(self):
            if self.direction not in favours:
                return exact(self)
            v = self.values[~np.isnan(self.values)]
            if self.direction == "above":
                return int(np.count_nonzero(v > self.threshold - delta))
            return int(np.count_nonzero(v < self.threshold + delta))

        monkeypatch.setattr(signs.SignTest, "beyond", property(favoured))
    elif condition.claim == "disagree":
        binomtest = outcomes_stats.binomtest

        class Lenient:
            def __init__(self, *args, **kwargs):
                self.pvalue = binomtest(*args, **kwargs).pvalue / 64

        monkeypatch.setattr("study.verdicts.agreement.stats.binomtest", Lenient)
    else:
        exact = outcomes.paired_test
        delta = 0.05 if condition.claim.endswith("equivalent") else -0.05
        monkeypatch.setattr(outcomes, "paired_test", lambda d, margin, *a, **k: exact(d, margin + delta, *a, **k))


@pytest.mark.parametrize("condition", NULLS, ids=lambda c: f"{c.verdict}: {c.claim} | {c.name}")
def test_each_null_catches_a_broken_procedure(condition, monkeypatch, request):
    for cached in (
        signs.critical,
        signs.seeds_for,
        signs.tost_seeds,
        signs.tail_bound,
    ):  # nothing computed here outlives it
        cached.cache_clear()
        request.addfinalizer(cached.cache_clear)
    break_procedure(condition, monkeypatch)
    with pytest.raises(AssertionError, match="of null studies"):  # broken rates are 0.2 to 1: half the studies
        check(condition, QUICK // 2)


def test_the_harness_sees_a_verdict_with_the_wrong_minimum_effect(monkeypatch):
    """A degradation verdict that tests the residual rise against 5 points instead of 2 calls a 2-point
    rise "does not degrade": the harness measures that false-positive rate far above alpha."""
    monkeypatch.setattr(degradation_module, "MARGIN_EFFECT", 0.05)
    condition = next(c for c in conditions() if c.claim == "holds" and "heavy" in c.name)
    with pytest.raises(AssertionError, match="holds in"):
        check(condition, QUICK)


def test_reported_truths_are_named_in_the_verdicts_text():
    """Rare failures leave the typical seed's claim true: the verdict says so and what stays open."""
    import numpy as np
    from calibration import degradation_cells, rare, results_table, twin_cell

    from study.verdicts.degradation import degradation

    rising = twin_cell(lambda rng, n: np.full(n, 0.7))
    table = results_table(degradation_cells(rising, twin_cell(rare(0.0, 0.9))), np.random.default_rng(0),
                          backends=("lightning",))  # fmt: skip
    entry = degradation(table)["backends"]["lightning"]
    assert entry["verdict"] == "holds"
    assert "5 of 5 seeds do not exclude that up to 45 % of seeds rise by 2.0 points or more" in entry["reason"]
