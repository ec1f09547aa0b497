"""The agreement verdict: exactness first, then Welch equivalence of the outcomes, on tables of known truth.

The statistics are checked against independent computations (scipy, statsmodels) and by simulation:
the power the verdict states is the power the test has.
"""

import json

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import ttost_ind
from tables import effect, table

from study.files import EXACTNESS_QUANTITIES as QUANTITIES
from study.verdicts.agreement import agreement, outcome_test, seeds_needed

MARGIN, ALPHA = 0.05, 0.05


def evidence(passed=True, error=3e-15):
    """exactness.json's content as `study.measure.exactness.load_exactness` returns it."""
    errors = dict.fromkeys(QUANTITIES, error if passed else 0.0)
    if not passed:
        errors["final_bn_stats"] = 2.4e-2
    pair = {
        "backends": ["keras", "lightning"],
        "errors": errors,
        "worst": max(errors, key=errors.get),
        "passed": passed,
    }
    return {
        "schema": 1, "dtype": "float64", "tolerance": 1e-8, "passed": passed,
        "worst": {"error": errors[pair["worst"]], "quantity": pair["worst"], "spec": "resnet-8",
                  "backends": ["keras", "lightning"]},
        "recipe": {"epochs": 4}, "networks": [{"spec": "resnet-8", "arch": "resnet", "depth": 8, "pairs": [pair]}],
    }  # fmt: skip


PASSED, FAILED = evidence(True), evidence(False)


def chaotic(arch, depth):
    return 0.75 if (arch, depth) == ("plain", 56) else effect(arch, depth)


def unpaired(error=effect, seeds=(0, 1, 2, 3, 4), noise=0.01, chaotic_sd=0.0, rng_seed=0):
    """Each twin's runs drawn independently (no shared seed noise); the plain-56 cell with sd `chaotic_sd`."""
    rng = np.random.default_rng(rng_seed)
    frame = table(error, seeds=seeds, noise=0.0, twin_noise=0.0)
    sd = np.where((frame.arch == "plain") & (frame.depth == 56) & (chaotic_sd > 0), chaotic_sd, noise)
    frame["final_train_error"] = np.clip(frame.final_train_error + rng.normal(0, 1, len(frame)) * sd, 0, 1)
    frame["final_test_error"] = np.clip(frame.final_test_error + rng.normal(0, 1, len(frame)) * sd, 0, 1)
    return frame


def cell(result, arch, depth):
    return next(c for c in result["cells"] if (c["arch"], c["depth"]) == (arch, depth))


def test_equivalent_twins_with_exactness_agree():
    result = agreement(unpaired(), exactness=PASSED)
    assert result["verdict"] == "agree", result["reason"]
    assert {c["verdict"] for c in result["cells"]} == {"equivalent"} and len(result["cells"]) == 6
    assert result["not_excluded"] == [] and result["settle"] is None
    assert result["exactness"]["status"] == "passed" and "3.0e-15" in result["proved"]
    assert result["shown"].startswith("6 of 6 cells equivalent within ±5.0 points")


def test_without_exactness_the_same_outcomes_are_inconclusive():
    result = agreement(unpaired())
    assert result["verdict"] == "inconclusive" and result["exactness"]["status"] == "missing"
    assert "resnet-study run" in result["settle"]


def test_a_failed_replay_is_disagreement_whatever_the_outcomes():
    result = agreement(unpaired(), exactness=FAILED)
    assert result["verdict"] == "disagree"
    assert "final_bn_stats of resnet-8, keras vs lightning differs by 0.024" in result["reason"]
    assert {c["verdict"] for c in result["cells"]} == {"equivalent"}  # the outcomes could not have shown it


def test_twins_differing_beyond_the_margin_disagree():
    offset = {"keras": lambda arch, depth: effect(arch, depth) + 0.15, "lightning": effect}
    result = agreement(unpaired(offset), exactness=PASSED)
    assert result["verdict"] == "disagree" and {c["verdict"] for c in result["cells"]} == {"differs"}
    test = cell(result, "plain", 20)["tests"]["final_train_error"]
    assert test["mean_diff"] == pytest.approx(0.15, abs=0.02) and test["p_beyond_holm"] < ALPHA


def test_a_small_real_offset_within_the_margin_is_still_equivalent():
    offset = {"keras": lambda arch, depth: effect(arch, depth) + 0.02, "lightning": effect}
    result = agreement(unpaired(offset, noise=0.005), exactness=PASSED)
    assert result["verdict"] == "agree"
    tests = [t for c in result["cells"] for t in c["tests"].values()]
    assert all(t["p_diff_holm"] < ALPHA and t["p_tost_holm"] < ALPHA for t in tests)


def test_a_chaotic_cell_is_bounded_by_what_it_excludes():
    result = agreement(unpaired(chaotic, chaotic_sd=0.08), exactness=PASSED)
    plain56 = cell(result, "plain", 56)
    assert plain56["verdict"] == "bounded" and result["verdict"] == "agree"
    assert "plain-56" in result["reason"] and "bounded" in result["reason"]
    test = plain56["tests"]["final_train_error"]
    assert MARGIN < test["bound"] < 0.3 and test["mdd"] > MARGIN
    assert test["seeds_needed"] > 20 and test["tost_power"] < 0.5
    assert any(line.startswith("plain-56: final_train_error: not shown within ±5.0") for line in result["not_excluded"])
    assert all(c["verdict"] == "equivalent" for c in result["cells"] if c is not plain56)


def test_too_few_runs_or_one_backend_are_inconclusive():
    result = agreement(unpaired(seeds=(0,)), exactness=PASSED)
    assert result["verdict"] == "inconclusive" and {c["verdict"] for c in result["cells"]} == {"undecided"}
    assert "add seeds" in result["settle"]
    one = agreement(unpaired()[lambda f: f.backend == "keras"], exactness=PASSED)
    assert one["verdict"] == "inconclusive" and one["reason"] == "only one backend in the results"


def test_identical_runs_are_equivalent_as_stated():
    frame = unpaired(noise=0.0)
    result = agreement(frame, exactness=PASSED)
    test = cell(result, "resnet", 8)["tests"]["final_train_error"]
    assert test["note"] == "identical in every run" and test["p_tost"] == 0.0 and test["bound"] == 0.0
    assert cell(result, "resnet", 8)["reason"] == "identical in every run" and result["verdict"] == "agree"


def test_statistics_match_scipy_and_statsmodels():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.30, 0.04, 6), rng.normal(0.28, 0.07, 5)
    test = outcome_test(a, b, MARGIN, ALPHA, ALPHA)
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert test["p_diff"] == pytest.approx(welch.pvalue, rel=1e-12)
    assert test["df"] == pytest.approx(welch.df, rel=1e-12)
    assert test["p_tost"] == pytest.approx(ttost_ind(a, b, -MARGIN, MARGIN, usevar="unequal")[0], rel=1e-12)
    ci = welch.confidence_interval(0.95)
    assert (test["ci_low"], test["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    # The bound is where TOST would just pass: TOST at the bound gives p = alpha.
    assert ttost_ind(a, b, -test["bound"], test["bound"], usevar="unequal")[0] == pytest.approx(ALPHA, rel=1e-6)


def simulate(diff, sd, n, test_key, trials=3000, seed=0):
    """Rejection rate of one of outcome_test's tests at a true difference `diff`."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        t = outcome_test(rng.normal(diff, sd, n), rng.normal(0, sd, n), MARGIN, ALPHA, ALPHA)
        hits += t[test_key] < ALPHA
    return hits / trials


def test_the_stated_power_is_the_power_the_tests_have():
    sd, n = 0.04, 8
    se = sd * np.sqrt(2 / n)
    stated = outcome_test(np.array([-1, 1] * (n // 2)) * sd * np.sqrt((n - 1) / n) + 0.0,
                          np.array([-1, 1] * (n // 2)) * sd * np.sqrt((n - 1) / n), MARGIN, ALPHA, ALPHA)  # fmt: skip
    assert stated["se"] == pytest.approx(se, rel=1e-9)
    assert simulate(stated["mdd"], sd, n, "p_diff") == pytest.approx(0.8, abs=0.04)  # MDD: 80 % power
    assert simulate(0.0, sd, n, "p_tost") == pytest.approx(stated["tost_power"], abs=0.04)
    assert simulate(MARGIN, sd, n, "p_beyond") <= ALPHA + 0.01  # the "differs" test keeps its level
    assert simulate(MARGIN, sd, n, "p_tost") <= ALPHA + 0.01  # and so does the equivalence test


def test_seeds_needed_reaches_the_power_it_promises():
    sd = 0.06
    n = seeds_needed(sd**2, sd**2, MARGIN, ALPHA)
    assert simulate(0.0, sd, n, "p_tost", trials=2000) >= 0.77
    assert simulate(0.0, sd, max(2, n - 4), "p_tost", trials=2000) < 0.8


def test_holm_spans_every_cell_and_metric():
    result = agreement(unpaired(chaotic, chaotic_sd=0.08), exactness=PASSED)
    tests = [t for c in result["cells"] for t in c["tests"].values()]
    raw = sorted(t["p_tost"] for t in tests)
    assert min(t["p_tost_holm"] for t in tests) == pytest.approx(min(1.0, raw[0] * len(tests)))


def test_verdict_is_json_serializable():
    for frame in (unpaired(), unpaired(seeds=(0,)), unpaired(noise=0.0)):
        json.dumps(agreement(frame, exactness=PASSED), allow_nan=False)
