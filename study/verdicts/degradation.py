"""The degradation verdict: does depth degrade plain nets, and not residual ones?

Input is ``results.csv``: one row per finished training run (`study.verdicts.inputs.load_results`).
Errors are fractions in [0, 1]. Diverged runs are failures, not missing data: their error columns
already hold the run's last error (or chance level), so they enter every test as ordinary
observations and are also counted.

`degradation` tests He et al. (2015)'s claim per backend: deeper *plain* nets reach a *higher* training
error, residual nets do not. All its p-values are Holm-corrected together; the verdict is "holds" or
"does_not_hold" only when the data support it, else "inconclusive" with a reason. It analyses one
experiment (one dataset, schedule, shortcut and activation): filter the table before calling it.
`MARGIN_EFFECT` = 0.02 (2 points) is the smallest depth-induced rise of plain-net error that counts as
degradation: if the bootstrap CI of the deep-minus-shallow difference lies entirely below it, the claim
does not hold. The twins' agreement is `study.verdicts.agreement`; all verdicts together, `study.verdicts.analyze`.

Every returned dict is JSON-serializable: plain floats/ints/str/bool/None, NaN written as None.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.meta_analysis import effectsize_smd

from study.core.spec import ARCHS
from study.verdicts.common import CI_LEVEL, MARGIN_EFFECT, as_float, holm


def _cell(arch: str, depth: int, values: pd.Series) -> dict:
    """Mean error of one (arch, depth) cell with a t-based `CI_LEVEL` CI of the mean (None if n < 2)."""
    n, mean = len(values), float(values.mean())
    if n < 2:
        return {"arch": arch, "depth": int(depth), "n": n, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CI_LEVEL / 2, n - 1)) * std / math.sqrt(n)
    return {
        "arch": arch,
        "depth": int(depth),
        "n": n,
        "mean": mean,
        "std": std,
        "ci_low": mean - half,
        "ci_high": mean + half,
    }


def _mean_diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _deep_vs_shallow(frame: pd.DataFrame, metric: str, depths: list[int], n_boot: int, seed: int) -> dict:
    """One-sided Welch t-test (deep > shallow) of one arch's error at depths[-1] vs depths[0].

    Effect: mean difference deep - shallow (error fraction) with a percentile-bootstrap `CI_LEVEL` CI, and
    Hedges' g (None when both groups have zero spread, where the test is undefined too).
    """
    shallow = frame.loc[frame.depth == depths[0], metric].to_numpy(float)
    deep = frame.loc[frame.depth == depths[-1], metric].to_numpy(float)
    if np.ptp(deep) == 0 and np.ptp(shallow) == 0:
        statistic = p = g = math.nan  # scipy would return a huge t computed from rounding residue
    else:
        statistic, p = stats.ttest_ind(deep, shallow, equal_var=False, alternative="greater")
        (deep_mean, deep_sd, deep_n), (shallow_mean, shallow_sd, shallow_n) = [
            (group.mean(), group.std(ddof=1), len(group)) for group in (deep, shallow)
        ]
        g = effectsize_smd(deep_mean, deep_sd, deep_n, shallow_mean, shallow_sd, shallow_n)[0]
    boot = stats.bootstrap(
        (deep, shallow),
        _mean_diff,
        n_resamples=n_boot,
        confidence_level=CI_LEVEL,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return {
        "statistic": as_float(statistic),
        "p": as_float(p),
        "mean_diff": float(deep.mean() - shallow.mean()),
        "ci_low": as_float(boot.low),
        "ci_high": as_float(boot.high),
        "hedges_g": as_float(g),
        "depths": [int(depths[0]), int(depths[-1])],
    }


def _interaction(frame: pd.DataFrame, metric: str) -> dict:
    """OLS ``metric ~ depth * C(arch, Treatment('resnet'))``: the depth:plain coefficient (error per layer).

    p is one-sided for coefficient > 0, from the two-sided OLS p.
    """
    model = smf.ols(f"{metric} ~ depth * C(arch, Treatment('resnet'))", data=frame.astype({"depth": float}))
    fit = model.fit()
    term = next(name for name in fit.params.index if ":" in name)  # the one interaction term
    coef, p_two = float(fit.params[term]), float(fit.pvalues[term])
    low, high = fit.conf_int(alpha=1 - CI_LEVEL).loc[term]
    return {
        "coef": as_float(coef),
        "ci_low": as_float(low),
        "ci_high": as_float(high),
        "p": as_float(p_two / 2 if coef > 0 else 1 - p_two / 2),
    }


def _degradation_tests(frame: pd.DataFrame, metric: str, n_boot: int, seed: int) -> dict:
    """The four tests of one backend; see `degradation`. Returns the backend's entry, verdict still open
    (None) when the data are adequate, else "inconclusive" with a reason and no tests."""
    depths_of = {arch: set(frame.depth[frame.arch == arch]) for arch in ARCHS}
    depths = sorted(depths_of["plain"] & depths_of["resnet"])
    cells = [_cell(arch, depth, group[metric]) for (arch, depth), group in frame.groupby(["arch", "depth"])]
    entry = {"verdict": None, "reason": None, "depths": [int(d) for d in depths], "cells": cells, "tests": {}}
    used = frame[frame.depth.isin(depths)]
    seeds = used.groupby(["arch", "depth"]).seed.nunique()
    thin = [f"{arch}-{depth}" for (arch, depth), count in seeds.items() if count < 2]
    if missing := [arch for arch in ARCHS if not depths_of[arch]]:
        entry.update(verdict="inconclusive", reason=f"no {' or '.join(missing)} runs")
    elif len(depths) < 2:
        entry.update(verdict="inconclusive", reason="fewer than 2 depths with both plain and resnet runs")
    elif thin:
        entry.update(verdict="inconclusive", reason=f"fewer than 2 seeds in {', '.join(thin)}")
    else:
        plain, resnet = used[used.arch == "plain"], used[used.arch == "resnet"]
        trend = stats.kendalltau(plain.depth, plain[metric], alternative="greater")
        entry["tests"] = {
            "plain_trend": {"statistic": as_float(trend.statistic), "p": as_float(trend.pvalue), "n": len(plain)},
            "plain_deep_vs_shallow": _deep_vs_shallow(plain, metric, depths, n_boot, seed),
            "interaction": _interaction(used, metric),
            "residual_deep_vs_shallow": _deep_vs_shallow(resnet, metric, depths, n_boot, seed),
        }
    return entry


def _degradation_verdict(tests: dict) -> tuple[str, str]:
    """Verdict and reason of one backend from its Holm-corrected tests (see `degradation`)."""
    plain, residual = tests["plain_deep_vs_shallow"], tests["residual_deep_vs_shallow"]
    # Residual nets with exactly the same error at both depths in every run (typically all 0): the
    # test is undefined because there is nothing to test; they plainly do not degrade.
    residual_constant = residual["p"] is None and residual["mean_diff"] == 0
    undefined = [
        name for name, test in tests.items() if test["p"] is None and not (test is residual and residual_constant)
    ]
    if undefined:
        return "inconclusive", f"test undefined (e.g. zero variance): {', '.join(undefined)}"
    residual_smaller = residual["mean_diff"] < plain["mean_diff"]
    # "Residual nets do not degrade": no significant rise, or a rise too small to matter (its CI
    # upper bound below MARGIN_EFFECT) — short schedules leave deep residual nets a few tenths of a
    # point behind shallow ones, a consistent but negligible difference.
    residual_negligible = residual_constant or not residual["significant"] or residual["ci_high"] < MARGIN_EFFECT
    if all(tests[name]["significant"] for name in ("plain_trend", "plain_deep_vs_shallow", "interaction")):
        if residual_negligible and residual_smaller:
            return "holds", (
                "plain error rises with depth (trend, deep vs shallow, interaction); residual error does not "
                f"(no significant rise, or one below {MARGIN_EFFECT})"
            )
    if plain["mean_diff"] <= 0:
        return "does_not_hold", "plain error does not rise with depth (mean difference <= 0)"
    if plain["ci_high"] < MARGIN_EFFECT:
        return "does_not_hold", f"plain error rise is below {MARGIN_EFFECT} (bootstrap CI upper bound)"
    if residual["significant"] and not residual_smaller:
        return "does_not_hold", "residual nets degrade at least as much as plain nets"
    if residual["significant"]:
        return "inconclusive", "residual nets also degrade significantly, though less than plain nets"
    return "inconclusive", "effect in the expected direction but not significant after Holm"


def degradation(
    results: pd.DataFrame, alpha: float = 0.05, metric: str = "final_train_error", n_boot: int = 2000, seed: int = 0
) -> dict:
    """Does depth raise plain-net error (and not residual-net error)? One verdict per backend and overall.

    Per backend, on the depths run for both archs (d_min < ... < d_max), with `metric` an error fraction:
    ``plain_trend`` (Kendall's tau of depth vs error over plain runs, one-sided >), ``plain_deep_vs_shallow``
    and ``residual_deep_vs_shallow`` (one-sided Welch t-tests d_max > d_min, with mean difference, bootstrap
    CI from `n_boot` resamples seeded by `seed`, Hedges' g), ``interaction`` (OLS depth:plain coefficient in
    error per layer, one-sided > 0). Holm correction runs over all p-values of all backends.

    A backend "holds" when the three plain tests are significant (p_holm < alpha) and residual nets do not
    degrade: their test is not significant or its CI upper bound lies below `MARGIN_EFFECT` (with a smaller
    residual mean difference); "does_not_hold" when plain error does not rise (mean
    difference <= 0, or its CI lies below `MARGIN_EFFECT`) or residual nets degrade as much; else
    "inconclusive". Too few seeds (< 2 per cell), depths (< 2) or a missing arch give "inconclusive" and an
    empty ``tests``. Overall: the backends' common verdict if they share "holds" or "does_not_hold".
    """
    backends = {
        backend: _degradation_tests(results[results.backend == backend], metric, n_boot, seed)
        for backend in sorted(results.backend.unique())
    }
    family = [test for entry in backends.values() for test in entry["tests"].values()]
    for test, p_holm in zip(family, holm([test["p"] for test in family]), strict=True):
        test.update(p_holm=p_holm, significant=p_holm is not None and p_holm < alpha)
    for entry in backends.values():
        if entry["verdict"] is None:
            entry["verdict"], entry["reason"] = _degradation_verdict(entry["tests"])
    verdicts = {backend: entry["verdict"] for backend, entry in backends.items()}
    listing = ", ".join(
        f"{backend} {entry['verdict']}" + (f" ({entry['reason']})" if entry["verdict"] == "inconclusive" else "")
        for backend, entry in backends.items()
    )
    if not verdicts:
        verdict, reason = "inconclusive", "no backend in the results"
    elif set(verdicts.values()) in ({"holds"}, {"does_not_hold"}):
        verdict, reason = next(iter(verdicts.values())), f"all backends: {listing}"
    else:
        verdict, reason = "inconclusive", f"backends differ: {listing}" if len(set(verdicts.values())) > 1 else listing
    return {
        "verdict": verdict,
        "reason": reason,
        "metric": metric,
        "alpha": alpha,
        "margin_effect": MARGIN_EFFECT,
        "backends": backends,
    }
