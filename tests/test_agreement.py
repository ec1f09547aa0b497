"""The agreement verdict: exactness first, then paired equivalence of the outcomes, on tables of known truth.

The statistics are checked against independent computations (scipy, statsmodels) and by simulation:
the power the verdict states is the power its procedure has.
"""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from tables import effect, table

from study.files import EXACTNESS_QUANTITIES as QUANTITIES
from study.verdicts.agreement import agreement
from study.verdicts.analyze import analyze
from study.verdicts.inputs import load_results
from study.verdicts.outcomes import paired_test
from study.verdicts.signs import shares, tost_power, tost_seeds

MARGIN, ALPHA = 0.05, 0.05


def network(
    spec="resnet-8",
    passed=True,
    error=3e-15,
    tolerance=1e-8,
    backends=("keras", "lightning"),
    sensitivity=1e-13,
    rounding_limit=1e-9,
):
    """One network of exactness.json: its pair's errors and its rounding sensitivity (None: schema 1)."""
    errors = dict.fromkeys(QUANTITIES, error if passed else 0.0)
    if not passed:
        errors["final_bn_stats"] = 2.4e-2
    pair = {"backends": list(backends), "errors": errors, "worst": max(errors, key=errors.get),
            "passed": max(errors.values()) <= tolerance}  # fmt: skip
    arch, depth = spec.split("-")
    entry = {"spec": spec, "arch": arch, "depth": int(depth), "pairs": [pair]}
    if sensitivity is not None:
        rounding = dict.fromkeys(QUANTITIES, sensitivity)
        entry["rounding"] = {"backend": backends[0], "perturbation": 1e-13, "errors": rounding,
                             "worst": "step_losses", "replayable": sensitivity <= rounding_limit}  # fmt: skip
    return entry


def evidence(
    passed=True, error=3e-15, tolerance=1e-8, backends=("keras", "lightning"), networks=None, rounding_limit=1e-9
):
    """exactness.json's content as `study.verdicts.inputs.load_exactness` returns it (schema 2)."""
    networks = networks or [network("resnet-8", passed, error, tolerance, backends)]
    judged = [n for n in networks if n.get("rounding", {}).get("replayable", True)]
    pairs = [(pair["errors"][pair["worst"]], pair["worst"], n["spec"], pair["backends"]) for n in judged
             for pair in n["pairs"]]  # fmt: skip
    worst = max(pairs, default=None)
    return {
        "schema": 2, "dtype": "float64", "tolerance": tolerance, "rounding_limit": rounding_limit,
        "passed": bool(pairs) and all(p["passed"] for n in judged for p in n["pairs"]),
        "worst": worst and dict(zip(("error", "quantity", "spec", "backends"), worst, strict=True)),
        "recipe": {"epochs": 4}, "networks": networks,
    }  # fmt: skip


PASSED, FAILED = evidence(True), evidence(False)


def chaotic(arch, depth):
    return 0.75 if (arch, depth) == ("plain", 56) else effect(arch, depth)


def paired(error=effect, seeds=tuple(range(8)), shared=0.01, twin=0.005, chaotic_sd=0.0, rng_seed=0):
    """Both twins' runs of a seed share `shared` noise and differ by independent `twin` noise; the
    plain-56 cell's twins differ by `chaotic_sd` instead (training there is chaotic). Eight seeds: the
    fewest with which a sign test passes Holm over 12 tests (2^-8 < 0.05/12)."""
    rng = np.random.default_rng(rng_seed)
    frame = table(error, seeds=seeds, noise=0.0, twin_noise=0.0)
    chaos = (frame.arch == "plain") & (frame.depth == 56) & (chaotic_sd > 0)
    keys = list(zip(frame.arch, frame.depth, frame.seed, strict=True))
    common = {key: rng.normal(0, shared, 2) for key in dict.fromkeys(keys)}
    own = rng.normal(0, 1, (len(frame), 2)) * np.where(chaos, chaotic_sd, twin)[:, None]
    for i, column in enumerate(("final_train_error", "final_test_error")):
        frame[column] = np.clip(frame[column] + np.array([common[k][i] for k in keys]) + own[:, i], 0, 1)
    return frame


def cell(result, arch, depth):
    return next(c for c in result["cells"] if (c["arch"], c["depth"]) == (arch, depth))


@pytest.mark.quick
def test_equivalent_twins_with_exactness_agree():
    result = agreement(paired(), exactness=PASSED)
    assert result["verdict"] == "agree", result["reason"]
    assert {c["verdict"] for c in result["cells"]} == {"equivalent"} and len(result["cells"]) == 6
    assert result["not_excluded"] == [] and result["settle"] is None
    assert result["exactness"]["status"] == "passed" and "3.0e-15" in result["proved"]
    assert result["shown"].startswith("6 of 6 cells equivalent within ±5.0 points")


@pytest.mark.quick
def test_without_exactness_the_same_outcomes_are_inconclusive():
    result = agreement(paired())
    assert result["verdict"] == "inconclusive" and result["exactness"]["status"] == "missing"
    assert "resnet-study run" in result["settle"]


@pytest.mark.quick
def test_a_failed_replay_is_disagreement_whatever_the_outcomes():
    result = agreement(paired(), exactness=FAILED)
    assert result["verdict"] == "disagree"
    assert "final_bn_stats of resnet-8, keras vs lightning differs by 0.024" in result["reason"]
    assert {c["verdict"] for c in result["cells"]} == {"equivalent"}  # the outcomes could not have shown it


@pytest.mark.quick
def test_the_replay_is_judged_by_the_products_tolerance_not_the_files():
    """Audit: exactness.json's own tolerance and `passed` decided; a lax file now fails."""
    lax = evidence(True, error=1e-3, tolerance=1.0)
    result = agreement(paired(), exactness=lax)
    assert result["verdict"] == "disagree" and result["exactness"]["status"] == "failed"
    assert "tolerance 1e-08" in result["reason"]


@pytest.mark.quick
def test_a_replay_of_another_pair_is_no_evidence_for_this_one():
    """Audit: a replay of one pair of twins was accepted as evidence for another pair."""
    frame = paired()
    frame["backend"] = frame.backend.replace({"keras": "keras-jax"})
    result = agreement(frame, exactness=PASSED)  # the replay compared keras with lightning
    assert result["verdict"] == "inconclusive" and result["exactness"]["status"] == "missing"
    assert "does not cover keras-jax vs lightning" in result["reason"]


# Measured on digits (study.measure.exactness): correct twins differ by 9.9e-2 on plain-56 (rounding
# alone: 0.3) and by 2.7e-11 on resnet-56 (rounding alone: 6.3e-10).
PLAIN_56 = network("plain-56", error=9.9e-2, sensitivity=0.3)
RESNET_56 = network("resnet-56", error=2.7e-11, sensitivity=6.3e-10)


@pytest.mark.quick
def test_a_network_that_amplifies_rounding_is_reported_not_judged():
    """A study replaying plain-56 said "disagree": the chaotic net's rounding looked like a recipe fault."""
    result = agreement(paired(), exactness=evidence(networks=[PLAIN_56, RESNET_56]))
    assert result["verdict"] == "agree" and result["exactness"]["status"] == "passed"
    assert result["exactness"]["networks"] == ["resnet-56"] and result["exactness"]["not_judged"] == ["plain-56"]
    assert (
        "difference 2.7e-11" in result["proved"]
        and "not judged" in result["proved"]
        and "plain-56: 0.3" in result["proved"]
    )


@pytest.mark.quick
def test_a_replay_of_only_chaotic_networks_is_inconclusive_not_disagreement():
    result = agreement(paired(), exactness=evidence(networks=[PLAIN_56]))
    assert result["verdict"] == "inconclusive" and result["exactness"]["status"] == "ill_conditioned"
    assert "cannot judge the twins" in result["reason"] and "exactness_depths" in result["settle"]


@pytest.mark.quick
def test_a_recipe_fault_is_still_found_beside_a_chaotic_network():
    faulty = network("resnet-56", passed=False, sensitivity=6.3e-10)
    result = agreement(paired(), exactness=evidence(networks=[PLAIN_56, faulty]))
    assert result["verdict"] == "disagree" and "final_bn_stats of resnet-56" in result["reason"]


@pytest.mark.quick
def test_the_rounding_limit_is_the_products_not_the_files():
    """A file cannot hide a recipe fault by calling its networks chaotic (a strict limit of its own), nor
    pass a chaotic one off as judged (a lax limit)."""
    faulty = network("resnet-8", passed=False, sensitivity=1e-13, rounding_limit=1e-20)
    result = agreement(paired(), exactness=evidence(networks=[faulty], rounding_limit=1e-20))
    assert result["verdict"] == "disagree" and result["exactness"]["status"] == "failed"
    lax = network("plain-56", error=9.9e-2, sensitivity=0.3, rounding_limit=1.0)
    result = agreement(paired(), exactness=evidence(networks=[lax], rounding_limit=1.0))
    assert result["verdict"] == "inconclusive" and result["exactness"]["status"] == "ill_conditioned"


@pytest.mark.quick
def test_a_schema_1_replay_judges_every_network():
    old = evidence(networks=[network("plain-56", error=9.9e-2, sensitivity=None)])
    old["schema"] = 1
    del old["rounding_limit"]
    result = agreement(paired(), exactness=old)
    assert result["verdict"] == "disagree" and result["exactness"]["status"] == "failed"


@pytest.mark.quick
def test_twins_differing_beyond_the_margin_disagree():
    offset = {"keras": lambda arch, depth: effect(arch, depth) + 0.15, "lightning": effect}
    result = agreement(paired(offset, seeds=tuple(range(10))), exactness=PASSED)
    assert result["verdict"] == "disagree" and {c["verdict"] for c in result["cells"]} == {"differs"}
    test = cell(result, "plain", 20)["tests"]["final_train_error"]
    assert test["median_diff"] == pytest.approx(0.15, abs=0.02) and test["p_beyond_holm"] < ALPHA


@pytest.mark.quick
def test_a_small_real_offset_within_the_margin_is_still_equivalent():
    offset = {"keras": lambda arch, depth: effect(arch, depth) + 0.02, "lightning": effect}
    result = agreement(paired(offset, seeds=tuple(range(10)), twin=0.002), exactness=PASSED)
    assert result["verdict"] == "agree"
    tests = [t for c in result["cells"] for t in c["tests"].values()]
    assert all(t["p_diff_holm"] < ALPHA and t["p_tost_holm"] < ALPHA for t in tests)


@pytest.mark.quick
def test_a_chaotic_cell_leaves_the_verdict_undecided_not_agree():
    """Audit: "agree" was issued while a cell was only bounded."""
    result = agreement(paired(chaotic, chaotic_sd=0.03), exactness=PASSED)
    plain56 = cell(result, "plain", 56)
    assert plain56["verdict"] == "undecided" and result["verdict"] == "exact_outcomes_undecided"
    assert "plain-56" in result["reason"] and "plain-56" in result["settle"]
    needed = max(t["seeds_needed"] for t in plain56["tests"].values())
    runs = 2 * (needed - 8)  # both twins, beyond the eight seeds each ran; every run took 10 s
    assert f"about {needed} seeds ({runs} more runs, ~{runs * 10 / 60:.0f} min of training" in result["settle"]
    # A study declared with --settle tests its second look at alpha/(2K): more seeds, stated with their cost.
    observed = [shares((t["below"], t["above"], t["inside"]))[:2] for t in plain56["tests"].values()]
    total = max(tost_seeds(low, high, ALPHA / 12 / 2) for low, high in observed)
    assert total > needed
    assert f"`run --settle {total - 8}` ({2 * (total - 8)} more runs" in result["settle"]
    test = plain56["tests"]["final_train_error"]
    assert MARGIN < test["bound"] <= 1 and test["inside"] < test["n"]
    assert test["seeds_needed"] > 8 and test["tost_power"] < 0.5
    assert any(line.startswith("plain-56: final_train_error: not shown within ±5.0") for line in result["not_excluded"])
    assert all(c["verdict"] == "equivalent" for c in result["cells"] if c is not plain56)


@pytest.mark.quick
def test_a_cell_whose_typical_seed_lies_outside_the_margin_cannot_be_settled_by_seeds():
    result = agreement(paired(chaotic, chaotic_sd=0.2), exactness=PASSED)
    assert "more seeds would not show it" in result["settle"]


def test_one_twin_off_by_the_margin_in_the_typical_seed_is_never_agree():
    """Audit: a shift at the margin was judged "agree"; now the typical seed decides, at its boundary."""

    def shifted(backend):
        return lambda a, d: (0.4 + MARGIN * (backend == "keras")) if (a, d) == ("plain", 56) else effect(a, d)

    truth = {"keras": shifted("keras"), "lightning": shifted("lightning")}
    studies = [agreement(paired(truth, chaotic_sd=0.02, rng_seed=s), exactness=PASSED) for s in range(40)]
    assert not [s for s in studies if s["verdict"] == "agree"]
    far = {"keras": lambda a, d: effect(a, d) + 3 * MARGIN * ((a, d) == ("plain", 56)), "lightning": effect}
    detected = [agreement(paired(far, seeds=tuple(range(10)), chaotic_sd=0.02, rng_seed=s),
                          exactness=PASSED)["verdict"] == "disagree" for s in range(10)]  # fmt: skip
    assert all(detected)


@pytest.mark.quick
def test_bounds_never_exceed_100_points():
    result = agreement(paired(chaotic, seeds=(0, 1), chaotic_sd=0.3), exactness=PASSED)
    assert all(t["bound"] <= 1 for c in result["cells"] for t in c["tests"].values() if t["bound"] is not None)


@pytest.mark.quick
def test_too_few_runs_or_one_backend_are_inconclusive():
    result = agreement(paired(seeds=(0,)), exactness=PASSED)
    assert result["verdict"] == "exact_outcomes_undecided" and {c["verdict"] for c in result["cells"]} == {"undecided"}
    one = agreement(paired()[lambda f: f.backend == "keras"], exactness=PASSED)
    assert one["verdict"] == "inconclusive" and one["reason"] == "only one backend in the results"


@pytest.mark.quick
def test_identical_runs_are_evidence_with_a_bound_never_p_zero():
    """Audit: identical runs gave p = 0 at any number of seeds. Five identical seeds cannot pass Holm over
    12 tests (each p is 1/32) and leave up to 45 % of seeds open; eight can, and say what stays open."""
    five = agreement(paired(seeds=tuple(range(5)), shared=0.0, twin=0.0), exactness=PASSED)
    test = cell(five, "resnet", 8)["tests"]["final_train_error"]
    assert test["note"] == "identical in every run" and test["p_tost"] == 1 / 32
    assert test["tail_bound"] == pytest.approx(1 - 0.05 ** (1 / 5))  # Clopper-Pearson: 45 % left open
    assert cell(five, "resnet", 8)["verdict"] == "undecided" and five["verdict"] == "exact_outcomes_undecided"
    assert "5 of 5 seeds within ±5.0 (identical in every run)" in cell(five, "resnet", 8)["reason"]
    eight = agreement(paired(shared=0.0, twin=0.0), exactness=PASSED)
    assert eight["verdict"] == "agree"
    reason = cell(eight, "resnet", 8)["reason"]
    assert reason == "identical in every run; the seeds do not exclude that up to 31 % of seeds differ more"


@pytest.mark.quick
def test_diverged_runs_are_failures_and_an_asymmetry_disagrees(tmp_path):
    """Audit: one twin diverging in 4 of 5 runs of a cell and the other in none gave "agree"; a run that
    diverged after its first epoch kept its last finite error and counted as a success."""
    frame = paired(seeds=tuple(range(8)))
    gone = (frame.backend == "keras") & (frame.arch == "resnet") & (frame.depth == 20) & (frame.seed < 7)
    frame["diverged"] = gone  # the errors still hold the last finite (good) values
    frame.to_csv(tmp_path / "results.csv", index=False)
    results = load_results(tmp_path / "results.csv")
    assert np.allclose(results.loc[gone.to_numpy(), ["final_train_error", "final_test_error"]], 0.9)
    result = agreement(results, exactness=PASSED)
    assert result["verdict"] == "disagree", result["reason"]
    (divergence,) = result["divergence"]
    assert (divergence["only_first"], divergence["only_second"]) == (7, 0) and divergence["asymmetric"]


@pytest.mark.quick
def test_statistics_are_exact_sign_tests():
    rng = np.random.default_rng(1)
    d = rng.normal(0.01, 0.04, 9)
    test = paired_test(d, MARGIN, ALPHA, family=1)

    def greater(k):
        return stats.binomtest(int(k), len(d), 0.5, alternative="greater").pvalue

    assert test["p_tost"] == pytest.approx(max(greater((d > -MARGIN).sum()), greater((d < MARGIN).sum())))
    assert test["p_beyond"] == pytest.approx(
        min(1.0, 2 * min(greater((d > MARGIN).sum()), greater((d < -MARGIN).sum())))
    )
    assert test["p_diff"] == pytest.approx(min(1.0, 2 * min(greater((d > 0).sum()), greater((d < 0).sum()))))
    ordered = np.sort(d)  # 9 seeds: (x_(2), x_(8)), coverage 1 - 2 P(Bin(9, 1/2) <= 1) = 0.961
    assert (test["ci_low"], test["ci_high"], test["ci_coverage"]) == pytest.approx(
        (ordered[1], ordered[7], 1 - 20 / 512)
    )
    # The bound is where the sign TOST just passes at the family's level
    assert paired_test(d, test["bound"], ALPHA, 1)["p_tost"] <= ALPHA
    assert paired_test(d, test["bound"] * (1 - 1e-9), ALPHA, 1)["p_tost"] > ALPHA


def simulate(diff, sd, n, key, family=1, trials=3000, seed=0):
    """Rejection rate of one of paired_test's tests at level alpha / family, true mean difference `diff`."""
    rng = np.random.default_rng(seed)
    level = ALPHA / family
    return float(np.mean([paired_test(rng.normal(diff, sd, n), MARGIN, ALPHA, family, power=False)[key] < level
                          for _ in range(trials)]))  # fmt: skip


@pytest.mark.quick
@pytest.mark.parametrize("family", [1, 12])
def test_the_stated_power_is_the_power_the_procedure_has(family):
    """The sign TOST's power at the true shares of seeds below, within and above the margin (exact,
    over the trinomial): simulated, and as computed."""
    sd, n = 0.03, 10
    level = ALPHA / family
    side = float(stats.norm.cdf(-MARGIN / sd))  # P(d <= -margin) = P(d >= margin)
    assert simulate(0.0, sd, n, "p_tost", family) == pytest.approx(tost_power(side, side, n, level), abs=0.03)
    stated = paired_test(np.random.default_rng(0).normal(0, sd, n), MARGIN, ALPHA, family)
    assert stated["tost_power"] <= stated["tost_power_at_alpha"]  # the bracket Holm's level lies in
    assert simulate(MARGIN, sd, n, "p_beyond", family) <= level + 0.01  # the "differs" test keeps its level
    assert simulate(MARGIN, sd, n, "p_tost", family) <= level + 0.01  # and so does the equivalence test


@pytest.mark.quick
def test_seeds_needed_reaches_the_power_it_promises():
    sd, level = 0.03, ALPHA / 12
    side = float(stats.norm.cdf(-MARGIN / sd))
    n = tost_seeds(side, side, level)
    assert tost_power(side, side, n - 1, level) < 0.8 <= tost_power(side, side, n, level)
    simulated = simulate(0.0, sd, n, "p_tost", family=12, trials=2000)
    assert simulated == pytest.approx(tost_power(side, side, n, level), abs=0.03)


@pytest.mark.quick
def test_holm_spans_every_cell_and_metric():
    result = agreement(paired(chaotic, chaotic_sd=0.08), exactness=PASSED)
    tests = [t for c in result["cells"] for t in c["tests"].values()]
    raw = sorted(t["p_tost"] for t in tests)
    assert min(t["p_tost_holm"] for t in tests) == pytest.approx(min(1.0, raw[0] * len(tests)))


@pytest.mark.quick
def test_verdict_is_json_serializable():
    for frame in (paired(), paired(seeds=(0,)), paired(shared=0.0, twin=0.0)):
        json.dumps(agreement(frame, exactness=PASSED), allow_nan=False)


# -- a `run --settle` study: two looks, alpha/2 each (the module docstring) -------------------------------

GRID = 10  # look 1 at alpha/2 over 12 tests: 2^-10 < 0.025/12
SETTLED = {"grid_seeds": list(range(GRID)), "extra_seeds": list(range(GRID, GRID + 20)),
           "cells": [{"arch": "plain", "depth": 56}]}  # fmt: skip


def sequential_table():
    """Plain-56 chaotic on the ten grid seeds (undecided at look 1); its twins close on the 20 added seeds."""
    grid = paired(chaotic, seeds=tuple(range(GRID)), chaotic_sd=0.08)
    extra = paired(chaotic, seeds=tuple(range(GRID, GRID + 20)), chaotic_sd=0.01, rng_seed=1)
    return pd.concat([grid, extra], ignore_index=True)


def test_look_two_settles_the_cell_look_one_left_undecided():
    frame = sequential_table()
    result = agreement(frame, exactness=PASSED, settle=SETTLED)
    plain56, family = cell(result, "plain", 56), 12  # 6 cells x 2 metrics
    assert plain56["look"] == 2 and plain56["look_one"]["verdict"] == "undecided"
    assert plain56["verdict"] == "equivalent" and result["verdict"] == "agree", plain56["reason"]
    assert plain56["reason"].startswith("look 2, 30 seeds: ") and "Bonferroni" in plain56["reason"]
    for test in plain56["tests"].values():  # all 30 seeds, at alpha/2 with Bonferroni over look 1's family
        assert test["n"] == 30 and test["level"] == pytest.approx(ALPHA / 2 / family)
        assert test["p_tost_holm"] == pytest.approx(min(1.0, family * test["p_tost"]))
    look_one = agreement(frame[frame.seed < GRID], alpha=ALPHA / 2, exactness=PASSED)  # what the runner decided on
    assert cell(look_one, "plain", 56)["verdict"] == "undecided"
    for other in (c for c in result["cells"] if c is not plain56):
        assert other["look"] == 1 and all(t["n"] == GRID for t in other["tests"].values())
        assert other["verdict"] == cell(look_one, other["arch"], other["depth"])["verdict"]
    assert "sequential (declared --settle 20): look 1 on seeds 0-9 at α/2" in result["design"]


@pytest.mark.quick
def test_look_two_waits_until_every_added_seed_ran():
    """Look 2 has a fixed number of seeds: with one added run missing the cell stays undecided."""
    frame = sequential_table()
    frame = frame[~((frame.backend == "keras") & (frame.arch == "plain") & (frame.depth == 56) & (frame.seed == 29))]
    result = agreement(frame, exactness=PASSED, settle=SETTLED)
    plain56 = cell(result, "plain", 56)
    assert plain56["look"] == 1 and plain56["verdict"] == "undecided"
    assert "look 2 waits for its added seeds (19 of 20 run by both twins)" in plain56["reason"]
    assert result["verdict"] == "exact_outcomes_undecided"


@pytest.mark.quick
def test_a_cell_decided_at_look_one_keeps_its_decision():
    chosen = SETTLED | {"cells": [{"arch": "resnet", "depth": 8}]}  # equivalent at look 1 already
    result = agreement(sequential_table(), exactness=PASSED, settle=chosen)
    resnet8 = cell(result, "resnet", 8)
    assert resnet8["look"] == 1 and resnet8["verdict"] == "equivalent"
    assert all(t["n"] == GRID for t in resnet8["tests"].values())
    assert cell(result, "plain", 56)["verdict"] == "undecided"  # not chosen: its added seeds are not read


@pytest.mark.quick
def test_the_added_seeds_enter_no_verdict_but_the_agreement():
    """Their number was chosen from the data: degradation and the rest are judged on the grid's seeds."""
    frame = sequential_table()
    sequential, grid = analyze(frame, exactness=PASSED, settle=SETTLED), analyze(frame[frame.seed < GRID])
    for name in ("degradation", "lesion", "norm_preservation", "relu_vs_skip", "training_budget"):
        assert sequential[name] == grid[name], name
    assert analyze(frame, exactness=PASSED)["degradation"] != grid["degradation"]  # the check can fail
    assert len(sequential["diverged"]["by_cell"]) == 12 and sequential["agreement"]["verdict"] == "agree"


def chaotic_study(shift: float) -> pd.DataFrame:
    """Seven seeds at depths 8 and 56 (tables.DEPTHS' outer two): the twins alike within 0.2 points
    everywhere except plain-56, where each seed's two runs are far apart, the sign of their difference
    alternating from seed to seed — plus `shift` for the first twin."""
    results = table(seeds=tuple(range(7)))
    results = results[results.depth.isin((8, 56))].copy()
    chaotic = (results.arch == "plain") & (results.depth == 56)
    first = chaotic & (results.backend == "keras")
    apart = np.where(results.seed % 2 == 0, 0.3, -0.3)
    for column in ("final_train_error", "final_test_error"):
        results.loc[first, column] = np.clip(results.loc[first, column] + apart[first] + shift, 0, 1)
    return results


@pytest.mark.quick
def test_a_chaotic_cell_is_compared_in_distribution_and_never_called_equivalent():
    chaotic = [network("resnet-8"), network("plain-8"), network("resnet-56", sensitivity=3e-10),
               network("plain-56", sensitivity=0.3)]  # fmt: skip
    result = agreement(chaotic_study(0.0), exactness=evidence(networks=chaotic))
    cells = {(c["arch"], c["depth"]): c for c in result["cells"]}
    assert result["verdict"] == "agree", result["reason"]
    assert cells[("plain", 56)]["verdict"] == "chaotic" and "compared in distribution" in cells[("plain", 56)]["reason"]
    assert {c["verdict"] for key, c in cells.items() if key != ("plain", 56)} == {"equivalent"}
    test = cells[("plain", 56)]["tests"]["final_train_error"]
    assert test["p_tost_holm"] is None and test["higher_first"] == 4 and test["higher_second"] == 3
    assert test["p_distribution"] == 1.0  # 4 seeds one way, 3 the other
    # the three reproducible cells' six equivalence tests alone form the Holm family: 7 seeds pass it
    assert cells[("plain", 8)]["tests"]["final_train_error"]["level"] == pytest.approx(ALPHA / 6)
    # without the replay's knowledge, plain-56 is asked to be equivalent seed by seed, and cannot be
    judged = agreement(chaotic_study(0.0), exactness=evidence(networks=chaotic[:3]))
    assert judged["verdict"] == "exact_outcomes_undecided" and "plain-56" in judged["reason"]
    # one twin's chaotic runs shifted up by 40 points in every seed: caught in distribution
    shifted = agreement(chaotic_study(0.4), exactness=evidence(networks=chaotic))
    plain56 = next(c for c in shifted["cells"] if (c["arch"], c["depth"]) == ("plain", 56))
    assert shifted["verdict"] == "disagree" and plain56["verdict"] == "differs", shifted["reason"]
    assert plain56["tests"]["final_train_error"]["p_distribution"] == pytest.approx(2 * 2 / 2**7)  # alpha/2 share
