"""Statistics over finished runs: does depth degrade plain nets, and do the twins agree?

Input is ``results.csv``: one row per finished training run (`load_results`). Errors are fractions in
[0, 1]. Diverged runs are failures, not missing data: their error columns already hold the run's last
error (or chance level), so they enter every test as ordinary observations and are also counted.

`degradation` tests He et al. (2015)'s claim per backend: deeper *plain* nets reach a *higher* training
error, residual nets do not. `agreement` tests whether the Keras and Lightning twins give the same errors
in every (arch, depth) cell. All p-values of one question are Holm-corrected together; every verdict is
"holds"/"does_not_hold" (or "agree"/"disagree") only when the data support it, else "inconclusive" with a
reason. The functions analyse one experiment (one dataset, schedule, shortcut and activation): filter the
table before calling them.

Margins (both in error fraction):

* ``margin`` = 0.05 (5 percentage points) is the equivalence margin for the twins. The digits test set
  holds ~450 images, so one image is 0.22 points, and the seed-to-seed spread of a cell is a few points;
  a margin below that spread could never be met with a handful of seeds, one much above it would call
  visibly different twins equivalent.
* `MARGIN_EFFECT` = 0.02 (2 points) is the smallest depth-induced rise of plain-net error that counts as
  degradation: if the bootstrap CI of the deep-minus-shallow difference lies entirely below it, the
  claim does not hold.

Every returned dict is JSON-serializable: plain floats/ints/str/bool/None, NaN written as None.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.meta_analysis import effectsize_smd
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from study.core.errors import UserError
from study.core.spec import ARCHS
from study.core.twin import BACKENDS

ERROR_COLUMNS = ("final_train_error", "final_test_error", "best_test_error")
REQUIRED_COLUMNS: tuple[str, ...] = ("run_key", "backend", "arch", "depth", "seed", *ERROR_COLUMNS, "diverged")
CI_LEVEL = 0.95  # all confidence intervals, independent of the test level alpha
MARGIN_EFFECT = 0.02  # smallest meaningful rise of plain-net error with depth (see module docstring)
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}


class ResultsError(UserError):
    """results.csv is missing or malformed; the message is one line naming the problem."""


def load_results(path) -> pd.DataFrame:
    """Read and validate results.csv: one row per run, `REQUIRED_COLUMNS` at least.

    Returns the table with ``depth``/``seed`` as int, error columns as float fractions and ``diverged`` as
    bool (parsed from True/False/true/false/1/0). Raises `ResultsError` on the first problem found.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"run_key": str, "backend": str, "arch": str, "diverged": str})
    except OSError as exc:
        raise ResultsError(f"cannot read results file {path}: {exc.strerror or exc}") from None
    except pd.errors.EmptyDataError:
        raise ResultsError(f"results file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError):
        raise ResultsError(f"results file {path} is not a readable CSV table") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ResultsError(f"results file {path} lacks column(s): {', '.join(missing)}")
    if frame.empty:
        raise ResultsError(f"results file {path} has no rows")
    duplicated = frame.run_key[frame.run_key.duplicated()]
    if len(duplicated):
        raise ResultsError(f"results file {path}: duplicate run_key {duplicated.iloc[0]!r}")

    def reject(bad: pd.Series, column: str, expected: str) -> None:
        if bad.any():
            row = frame[bad].iloc[0]
            value = "empty" if pd.isna(row[column]) else repr(str(row[column]))
            raise ResultsError(f"results file {path}: {column} of run {row.run_key!r} is {value}, expected {expected}")

    reject(~frame.backend.isin(BACKENDS), "backend", " or ".join(BACKENDS))
    reject(~frame.arch.isin(ARCHS), "arch", " or ".join(ARCHS))
    for column in ("depth", "seed"):
        values = pd.to_numeric(frame[column], errors="coerce")
        reject(values.isna() | (values % 1 != 0), column, "an integer")
        frame[column] = values.astype(int)
    for column in ERROR_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        reject(~values.between(0.0, 1.0), column, "a number in [0, 1]")  # NaN is not between
        frame[column] = values.astype(float)
    diverged = frame.diverged.str.strip().str.lower().map(_BOOLEANS)
    reject(diverged.isna(), "diverged", "True or False")
    frame["diverged"] = diverged.astype(bool)
    return frame


def _num(value) -> float | None:
    """A finite number as a plain float; NaN/inf/None as None."""
    return float(value) if value is not None and math.isfinite(value) else None


def _holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values over the defined (not None) entries; None stays None."""
    defined = [i for i, p in enumerate(pvalues) if p is not None]
    adjusted = list(pvalues)
    if defined:
        for i, p in zip(defined, multipletests([pvalues[i] for i in defined], method="holm")[1], strict=True):
            adjusted[i] = float(p)
    return adjusted


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
        "statistic": _num(statistic),
        "p": _num(p),
        "mean_diff": float(deep.mean() - shallow.mean()),
        "ci_low": _num(boot.low),
        "ci_high": _num(boot.high),
        "hedges_g": _num(g),
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
        "coef": _num(coef),
        "ci_low": _num(low),
        "ci_high": _num(high),
        "p": _num(p_two / 2 if coef > 0 else 1 - p_two / 2),
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
            "plain_trend": {"statistic": _num(trend.statistic), "p": _num(trend.pvalue), "n": len(plain)},
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
    for test, p_holm in zip(family, _holm([test["p"] for test in family]), strict=True):
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


def _twin_test(keras: pd.DataFrame, lightning: pd.DataFrame, metric: str, margin: float) -> dict:
    """Equivalence (TOST within ±margin) and two-sided difference test of keras - lightning in one cell.

    Paired by seed when both backends ran the same set of distinct seeds, else unpaired (Welch). ``n`` is
    the number of pairs (paired) or the smaller backend's run count (unpaired). p-values are None when
    there are fewer than 2 pairs/runs or the test is undefined (zero variance); all paired differences
    exactly zero give ``note`` "identical", p_tost 0 and p_diff 1.
    """
    paired = keras.seed.is_unique and lightning.seed.is_unique and set(keras.seed) == set(lightning.seed)
    x = keras.sort_values("seed")[metric].to_numpy(float)
    y = lightning.sort_values("seed")[metric].to_numpy(float)
    n = len(x) if paired else min(len(x), len(y))
    out = {"n": n, "paired": paired, "mean_diff": float(x.mean() - y.mean()), "ci_low": None, "ci_high": None}
    out.update(p_tost=None, p_diff=None, note=None)
    if n < 2 or (not paired and np.ptp(x) == 0 and np.ptp(y) == 0):  # too few runs, or zero variance
        return out
    if paired and np.all(x == y):
        out.update(ci_low=0.0, ci_high=0.0, p_tost=0.0, p_diff=1.0, note="identical")  # TOST undefined, twins equal
        return out
    if paired:
        p_tost, difference = ttost_paired(x, y, -margin, margin)[0], stats.ttest_rel(x, y)
    else:
        p_tost = ttost_ind(x, y, -margin, margin, usevar="unequal")[0]
        difference = stats.ttest_ind(x, y, equal_var=False)
    ci = difference.confidence_interval(CI_LEVEL)
    out.update(ci_low=_num(ci.low), ci_high=_num(ci.high), p_tost=_num(p_tost), p_diff=_num(difference.pvalue))
    return out


def _agreement_verdict(tests: dict, alpha: float, margin: float) -> tuple[str, str]:
    """Verdict and reason of one cell from its Holm-corrected per-metric tests (see `agreement`)."""
    differ = [
        metric
        for metric, t in tests.items()
        if t["p_diff_holm"] is not None and t["p_diff_holm"] < alpha and abs(t["mean_diff"]) > margin
    ]
    if differ:
        return "disagree", f"significant difference beyond ±{margin}: {', '.join(differ)}"
    if any(t["n"] < 2 for t in tests.values()):
        return "inconclusive", "too few seeds"
    if undefined := [m for m, t in tests.items() if t["p_tost_holm"] is None or t["p_diff_holm"] is None]:
        return "inconclusive", f"test undefined (zero variance): {', '.join(undefined)}"
    if all(t["p_tost_holm"] < alpha for t in tests.values()):
        identical = all(t["note"] == "identical" for t in tests.values())
        return "agree", "identical" if identical else f"equivalent within ±{margin} (TOST after Holm)"
    return "inconclusive", f"neither equivalence within ±{margin} nor a larger difference shown"


def agreement(
    results: pd.DataFrame,
    alpha: float = 0.05,
    margin: float = 0.05,
    metrics=("final_train_error", "final_test_error"),
) -> dict:
    """Do the Keras and Lightning twins give the same errors? One verdict per (arch, depth) cell and overall.

    Cells are the (arch, depth) pairs run by both backends. Per cell and metric (error fractions): TOST
    equivalence within ±`margin` and a two-sided difference test of keras - lightning, paired by seed when
    the seeds match (the twins share initial weights and batch order per seed), else unpaired; mean
    difference with a t-based CI. Holm correction runs separately over all TOST and all difference p-values.

    A cell "agree"s when TOST passes (p_tost_holm < alpha) for every metric, "disagree"s when some metric
    differs significantly (p_diff_holm < alpha) by more than `margin`, else is "inconclusive" (including too
    few seeds). Overall: "agree" if every cell agrees, "disagree" if any disagrees, else "inconclusive".
    """
    header = {"margin": margin, "alpha": alpha, "metrics": list(metrics)}
    present = set(results.backend)
    if present != set(BACKENDS):
        reason = "only one backend in the results" if len(present) == 1 else "no results"
        return {"verdict": "inconclusive", "reason": reason, **header, "cells": []}
    backends_per_cell = results.groupby(["arch", "depth"]).backend.nunique()
    cells = []
    for arch, depth in backends_per_cell.index[backends_per_cell == len(BACKENDS)]:
        runs = results[(results.arch == arch) & (results.depth == depth)]
        keras, lightning = runs[runs.backend == "keras"], runs[runs.backend == "lightning"]
        tests = {metric: _twin_test(keras, lightning, metric, margin) for metric in metrics}
        cells.append({"arch": arch, "depth": int(depth), "verdict": None, "reason": None, "tests": tests})
    family = [test for cell in cells for test in cell["tests"].values()]
    for kind in ("p_tost", "p_diff"):
        for test, p_holm in zip(family, _holm([test[kind] for test in family]), strict=True):
            test[f"{kind}_holm"] = p_holm
    for cell in cells:
        cell["verdict"], cell["reason"] = _agreement_verdict(cell["tests"], alpha, margin)
    verdicts = {f"{c['arch']}-{c['depth']}": c["verdict"] for c in cells}
    if not cells:
        verdict, reason = "inconclusive", "no (arch, depth) cell was run by both backends"
    elif disagree := [name for name, v in verdicts.items() if v == "disagree"]:
        verdict, reason = "disagree", f"twins differ in {', '.join(disagree)}"
    elif all(v == "agree" for v in verdicts.values()):
        verdict, reason = "agree", f"all {len(cells)} cells agree within ±{margin}"
    else:
        open_cells = [f"{c['arch']}-{c['depth']} ({c['reason']})" for c in cells if c["verdict"] != "agree"]
        verdict, reason = "inconclusive", f"not shown to agree: {', '.join(open_cells)}"
    return {"verdict": verdict, "reason": reason, **header, "cells": cells}


def analyze(results: pd.DataFrame, alpha: float = 0.05, margin: float = 0.05) -> dict:
    """Degradation, twin agreement and the diverged runs of one results table (see `load_results`).

    ``diverged.by_cell`` lists every (backend, arch, depth) with its diverged and total run counts.
    """
    counts = results.groupby(["backend", "arch", "depth"]).diverged.agg(["sum", "size"])
    by_cell = [
        {"backend": backend, "arch": arch, "depth": int(depth), "diverged": int(row["sum"]), "runs": int(row["size"])}
        for (backend, arch, depth), row in counts.iterrows()
    ]
    diverged = results.run_key[results.diverged.astype(bool)]
    return {
        "degradation": degradation(results, alpha=alpha),
        "agreement": agreement(results, alpha=alpha, margin=margin),
        "diverged": {"count": len(diverged), "runs": [str(key) for key in diverged], "by_cell": by_cell},
        "alpha": alpha,
        "margin": margin,
    }
