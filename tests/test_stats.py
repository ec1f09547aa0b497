"""Verdicts of the statistics on synthetic results tables whose truth is known, and results.csv validation."""

import json

import pandas as pd
import pytest
from tables import DEPTHS, effect, flat, reversed_, table

from study.verdicts.analyze import analyze
from study.verdicts.degradation import degradation
from study.verdicts.inputs import ResultsError, load_results


def verdicts(result: dict) -> dict:
    return {backend: entry["verdict"] for backend, entry in result["backends"].items()}


def test_effect_present_holds_and_twins_agree():
    results = table(effect)
    deg = degradation(results)
    assert deg["verdict"] == "holds", deg["reason"]
    assert verdicts(deg) == {"keras": "holds", "lightning": "holds"}
    tests = deg["backends"]["keras"]["tests"]
    assert tests["plain_deep_vs_shallow"]["mean_diff"] == pytest.approx(0.004 * 48, abs=0.02)
    assert tests["plain_deep_vs_shallow"]["ci_low"] > 0.1 and tests["plain_deep_vs_shallow"]["hedges_g"] > 3
    assert tests["interaction"]["coef"] == pytest.approx(0.004, abs=0.0005)
    assert tests["interaction"]["ci_low"] < tests["interaction"]["coef"] < tests["interaction"]["ci_high"]
    assert not tests["residual_deep_vs_shallow"]["significant"]
    assert deg["backends"]["keras"]["depths"] == list(DEPTHS)
    cell = next(c for c in deg["backends"]["keras"]["cells"] if (c["arch"], c["depth"]) == ("plain", 56))
    assert cell["n"] == 4 and cell["ci_low"] < cell["mean"] < cell["ci_high"]
    assert cell["mean"] == pytest.approx(0.242, abs=0.015)


def test_holm_family_spans_all_backends():
    family = [t for e in degradation(table(effect))["backends"].values() for t in e["tests"].values()]
    assert len(family) == 8
    smallest = min(family, key=lambda t: t["p"])
    assert smallest["p_holm"] == pytest.approx(min(1.0, 8 * smallest["p"]))
    assert all(t["p_holm"] >= t["p"] for t in family)


def test_effect_absent_does_not_hold():
    deg = degradation(table(flat))
    assert deg["verdict"] == "does_not_hold", deg["reason"]
    assert verdicts(deg) == {"keras": "does_not_hold", "lightning": "does_not_hold"}


def test_reversed_effect_does_not_hold():
    deg = degradation(table(reversed_))
    assert deg["verdict"] == "does_not_hold"
    assert deg["backends"]["keras"]["tests"]["plain_deep_vs_shallow"]["mean_diff"] < -0.15
    assert "<= 0" in deg["backends"]["keras"]["reason"]
    interaction = deg["backends"]["keras"]["tests"]["interaction"]
    assert interaction["coef"] < 0 and interaction["p"] > 0.99  # one-sided: a negative slope is no evidence


def test_rise_below_effect_margin_does_not_hold():
    deg = degradation(
        table(lambda arch, depth: 0.05 + (0.003 * (depth - 8) / 48 if arch == "plain" else 0), noise=0.005)
    )
    plain = deg["backends"]["keras"]["tests"]["plain_deep_vs_shallow"]
    assert plain["mean_diff"] > 0 and plain["ci_high"] < 0.02 and not plain["significant"]
    assert verdicts(deg)["keras"] == "does_not_hold" and "below 0.02" in deg["backends"]["keras"]["reason"]


def test_residual_degrading_as_much_as_plain_does_not_hold():
    deg = degradation(table(lambda arch, depth: 0.05 + 0.004 * (depth - 8)))
    assert verdicts(deg) == {"keras": "does_not_hold", "lightning": "does_not_hold"}
    assert "residual" in deg["backends"]["keras"]["reason"]


def test_residual_degrading_less_but_significantly_is_inconclusive():
    deg = degradation(table(lambda arch, depth: 0.05 + (0.004 if arch == "plain" else 0.002) * (depth - 8)))
    assert verdicts(deg) == {"keras": "inconclusive", "lightning": "inconclusive"}
    assert deg["backends"]["keras"]["tests"]["interaction"]["significant"]
    assert "residual nets also degrade significantly" in deg["backends"]["keras"]["reason"]


def test_backends_differing():
    results = table(
        {"keras": lambda arch, depth: effect(arch, depth) + 0.3, "lightning": lambda arch, _: effect(arch, 8)}
    )
    deg = degradation(results)
    assert verdicts(deg) == {"keras": "holds", "lightning": "does_not_hold"}
    assert deg["verdict"] == "inconclusive"
    assert deg["reason"] == "backends differ: keras holds, lightning does_not_hold"


def test_too_few_seeds_is_inconclusive():
    results = table(effect, seeds=(0,))
    deg = degradation(results)
    assert deg["verdict"] == "inconclusive"
    assert verdicts(deg) == {"keras": "inconclusive", "lightning": "inconclusive"}
    assert "fewer than 2 seeds" in deg["backends"]["keras"]["reason"] and deg["backends"]["keras"]["tests"] == {}
    assert deg["backends"]["keras"]["cells"][0]["ci_low"] is None


def test_missing_arch_or_depth_is_inconclusive():
    results = table(effect)
    assert "no resnet runs" in degradation(results[results.arch == "plain"])["reason"]
    two_cells = results[(results.depth == 8) | ((results.arch == "plain") & (results.depth == 56))]
    assert "fewer than 2 depths" in degradation(two_cells)["backends"]["keras"]["reason"]


def test_zero_variance_tests_are_undefined():
    deg = degradation(table(flat, noise=0.0, twin_noise=0.0))
    assert verdicts(deg) == {"keras": "inconclusive", "lightning": "inconclusive"}
    assert "test undefined" in deg["backends"]["keras"]["reason"]
    assert deg["backends"]["keras"]["tests"]["plain_deep_vs_shallow"]["p"] is None
    json.dumps(deg, allow_nan=False)


def test_only_one_backend():
    results = table(effect, backends=("keras",))
    assert degradation(results)["verdict"] == "holds"


def test_diverged_runs_are_counted_and_listed():
    results = table(effect)
    failed = (results.arch == "plain") & (results.depth == 56) & (results.seed < 2) & (results.backend == "keras")
    results.loc[failed, ["final_train_error", "final_test_error", "diverged"]] = [0.9, 0.9, True]
    out = analyze(results)
    assert out["diverged"]["count"] == 2
    assert sorted(out["diverged"]["runs"]) == ["keras-plain56-s0", "keras-plain56-s1"]
    by_cell = {(c["backend"], c["arch"], c["depth"]): (c["diverged"], c["runs"]) for c in out["diverged"]["by_cell"]}
    assert by_cell[("keras", "plain", 56)] == (2, 4) and by_cell[("lightning", "plain", 56)] == (0, 4)
    assert len(by_cell) == 12
    cell = next(c for c in out["degradation"]["backends"]["keras"]["cells"] if (c["arch"], c["depth"]) == ("plain", 56))
    assert cell["n"] == 4 and cell["mean"] > 0.5  # diverged runs are ordinary observations


@pytest.mark.parametrize(
    "error, kwargs",
    [(effect, {}), (flat, {}), (effect, {"seeds": (0,)}), (effect, {"backends": ("keras",)}), (flat, {"noise": 0.0})],
)
def test_verdicts_are_json_serializable(error, kwargs):
    def plain_types(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain_types(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain_types(v) for v in value)
        return type(value) in (float, int, str, bool, type(None))  # not numpy scalars

    out = analyze(table(error, **kwargs))
    assert plain_types(out)
    assert json.loads(json.dumps(out, allow_nan=False))["degradation"]["verdict"] == out["degradation"]["verdict"]
    assert set(out) == {
        "degradation",
        "agreement",
        "lesion",
        "norm_preservation",
        "relu_vs_skip",
        "diverged",
        "alpha",
        "margin",
    }


def test_load_results_round_trip(tmp_path):
    results = table(effect)
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    loaded = load_results(path)
    pd.testing.assert_frame_equal(loaded, results, check_dtype=False)
    assert loaded.diverged.dtype == bool and loaded.depth.dtype.kind == "i"


def test_load_results_parses_diverged_spellings(tmp_path):
    results = table(effect, seeds=(0,), backends=("keras",)).iloc[:6]
    results["diverged"] = ["True", "false", "1", "0", "TRUE", "False"]
    results.to_csv(tmp_path / "r.csv", index=False)
    assert load_results(tmp_path / "r.csv").diverged.tolist() == [True, False, True, False, True, False]


@pytest.mark.parametrize(
    "row, column, value, expected",
    [
        (3, "final_train_error", "abc", "final_train_error of run 'keras-plain8-s3' is 'abc'"),
        (2, "best_test_error", 1.5, "best_test_error of run 'keras-plain8-s2' is '1.5', expected a number in [0, 1]"),
        (4, "final_test_error", None, "final_test_error of run 'keras-plain20-s0' is empty"),
        (1, "arch", "densenet", "arch of run 'keras-plain8-s1' is 'densenet'"),
        (1, "backend", "jax", "backend of run 'keras-plain8-s1' is 'jax'"),
        (6, "depth", "deep", "depth of run 'keras-plain20-s2' is 'deep'"),
        (5, "run_key", "keras-plain8-s0", "duplicate run_key 'keras-plain8-s0'"),
        (0, "diverged", "maybe", "diverged of run 'keras-plain8-s0' is 'maybe'"),
    ],
)
def test_load_results_rejects_bad_values(tmp_path, row, column, value, expected):
    path = tmp_path / "results.csv"
    results = table(effect).astype(object)
    results.loc[row, column] = value
    results.to_csv(path, index=False)
    with pytest.raises(ResultsError) as info:
        load_results(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_load_results_names_missing_columns(tmp_path):
    table(effect).drop(columns=["seed", "final_test_error"]).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ResultsError, match=r"lacks column\(s\): seed, final_test_error$"):
        load_results(tmp_path / "results.csv")


def test_load_results_rejects_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text(",".join(table(effect).columns) + "\n")
    for name, expected in [("empty.csv", "is empty"), ("header.csv", "has no rows"), ("absent.csv", "cannot read")]:
        with pytest.raises(ResultsError, match=expected):
            load_results(tmp_path / name)


def test_a_negligible_but_consistent_residual_rise_still_holds():
    """Short schedules leave deep residual nets a few tenths of a point behind: significant, negligible."""

    def small_residual_rise(arch, depth):
        return effect(arch, depth) if arch == "plain" else 0.001 + 0.0001 * (depth - 8)

    deg = degradation(table(small_residual_rise, noise=0.0005, twin_noise=0.0001))
    residual = deg["backends"]["keras"]["tests"]["residual_deep_vs_shallow"]
    assert residual["significant"] and residual["ci_high"] < 0.02
    assert deg["verdict"] == "holds", deg["reason"]


def test_residual_nets_at_zero_error_everywhere_do_not_degrade():
    def perfect_residual(arch, depth):
        return effect(arch, depth) if arch == "plain" else 0.0

    results = table(perfect_residual)
    results.loc[results.arch == "resnet", ["final_train_error"]] = 0.0
    deg = degradation(results)
    assert deg["backends"]["keras"]["tests"]["residual_deep_vs_shallow"]["p"] is None
    assert deg["verdict"] == "holds", deg["reason"]
