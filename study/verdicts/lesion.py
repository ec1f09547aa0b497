"""The lesion verdict (Veit et al. 2016): do residual nets degrade gracefully where plain nets collapse?

Input: lesion.csv (`study.measure.lesion`): every trained network's test error intact, with each
block deleted in turn, and with k random blocks deleted. At the deepest depth whose plain nets
learned (mean intact test error below `LEARNED`), per network the mean rise of test error over
single-block deletions; plain vs residual networks by a one-sided Mann-Whitney test (plain rise >
residual rise), and the residual rise against `GRACEFUL`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from study.verdicts.common import CI_LEVEL, LEARNED, as_float

GRACEFUL = 0.10  # residual nets degrade gracefully: mean rise of test error per deleted block below 10 points


def _t_interval(values: np.ndarray) -> tuple[float | None, float | None]:
    if len(values) < 2 or np.ptp(values) == 0:
        mean = float(values.mean()) if len(values) else None
        return mean, mean
    half = stats.t.ppf(0.5 + CI_LEVEL / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def network_rises(lesion: pd.DataFrame) -> pd.DataFrame:
    """Per network: intact error and the mean rise of test error over single-block deletions."""
    intact = lesion[lesion.kind == "intact"].set_index("run_key").test_error.rename("intact_error")
    single = lesion[lesion.kind == "single"].groupby("run_key").test_error.mean().rename("lesioned_error")
    ident = lesion.drop_duplicates("run_key").set_index("run_key")[["backend", "arch", "depth", "seed"]]
    table = ident.join(intact).join(single, how="inner")
    table["rise"] = table.lesioned_error - table.intact_error
    return table.reset_index()


def lesion_verdict(lesion: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Do residual nets degrade gracefully where plain nets collapse? (see the module docstring)"""
    header = {"alpha": alpha, "graceful": GRACEFUL, "learned": LEARNED, "method": "one-sided Mann-Whitney U"}
    if lesion is None or lesion.empty:
        return {"verdict": "inconclusive", "reason": "no lesion data (lesion.csv)", **header, "depths": []}
    networks = network_rises(lesion)
    depths = []
    for depth, group in networks.groupby("depth"):
        entry = {"depth": int(depth)}
        for arch, cell in group.groupby("arch"):
            low, high = _t_interval(cell.rise.to_numpy(float))
            entry[arch] = {
                "n": len(cell),
                "intact_error": float(cell.intact_error.mean()),
                "rise": float(cell.rise.mean()),
                "ci_low": low,
                "ci_high": high,
            }
        depths.append(entry)
    curves = (
        lesion[lesion.kind.isin(["intact", "single", "random"])]
        .groupby(["arch", "depth", "k"])
        .test_error.mean()
        .reset_index()
    )
    header["curves"] = [
        {"arch": r.arch, "depth": int(r.depth), "k": int(r.k), "test_error": float(r.test_error)}
        for r in curves.itertuples()
    ]
    learned = [d for d in depths if "plain" in d and "resnet" in d and d["plain"]["intact_error"] < LEARNED]
    if not learned:
        reason = "no depth with both archs whose plain nets learned (mean intact test error below 50 %)"
        return {"verdict": "inconclusive", "reason": reason, **header, "depths": depths, "depth": None}
    reference = learned[-1]
    cell = networks[networks.depth == reference["depth"]]
    plain, residual = (cell[cell.arch == a].rise.to_numpy(float) for a in ("plain", "resnet"))
    test = {
        "depth": reference["depth"],
        "n_plain": len(plain),
        "n_resnet": len(residual),
        "plain_rise": float(plain.mean()),
        "resnet_rise": float(residual.mean()),
    }
    if len(plain) < 2 or len(residual) < 2:
        return {
            "verdict": "inconclusive",
            "reason": "fewer than 2 networks per arch",
            **header,
            "depths": depths,
            "depth": reference["depth"],
            "test": test,
        }
    mwu = stats.mannwhitneyu(plain, residual, alternative="greater")
    boot = stats.bootstrap(
        (plain, residual),
        lambda a, b, axis=-1: a.mean(axis) - b.mean(axis),
        n_resamples=2000,
        confidence_level=CI_LEVEL,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    test |= {
        "statistic": float(mwu.statistic),
        "p": float(mwu.pvalue),
        "difference": float(plain.mean() - residual.mean()),
        "ci_low": as_float(boot.low),
        "ci_high": as_float(boot.high),
        "resnet_ci_low": reference["resnet"]["ci_low"],
        "resnet_ci_high": reference["resnet"]["ci_high"],
        # the smallest p the test can reach with these sample sizes: its power ceiling
        "min_p": 1 / math.comb(len(plain) + len(residual), len(plain)),
    }
    graceful = test["resnet_ci_high"] is not None and test["resnet_ci_high"] < GRACEFUL
    pts = lambda v: f"{100 * v:.1f}"  # noqa: E731
    summary = (
        f"at depth {reference['depth']} one deleted block raises residual nets' test error by "
        f"{pts(test['resnet_rise'])} points on average, plain nets' by {pts(test['plain_rise'])}"
    )
    if test["p"] < alpha and graceful:
        verdict, reason = "holds", f"{summary} (Mann-Whitney p = {test['p']:.2g})"
    elif (test["resnet_ci_low"] or 0) >= GRACEFUL:
        verdict, reason = "does_not_hold", f"residual nets collapse too: {summary}"
    elif test["resnet_rise"] >= test["plain_rise"]:
        verdict, reason = "does_not_hold", f"residual nets degrade as much as plain nets: {summary}"
    else:
        verdict, reason = (
            "inconclusive",
            f"{summary}; not significant, or the residual rise not shown below {pts(GRACEFUL)} points",
        )
    return {"verdict": verdict, "reason": reason, **header, "depths": depths, "depth": reference["depth"], "test": test}
