"""The degradation verdict: does depth degrade plain nets, and not residual ones?

Input is ``results.csv``: one row per finished training run (`study.verdicts.inputs.load_results`).
Errors are fractions in [0, 1]; a diverged run is a failure at chance level. The unit of replication
is the seed: per backend, seed s's rise is its error at the deepest depth (d_max) minus its error at
the shallowest (d_min) that both archs ran (the seed's two networks share its data order), with
`MARGIN_EFFECT` m = 2 points the smallest rise that counts. Every claim is about the typical seed
(the median rise), tested by an exact sign test (`study.verdicts.signs`: valid whatever the
distribution of the rises — skewed, heavy-tailed, bimodal, rare failures, identical runs):

- ``plain_rise``: more than half of all seeds' plain rises exceed m (H0: median <= m);
- ``residual_flat``: more than half of all seeds' residual rises stay below m (H0: median >= m);
- ``plain_flat``: plain rises below m; ``residual_rise``: residual rises above m.

*Holds* when ``plain_rise`` and ``residual_flat`` are both shown at level alpha: an intersection-union
test, so the claim's error is at most alpha with no correction. *Does not hold* when ``plain_flat``
or ``residual_rise`` is shown at alpha/2 (Bonferroni over the two ways it can fail; with the sign
test that needs at least 6 seeds at alpha 0.05). Neither: *inconclusive*, with the seeds that would
give the open test 80 % power at the observed share of seeds beyond m. Every claim states what its
seeds leave open: the share of seeds on the other side they cannot exclude (5 of 5 residual seeds
flat do not exclude that up to 45 % of seeds rise — rare failures included). Overall: the backends'
common verdict where they share "holds" or "does_not_hold" (each backend's claim at alpha; all of
them, again an intersection-union test), else "inconclusive". The means, with their t intervals
(which assume normality), are reported beside the medians, not decided on; so is the
``interaction`` (the seeds' plain rise minus their residual rise). The error rates of this procedure
are measured by simulation (`tests/test_calibration.py`, docs/design.md).

From history.csv, `over_training` adds whether the plain gap holds over training, not only at the
end: the same ``plain_rise`` test at every epoch, and the first epoch from which it is shown at every
later epoch (an intersection-union test again).

Every returned dict is JSON-serializable: plain floats/ints/str/bool/None, NaN written as None.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.core.spec import ARCHS
from study.verdicts.common import MARGIN_EFFECT, t_interval
from study.verdicts.signs import family_seeds, median_interval, open_text, sign_test

CLAIMS = {  # test -> (arch, direction, what it shows)
    "plain_rise": ("plain", "above", "plain error rises by more than {m} points"),
    "residual_flat": ("resnet", "below", "residual error rises by less than {m} points"),
    "plain_flat": ("plain", "below", "plain error rises by less than {m} points"),
    "residual_rise": ("resnet", "above", "residual error rises by more than {m} points"),
}
OPEN = {"plain_rise": "rise by {m} points or less", "residual_flat": "rise by {m} points or more"}


def _cell(arch: str, depth: int, values: np.ndarray) -> dict:
    """One (arch, depth) cell: its mean error with the t interval (which assumes normality) and its
    median with the distribution-free interval (`study.verdicts.signs.median_interval`)."""
    low, high = t_interval(values)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    m_low, m_high, coverage = median_interval(values)
    return {"arch": arch, "depth": int(depth), "n": len(values), "mean": float(np.mean(values)), "std": std,
            "ci_low": low, "ci_high": high, "median": float(np.median(values)), "median_ci_low": m_low,
            "median_ci_high": m_high, "median_ci_coverage": coverage}  # fmt: skip


def seed_rises(frame: pd.DataFrame, metric: str, arch: str, depths: list[int]) -> pd.Series:
    """Per seed that ran both depths (the index): its `metric` at depths[-1] minus at depths[0] (one
    run per seed and cell: a backend's)."""
    cells = frame[frame.arch == arch]
    deep, shallow = (cells[cells.depth == d].groupby("seed")[metric].mean() for d in (depths[-1], depths[0]))
    return (deep - shallow).dropna().astype(float)


def _test(rises: pd.Series, direction: str, level: float) -> dict:
    test = sign_test(rises.to_numpy(float), MARGIN_EFFECT, direction, level)
    low, high = t_interval(rises.to_numpy(float))
    return test | {"mean_ci_low": low, "mean_ci_high": high}


def _backend(frame: pd.DataFrame, metric: str, alpha: float) -> dict:
    """One backend's entry: cells, tests and its verdict (see the module docstring)."""
    depths_of = {arch: set(frame.depth[frame.arch == arch]) for arch in ARCHS}
    common = sorted(depths_of["plain"] & depths_of["resnet"])
    cells = [_cell(arch, depth, g[metric].to_numpy(float)) for (arch, depth), g in frame.groupby(["arch", "depth"])]
    entry = {"verdict": "inconclusive", "reason": None, "settle": None, "depths": [int(d) for d in common],
             "cells": cells, "tests": {}}  # fmt: skip
    if missing := [arch for arch in ARCHS if not depths_of[arch]]:
        entry["reason"] = f"no {' or '.join(missing)} runs"
        return entry
    if len(common) < 2:
        entry["reason"] = "fewer than 2 depths with both plain and resnet runs"
        return entry
    ends = [common[0], common[-1]]
    rises = {arch: seed_rises(frame, metric, arch, ends) for arch in ARCHS}
    if thin := [arch for arch in ARCHS if len(rises[arch]) < 2]:
        entry.update(reason=f"fewer than 2 seeds ran both depth {ends[0]} and {ends[1]} ({', '.join(thin)})",
                     settle="at least 2 seeds per cell")  # fmt: skip
        return entry
    tests = {name: _test(rises[arch], direction, alpha if name in ("plain_rise", "residual_flat") else alpha / 2)
             for name, (arch, direction, _) in CLAIMS.items()}  # fmt: skip
    both = (rises["plain"] - rises["resnet"]).dropna().to_numpy(float)  # seed by seed
    tests["interaction"] = {k: v for k, v in sign_test(both, 0.0, "above", alpha).items()
                            if k not in ("shown", "seeds_needed", "level")}  # fmt: skip
    entry["tests"] = tests
    entry["verdict"], entry["reason"], entry["settle"] = _decide(tests, ends, alpha)
    return entry


def _pts(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _decide(tests: dict, ends: list[int], alpha: float) -> tuple:
    m = _pts(MARGIN_EFFECT)

    def rise_text(test: dict) -> str:
        return (f"{_pts(test['estimate'])} points in the median seed [{_pts(test['ci_low'])}, {_pts(test['ci_high'])}; "
                f"{100 * test['ci_coverage']:.1f} % distribution-free], {test['beyond']} of {test['n']} seeds "
                f"{'above' if test['direction'] == 'above' else 'below'} {m}")  # fmt: skip

    plain, residual = tests["plain_rise"], tests["residual_flat"]
    numbers = f"from depth {ends[0]} to {ends[1]} plain error rises {rise_text(plain)}; residual {rise_text(residual)}"
    if plain["shown"] and residual["shown"]:
        left_open = "; ".join(open_text(tests[name], OPEN[name].format(m=m)) for name in OPEN)
        return (
            "holds",
            f"{numbers}: plain nets degrade by more than {m} points in the typical seed (sign test p = "
            f"{plain['p']:.2g}), residual nets by less (p = {residual['p']:.2g}); left open: {left_open}",
            None,
        )
    failed = [CLAIMS[name][2].format(m=m) for name in ("plain_flat", "residual_rise") if tests[name]["shown"]]
    if failed:
        return "does_not_hold", f"{numbers}: {' and '.join(failed)} in the typical seed (each at alpha/2)", None
    open_tests = [name for name in ("plain_rise", "residual_flat") if not tests[name]["shown"]]
    needs = []
    for name in open_tests:
        test = tests[name]
        if test["seeds_needed"]:
            needs.append(f"{name}: about {test['seeds_needed']} seeds would give it 80 % power at the observed share "
                         f"of seeds beyond {m} points ({test['beyond']} of {test['n']})")  # fmt: skip
        else:
            needs.append(f"{name}: no more than half the seeds lie beyond {m} points ({test['beyond']} of "
                         f"{test['n']}): more seeds would not show it")  # fmt: skip
    reason = (f"{numbers}: not shown that {' and that '.join(CLAIMS[t][2].format(m=m) for t in open_tests)} in the "
              "typical seed")  # fmt: skip
    return "inconclusive", reason, "; ".join(needs)


def over_training(history: pd.DataFrame | None, backend: str, depths: list[int], alpha: float,
                  metric: str = "train_error") -> dict | None:  # fmt: skip
    """The plain gap (deepest − shallowest depth, per seed) at every epoch, tested as ``plain_rise``;
    and the first epoch from which it is shown at every later epoch (None: not at the end either)."""
    if history is None or len(depths) < 2:
        return None
    runs = history[history.backend == backend].dropna(subset=[metric])
    epochs = []
    for epoch, group in runs.groupby("epoch"):
        gap = seed_rises(group, metric, "plain", [depths[0], depths[-1]])
        if len(gap) < 2:
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
    settle = None if verdict != "inconclusive" else as_decided(backends)
    return {"verdict": verdict, "reason": reason, "settle": settle, "metric": metric, "alpha": alpha,
            "margin_effect": MARGIN_EFFECT,
            "method": "exact sign tests on the per-seed rise (the typical seed; study.verdicts.signs)",
            "backends": backends}  # fmt: skip


def as_decided(backends: dict, wanted: float = 0.8) -> str | None:
    """The seeds that give "holds" as it is decided — `plain_rise` and `residual_flat` of every backend
    — `wanted` power at the observed shares (`study.verdicts.signs.family_seeds`). None where a test's
    typical seed lies on the other side (no seeds would show it)."""
    tests = [entry["tests"][name] for entry in backends.values() if entry.get("tests") for name in OPEN]
    if not tests or len(tests) < 2 * len(backends):
        return None
    seeds = family_seeds(tests, wanted)
    if seeds is None:
        return None
    return (f"about {seeds} seeds per cell would give the verdict as decided ({len(tests)} tests: plain_rise and "
            f"residual_flat of every backend) {100 * wanted:.0f} % power at the observed shares")  # fmt: skip
