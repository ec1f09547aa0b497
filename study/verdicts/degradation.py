"""The degradation verdict: does depth degrade plain nets, and not residual ones?

Input is ``results.csv``: one row per finished training run (`study.verdicts.inputs.load_results`).
Errors are fractions in [0, 1]; a diverged run is a failure at chance level. The unit of replication
is the seed: each backend's runs of one (arch, depth) cell are independent seeds.

The decision, per backend, on the final training error at the shallowest (d_min) and deepest (d_max)
depth that both archs ran, with `MARGIN_EFFECT` m = 2 points the smallest rise that counts:

- ``plain_rise``: H0 Δ_plain <= m against H1 Δ_plain > m (Δ = mean at d_max − mean at d_min);
- ``residual_flat``: H0 Δ_resnet >= m against H1 Δ_resnet < m (residual nets shown not to degrade);
- ``plain_flat``: H0 Δ_plain >= m against H1 Δ_plain < m;
- ``residual_rise``: H0 Δ_resnet <= m against H1 Δ_resnet > m;

each a one-sided Welch t-test (unequal variances; a difference of two constant cells is known exactly).
*Holds* when ``plain_rise`` and ``residual_flat`` are both shown at level alpha: an intersection-union
test, so the claim's error is at most alpha with no correction. *Does not hold* when ``plain_flat``
or ``residual_rise`` is shown at alpha/2 (Bonferroni over the two ways it can fail). Neither:
*inconclusive*, with the seeds per cell that would give the undecided test 80 % power at the observed
difference and spread. Overall: the backends' common verdict where they share "holds" or
"does_not_hold" (each backend's claim at alpha; all of them, again an intersection-union test), else
"inconclusive". The ``interaction`` (Δ_plain − Δ_resnet, Welch over four cells) is reported, not
decided on. The error rates of this procedure are measured by simulation (`tests/test_calibration.py`,
docs/design.md).

From history.csv, `over_training` adds whether the plain gap holds over training, not only at the
end: the same ``plain_rise`` test at every epoch, and the first epoch from which it is shown at every
later epoch (an intersection-union test again).

Every returned dict is JSON-serializable: plain floats/ints/str/bool/None, NaN written as None.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.core.spec import ARCHS
from study.verdicts.common import MARGIN_EFFECT, Difference, as_float, t_interval

POWER = 0.8  # for the seeds that would settle an inconclusive backend
MAX_SEEDS = 1000
CLAIMS = {  # test -> (arch, direction, what it shows)
    "plain_rise": ("plain", "above", "plain error rises by more than {m} points"),
    "residual_flat": ("resnet", "below", "residual error rises by less than {m} points"),
    "plain_flat": ("plain", "below", "plain error rises by less than {m} points"),
    "residual_rise": ("resnet", "above", "residual error rises by more than {m} points"),
}


def _cell(arch: str, depth: int, values: np.ndarray) -> dict:
    """Mean error of one (arch, depth) cell with its t interval (None if n < 2)."""
    low, high = t_interval(values)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"arch": arch, "depth": int(depth), "n": len(values), "mean": float(np.mean(values)), "std": std,
            "ci_low": low, "ci_high": high}  # fmt: skip


def rise(frame: pd.DataFrame, metric: str, arch: str, depths: list[int]) -> Difference | None:
    """`arch`'s mean `metric` at depths[-1] minus at depths[0], with Welch's standard error (None with
    fewer than 2 runs at either depth)."""
    values = [frame.loc[(frame.arch == arch) & (frame.depth == d), metric].to_numpy(float) for d in depths]
    if min(len(v) for v in values) < 2:
        return None
    return Difference.of_means((1.0, values[-1]), (-1.0, values[0]))


def _test(difference: Difference, direction: str, alpha: float) -> dict:
    m = MARGIN_EFFECT
    p = difference.p_above(m) if direction == "above" else difference.p_below(m)
    return {**difference.to_dict(), "threshold": m, "direction": direction, "p": as_float(p), "level": alpha,
            "shown": p < alpha}  # fmt: skip


def _seeds_to_settle(difference: Difference, n: int, direction: str, alpha: float) -> int | None:
    """Seeds per cell for `POWER` at the observed difference and spread (None: not within MAX_SEEDS,
    or the observed difference lies on the other side of the threshold)."""
    m = MARGIN_EFFECT
    if difference.se == 0 or (difference.estimate - m) * (1 if direction == "above" else -1) <= 0:
        return None
    for seeds in range(n, MAX_SEEDS + 1):
        scaled = Difference(difference.estimate, difference.se * math.sqrt(n / seeds), difference.df * seeds / n)
        true = difference.estimate if direction == "above" else 2 * m - difference.estimate  # mirrored
        if scaled.power_above(m, alpha, true) >= POWER:
            return seeds
    return None


def _backend(frame: pd.DataFrame, metric: str, alpha: float) -> dict:
    """One backend's entry: cells, tests and its verdict (see the module docstring)."""
    depths_of = {arch: set(frame.depth[frame.arch == arch]) for arch in ARCHS}
    common = sorted(depths_of["plain"] & depths_of["resnet"])
    cells = [_cell(arch, depth, g[metric].to_numpy(float)) for (arch, depth), g in frame.groupby(["arch", "depth"])]
    entry = {"verdict": "inconclusive", "reason": None, "settle": None, "depths": [int(d) for d in common],
             "cells": cells, "tests": {}}  # fmt: skip
    used = frame[frame.depth.isin(common)]
    seeds = used.groupby(["arch", "depth"]).seed.nunique()
    thin = [f"{arch}-{depth}" for (arch, depth), count in seeds.items() if count < 2]
    if missing := [arch for arch in ARCHS if not depths_of[arch]]:
        entry["reason"] = f"no {' or '.join(missing)} runs"
        return entry
    if len(common) < 2:
        entry["reason"] = "fewer than 2 depths with both plain and resnet runs"
        return entry
    if thin:
        entry.update(reason=f"fewer than 2 seeds in {', '.join(thin)}", settle="at least 2 seeds per cell")
        return entry
    ends = [common[0], common[-1]]
    rises = {arch: rise(used, metric, arch, ends) for arch in ARCHS}
    tests = {name: _test(rises[arch], direction, alpha if name in ("plain_rise", "residual_flat") else alpha / 2)
             for name, (arch, direction, _) in CLAIMS.items()}  # fmt: skip
    interaction = Difference(
        rises["plain"].estimate - rises["resnet"].estimate,
        math.hypot(rises["plain"].se, rises["resnet"].se),
        _pooled_df(rises["plain"], rises["resnet"]),
    )
    tests["interaction"] = {**interaction.to_dict(), "p": as_float(interaction.p_above(0.0))}
    entry["tests"] = tests
    entry["verdict"], entry["reason"], entry["settle"] = _decide(tests, rises, used, ends, alpha)
    return entry


def _pooled_df(a: Difference, b: Difference) -> float:
    """Welch-Satterthwaite df of a sum of two independent Welch differences."""
    if a.se == 0 and b.se == 0:
        return math.inf
    parts = [(d.se**2, d.df) for d in (a, b) if d.se > 0]
    return sum(v for v, _ in parts) ** 2 / sum(v**2 / df for v, df in parts)


def _pts(value: float) -> str:
    return f"{100 * value:.1f}"


def _decide(tests: dict, rises: dict, used: pd.DataFrame, ends: list[int], alpha: float) -> tuple:
    m = _pts(MARGIN_EFFECT)
    plain, residual = rises["plain"], rises["resnet"]
    numbers = (
        f"from depth {ends[0]} to {ends[1]} plain error rises {_pts(plain.estimate)} points "
        f"[{_pts(tests['plain_rise']['ci_low'])}, {_pts(tests['plain_rise']['ci_high'])}], residual "
        f"{_pts(residual.estimate)} [{_pts(tests['residual_flat']['ci_low'])}, "
        f"{_pts(tests['residual_flat']['ci_high'])}]"
    )
    if tests["plain_rise"]["shown"] and tests["residual_flat"]["shown"]:
        return (
            "holds",
            (
                f"{numbers}: plain nets degrade by more than {m} points (p = {tests['plain_rise']['p']:.2g}), residual "
                f"nets by less (p = {tests['residual_flat']['p']:.2g})"
            ),
            None,
        )
    failed = [CLAIMS[name][2].format(m=m) for name in ("plain_flat", "residual_rise") if tests[name]["shown"]]
    if failed:
        return "does_not_hold", f"{numbers}: {' and '.join(failed)} (each at alpha/2)", None
    open_tests = [name for name in ("plain_rise", "residual_flat") if not tests[name]["shown"]]
    n = int(used.groupby(["arch", "depth"]).seed.nunique().min())
    needs = []
    for name in open_tests:
        arch, direction, _ = CLAIMS[name]
        seeds = _seeds_to_settle(rises[arch], n, direction, alpha)
        needs.append(
            f"{name}: about {seeds} seeds per cell would give it 80 % power at the observed difference and spread"
            if seeds
            else f"{name}: the observed difference lies on the other side of {m} points, or more than "
            f"{MAX_SEEDS} seeds would be needed"
        )
    reason = f"{numbers}: not shown that {' and that '.join(CLAIMS[t][2].format(m=m) for t in open_tests)}"
    return "inconclusive", reason, "; ".join(needs)


def over_training(history: pd.DataFrame | None, backend: str, depths: list[int], alpha: float,
                  metric: str = "train_error") -> dict | None:  # fmt: skip
    """The plain gap (deepest − shallowest depth) at every epoch, tested as ``plain_rise``; and the
    first epoch from which it is shown at every later epoch (None: not at the end either)."""
    if history is None or len(depths) < 2:
        return None
    runs = history[history.backend == backend].dropna(subset=[metric])
    epochs = []
    for epoch, group in runs.groupby("epoch"):
        gap = rise(group, metric, "plain", [depths[0], depths[-1]])
        if gap is None:
            continue
        test = _test(gap, "above", alpha)
        epochs.append({"epoch": int(epoch), **{k: test[k] for k in ("estimate", "ci_low", "ci_high", "p", "shown")}})
    shown_from = None
    for entry in reversed(epochs):
        if not entry["shown"]:
            break
        shown_from = entry["epoch"]
    return {"metric": metric, "depths": [int(depths[0]), int(depths[-1])], "threshold": MARGIN_EFFECT,
            "epochs": epochs, "shown_from_epoch": shown_from,
            "last_epoch": epochs[-1]["epoch"] if epochs else None}  # fmt: skip


def degradation(results: pd.DataFrame, alpha: float = 0.05, metric: str = "final_train_error",
                history: pd.DataFrame | None = None) -> dict:  # fmt: skip
    """Does depth raise plain-net error (and not residual-net error)? One verdict per backend and overall
    (see the module docstring)."""
    backends = {}
    for backend in sorted(results.backend.unique()):
        entry = _backend(results[results.backend == backend], metric, alpha)
        entry["over_training"] = over_training(history, backend, entry["depths"], alpha)
        backends[backend] = entry
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
    return {"verdict": verdict, "reason": reason, "metric": metric, "alpha": alpha, "margin_effect": MARGIN_EFFECT,
            "backends": backends}  # fmt: skip
