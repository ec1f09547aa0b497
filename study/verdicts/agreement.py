"""Do the twins agree? Exactness (float64 replay) first, then equivalence of the float32 outcomes.

Two levels of evidence, one verdict (docs/design.md, "How the verdicts are reached"):

1. **Exactness** (`study.measure.exactness`, read from exactness.json): the study's recipe replayed by every
   twin in float64 from the same weights on the same batches. It either holds to 1e-8 or it fails;
   any single recipe difference between the twins fails it. This is what proves the twins are one
   algorithm.
2. **Outcomes**, per (arch, depth) cell, pair of backends and metric (final train and test error),
   from the float32 study runs. By the end of training the two twins' runs of one seed are no longer
   paired — rounding differences grow through hundreds of SGD steps at LR 0.1 until the final errors
   of the same seed are as far apart as those of different seeds — so the runs are compared as two
   independent samples: Welch's t statistics, an equivalence test (TOST) within ±margin, a two-sided
   difference test, and a test that the difference lies beyond the margin. Welch stays valid where
   some pairing remains (a positive correlation only makes it conservative); the observed pair
   correlation is reported. Holm corrects each of the three tests over all cells and metrics.

Per cell: *equivalent* (TOST after Holm), *differs* (the difference lies beyond ±margin after Holm),
*bounded* (neither: the cell is reported with the differences it does exclude, `bound`, and the
smallest difference its test would detect with 80 % power, `mdd`, and the seeds per twin that would
settle it at the margin) or *undecided* (fewer than two runs of a twin).

Overall: *disagree* when exactness fails or any cell differs; *agree* when exactness holds and every
cell is equivalent or bounded (bounded cells named with their bounds); *inconclusive* otherwise
(exactness not in the folder, too few runs), with what would settle it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.weightstats import ttost_ind

from study.core.twin import BACKENDS
from study.verdicts.common import CI_LEVEL, as_float, holm

METRICS = ("final_train_error", "final_test_error")
POWER = 0.8  # for the minimal detectable difference and the seeds that would settle a cell


def cell_label(cell: dict, pairs: list, joiner: str = " vs ") -> str:
    """A cell's name, e.g. "plain-56"; in a study with more than one pair of backends also its pair,
    "plain-56 (keras vs lightning)" (the report joins with " − ": first minus second)."""
    name = f"{cell['arch']}-{cell['depth']}"
    return name + (f" ({joiner.join(cell['backends'])})" if len(pairs) > 1 else "")


def _pair_correlation(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> float | None:
    """Pearson r of the two twins' values over the seeds both ran (None with fewer than 3 or no spread)."""
    joined = a.set_index("seed")[metric].to_frame("a").join(b.set_index("seed")[metric].to_frame("b"), how="inner")
    if len(joined) < 3 or joined.a.nunique() < 2 or joined.b.nunique() < 2:
        return None
    return float(stats.pearsonr(joined.a, joined.b).statistic)


def seeds_needed(var_a: float, var_b: float, margin: float, alpha: float, power: float = POWER) -> int | None:
    """Runs per twin for which Welch's TOST at `margin` has `power` when the true difference is 0,
    given these run-to-run variances (t approximation with df = 2n - 2)."""
    if var_a + var_b == 0:
        return 2
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(0.5 + power / 2)
    n = max(2, math.ceil((var_a + var_b) * z**2 / margin**2))
    for _ in range(100):  # refine with t quantiles until stable
        t = stats.t.ppf(1 - alpha, 2 * n - 2) + stats.t.ppf(0.5 + power / 2, 2 * n - 2)
        refined = max(2, math.ceil((var_a + var_b) * t**2 / margin**2))
        if refined == n:
            return n
        n = refined
    return n


def outcome_test(a: np.ndarray, b: np.ndarray, margin: float, alpha: float, bound_alpha: float) -> dict:
    """Welch comparison of two independent samples of one metric (error fractions), a - b.

    - p_tost: TOST within ±margin (statsmodels `ttost_ind`, unequal variances);
    - p_diff: two-sided Welch t-test, with the two-sided `CI_LEVEL` interval ci_low, ci_high;
    - p_beyond: the difference lies beyond ±margin (H0 |d| <= margin): the one-sided tests of
      d > margin and d < -margin, Bonferroni over the two, so the level holds whatever the margin;
    - bound: the margin the data do establish, |d| + t(1 - bound_alpha) se: differences beyond ±bound
      are excluded at level bound_alpha;
    - mdd: the smallest true difference the two-sided test at alpha detects with probability POWER,
      (t(1 - alpha/2) + t(POWER)) se;
    - tost_power: the TOST's power at a true difference of 0 with this standard error;
    - seeds_needed: runs per twin for which the TOST has POWER at 0.
    """
    na, nb = len(a), len(b)
    out = {"n": [na, nb], "mean_diff": float(a.mean() - b.mean()) if na and nb else None, "se": None, "df": None}
    out |= dict.fromkeys(("ci_low", "ci_high", "p_tost", "p_diff", "p_beyond", "bound", "mdd", "tost_power"))
    out |= {"seeds_needed": None, "note": None}
    if na < 2 or nb < 2:
        out["note"] = "fewer than 2 runs of a twin"
        return out
    var_a, var_b = float(a.var(ddof=1)), float(b.var(ddof=1))
    diff = out["mean_diff"]
    out["seeds_needed"] = seeds_needed(var_a, var_b, margin, alpha)
    se = math.sqrt(var_a / na + var_b / nb)
    if se == 0:  # every run of each twin ended at one value: the difference is known exactly
        beyond = abs(diff) > margin
        out |= {"se": 0.0, "ci_low": diff, "ci_high": diff, "bound": abs(diff), "mdd": 0.0, "tost_power": 1.0}
        out |= {
            "p_tost": 1.0 if beyond else 0.0,
            "p_diff": 1.0 if diff == 0 else 0.0,
            "p_beyond": 0.0 if beyond else 1.0,
        }
        out["note"] = "identical in every run" if diff == 0 else "each twin constant over its runs"
        return out
    df = se**4 / ((var_a / na) ** 2 / (na - 1) + (var_b / nb) ** 2 / (nb - 1))  # Welch-Satterthwaite
    t = stats.t(df)
    welch = stats.ttest_ind(a, b, equal_var=False)
    ci = welch.confidence_interval(CI_LEVEL)
    p_beyond = min(1.0, 2 * min(t.sf((diff - margin) / se), t.cdf((diff + margin) / se)))
    out |= {
        "se": se,
        "df": float(df),
        "ci_low": as_float(ci.low),
        "ci_high": as_float(ci.high),
        "p_tost": as_float(ttost_ind(a, b, -margin, margin, usevar="unequal")[0]),
        "p_diff": as_float(welch.pvalue),
        "p_beyond": float(p_beyond),
        "bound": abs(diff) + float(t.ppf(1 - bound_alpha)) * se,
        "mdd": float(t.ppf(1 - alpha / 2) + t.ppf(POWER)) * se,
        "tost_power": float(max(0.0, 2 * t.cdf(margin / se - t.ppf(1 - alpha)) - 1)),
    }
    return out


def _cell_verdict(tests: dict, alpha: float, margin: float) -> tuple[str, str]:
    """Verdict and reason of one cell from its Holm-corrected per-metric tests."""
    pts = lambda v: f"{100 * v:.1f}"  # noqa: E731 (error fractions as percentage points)
    if undecided := [m for m, t in tests.items() if t["p_tost"] is None]:
        return "undecided", f"fewer than 2 runs of a twin ({', '.join(undecided)})"
    if differ := [m for m, t in tests.items() if t["p_beyond_holm"] < alpha]:
        return "differs", "; ".join(
            f"{m}: difference {pts(tests[m]['mean_diff'])} points, beyond ±{pts(margin)} "
            f"(p = {tests[m]['p_beyond_holm']:.2g})"
            for m in differ
        )
    if all(t["p_tost_holm"] < alpha for t in tests.values()):
        if all(t["note"] == "identical in every run" for t in tests.values()):
            return "equivalent", "identical in every run"
        return "equivalent", f"equivalent within ±{pts(margin)} points (Welch TOST, Holm)"
    open_metrics = [m for m, t in tests.items() if t["p_tost_holm"] >= alpha]
    return "bounded", "; ".join(
        f"{m}: not shown within ±{pts(margin)}; differences beyond ±{pts(tests[m]['bound'])} points excluded, "
        f"detectable difference {pts(tests[m]['mdd'])} points; about {tests[m]['seeds_needed']} seeds per twin "
        f"would settle ±{pts(margin)}"
        for m in open_metrics
    )


def _exactness_summary(exactness: dict | None) -> dict:
    if exactness is None:
        return {"status": "missing", "summary": "no float64 replay of the recipe in this folder (exactness.json)"}
    names = [network["spec"] for network in exactness["networks"]]
    worst = exactness.get("worst") or {}
    largest = worst.get("error")
    where = f"{worst.get('quantity')} of {worst.get('spec')}, {' vs '.join(worst.get('backends', []))}"
    status = "passed" if exactness["passed"] else "failed"
    if exactness["passed"]:
        summary = (
            f"the recipe replayed in float64 ({exactness['recipe']['epochs']} epochs: warm-up, both LR drops, "
            f"augmentation, train- and eval-mode BN, test evaluation) gives the same per-step losses, epoch "
            f"metrics and final weights in every twin: largest relative difference {largest:.1e} ({where}), "
            f"tolerance {exactness['tolerance']:.0e}; networks {', '.join(names)}"
        )
    else:
        summary = (
            f"the float64 replay of the recipe differs between the twins: {where} differs by {largest} "
            f"(relative), tolerance {exactness['tolerance']:.0e}"
        )
    return {
        "status": status,
        "tolerance": exactness["tolerance"],
        "largest_difference": largest,
        "where": worst,
        "networks": names,
        "summary": summary,
    }


def agreement(
    results: pd.DataFrame,
    alpha: float = 0.05,
    margin: float = 0.05,
    metrics=METRICS,
    exactness: dict | None = None,
) -> dict:
    """The agreement verdict (see the module docstring). `results` and `exactness` as
    `study.verdicts.inputs.load_results` and `load_exactness` return them (None: not available)."""
    present = [b for b in BACKENDS if b in set(results.backend)]
    pairs = list(itertools.combinations(present, 2))
    header = {"margin": margin, "alpha": alpha, "metrics": list(metrics), "pairs": [list(p) for p in pairs]}
    header["design"] = (
        "two independent samples per cell (Welch): by the end of training a seed's runs in the two twins are "
        "no longer paired"
    )
    exact = _exactness_summary(exactness)
    cells = []
    for first, second in pairs:
        both = results[results.backend.isin([first, second])]
        per_cell = both.groupby(["arch", "depth"]).backend.nunique()
        for arch, depth in per_cell.index[per_cell == 2]:
            runs = both[(both.arch == arch) & (both.depth == depth)]
            a, b = runs[runs.backend == first], runs[runs.backend == second]
            cells.append({"arch": arch, "depth": int(depth), "backends": [first, second], "runs": (a, b)})
    family = len(cells) * len(metrics)
    for cell in cells:
        a, b = cell.pop("runs")
        cell["tests"] = {}
        for metric in metrics:
            test = outcome_test(
                a[metric].to_numpy(float), b[metric].to_numpy(float), margin, alpha, alpha / max(1, family)
            )
            test["pair_correlation"] = _pair_correlation(a, b, metric)
            cell["tests"][metric] = test
    tests = [test for cell in cells for test in cell["tests"].values()]
    for kind in ("p_tost", "p_diff", "p_beyond"):
        for test, adjusted in zip(tests, holm([test[kind] for test in tests]), strict=True):
            test[f"{kind}_holm"] = adjusted
    for cell in cells:
        cell["verdict"], cell["reason"] = _cell_verdict(cell["tests"], alpha, margin)

    def named(verdict):
        return [cell_label(c, pairs) for c in cells if c["verdict"] == verdict]

    equivalent, bounded, differ, undecided = (named(v) for v in ("equivalent", "bounded", "differs", "undecided"))
    pts = f"±{100 * margin:.1f} points"
    shown = (
        f"{len(equivalent)} of {len(cells)} cells equivalent within {pts}"
        + (f": {', '.join(equivalent)}" if equivalent else "")
        if cells
        else "no cell was run by two backends"
    )
    not_excluded = [f"{cell_label(c, pairs)}: {c['reason']}" for c in cells if c["verdict"] in ("bounded", "undecided")]
    settle = None
    if exact["status"] == "failed":
        verdict, reason = "disagree", exact["summary"]
    elif differ:
        verdict, reason = "disagree", f"the twins' outcomes differ beyond {pts} in {', '.join(differ)}"
    elif len(present) < 2:
        verdict, reason = "inconclusive", "only one backend in the results" if present else "no results"
        settle = "run the study with at least two backends"
    elif not cells:
        verdict, reason = "inconclusive", "no (arch, depth) cell was run by two backends"
        settle = "run the same cells with each backend"
    elif exact["status"] == "missing":
        verdict, reason = "inconclusive", f"{exact['summary']}; outcomes: {shown}"
        settle = "run `resnet-study run` with the same flags on this folder: it replays the recipe (~10 s)"
    elif undecided:
        verdict, reason = "inconclusive", f"too few runs in {', '.join(undecided)}"
        settle = "add seeds (--seeds) to those cells"
    else:
        verdict = "agree"
        reason = f"the recipe is exact in float64; {shown}"
        if bounded:
            reason += f"; {', '.join(bounded)} not shown equivalent but bounded (see what is not excluded)"
    return {
        "verdict": verdict,
        "reason": reason,
        "settle": settle,
        **header,
        "exactness": exact,
        "proved": exact["summary"],
        "shown": shown,
        "not_excluded": not_excluded,
        "cells": cells,
    }
