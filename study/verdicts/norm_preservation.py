"""The norm-preservation verdict (Zaeemzadeh et al.): do residual blocks pass the gradient on with its
norm unchanged as the network gets deeper, where plain blocks do not?

Input: norms.csv (`study.measure.block_ratios`): every block's ratio ||dL/dx_in|| / ||dL/dx_out||
at initialization (the study's initial weights) and after training (each run's checkpoint).
Per network, the deviation from norm preservation is the mean over its blocks of |log10 ratio|.
The claim (`norm_verdict`): residual blocks approach ratio 1 as the network gets deeper, plain blocks
do not. The unit of replication is the seed (both twins' networks of one seed averaged). Per stage
(init, trained): Kendall's tau of depth vs deviation over residual networks (one-sided, decreasing),
and plain vs residual deviation at the deepest depth (one-sided Welch). *Holds* when all four are
significant after Holm; *does not hold* when the opposite of one is shown (residual deviation rising
with depth, or residual above plain) at alpha over twice the number of stages (Bonferroni); else
*inconclusive*.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from study.verdicts.common import Difference, as_float, holm

STAGES = ("init", "trained")


def deviation(norms: pd.DataFrame) -> pd.DataFrame:
    """Per network and stage: mean |log10 ratio| over its blocks (0: every block norm-preserving)."""
    frame = norms.dropna(subset=["ratio"]).assign(log_ratio=lambda f: np.abs(np.log10(f.ratio.astype(float))))
    keys = ["stage", "run_key", "backend", "arch", "depth", "seed"]
    return frame.groupby(keys, dropna=False).log_ratio.mean().rename("deviation").reset_index()


def norm_verdict(norms: pd.DataFrame | None, alpha: float = 0.05) -> dict:
    """Do residual blocks approach norm preservation with depth, and plain blocks not? (module docstring)"""
    header = {"alpha": alpha, "measure": "mean |log10(||dL/dx_in|| / ||dL/dx_out||)| over a network's blocks"}
    if norms is None or norms.empty:
        return {"verdict": "inconclusive", "reason": "no block gradient data (norms.csv)", **header, "stages": {}}
    # The unit of replication is the seed: both twins' networks of one seed count once (their mean).
    networks = deviation(norms).groupby(["stage", "arch", "depth", "seed"], as_index=False).deviation.mean()
    stages = {}
    for stage in STAGES:
        data = networks[networks.stage == stage]
        cells = [
            {"arch": arch, "depth": int(depth), "n": len(g), "deviation": float(g.deviation.mean()), "mean_ratio": None}
            for (arch, depth), g in data.groupby(["arch", "depth"])
        ]
        ratios = norms[norms.stage == stage].groupby(["arch", "depth"]).ratio.median()
        for cell in cells:
            cell["mean_ratio"] = as_float(ratios.get((cell["arch"], cell["depth"])))
        residual = data[data.arch == "resnet"]
        depths = sorted(set(data.depth[data.arch == "resnet"]) & set(data.depth[data.arch == "plain"]))
        entry = {"cells": cells, "tests": {}}
        if len(depths) < 2 or residual.depth.nunique() < 2:
            entry["reason"] = "fewer than 2 depths with both archs"
            stages[stage] = entry
            continue
        trend = stats.kendalltau(residual.depth, residual.deviation, alternative="less")
        deepest = data[data.depth == depths[-1]]
        plain_dev = deepest[deepest.arch == "plain"].deviation.to_numpy(float)
        res_dev = deepest[deepest.arch == "resnet"].deviation.to_numpy(float)
        p_compare = p_reversed = None
        if len(plain_dev) >= 2 and len(res_dev) >= 2:
            difference = Difference.of_means((1.0, plain_dev), (-1.0, res_dev))
            p_compare, p_reversed = difference.p_above(0.0), difference.p_below(0.0)
        rising = stats.kendalltau(residual.depth, residual.deviation, alternative="greater")
        entry["tests"] = {
            "residual_trend": {"tau": as_float(trend.statistic), "p": as_float(trend.pvalue), "n": len(residual),
                               "p_reversed": as_float(rising.pvalue)},
            "plain_vs_residual": {
                "depth": int(depths[-1]),
                "plain": float(plain_dev.mean()) if len(plain_dev) else None,
                "resnet": float(res_dev.mean()) if len(res_dev) else None,
                "p": p_compare,
                "p_reversed": p_reversed,
            },
        }  # fmt: skip
        stages[stage] = entry
    family = [t for entry in stages.values() for t in entry["tests"].values()]
    for test, adjusted in zip(family, holm([t["p"] for t in family]), strict=True):
        test["p_holm"] = adjusted
        test["significant"] = adjusted is not None and adjusted < alpha
    return {**_decide(stages, alpha), **header, "stages": stages}


def _decide(stages: dict, alpha: float) -> dict:
    tested = {stage: entry["tests"] for stage, entry in stages.items() if entry["tests"]}
    if not tested:
        return {"verdict": "inconclusive", "reason": "fewer than 2 depths with both archs at every stage"}
    words = []
    for stage, tests in tested.items():
        trend, compare = tests["residual_trend"], tests["plain_vs_residual"]
        words.append(
            f"{stage}: residual deviation vs depth tau = {trend['tau']:.2f}; at depth {compare['depth']} "
            f"plain {compare['plain']:.3f} vs residual {compare['resnet']:.3f}"
        )
    summary = "; ".join(words)
    if all(t["residual_trend"]["significant"] and t["plain_vs_residual"]["significant"] for t in tested.values()):
        return {
            "verdict": "holds",
            "reason": f"residual blocks approach norm preservation with depth, plain blocks do not ({summary})",
        }
    level = alpha / (2 * len(tested))  # Bonferroni over the ways the claim can fail
    shown = lambda test: test["p_reversed"] is not None and test["p_reversed"] < level  # noqa: E731
    if any(shown(t["residual_trend"]) for t in tested.values()):
        return {"verdict": "does_not_hold", "reason": f"residual blocks move away from ratio 1 with depth ({summary})"}
    if any(shown(t["plain_vs_residual"]) for t in tested.values()):
        return {
            "verdict": "does_not_hold",
            "reason": f"residual blocks are further from ratio 1 than plain ({summary})",
        }
    return {"verdict": "inconclusive", "reason": f"not shown after Holm, nor its opposite ({summary})"}
