"""The training-budget verdict: is the deep plain net only slower, or does it stay behind?

Input: results.csv of a study whose grid varies the training budget (the ``budget`` config: depths 20
and 56, plain and residual, 15, 30 and 60 epochs). The unit of replication is the seed (both twins'
runs of one seed averaged where several twins ran). Per budget, the plain gap Δ (final training error
at the deepest minus the shallowest depth) and the same for residual nets, with Welch's standard
error, and the `study.verdicts.degradation` tests of the plain gap against the minimum effect m:

- *gap_persists*: the plain gap is shown above m at every budget (one-sided Welch, each at alpha:
  an intersection-union test) — within these budgets more training does not close it (the reason
  says whether it is closing);
- *gap_closes*: the plain gap is shown below m at the largest budget (one-sided Welch at alpha):
  given enough epochs the deep plain net catches up — it was only slower;
- *inconclusive*: neither.

It also reports how the gap changed from the smallest to the largest budget (a Welch difference of
the two gaps with its 95 % interval), which says whether it is closing. A study with one budget has
no answer here; `over_training` in the degradation verdict reads the same question from one budget's
epochs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.verdicts.common import MARGIN_EFFECT, Difference, as_float, per_seed

CONFIG = "budget"


def rise(frame: pd.DataFrame, metric: str, arch: str, depths: list[int]) -> Difference | None:
    """`arch`'s mean `metric` at depths[-1] minus at depths[0], with Welch's standard error (None with
    fewer than 2 runs at either depth)."""
    values = [frame.loc[(frame.arch == arch) & (frame.depth == d), metric].to_numpy(float) for d in depths]
    if min(len(v) for v in values) < 2:
        return None
    return Difference.of_means((1.0, values[-1]), (-1.0, np.asarray(values[0])))


def budget_verdict(results: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Is the deep plain net only slower? (see the module docstring)"""
    header = {"alpha": alpha, "margin_effect": MARGIN_EFFECT, "config": CONFIG, "metric": "final_train_error"}
    budgets = sorted(int(e) for e in results.epochs.unique()) if "epochs" in results else []
    depths = sorted(set(results.depth[results.arch == "plain"]) & set(results.depth[results.arch == "resnet"]))
    if len(budgets) < 2 or len(depths) < 2:
        reason = f"this study trains one budget; `resnet-study run --config {CONFIG}` trains 15, 30 and 60 epochs"
        return {"verdict": "inconclusive", "reason": reason, **header, "budgets": []}
    ends = (depths[0], depths[-1])
    seeds = per_seed(results, ["epochs", "arch", "depth"], "final_train_error")
    entries, gaps = [], {}
    for epochs in budgets:
        frame = seeds[seeds.epochs == epochs]
        plain, residual = (rise(frame, "final_train_error", arch, list(ends)) for arch in ("plain", "resnet"))
        entry = {"epochs": epochs, "depths": list(ends)}
        for arch, gap in (("plain", plain), ("resnet", residual)):
            entry[arch] = None if gap is None else gap.to_dict()
        if plain is not None:
            gaps[epochs] = plain
            entry["plain"] |= {"p_above": as_float(plain.p_above(MARGIN_EFFECT)),
                               "p_below": as_float(plain.p_below(MARGIN_EFFECT))}  # fmt: skip
        entries.append(entry)
    if len(gaps) < 2:
        return {"verdict": "inconclusive", "reason": "fewer than 2 seeds per cell", **header, "budgets": entries}
    first, last = gaps[min(gaps)], gaps[max(gaps)]
    change = Difference(last.estimate - first.estimate, math.hypot(first.se, last.se), min(first.df, last.df))
    header["change"] = {"from_epochs": min(gaps), "to_epochs": max(gaps), **change.to_dict()}
    pts = lambda v: f"{100 * v:.1f}"  # noqa: E731
    listing = "; ".join(f"{e} epochs: {pts(g.estimate)} [{pts(g.interval()[0])}, {pts(g.interval()[1])}]"
                        for e, g in gaps.items())  # fmt: skip
    numbers = f"plain gap (depth {ends[1]} − depth {ends[0]}, points): {listing}"
    m = pts(MARGIN_EFFECT)
    low, high = change.interval()
    trend = (f"; it is closing ({pts(change.estimate)} points from {min(gaps)} to {max(gaps)} epochs, 95 % CI "
             f"{pts(low)} to {pts(high)}): a larger budget may close it" if high < 0 else "")  # fmt: skip
    if all(g.p_above(MARGIN_EFFECT) < alpha for g in gaps.values()):
        verdict = "gap_persists"
        reason = f"the gap is shown above {m} points at every budget up to {max(gaps)} epochs; {numbers}{trend}"
    elif last.p_below(MARGIN_EFFECT) < alpha:
        verdict, reason = "gap_closes", f"the gap is shown below {m} points at {max(gaps)} epochs; {numbers}"
    else:
        verdict = "inconclusive"
        reason = f"neither shown at every budget nor closed at the largest; {numbers}{trend}"
    return {"verdict": verdict, "reason": reason, **header, "budgets": entries}
