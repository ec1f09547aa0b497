"""The norm-preservation verdict (Zaeemzadeh et al.): do residual blocks pass the gradient on with its
norm unchanged as the network gets deeper, where plain blocks do not?

Input: norms.csv (`study.measure.block_ratios`): every block's ratio ||dL/dx_in|| / ||dL/dx_out||
at initialization (the study's initial weights) and after training (each run's checkpoint).
Per network, the deviation from norm preservation is the mean over its blocks of |log10 ratio|.
The unit of replication is the seed (both twins' networks of one seed averaged: one network). Per
stage (init, trained) and seed, two paired quantities between the shallowest (d_min) and deepest
(d_max) depth both archs ran:

- ``residual_approaches``: the seed's residual deviation at d_max minus at d_min is below 0;
- ``plain_further``: at d_max, the seed's plain deviation minus its residual deviation is above 0.

Each a claim about the typical seed (the median), tested by an exact sign test
(`study.verdicts.signs`: valid whatever the distribution — skewed, heavy-tailed, identical runs; a
seed exactly at 0 counts against). *Holds* when all four (two per stage) are shown at alpha: an
intersection-union test, its error at most alpha with no correction. *Does not hold* when the opposite
of one is shown (residual deviation rising with depth, or residual above plain) at alpha over the
number of ways (Bonferroni; with two stages alpha/4, which needs at least 7 seeds at alpha 0.05).
Else *inconclusive*, with the seeds that would give the verdict as decided 80 % power.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.verdicts.common import as_float
from study.verdicts.signs import family_seeds, fewest_seeds, open_text, sign_test

STAGES = ("init", "trained")
CLAIMS = {  # test -> (direction it claims, opposite, what its opposite shows)
    "residual_approaches": ("below", "above", "residual blocks move away from ratio 1 with depth"),
    "plain_further": ("above", "below", "residual blocks are further from ratio 1 than plain"),
}


def deviation(norms: pd.DataFrame) -> pd.DataFrame:
    """Per network and stage: mean |log10 ratio| over its blocks (0: every block norm-preserving)."""
    frame = norms.dropna(subset=["ratio"]).assign(log_ratio=lambda f: np.abs(np.log10(f.ratio.astype(float))))
    keys = ["stage", "run_key", "backend", "arch", "depth", "seed"]
    return frame.groupby(keys, dropna=False).log_ratio.mean().rename("deviation").reset_index()


def _stage(data: pd.DataFrame, ratios: pd.Series, alpha: float, reversed_level: float) -> dict:
    summary = data.groupby(["arch", "depth"]).deviation.agg(["size", "mean", "median"])
    cells = [{"arch": arch, "depth": int(depth), "n": int(row["size"]), "deviation": float(row["mean"]),
              "median_deviation": float(row["median"]), "mean_ratio": as_float(ratios.get((arch, depth)))}
             for (arch, depth), row in summary.iterrows()]  # fmt: skip
    depths = sorted(set(data.depth[data.arch == "resnet"]) & set(data.depth[data.arch == "plain"]))
    entry = {"cells": cells, "tests": {}}
    if len(depths) < 2:
        entry["reason"] = "fewer than 2 depths with both archs"
        return entry
    low, high = depths[0], depths[-1]
    wide = data.pivot(index="seed", columns=["arch", "depth"], values="deviation")  # one row per seed
    quantities = {
        "residual_approaches": wide[("resnet", high)] - wide[("resnet", low)],
        "plain_further": wide[("plain", high)] - wide[("resnet", high)],
    }
    for name, values in quantities.items():
        values = values.dropna().to_numpy(float)
        direction, opposite, _ = CLAIMS[name]
        test = sign_test(values, 0.0, direction, alpha)
        against = sign_test(values, 0.0, opposite, reversed_level)
        test["reversed"] = {key: against[key] for key in ("beyond", "p", "level", "shown")}
        entry["tests"][name] = test | {"depths": [int(low), int(high)]}
    entry["tests"]["plain_further"] |= {
        "depth": int(high),
        "plain": as_float(wide[("plain", high)].median()),
        "resnet": as_float(wide[("resnet", high)].median()),
    }
    return entry


def norm_verdict(norms: pd.DataFrame | None, alpha: float = 0.05) -> dict:
    """Do residual blocks approach norm preservation with depth, and plain blocks not? (module docstring)"""
    header = {"alpha": alpha, "measure": "mean |log10(||dL/dx_in|| / ||dL/dx_out||)| over a network's blocks",
              "method": "exact sign tests on per-seed differences (the typical seed)"}  # fmt: skip
    if norms is None or norms.empty:
        return {"verdict": "inconclusive", "reason": "no block gradient data (norms.csv)", "settle": None, **header,
                "stages": {}}  # fmt: skip
    # The unit of replication is the seed: both twins' networks of one seed count once (their mean).
    networks = deviation(norms).groupby(["stage", "arch", "depth", "seed"], as_index=False).deviation.mean()
    present = [stage for stage in STAGES if (networks.stage == stage).any()]
    reversed_level = alpha / (len(CLAIMS) * max(1, len(present)))  # Bonferroni over the ways the claim can fail
    ratios = norms.groupby(["stage", "arch", "depth"]).ratio.median()
    stages = {stage: _stage(networks[networks.stage == stage], ratios[stage], alpha, reversed_level)
              for stage in present}  # fmt: skip
    return {**_decide(stages, alpha, reversed_level), **header, "stages": stages}


def _decide(stages: dict, alpha: float, reversed_level: float) -> dict:
    tested = {stage: entry["tests"] for stage, entry in stages.items() if entry["tests"]}
    if not tested or len(tested) < len(stages):
        return {"verdict": "inconclusive", "reason": "fewer than 2 depths with both archs at every stage",
                "settle": None}  # fmt: skip
    words = []
    for stage, tests in tested.items():
        trend, compare = tests["residual_approaches"], tests["plain_further"]
        low, high = trend["depths"]
        words.append(
            f"{stage}: residual deviation lower at depth {high} than at {low} in {trend['beyond']} of {trend['n']} "
            f"seeds (p = {trend['p']:.2g}); at depth {high} plain {compare['plain']:.3f} vs residual "
            f"{compare['resnet']:.3f} (medians), plain further in {compare['beyond']} of {compare['n']} seeds "
            f"(p = {compare['p']:.2g})"
        )
    summary = "; ".join(words)
    tests = [test for stage_tests in tested.values() for test in stage_tests.values()]
    if all(test["shown"] for test in tests):
        named = [(f"{name} ({stage})", test) for stage, stage_tests in tested.items()
                 for name, test in stage_tests.items()]  # fmt: skip
        label, weakest = max(named, key=lambda item: item[1]["tail_bound"])  # the claim that leaves the most open
        return {"verdict": "holds", "settle": None,
                "reason": f"residual blocks approach norm preservation with depth, plain blocks do not in the typical "
                          f"seed, each shown at alpha ({summary}); left open: "
                          + open_text(weakest, f"go the other way in {label}")}  # fmt: skip
    for name, (_, _, failure) in CLAIMS.items():
        if any(stage_tests[name]["reversed"]["shown"] for stage_tests in tested.values()):
            return {
                "verdict": "does_not_hold",
                "settle": None,
                "reason": f"{failure} in the typical seed, at alpha/{round(alpha / reversed_level)} ({summary})",
            }
    n = min(test["n"] for test in tests)
    floor = fewest_seeds(reversed_level)
    seeds = family_seeds(tests)
    settle = (f"about {seeds} seeds per cell would give the verdict as decided ({len(tests)} tests) 80 % power at the "
              "observed shares" if seeds else None)  # fmt: skip
    return {
        "verdict": "inconclusive",
        "settle": settle,
        "reason": f"not shown at alpha, nor its opposite ({summary})"
        + (f"; its opposite needs at least {floor} seeds to be shown at all" if n < floor else ""),
    }
