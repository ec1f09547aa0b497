"""Simulated studies with a known truth: each verdict's false-positive rate and power, measured.

Each condition draws whole results tables (or lesion tables) from a stated truth, runs the verdict
function the product runs (`study.verdicts.*`), and counts how often it says what the truth forbids (a
false positive, under a null at the boundary of the claim) or what the truth implies (power). Every
claim is about the typical seed (`study.verdicts.signs`), so a null puts the median of the per-seed
quantity exactly at the claim's threshold, in every shape five seeds cannot tell apart: normal,
skewed either way, heavy-tailed, bimodal, and identical in every seed (ties at the threshold).
Truths whose mean sits at a threshold while the typical seed does not (rare failures, rare
divergences) are *reported*: the claim is not about them, and the verdict's text names the share of
seeds it leaves open. The study's own shapes feed the power rows: plain-56's bimodal, chaotic cell,
errors skewed under the floor at 0 for nets that learn, and twins that share most of their variance
(one seed's two runs start from the same weights on the same batches).

`tests/test_calibration.py` runs a quick tier in the default suite and the full tier under
`-m slow`; `python tests/calibration.py [N]` prints the table in docs/design.md.
"""

from __future__ import annotations

import math
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from study.verdicts.agreement import agreement
from study.verdicts.budget import budget_verdict
from study.verdicts.common import LEARNED, MARGIN_EFFECT
from study.verdicts.degradation import degradation
from study.verdicts.lesion import GRACEFUL, lesion_verdict
from study.verdicts.norm_preservation import norm_verdict
from study.verdicts.relu_skip import relu_skip_verdict
from study.verdicts.signs import power as sign_power
from study.verdicts.signs import tost_power

ALPHA, MARGIN = 0.05, 0.05
DEPTHS = (8, 20, 56)
SEEDS = 5
BACKENDS = ("keras", "lightning")
PASSED = {  # a float64 replay that passed, for the agreement verdict
    "networks": [{"spec": "resnet-8", "pairs": [{"backends": list(BACKENDS), "errors": {"step_losses": 1e-15}}]}],
    "recipe": {"epochs": 4},
}
CHAOTIC = {  # the same replay, also covering plain-56, whose rounding sensitivity marks it chaotic
    **PASSED,
    "networks": [*PASSED["networks"], {"spec": "plain-56", "arch": "plain", "depth": 56,
                                       "rounding": {"errors": {"test_loss": 0.3}},
                                       "pairs": [{"backends": list(BACKENDS), "errors": {"step_losses": 0.1}}]}],
}  # fmt: skip


# -- noise: one value per twin and seed, sharing `rho` of its variance between the twins ----------------


def correlated(rng, rho: float, seeds: int, twins: int = 2) -> np.ndarray:
    """(twins, seeds) standard normals with correlation `rho` between twins of one seed."""
    return math.sqrt(rho) * rng.standard_normal(seeds) + math.sqrt(1 - rho) * rng.standard_normal((twins, seeds))


def normal(mean: float, sd: float, rho: float = 0.0):
    return lambda rng, n: mean + sd * correlated(rng, rho, n)


def heavy(mean: float, sd: float, rho: float = 0.0):
    """Student t with 3 degrees of freedom, scaled to `sd`: heavy tails."""

    def draw(rng, n):
        z = correlated(rng, rho, n)
        chi = np.sqrt(rng.chisquare(3, z.shape) / 3)
        return mean + sd * z / chi / math.sqrt(3)

    return draw


def skewed(mean: float, rho: float = 0.0):
    """Errors of nets that learn: lognormal, skewed up from the floor at 0 (mean `mean`, sd ~1.3 x mean)."""
    return lambda rng, n: mean * np.exp(correlated(rng, rho, n) - 0.5)


def bimodal(fail: float, low: float, high: float, rho: float = 0.0, spread: float = 0.03):
    """Each run fails (error ~`high`) with probability `fail`, else learns (~`low`): plain-56's cell."""

    def draw(rng, n):
        z = correlated(rng, rho, n)
        failed = stats.norm.cdf(z) < fail
        return np.where(failed, high, low) + spread * rng.standard_normal(z.shape)

    return draw


def shifted(draw, by: float, twin: int = 0):
    """`draw` with twin `twin`'s values shifted by `by`."""

    def shift(rng, n):
        values = draw(rng, n)
        values[twin] += by
        return values

    return shift


# -- per-seed quantities whose median is exactly `at` (the boundary of a claim about the typical seed) --


def at_median(shape: str, at: float, scale: float = 0.02):
    """(rng, n) -> n values whose distribution has median exactly `at`, in one of the shapes five seeds
    cannot tell apart; none of them equals `at` except in "identical" (a tie at the threshold)."""

    def draw(rng, n):
        z = rng.standard_normal(n)
        if shape == "normal":
            return at + scale * z
        if shape == "right-skewed":  # lognormal, sd of log 1: a long tail above
            return at + scale * (np.exp(z) - 1)
        if shape == "left-skewed":
            return at - scale * (np.exp(z) - 1)
        if shape == "heavy":  # Student t with 2 degrees of freedom: no variance
            return at + scale * z / np.sqrt(rng.chisquare(2, n) / 2)
        if shape == "bimodal":  # half the seeds below, half above: two tight modes
            return np.where(rng.random(n) < 0.5, at - scale, at + scale) + 0.001 * z
        if shape == "identical":
            return np.full(n, at)
        raise ValueError(shape)

    return draw


SHAPES = ("normal", "right-skewed", "left-skewed", "heavy", "bimodal", "identical")


def rare(p: float, value: float, base: float = 0.0):
    """(rng, n) -> `base`, or `value` with probability `p`: a mean of base + p (value - base), a median of base."""
    return lambda rng, n: np.where(rng.random(n) < p, value, base)


def twin_cell(per_seed):
    """A cell whose every twin and seed has the value `per_seed` draws for the seed (twins alike)."""
    return lambda rng, n: np.tile(per_seed(rng, n), (2, 1))


def paired_cell(base: float, difference):
    """A cell where twin 0 = twin 1 + `difference` seed by seed; twin 1 = `base` plus shared noise."""

    def draw(rng, n):
        b = base + 0.01 * rng.standard_normal(n)
        return np.stack([b + difference(rng, n), b])

    return draw


# -- whole tables ---------------------------------------------------------------------------------


def results_table(cells: dict, rng, seeds: int = SEEDS, backends=BACKENDS) -> pd.DataFrame:
    """A results table: cells[(arch, depth)] draws (twins, seeds) final train errors, the test error
    5 points above; or a pair of draws (train, test), so the test error can move alone. Errors
    clipped to [0, 1]."""
    rows = []
    for (arch, depth), draw in cells.items():
        train_draw, test_draw = draw if isinstance(draw, tuple) else (draw, None)
        values = np.clip(train_draw(rng, seeds), 0, 1)
        tests = np.clip(values + 0.05 if test_draw is None else test_draw(rng, seeds), 0, 1)
        for b, backend in enumerate(backends):
            for seed in range(seeds):
                train = float(values[b, seed])
                rows.append({"run_key": f"{backend}-{arch}{depth}-s{seed}", "backend": backend, "arch": arch,
                             "depth": depth, "seed": seed, "final_train_error": train,
                             "final_test_error": float(tests[b, seed]), "best_test_error": train,
                             "diverged": False, "dataset": "digits"})  # fmt: skip
    return pd.DataFrame(rows)


def study_cells(plain: dict, resnet: dict) -> dict:
    return {**{("plain", d): plain[d] for d in DEPTHS}, **{("resnet", d): resnet[d] for d in DEPTHS}}


LEARNS = skewed(0.003, rho=0.5)  # a net that learns: a few tenths of a point, skewed
LEARNS_1D = lambda rng, n: LEARNS(rng, n)[0]  # noqa: E731  (one value per seed: the first twin's)
DEFAULT_PLAIN = {8: LEARNS, 20: LEARNS, 56: bimodal(0.9, 0.05, 0.78, rho=0.3)}


# -- conditions -----------------------------------------------------------------------------------


@dataclass
class Condition:
    """One simulated truth and what the verdict may (power) or must not (null) say about it."""

    name: str
    verdict: str  # which verdict
    kind: str  # "null": the rate must stay <= alpha; "power": within `stated`; "declines": 0; "reported": shown
    claim: str  # what is counted
    simulate: Callable[[np.random.Generator], bool]  # one study: did the verdict make the claim?
    # The power the procedure states for this truth (kind "power"): at least the first, at most the second
    # (the agreement verdict's Holm family: at level alpha/K for its first step, alpha for its last).
    stated: tuple[float, float] | None = None


def degradation_claim(cells: dict, verdict: str, backends=("lightning",), seeds: int = SEEDS) -> Callable:
    def run(rng):
        return degradation(results_table(cells, rng, seeds, backends), alpha=ALPHA)["verdict"] == verdict

    return run


def agreement_cell_claim(cells: dict, cell: tuple, verdict: str, seeds: int = SEEDS) -> Callable:
    def run(rng):
        table = results_table(cells, rng, seeds)
        result = agreement(table, alpha=ALPHA, margin=MARGIN, exactness=PASSED, power=False)
        return next(c for c in result["cells"] if (c["arch"], c["depth"]) == cell)["verdict"] == verdict

    return run


def chaotic_claim(cells: dict, cell: tuple | None, verdict: str, seeds: int = SEEDS) -> Callable:
    """The agreement with plain-56 chaotic (`CHAOTIC`): the cell's verdict, or the overall one (cell None)."""

    def run(rng):
        result = agreement(results_table(cells, rng, seeds), alpha=ALPHA, margin=MARGIN, exactness=CHAOTIC,
                           power=False)  # fmt: skip
        if cell is None:
            return result["verdict"] == verdict
        return next(c for c in result["cells"] if (c["arch"], c["depth"]) == cell)["verdict"] == verdict

    return run


def agreement_claim(cells: dict, verdict: str, diverge: float | None = None) -> Callable:
    def run(rng):
        table = results_table(cells, rng)
        if diverge is not None:  # each run diverges with probability `diverge`, the twins alike
            table["diverged"] = rng.random(len(table)) < diverge
            table.loc[table.diverged, ["final_train_error", "final_test_error", "best_test_error"]] = 0.9
        return agreement(table, alpha=ALPHA, margin=MARGIN, exactness=PASSED, power=False)["verdict"] == verdict

    return run


SETTLE = 10  # the seeds a simulated `run --settle` study adds to each cell undecided at look 1


def sequential_cell_claim(cells: dict, cell: tuple, verdict: str, settle: int = SETTLE) -> Callable:
    """A `run --settle` study: look 1 (the agreement at alpha/2 on the grid's seeds) chooses the
    undecided cells, exactly as `study.experiment.settle` does; `settle` more seeds are drawn for
    every cell (the verdict reads them only where look 1 chose the cell); the final cell verdict."""

    def run(rng):
        table = results_table(cells, rng, seeds=SEEDS + settle)
        grid = table[table.seed < SEEDS]
        look_one = agreement(grid, alpha=ALPHA / 2, margin=MARGIN, exactness=PASSED, power=False)
        chosen = [{"arch": c["arch"], "depth": c["depth"]} for c in look_one["cells"] if c["verdict"] == "undecided"]
        record = {"grid_seeds": list(range(SEEDS)), "extra_seeds": list(range(SEEDS, SEEDS + settle)), "cells": chosen}
        result = agreement(table, alpha=ALPHA, margin=MARGIN, exactness=PASSED, power=False, settle=record)
        return next(c for c in result["cells"] if (c["arch"], c["depth"]) == cell)["verdict"] == verdict

    return run


def lesion_claim(plain_rise, resnet_rise, verdict: str, resnet_depth: int = 20) -> Callable:
    """Lesion tables whose per-network rise is drawn per twin and seed: plain nets at depth 20, where
    they learned; residual nets at `resnet_depth` (deeper: plain nets there never learned, intact at
    chance, and the verdict must judge the residual nets at their depth, the plain ones at 20)."""

    def run(rng):
        rows = []
        nets = [("plain", 20, plain_rise), ("resnet", resnet_depth, resnet_rise)]
        if resnet_depth != 20:
            nets += [("plain", resnet_depth, None), ("resnet", 20, resnet_rise)]
        for arch, depth, draw in nets:
            rises = np.zeros((2, SEEDS)) if draw is None else np.clip(draw(rng, SEEDS), 0, 1)
            intact = 0.9 if draw is None else 0.0
            for b, backend in enumerate(BACKENDS):
                for seed in range(SEEDS):
                    ident = {"run_key": f"{backend}-{arch}{depth}-{seed}", "backend": backend, "arch": arch,
                             "depth": depth, "seed": seed, "activation": "relu", "norm": "batch", "k": 0,
                             "draw": 0}  # fmt: skip
                    rows.append(ident | {"kind": "intact", "blocks": "", "test_error": intact})
                    rows.append(ident | {"kind": "single", "k": 1, "blocks": "b0",
                                         "test_error": intact + rises[b, seed]})  # fmt: skip
        return lesion_verdict(pd.DataFrame(rows), alpha=ALPHA)["verdict"] == verdict

    return run


def degradation_cells(plain_deep, resnet_deep, plain_shallow=None, resnet_shallow=None) -> dict:
    """Depths 8 and 56; a shallow cell of 0 in every seed unless given, so each seed's rise is its deep value."""
    zero = twin_cell(lambda rng, n: np.zeros(n))
    return {("plain", 8): plain_shallow or zero, ("plain", 56): plain_deep, ("resnet", 8): resnet_shallow or zero,
            ("resnet", 56): resnet_deep}  # fmt: skip


def norm_claim(trend, gap, verdict: str, seeds: int = SEEDS) -> Callable:
    """Norms tables at depths 8 and 56, one block per network, one backend. After training, per seed:
    the residual deviation (mean |log10 ratio|) at 56 is its deviation at 8 (0.2, a little noise) plus
    `trend`, the plain deviation at 56 the residual one plus `gap`; at initialization both claims hold
    by 0.1 in every seed. Deviations are kept positive (which keeps each seed's side)."""

    def run(rng):
        rows = []
        for stage in ("init", "trained"):
            shallow = 0.2 + 0.01 * rng.standard_normal(seeds)
            if stage == "trained":
                deep_res = np.maximum(shallow + trend(rng, seeds), 1e-4)
                deep_plain = np.maximum(deep_res + gap(rng, seeds), 1e-4)
            else:
                deep_res, deep_plain = shallow - 0.1, shallow + 0.1 * (1 + rng.random(seeds))
            networks = {("resnet", 8): shallow, ("plain", 8): shallow + 0.1, ("resnet", 56): deep_res,
                        ("plain", 56): deep_plain}  # fmt: skip
            for (arch, depth), deviations in networks.items():
                for seed in range(seeds):
                    rows.append({"stage": stage, "run_key": f"lightning-{arch}{depth}-s{seed}", "backend": "lightning",
                                 "arch": arch, "depth": depth, "seed": seed, "block": "b0",
                                 "ratio": 10.0 ** deviations[seed]})  # fmt: skip
        return norm_verdict(pd.DataFrame(rows), alpha=ALPHA)["verdict"] == verdict

    return run


def relu_skip_claim(draw, verdict: str, seeds: int = SEEDS) -> Callable:
    """Results at depth 56 with BN: draw(rng, n)[(arch, activation)] is each net's error per seed."""

    def run(rng):
        rows = []
        for (arch, activation), errors in draw(rng, seeds).items():
            for seed in range(seeds):
                error = float(np.clip(errors[seed], 0, 1))
                rows.append({"run_key": f"lightning-{arch}56-{activation}-s{seed}", "backend": "lightning",
                             "arch": arch, "depth": 56, "seed": seed, "activation": activation, "norm": "batch",
                             "final_train_error": error, "final_test_error": error, "best_test_error": error,
                             "diverged": False})  # fmt: skip
        return relu_skip_verdict(pd.DataFrame(rows), alpha=ALPHA)["verdict"] == verdict

    return run


def activations(plain: dict, resnet: dict, paired: dict | None = None):
    """(rng, n) -> errors per (arch, activation): plain[a] and resnet[a] draw n values; paired[a], where
    given, draws the per-seed plain − residual difference (the plain error is residual + it)."""

    def draw(rng, n):
        out = {}
        for activation in ("relu", "tanh", "sigmoid"):
            out[("resnet", activation)] = resnet[activation](rng, n)
            if paired and activation in paired:
                out[("plain", activation)] = out[("resnet", activation)] + paired[activation](rng, n)
            else:
                out[("plain", activation)] = plain[activation](rng, n)
        return out

    return draw


def budget_claim(gaps: dict, verdict: str, seeds: int = SEEDS) -> Callable:
    """Results at depths 20 and 56 trained 15, 30 and 60 epochs: each seed's plain gap (its error at 56
    minus at 20, which is 0) drawn by gaps[epochs]; residual nets learn."""

    def run(rng):
        rows = []
        for epochs, gap in gaps.items():
            errors = {("plain", 20): np.zeros(seeds), ("plain", 56): gap(rng, seeds),
                      ("resnet", 20): np.zeros(seeds), ("resnet", 56): LEARNS(rng, seeds)[0]}  # fmt: skip
            for (arch, depth), values in errors.items():
                for seed in range(seeds):
                    error = float(np.clip(values[seed], 0, 1))
                    rows.append({"run_key": f"lightning-{arch}{depth}-e{epochs}-s{seed}", "backend": "lightning",
                                 "arch": arch, "depth": depth, "seed": seed, "epochs": epochs,
                                 "final_train_error": error, "final_test_error": error, "best_test_error": error,
                                 "diverged": False})  # fmt: skip
        return budget_verdict(pd.DataFrame(rows), alpha=ALPHA)["verdict"] == verdict

    return run


AGREE_SEEDS = 10  # the agreement's nulls need seeds enough to claim at all (Holm over 12 tests: 2^-n <= 0.05/12)


def conditions() -> list[Condition]:
    m = MARGIN_EFFECT
    rising = twin_cell(lambda rng, n: 0.7 + 0.03 * rng.standard_normal(n))
    flat = twin_cell(lambda rng, n: np.zeros(n))
    plain_rise_10 = {8: normal(0.05, 0.03), 20: normal(0.1, 0.03), 56: normal(0.15, 0.03)}
    tight = {d: normal(0.01, 0.001) for d in DEPTHS}
    flat_resnet = {d: LEARNS for d in DEPTHS}
    q_plain_10 = float(stats.norm.sf((m - 0.10) / (0.03 * math.sqrt(2))))  # P(a seed's rise > m)
    learned = {d: paired_cell(0.3, lambda rng, n: 0.01 * rng.standard_normal(n)) for d in DEPTHS}
    alike_sd = 0.021  # sd of the twins' per-seed difference in the power row
    side = float(stats.norm.cdf(-MARGIN / alike_sd))  # P(difference <= -margin) = P(difference >= margin)
    family = 2 * len(DEPTHS) * 2  # cells x metrics: Holm's K
    out = []
    for shape in SHAPES:  # degradation, "holds": each of its two claims at its boundary
        out.append(Condition(f"residual rise: median exactly 2 points, {shape}; plain rises 70", "degradation", "null",
                             "holds", degradation_claim(degradation_cells(rising, twin_cell(at_median(shape, m))),
                                                        "holds")))  # fmt: skip
        out.append(Condition(f"plain rise: median exactly 2 points, {shape}; residual flat", "degradation", "null",
                             "holds", degradation_claim(degradation_cells(twin_cell(at_median(shape, m)), flat),
                                                        "holds")))  # fmt: skip
    bunched = twin_cell(lambda rng, n: 0.86 + at_median("left-skewed", m, 0.01)(rng, n))  # at most 0.89
    out += [
        Condition("plain errors bunched under chance, rise median exactly 2 points (left-skewed)", "degradation",
                  "null", "holds", degradation_claim(degradation_cells(
                      bunched, flat, plain_shallow=twin_cell(lambda rng, n: np.full(n, 0.86))), "holds")),
        Condition("residual rise: median exactly 2 points (right-skewed), 10 seeds", "degradation", "null",
                  "does_not_hold", degradation_claim(degradation_cells(rising, twin_cell(at_median("right-skewed", m))),
                                                     "does_not_hold", seeds=10)),
        Condition("plain rise: median exactly 2 points (left-skewed), 10 seeds", "degradation", "null",
                  "does_not_hold", degradation_claim(degradation_cells(twin_cell(at_median("left-skewed", m)), flat),
                                                     "does_not_hold", seeds=10)),
        Condition("residual nets fail in 5 % of seeds (mean rise 4.5 points, median 0)", "degradation", "reported",
                  "holds", degradation_claim(degradation_cells(rising, twin_cell(rare(0.05, 0.9))), "holds")),
        Condition("the default study's truth (bimodal plain-56, skewed nets that learn)", "degradation", "power",
                  "holds", degradation_claim(study_cells(DEFAULT_PLAIN, flat_resnet), "holds")),
        Condition("plain rise 10 points (normal, sd 3), residual flat", "degradation", "power", "holds",
                  degradation_claim(study_cells(plain_rise_10, tight), "holds"),
                  stated=(sign_power(q_plain_10, SEEDS, ALPHA),) * 2),
        Condition("both backends: plain rise 10 points, residual flat", "degradation (every backend)", "power",
                  "holds", degradation_claim(study_cells(plain_rise_10, tight), "holds", backends=BACKENDS),
                  stated=(sign_power(q_plain_10, SEEDS, ALPHA) ** 2, sign_power(q_plain_10, SEEDS, ALPHA))),
    ]  # fmt: skip
    for shape in SHAPES[:-1]:  # agreement: one twin off by a median of exactly the margin in plain-20
        cells = {**{("plain", d): learned[d] for d in DEPTHS}, **{("resnet", d): learned[d] for d in DEPTHS}}
        cells[("plain", 20)] = paired_cell(0.3, at_median(shape, MARGIN, 0.03))
        out.append(Condition(f"one twin off by a median of 5 points in plain-20, {shape}", "agreement", "null",
                             "plain-20 equivalent", agreement_cell_claim(cells, ("plain", 20), "equivalent",
                                                                         seeds=AGREE_SEEDS)))  # fmt: skip
    at_margin = {**{("plain", d): learned[d] for d in DEPTHS}, **{("resnet", d): learned[d] for d in DEPTHS}}
    at_margin[("plain", 20)] = paired_cell(0.3, at_median("bimodal", MARGIN, 0.03))
    identical = {key: twin_cell(lambda rng, n: np.zeros(n)) for key in at_margin}
    tail = dict(identical)
    tail[("plain", 20)] = paired_cell(0.0, rare(1 / 18, 0.9))  # one twin diverges in 1 seed of 18
    alike = dict(at_margin)
    alike[("plain", 20)] = paired_cell(0.3, lambda rng, n: alike_sd * rng.standard_normal(n))
    test_only = dict(at_margin)
    test_only[("plain", 20)] = (paired_cell(0.3, lambda rng, n: np.zeros(n)),
                                paired_cell(0.35, at_median("right-skewed", MARGIN, 0.03)))  # fmt: skip
    out += [
        Condition("one twin's test error alone off by a median of 5 points in plain-20 (right-skewed)", "agreement",
                  "null", "plain-20 equivalent",
                  agreement_cell_claim(test_only, ("plain", 20), "equivalent", seeds=AGREE_SEEDS)),
        Condition("one twin off by a median of 5 points in plain-20, bimodal", "agreement", "null", "plain-20 differs",
                  agreement_cell_claim(at_margin, ("plain", 20), "differs", seeds=AGREE_SEEDS)),
        Condition("twins alike, each run diverging with probability 0.3", "agreement", "null", "disagree",
                  agreement_claim(study_cells({d: normal(0.02, 0.01, 0.9) for d in DEPTHS},
                                              {d: normal(0.02, 0.01, 0.9) for d in DEPTHS}), "disagree", diverge=0.3)),
        Condition("identical runs in every cell, 5 seeds", "agreement", "declines", "agree",
                  agreement_claim(identical, "agree")),
        Condition("one twin fails in 1 seed of 18 in plain-20 (mean 5 points, median 0), 10 seeds", "agreement",
                  "reported", "plain-20 equivalent", agreement_cell_claim(tail, ("plain", 20), "equivalent",
                                                                          seeds=AGREE_SEEDS)),
        Condition("twins alike in plain-20 (normal, sd of differences 2.1 points), 10 seeds", "agreement", "power",
                  "plain-20 equivalent", agreement_cell_claim(alike, ("plain", 20), "equivalent", seeds=AGREE_SEEDS),
                  stated=(tost_power(side, side, AGREE_SEEDS, ALPHA / family),
                          tost_power(side, side, AGREE_SEEDS, ALPHA))),
        # with --settle 10 on 5 grid seeds: two looks at alpha/2 each
        Condition("one twin off by a median of 5 points in plain-20 (right-skewed), --settle 10",
                  "agreement (sequential)", "null", "plain-20 equivalent",
                  sequential_cell_claim({**at_margin, ("plain", 20): paired_cell(0.3, at_median("right-skewed", MARGIN,
                                                                                                 0.03))},
                                        ("plain", 20), "equivalent")),
        Condition("twins alike in plain-20 (sd of differences 2.1 points), --settle 10", "agreement (sequential)",
                  "power", "plain-20 equivalent", sequential_cell_claim(alike, ("plain", 20), "equivalent"),
                  stated=(tost_power(side, side, SEEDS + SETTLE, ALPHA / (2 * family)),
                          min(1.0, tost_power(side, side, SEEDS, ALPHA / 2)
                              + tost_power(side, side, SEEDS + SETTLE, ALPHA / (2 * family))))),
    ]  # fmt: skip
    # agreement with a chaotic cell (plain-56: rounding alone moves it), compared in distribution
    reproducible = {key: learned[8] for key in (("plain", 8), ("resnet", 8), ("resnet", 56))}
    chaos = bimodal(0.5, 0.05, 0.78, rho=0.0)  # each run fails or learns as a coin falls, the twins alike

    def skewed_chaos(rng, n):  # a seed's share, skewed, and each run's own chaos
        return 0.4 + at_median("right-skewed", 0.0, 0.1)(rng, n) + 0.1 * rng.standard_normal((2, n))

    def heavy_chaos(rng, n):
        return 0.4 + 0.1 * rng.standard_normal(n) + 0.05 * rng.standard_t(2, (2, n))

    for name, draw in (("alike, bimodal (a coin per run)", chaos), ("alike, right-skewed", skewed_chaos),
                       ("alike, heavy-tailed", heavy_chaos),
                       ("identical", twin_cell(lambda rng, n: bimodal(0.5, 0.05, 0.78)(rng, n)[0]))):  # fmt: skip
        out.append(Condition(f"chaotic plain-56, twins {name}, 7 seeds", "agreement (chaotic cell)", "null",
                             "plain-56 differs", chaotic_claim({**reproducible, ("plain", 56): draw}, ("plain", 56),
                                                               "differs", seeds=7)))  # fmt: skip
    out += [
        Condition("chaotic plain-56, one twin always fails (78 %), the other learns in 60 % of seeds, 7 seeds",
                  "agreement (chaotic cell)", "reported", "plain-56 differs",
                  chaotic_claim({**reproducible, ("plain", 56): lambda rng, n: np.stack([
                      bimodal(1.0, 0.05, 0.78)(rng, n)[0], bimodal(0.4, 0.05, 0.78)(rng, n)[0]])}, ("plain", 56),
                      "differs", seeds=7)),
        Condition("chaotic plain-56, one twin fails in 90 % of seeds, the other in 10 %, 7 seeds",
                  "agreement (chaotic cell)", "reported", "plain-56 differs",
                  chaotic_claim({**reproducible, ("plain", 56): lambda rng, n: np.stack([
                      bimodal(0.9, 0.05, 0.78)(rng, n)[0], bimodal(0.1, 0.05, 0.78)(rng, n)[0]])}, ("plain", 56),
                      "differs", seeds=7)),
        Condition("reproducible cells alike (sd 1 point), chaotic plain-56 a coin per run, 7 seeds",
                  "agreement (chaotic cell)", "power", "agree",
                  chaotic_claim({**reproducible, ("plain", 56): chaos}, None, "agree", seeds=7)),
    ]  # fmt: skip
    for shape in ("right-skewed", "heavy", "identical"):  # lesion: the graceful bound at its boundary
        out.append(Condition(f"residual lesion rise: median exactly 10 points, {shape}; plain 50", "lesion", "null",
                             "holds", lesion_claim(twin_cell(lambda rng, n: 0.5 + 0.05 * rng.standard_normal(n)),
                                                   twin_cell(at_median(shape, GRACEFUL, 0.03)), "holds")))  # fmt: skip
    out += [
        Condition("plain rise = residual rise, twins share 90 %", "lesion", "null", "holds",
                  lesion_claim(normal(0.05, 0.02, 0.9), normal(0.05, 0.02, 0.9), "holds")),
        Condition("residual nets lose 90 points per block in 10 % of seeds (mean 10.8, median 2)", "lesion",
                  "reported", "holds", lesion_claim(twin_cell(lambda rng, n: 0.5 + 0.05 * rng.standard_normal(n)),
                                                    twin_cell(rare(0.1, 0.9, 0.02)), "holds")),
        Condition("plain rise 50 points, residual 3", "lesion", "power", "holds",
                  lesion_claim(normal(0.5, 0.05, 0.5), normal(0.03, 0.01, 0.5), "holds")),
        Condition("residual-56 lesion rise: median exactly 10 points (right-skewed); plain-20 50, plain-56 unlearned",
                  "lesion", "null", "holds",
                  lesion_claim(twin_cell(lambda rng, n: 0.5 + 0.05 * rng.standard_normal(n)),
                               twin_cell(at_median("right-skewed", GRACEFUL, 0.03)), "holds", resnet_depth=56)),
        Condition("residual-56 rise 3 points, plain-20 50 (plain-56 unlearned)", "lesion", "power", "holds",
                  lesion_claim(normal(0.5, 0.05, 0.5), normal(0.03, 0.01, 0.5), "holds", resnet_depth=56)),
    ]  # fmt: skip
    return out + norm_conditions() + relu_skip_conditions() + budget_conditions()


def constant(value: float):
    return lambda rng, n: np.full(n, value)


def norm_conditions() -> list[Condition]:
    approaches, further = constant(-0.1), constant(0.1)  # both claims hold by 0.1 in every seed
    out = []
    for shape in SHAPES:
        out.append(Condition(f"residual deviation at 56 minus at 8: median exactly 0, {shape}", "norm preservation",
                             "null", "holds", norm_claim(at_median(shape, 0.0), further, "holds")))  # fmt: skip
    for shape in ("right-skewed", "heavy", "identical"):
        out.append(Condition(f"plain minus residual deviation at 56: median exactly 0, {shape}", "norm preservation",
                             "null", "holds", norm_claim(approaches, at_median(shape, 0.0), "holds")))  # fmt: skip
    trend_sd = 0.03
    q = float(stats.norm.cdf(0.05 / trend_sd))  # P(a seed's residual deviation falls with depth)
    out += [
        Condition("residual deviation at 56 minus at 8: median exactly 0 (left-skewed), 7 seeds", "norm preservation",
                  "null", "does_not_hold", norm_claim(at_median("left-skewed", 0.0), further, "does_not_hold",
                                                      seeds=7)),
        Condition("residual deviation rises by 0.4 in 20 % of seeds, falls by 0.1 in the rest (mean 0)",
                  "norm preservation", "reported", "holds", norm_claim(rare(0.2, 0.4, -0.1), further, "holds")),
        Condition("residual deviation falls by 0.05 with depth (normal, sd 0.03), plain further by 0.1",
                  "norm preservation", "power", "holds",
                  norm_claim(lambda rng, n: -0.05 + trend_sd * rng.standard_normal(n), further, "holds"),
                  stated=(sign_power(q, SEEDS, ALPHA),) * 2),
    ]  # fmt: skip
    return out


RELU_SEEDS = 6  # the relu-skip config's: a failing other activation is shown at alpha/2
# Final training errors of `resnet-study run --config relu-skip` at depth 56 with BN, seeds 0-5 (README)
MEASURED_RELU_SKIP = {
    "plain": {
        "relu": (0.574, 0.444, 0.463, 0.684, 0.557, 0.483),
        "tanh": (0.365, 0.899, 0.898, 0.584, 0.480, 0.292),
        "sigmoid": (0.899, 0.899, 0.898, 0.898, 0.899, 0.898),
    },
    "resnet": {
        "relu": (0.008, 0.001, 0.007, 0.003, 0.001, 0.005),
        "tanh": (0.602, 0.518, 0.104, 0.526, 0.317, 0.276),
        "sigmoid": (0.899, 0.902, 0.898, 0.901, 0.899, 0.898),
    },
}


def resampled(values):
    """(rng, n) -> n values drawn with replacement from measured ones (their empirical distribution)."""
    return lambda rng, n: rng.choice(np.asarray(values, float), n)


def relu_skip_conditions() -> list[Condition]:
    fail, learn = constant(0.85), constant(0.02)
    noisy = lambda at: lambda rng, n: at + 0.02 * rng.standard_normal(n)  # noqa: E731
    skip_truth = {"plain": {a: noisy(0.8) for a in ("relu", "tanh", "sigmoid")},
                  "resnet": {a: noisy(0.02) for a in ("relu", "tanh", "sigmoid")}}  # fmt: skip
    out = []
    for shape in SHAPES:  # "skip" with the plain ReLU net's typical seed exactly at 50 %
        plain = {**skip_truth["plain"], "relu": at_median(shape, LEARNED, 0.05)}
        out.append(Condition(f"plain ReLU error: median exactly 50 %, {shape}; the skip trains the rest",
                             "relu-skip", "null", "skip",
                             relu_skip_claim(activations(plain, skip_truth["resnet"]), "skip")))  # fmt: skip
    for shape in ("left-skewed", "heavy", "identical"):  # "skip" with the residual tanh net exactly at 50 %
        resnet = {**skip_truth["resnet"], "tanh": at_median(shape, LEARNED, 0.05)}
        out.append(Condition(f"residual tanh error: median exactly 50 %, {shape}; plain nets fail", "relu-skip",
                             "null", "skip",
                             relu_skip_claim(activations(skip_truth["plain"], resnet), "skip")))  # fmt: skip
    # "skip" with the skip's help exactly at 2 points (a residual tanh net at 0 in every seed: the plain
    # error minus it is the drawn difference exactly, with no rounding off the threshold)
    for shape in ("right-skewed", "bimodal", "identical"):
        out.append(Condition(f"tanh: plain − residual error, median exactly 2 points, {shape}; residual at 0",
                             "relu-skip", "null", "skip",
                             relu_skip_claim(activations(skip_truth["plain"], {**skip_truth["resnet"],
                                                                               "tanh": constant(0.0)},
                                                         {"tanh": at_median(shape, MARGIN_EFFECT, 0.05)}),
                                             "skip")))  # fmt: skip
    both_at = {"relu": learn, "tanh": at_median("right-skewed", LEARNED, 0.05),
               "sigmoid": at_median("right-skewed", LEARNED, 0.05)}  # fmt: skip
    out += [
        Condition("residual tanh and sigmoid errors: median exactly 50 % (right-skewed); ReLU nets learn, 6 seeds",
                  "relu-skip", "null", "relu",
                  relu_skip_claim(activations({a: learn for a in both_at}, both_at), "relu", seeds=RELU_SEEDS)),
        Condition("the residual tanh net fails (90 %) in 10 % of seeds; the skip trains the rest", "relu-skip",
                  "reported", "skip", relu_skip_claim(activations(skip_truth["plain"], {**skip_truth["resnet"],
                                                                                       "tanh": rare(0.1, 0.9, 0.02)}),
                                                      "skip")),
        Condition("resampled from the relu-skip study's 6 seeds at BN (plain ReLU 44-68 %, residual tanh 10-60 %)",
                  "relu-skip", "reported", "skip_and_relu",
                  relu_skip_claim(activations(*({a: resampled(v) for a, v in MEASURED_RELU_SKIP[arch].items()}
                                                for arch in ("plain", "resnet"))),
                                  "skip_and_relu", seeds=RELU_SEEDS)),
        Condition("plain ReLU fails (75 %), residual sigmoid fails (90 %), residual tanh at 46 %, 6 seeds", "relu-skip",
                  "power", "skip_and_relu",
                  relu_skip_claim(activations({"relu": noisy(0.75), "tanh": noisy(0.8), "sigmoid": fail},
                                              {"relu": LEARNS_1D, "tanh": noisy(0.46), "sigmoid": fail}),
                                  "skip_and_relu", seeds=RELU_SEEDS)),
    ]  # fmt: skip
    return out


def budget_conditions() -> list[Condition]:
    wide = constant(0.7)
    out = []
    for shape in SHAPES:  # gap_persists with the 60-epoch gap's typical seed exactly at 2 points
        out.append(
            Condition(
                f"plain gap at 60 epochs: median exactly 2 points, {shape}; 70 before",
                "budget",
                "null",
                "gap_persists",
                budget_claim({15: wide, 30: wide, 60: at_median(shape, MARGIN_EFFECT)}, "gap_persists"),
            )
        )
    for shape in ("right-skewed", "identical"):
        out.append(
            Condition(
                f"plain gap at 60 epochs: median exactly 2 points, {shape}; 70 before",
                "budget",
                "null",
                "gap_closes",
                budget_claim({15: wide, 30: wide, 60: at_median(shape, MARGIN_EFFECT)}, "gap_closes"),
            )
        )
    out.append(Condition("plain gap at 60 epochs: 0, or 70 points in 5 % of seeds (mean 3.5, median 0)", "budget",
                         "reported", "gap_closes",
                         budget_claim({15: wide, 30: wide, 60: rare(0.05, 0.7)}, "gap_closes")))  # fmt: skip
    gap_sd = 0.03
    q = float(stats.norm.sf((MARGIN_EFFECT - 0.06) / gap_sd))
    out.append(Condition("plain gap 70, 50 and 6 points (the last normal, sd 3)", "budget", "power", "gap_persists",
                         budget_claim({15: wide, 30: constant(0.5),
                                       60: lambda rng, n: 0.06 + gap_sd * rng.standard_normal(n)}, "gap_persists"),
                         stated=(sign_power(q, SEEDS, ALPHA),) * 2))  # fmt: skip
    return out


def measure(condition: Condition, studies: int, seed: int = 0) -> float:
    """The rate at which the verdict makes the condition's claim over `studies` simulated studies."""
    rng = np.random.default_rng([seed, zlib.crc32(condition.name.encode())])
    return float(np.mean([condition.simulate(rng) for _ in range(studies)]))


def allowance(rate: float, studies: int) -> float:
    """Three Monte Carlo standard errors of a rate measured over `studies` simulated studies."""
    return 3 * math.sqrt(max(rate * (1 - rate), 0.01) / studies)


def table(studies: int) -> str:
    """The calibration table (Markdown) over `studies` simulated studies per condition."""
    lines = ["| verdict | truth | counted | kind | rate | bound |", "|---|---|---|---|---|---|"]
    for condition in conditions():
        rate = measure(condition, studies)
        if condition.kind == "null":
            bound = f"<= {ALPHA}"
        elif condition.kind == "declines":
            bound = "0 (declines to claim)"
        elif condition.stated is not None:
            low, high = condition.stated
            bound = f"{low:.3f} (stated)" if low == high else f"{low:.3f} to {high:.3f} (stated)"
        else:
            bound = "reported"
        lines.append(f"| {condition.verdict} | {condition.name} | {condition.claim} | {condition.kind} | {rate:.3f} | "
                     f"{bound} |")  # fmt: skip
    seeds = f"{SEEDS} seeds per cell unless the truth says otherwise"
    return "\n".join(lines) + f"\n\n{studies} simulated studies per condition, {seeds}, alpha {ALPHA}."


if __name__ == "__main__":
    print(table(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
