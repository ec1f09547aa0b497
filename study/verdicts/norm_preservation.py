"""The norm-preservation verdict (Zaeemzadeh et al.): do residual blocks pass the gradient on with its
norm unchanged as the network gets deeper, where plain blocks do not?

Input: norms.csv (`study.measure.block_ratios`): every block's ratio ||dL/dx_in|| / ||dL/dx_out||
at initialization (the study's initial weights) and after training (each run's checkpoint).
Per network, the deviation from norm preservation is the mean over its blocks of |log10 ratio|.
The claim (`norm_verdict`): residual blocks approach ratio 1 as the network gets deeper, plain blocks
do not. Per stage (init, trained): Kendall's tau of depth vs deviation over residual networks
(one-sided, decreasing), and plain vs residual deviation at the deepest depth (one-sided Welch);
Holm over the four tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from study.verdicts.common import as_float, holm

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
    networks = deviation(norms)
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
        if len(plain_dev) >= 2 and len(res_dev) >= 2 and (np.ptp(plain_dev) or np.ptp(res_dev)):
            welch = stats.ttest_ind(plain_dev, res_dev, equal_var=False, alternative="greater")
            p_compare = as_float(welch.pvalue)
        else:
            p_compare = None
        entry["tests"] = {
            "residual_trend": {"tau": as_float(trend.statistic), "p": as_float(trend.pvalue), "n": len(residual)},
            "plain_vs_residual": {
                "depth": int(depths[-1]),
                "plain": float(plain_dev.mean()) if len(plain_dev) else None,
                "resnet": float(res_dev.mean()) if len(res_dev) else None,
                "p": p_compare,
            },
        }
        stages[stage] = entry
    family = [t for entry in stages.values() for t in entry["tests"].values()]
    for test, adjusted in zip(family, holm([t["p"] for t in family]), strict=True):
        test["p_holm"] = adjusted
        test["significant"] = adjusted is not None and adjusted < alpha
    return {**_decide(stages), **header, "stages": stages}


def _decide(stages: dict) -> dict:
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
    if any((t["residual_trend"]["tau"] or 0) >= 0 for t in tested.values()):
        return {"verdict": "does_not_hold", "reason": f"residual blocks do not approach ratio 1 with depth ({summary})"}
    if any(t["plain_vs_residual"]["resnet"] >= t["plain_vs_residual"]["plain"] for t in tested.values()):
        return {
            "verdict": "does_not_hold",
            "reason": f"residual blocks are no closer to ratio 1 than plain ({summary})",
        }
    return {"verdict": "inconclusive", "reason": f"in the expected direction, not significant after Holm ({summary})"}
