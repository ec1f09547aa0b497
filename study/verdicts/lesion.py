"""The lesion verdict (Veit et al. 2016): do residual nets degrade gracefully where plain nets collapse?

Input: lesion.csv (`study.measure.lesion`): every trained network's test error intact, with each
block deleted in turn, and with k random blocks deleted. The unit of replication is the seed: the
twins' networks of one seed (same initial weights, same batches) count as one network, their values
averaged. At the deepest depth whose plain nets learned (mean intact test error below `LEARNED`),
per seed the mean rise of test error over single-block deletions, and:

- ``difference``: plain rise > residual rise (one-sided Mann-Whitney over the seeds);
- ``graceful``: H0 residual rise >= `GRACEFUL` against H1 below it (one-sided t);
- ``collapse``: H0 residual rise <= `GRACEFUL` against H1 above it (one-sided t);
- ``reversed``: residual rise > plain rise (one-sided Mann-Whitney).

*Holds* when ``difference`` and ``graceful`` are shown at alpha (an intersection-union test);
*does not hold* when ``collapse`` or ``reversed`` is shown at alpha/2 (Bonferroni over the two);
else *inconclusive*.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from study.verdicts.common import LEARNED, Difference, per_seed, t_interval

GRACEFUL = 0.10  # residual nets degrade gracefully: mean rise of test error per deleted block below 10 points


def network_rises(lesion: pd.DataFrame) -> pd.DataFrame:
    """Per network: intact error and the mean rise of test error over single-block deletions."""
    intact = lesion[lesion.kind == "intact"].set_index("run_key").test_error.rename("intact_error")
    single = lesion[lesion.kind == "single"].groupby("run_key").test_error.mean().rename("lesioned_error")
    ident = lesion.drop_duplicates("run_key").set_index("run_key")[["backend", "arch", "depth", "seed"]]
    table = ident.join(intact).join(single, how="inner")
    table["rise"] = table.lesioned_error - table.intact_error
    return table.reset_index()


def _depth_entry(depth: int, seeds: pd.DataFrame) -> dict:
    entry = {"depth": int(depth)}
    for arch, cell in seeds.groupby("arch"):
        low, high = t_interval(cell.rise.to_numpy(float))
        entry[arch] = {"n": len(cell), "intact_error": float(cell.intact_error.mean()), "rise": float(cell.rise.mean()),
                       "ci_low": low, "ci_high": high}  # fmt: skip
    return entry


def _tests(plain: np.ndarray, residual: np.ndarray, alpha: float) -> dict:
    one = Difference.of_means((1.0, residual))
    mwu = stats.mannwhitneyu(plain, residual, alternative="greater")
    reversed_ = stats.mannwhitneyu(residual, plain, alternative="greater")
    difference = Difference.of_means((1.0, plain), (-1.0, residual))
    low, high = difference.interval()
    return {
        "difference": {"p": float(mwu.pvalue), "statistic": float(mwu.statistic), "estimate": difference.estimate,
                       "ci_low": low, "ci_high": high, "level": alpha},
        "graceful": {"p": one.p_below(GRACEFUL), "threshold": GRACEFUL, "level": alpha},
        "collapse": {"p": one.p_above(GRACEFUL), "threshold": GRACEFUL, "level": alpha / 2},
        "reversed": {"p": float(reversed_.pvalue), "level": alpha / 2},
        # the smallest p a Mann-Whitney test can reach with these sample sizes: its power ceiling
        "min_p": 1 / math.comb(len(plain) + len(residual), len(plain)),
    }  # fmt: skip


def lesion_verdict(lesion: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Do residual nets degrade gracefully where plain nets collapse? (see the module docstring)"""
    header = {"alpha": alpha, "graceful": GRACEFUL, "learned": LEARNED, "unit": "seed (twins averaged)",
              "method": "one-sided Mann-Whitney U and one-sided t against the graceful bound"}  # fmt: skip
    if lesion is None or lesion.empty:
        return {"verdict": "inconclusive", "reason": "no lesion data (lesion.csv)", **header, "depths": []}
    networks = network_rises(lesion)
    seeds = per_seed(networks, ["arch", "depth"], "rise").merge(
        per_seed(networks, ["arch", "depth"], "intact_error"), on=["arch", "depth", "seed"]
    )
    depths = [_depth_entry(depth, group) for depth, group in seeds.groupby("depth")]
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
    cell = seeds[seeds.depth == reference["depth"]]
    plain, residual = (cell[cell.arch == a].rise.to_numpy(float) for a in ("plain", "resnet"))
    test = {"depth": reference["depth"], "n_plain": len(plain), "n_resnet": len(residual),
            "plain_rise": float(plain.mean()), "resnet_rise": float(residual.mean()),
            "resnet_ci_low": reference["resnet"]["ci_low"],
            "resnet_ci_high": reference["resnet"]["ci_high"]}  # fmt: skip
    if len(plain) < 2 or len(residual) < 2:
        return {"verdict": "inconclusive", "reason": "fewer than 2 seeds per arch", **header, "depths": depths,
                "depth": reference["depth"], "test": test}  # fmt: skip
    test |= _tests(plain, residual, alpha)
    verdict, reason = _decide(test, alpha)
    return {"verdict": verdict, "reason": reason, **header, "depths": depths, "depth": reference["depth"], "test": test}


def _decide(test: dict, alpha: float) -> tuple[str, str]:
    pts = lambda v: f"{100 * v:.1f}"  # noqa: E731
    summary = (
        f"at depth {test['depth']} one deleted block raises residual nets' test error by "
        f"{pts(test['resnet_rise'])} points on average, plain nets' by {pts(test['plain_rise'])} "
        f"({test['n_resnet']} and {test['n_plain']} seeds)"
    )
    shown = {name: test[name]["p"] < test[name]["level"] for name in ("difference", "graceful", "collapse", "reversed")}
    if shown["difference"] and shown["graceful"]:
        return "holds", (
            f"{summary}; plain rise larger (Mann-Whitney p = {test['difference']['p']:.2g}), residual rise below "
            f"{pts(GRACEFUL)} points (p = {test['graceful']['p']:.2g})"
        )
    if shown["collapse"]:
        return (
            "does_not_hold",
            f"residual nets collapse too: {summary} (above {pts(GRACEFUL)}, p = {test['collapse']['p']:.2g})",
        )
    if shown["reversed"]:
        return "does_not_hold", f"residual nets degrade more than plain nets: {summary}"
    missing = [what for name, what in (("difference", "the plain rise larger"),
               ("graceful", f"the residual rise below {pts(GRACEFUL)} points")) if not shown[name]]  # fmt: skip
    note = f" (with {test['n_plain']} and {test['n_resnet']} seeds the test's smallest p is {test['min_p']:.2g})"
    return "inconclusive", f"{summary}; not shown: {' and '.join(missing)}" + (note if test["min_p"] >= alpha else "")
