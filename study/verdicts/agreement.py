"""Do the twins agree? Exactness (the float64 replay) first, then equivalence of the float32 outcomes.

Two levels of evidence, one verdict (docs/design.md, "How the verdicts are reached"):

1. **Exactness** (exactness.json, `study.measure.exactness`): the study's recipe replayed by every
   twin in float64 from the same weights on the same batches. The verdict judges it itself: every
   recorded error of every network of a pair against the product's tolerance
   (`study.files.EXACTNESS_TOLERANCE`), whatever the file says; a pair the replay did not cover has
   no exactness evidence.
2. **Outcomes**, per (arch, depth) cell, pair of backends and metric (final train and test error),
   from the float32 study runs. The unit of replication is the seed: both twins trained a network of
   each seed from the same initial weights on the same batches, so the seed's two runs are one pair,
   and the test is on the per-seed differences d_s = a_s − b_s (a paired t-test: valid whatever the
   correlation between the twins' runs, which is reported). Three tests per cell and metric:
   equivalence (TOST, H0 |Δ| >= margin), difference beyond the margin (H0 |Δ| <= margin: the two
   one-sided tests, Bonferroni over the two) and plain difference (two-sided); each is Holm-corrected
   over all cells and metrics (K tests).
3. **Divergence**: a diverged run is a failure at chance level (`study.verdicts.inputs`), and the
   seeds where exactly one twin diverged are tested for asymmetry (exact two-sided sign test over all
   cells of a pair).

Per cell: *equivalent* (TOST after Holm), *differs* (beyond the margin after Holm), *undecided*
(neither, or fewer than two seeds both twins ran). Every undecided cell states `bound` (the
differences it excludes at the family's level alpha/K, at most 100 points), `mdd` (the smallest
difference its "differs" test would detect with 80 % power at level alpha/K, the first step of Holm,
so at least that power) and `seeds_needed` (seeds for 80 % power of its TOST at level alpha/K, given
the observed spread of the differences).

Overall: *disagree* when a replay failed, a cell differs, or the twins diverge asymmetrically;
*agree* only when every pair's replay passed and every cell is equivalent; *exact_outcomes_undecided*
when the replays passed and no cell differs but some are undecided (named, with their bounds and
what would settle them); *inconclusive* otherwise (a pair without a replay, one backend, no cell run
by two backends).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

from study.core.twin import BACKENDS
from study.files import EXACTNESS_TOLERANCE
from study.verdicts.common import CI_LEVEL, as_float, holm

METRICS = ("final_train_error", "final_test_error")
POWER = 0.8  # of the detectable difference and the seeds that would settle a cell
MAX_SEEDS = 10_000


def cell_label(cell: dict, pairs: list, joiner: str = " vs ") -> str:
    """A cell's name, e.g. "plain-56"; in a study with more than one pair of backends also its pair,
    "plain-56 (keras vs lightning)" (the report joins with " − ": first minus second)."""
    name = f"{cell['arch']}-{cell['depth']}"
    return name + (f" ({joiner.join(cell['backends'])})" if len(pairs) > 1 else "")


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(96)  # Gauss-Legendre on [-1, 1]


def tost_power(sd: float, n: int, margin: float, level: float, true: float = 0.0) -> float:
    """Exact power of the paired TOST at `level` (equivalence within ±margin) with n pairs whose
    differences have standard deviation `sd` and mean `true`: the probability that
    |mean| + t(1 − level, n − 1) · s/√n < margin, over the sampling distributions of the mean (normal)
    and of s (chi). Integrated over the quantiles of s² (Gauss-Legendre), so it stays exact for any n."""
    if n < 2:
        return 0.0
    if sd == 0:
        return float(abs(true) < margin)
    df, scale = n - 1, sd / math.sqrt(n)
    critical = stats.t.ppf(1 - level, df)
    limit = df * (margin / (critical * scale)) ** 2  # s² · df / sd² beyond this cannot pass, whatever the mean
    top = stats.chi2.cdf(limit, df)
    if top == 0:
        return 0.0
    u = (_NODES + 1) * top / 2  # quantiles of the chi-square up to the limit
    x = stats.chi2.ppf(u, df)
    half = np.maximum(margin - critical * scale * np.sqrt(x / df), 0.0)
    inside = stats.norm.cdf((half - true) / scale) - stats.norm.cdf((-half - true) / scale)
    return float(min(1.0, top / 2 * np.dot(_WEIGHTS, inside)))


def seeds_needed(sd: float, margin: float, level: float, power: float = POWER) -> int | None:
    """The fewest pairs for which the paired TOST at `level` has `power` at a true difference of 0
    (None: more than MAX_SEEDS). The power grows with the pairs: a bisection."""
    if sd == 0:
        return 2
    if tost_power(sd, MAX_SEEDS, margin, level) < power:
        return None
    low, high = 1, MAX_SEEDS  # power(low) < power <= power(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if tost_power(sd, mid, margin, level) >= power else (mid, high)
    return high


def beyond_mdd(sd: float, n: int, margin: float, level: float, power: float = POWER) -> float:
    """The smallest |Δ| that the "beyond the margin" test (each one-sided test at level/2) detects with
    `power`: margin + δ·se, δ the noncentrality at which the noncentral t passes the critical value
    with that probability."""
    df, se = n - 1, sd / math.sqrt(n)
    critical = stats.t.ppf(1 - level / 2, df)
    gap = lambda nc: stats.nct.sf(critical, df, nc) - power  # noqa: E731
    high = critical + 20.0
    while gap(high) < 0:  # few degrees of freedom: a heavy tail, so look further
        if high > 1e6:
            return math.inf
        high *= 4
    return margin + optimize.brentq(gap, 0.0, high, xtol=1e-10) * se


def paired_test(d: np.ndarray, margin: float, alpha: float, family: int, power: bool = True) -> dict:
    """The tests of one cell and metric on the per-seed differences `d` (see the module docstring);
    without `power`, the p-values alone (what a simulation of the procedure needs)."""
    n = len(d)
    level = alpha / max(1, family)  # Holm's first step: the power stated is at least the procedure's
    out = {"n": n, "mean_diff": float(d.mean()) if n else None, "sd": None, "se": None, "df": None}
    out |= dict.fromkeys(("ci_low", "ci_high", "p_tost", "p_diff", "p_beyond", "bound", "mdd", "tost_power"))
    out["tost_power_at_alpha"] = None
    out |= {"seeds_needed": None, "level": level, "note": None}
    if n < 2:
        out["note"] = "fewer than 2 seeds run by both twins"
        return out
    diff, sd = float(d.mean()), float(d.std(ddof=1))
    se, df = sd / math.sqrt(n), n - 1
    out |= {"sd": sd, "se": se, "df": float(df), "seeds_needed": seeds_needed(sd, margin, level) if power else None}
    if se == 0:  # the twins' difference is the same for every seed: known exactly
        beyond = abs(diff) > margin
        out |= {
            "ci_low": diff,
            "ci_high": diff,
            "bound": min(1.0, abs(diff)),
            "mdd": margin,
            "tost_power": 1.0,
            "tost_power_at_alpha": 1.0,
        }
        out |= {"p_tost": float(beyond), "p_diff": float(diff == 0), "p_beyond": float(not beyond)}
        out["note"] = "identical in every run" if diff == 0 else "the same difference in every seed"
        return out
    t = stats.t(df)
    half = float(t.ppf(0.5 + CI_LEVEL / 2)) * se
    out |= {
        "ci_low": diff - half,
        "ci_high": diff + half,
        "p_tost": float(max(t.sf((diff + margin) / se), t.cdf((diff - margin) / se))),
        "p_diff": float(2 * t.sf(abs(diff) / se)),
        "p_beyond": float(min(1.0, 2 * min(t.sf((diff - margin) / se), t.cdf((diff + margin) / se)))),
        "bound": float(min(1.0, abs(diff) + t.ppf(1 - level) * se)),
    }
    if power:
        out |= {
            "mdd": as_float(beyond_mdd(sd, n, margin, level)),
            "tost_power": tost_power(sd, n, margin, level),  # at least this: Holm's first step
            "tost_power_at_alpha": tost_power(sd, n, margin, alpha),  # at most this: Holm's last step
        }
    return out


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of the twins' values over their common seeds (None with fewer than 3 or no spread)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(stats.pearsonr(a, b).statistic)


def _cell_verdict(tests: dict, alpha: float, margin: float) -> tuple[str, str]:
    pts = lambda v: f"{100 * v:.1f}"  # noqa: E731 (error fractions as percentage points)
    if undecided := [m for m, t in tests.items() if t["p_tost"] is None]:
        return "undecided", f"fewer than 2 seeds run by both twins ({', '.join(undecided)})"
    if differ := [m for m, t in tests.items() if t["p_beyond_holm"] < alpha]:
        return "differs", "; ".join(
            f"{m}: difference {pts(tests[m]['mean_diff'])} points, beyond ±{pts(margin)} "
            f"(p = {tests[m]['p_beyond_holm']:.2g})"
            for m in differ
        )
    if all(t["p_tost_holm"] < alpha for t in tests.values()):
        if all(t["note"] == "identical in every run" for t in tests.values()):
            return "equivalent", "identical in every run"
        return "equivalent", f"equivalent within ±{pts(margin)} points (paired TOST, Holm)"
    open_metrics = [m for m, t in tests.items() if t["p_tost_holm"] >= alpha]

    def what(t: dict) -> str:
        excluded = "nothing excluded" if t["bound"] >= 1 else f"differences beyond ±{pts(t['bound'])} points excluded"
        seeds = f"about {t['seeds_needed']}" if t["seeds_needed"] else f"more than {MAX_SEEDS}"
        detects = "no difference detectable" if t["mdd"] is None else f"detectable difference {pts(t['mdd'])} points"
        return (f"{excluded}, {detects}; {seeds} seeds would settle "
                f"±{pts(margin)}")  # fmt: skip

    return "undecided", "; ".join(f"{m}: not shown within ±{pts(margin)}; {what(tests[m])}" for m in open_metrics)


def _seeds_to_settle(cell: dict) -> str:
    """What would settle an undecided cell, and its cost: the seeds for 80 % TOST power (the most any
    metric needs), the runs that adds to both twins, and their training time at the cell's own measured
    time per run (where results.csv has it)."""
    tests = cell["tests"].values()
    if any(t["n"] < 2 for t in tests):
        return "at least 2 seeds run by both twins"
    needed = [t["seeds_needed"] for t in tests]
    if not all(needed):
        return f"more than {MAX_SEEDS} seeds"
    seeds = max(needed)
    runs = 2 * max(0, seeds - min(t["n"] for t in tests))
    cost = f"; {runs} more runs" + (
        f", ~{runs * cell['wall_s'] / 60:.0f} min of training at its {cell['wall_s']:.0f} s per run"
        if cell.get("wall_s") else ""
    )  # fmt: skip
    return f"about {seeds} seeds{cost}"


def replay_status(exactness: dict | None, pairs: list[tuple[str, str]]) -> dict:
    """Per pair of backends: "passed" (every recorded error of every replayed network within the
    product's tolerance), "failed" (one beyond it), "missing" (the replay does not cover the pair)."""
    status, worst = {}, {}
    for pair in pairs:
        errors = []
        for network in (exactness or {}).get("networks", []):
            for entry in network["pairs"]:
                if set(entry["backends"]) == set(pair):
                    errors += [(math.inf if v == "inf" else float(v), q, network["spec"])
                               for q, v in entry["errors"].items()]  # fmt: skip
        if not errors:
            status[pair] = "missing"
            continue
        worst[pair] = max(errors)
        status[pair] = "passed" if worst[pair][0] <= EXACTNESS_TOLERANCE else "failed"
    return {"status": status, "worst": worst}


def _exactness_summary(exactness: dict | None, replay: dict) -> dict:
    status = replay["status"]
    if exactness is None or not status:
        return {"status": "missing", "summary": "no float64 replay of the recipe in this folder (exactness.json)",
                "pairs": []}  # fmt: skip
    pairs = [{"backends": list(p), "status": s, "largest_difference": as_float(replay["worst"][p][0]) if p in
              replay["worst"] else None} for p, s in status.items()]  # fmt: skip
    names = [network["spec"] for network in exactness["networks"]]
    overall = "failed" if "failed" in status.values() else "missing" if "missing" in status.values() else "passed"
    judged = replay["worst"]
    if overall == "passed":
        error, quantity, spec = max(judged.values())
        summary = (
            f"the recipe replayed in float64 ({exactness['recipe']['epochs']} epochs: warm-up, both LR drops, "
            f"augmentation, train- and eval-mode BN, test evaluation) gives the same per-step losses, epoch "
            f"metrics and final weights in every twin: largest relative difference {error:.1e} ({quantity} of "
            f"{spec}), tolerance {EXACTNESS_TOLERANCE:.0e}; networks {', '.join(names)}"
        )
    elif overall == "failed":
        pair, (error, quantity, spec) = next((p, w) for p, w in judged.items() if status[p] == "failed")
        summary = (
            f"the float64 replay of the recipe differs between the twins: {quantity} of {spec}, "
            f"{' vs '.join(pair)} differs by {error:.2g} (relative), tolerance {EXACTNESS_TOLERANCE:.0e}"
        )
    else:
        missing = [" vs ".join(p) for p, s in status.items() if s == "missing"]
        summary = f"the float64 replay does not cover {', '.join(missing)}"
    return {"status": overall, "tolerance": EXACTNESS_TOLERANCE, "pairs": pairs, "networks": names,
            "summary": summary}  # fmt: skip


def divergence(results: pd.DataFrame, pairs: list[tuple[str, str]], alpha: float) -> list[dict]:
    """Per pair of backends, the seeds of a cell where exactly one twin diverged, and the exact
    two-sided sign test of H0: either twin is as likely to be the one."""
    out = []
    for first, second in pairs:
        a = results[results.backend == first].set_index(["arch", "depth", "seed"]).diverged
        b = results[results.backend == second].set_index(["arch", "depth", "seed"]).diverged
        joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
        only_a, only_b = int((joined.a & ~joined.b).sum()), int((~joined.a & joined.b).sum())
        p = float(stats.binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0
        out.append({"backends": [first, second], "only_first": only_a, "only_second": only_b, "p": p,
                    "asymmetric": p < alpha})  # fmt: skip
    return out


def _cells(results: pd.DataFrame, pairs: list, metrics, margin: float, alpha: float, power: bool) -> list[dict]:
    """Every (arch, depth) cell both backends of a pair ran, with its paired tests per metric."""
    metrics = list(metrics)
    wide = results.pivot_table(index=["arch", "depth", "seed"], columns="backend", values=metrics, aggfunc="first")
    cells = []
    for first, second in pairs:
        for (arch, depth), runs in wide.groupby(level=["arch", "depth"]):
            counts = [int(runs[(metrics[0], backend)].notna().sum()) if (metrics[0], backend) in runs else 0
                      for backend in (first, second)]  # fmt: skip
            if min(counts) == 0:
                continue
            cell = {"arch": arch, "depth": int(depth), "backends": [first, second], "tests": {}}
            if "wall_s" in results:  # what a run of this cell costs, for what settling it would cost
                timed = results[
                    (results.arch == arch) & (results.depth == depth) & results.backend.isin([first, second])
                ]
                cell["wall_s"] = as_float(pd.to_numeric(timed.wall_s, errors="coerce").mean())
            for metric in metrics:
                both = runs[[(metric, first), (metric, second)]].dropna().to_numpy(float)
                cell["tests"][metric] = {"a": both[:, 0], "b": both[:, 1], "unpaired_runs": sum(counts) - 2 * len(both)}
            cells.append(cell)
    family = len(cells) * len(metrics)
    for cell in cells:
        for metric, pair in cell["tests"].items():
            a, b = pair.pop("a"), pair.pop("b")
            cell["tests"][metric] = paired_test(a - b, margin, alpha, family, power) | {
                "pair_correlation": _correlation(a, b),
                **pair,
            }
    tests = [test for cell in cells for test in cell["tests"].values()]
    for kind in ("p_tost", "p_diff", "p_beyond"):
        for test, adjusted in zip(tests, holm([test[kind] for test in tests]), strict=True):
            test[f"{kind}_holm"] = adjusted
    for cell in cells:
        cell["verdict"], cell["reason"] = _cell_verdict(cell["tests"], alpha, margin)
    return cells


def agreement(results: pd.DataFrame, alpha: float = 0.05, margin: float = 0.05, metrics=METRICS,
              exactness: dict | None = None, power: bool = True) -> dict:  # fmt: skip
    """The agreement verdict (see the module docstring). `results` and `exactness` as
    `study.verdicts.inputs.load_results` and `load_exactness` return them (None: no replay). Without
    `power`, no cell states its power, detectable difference and seeds needed (what a simulation of
    the procedure leaves out: they do not change the verdict)."""
    present = [b for b in BACKENDS if b in set(results.backend)]
    pairs = list(itertools.combinations(present, 2))
    header = {"margin": margin, "alpha": alpha, "metrics": list(metrics), "pairs": [list(p) for p in pairs],
              "design": "the seed's two runs are one pair (same initial weights and batches): paired t-tests "
                        "on the per-seed differences, Holm over all cells and metrics"}  # fmt: skip
    replay = replay_status(exactness, pairs)
    exact = _exactness_summary(exactness, replay)
    cells = _cells(results, pairs, metrics, margin, alpha, power)
    diverging = divergence(results, pairs, alpha)

    def named(verdict):
        return [cell_label(c, pairs) for c in cells if c["verdict"] == verdict]

    equivalent, differ, undecided = (named(v) for v in ("equivalent", "differs", "undecided"))
    pts = f"±{100 * margin:.1f} points"
    shown = (
        (
            f"{len(equivalent)} of {len(cells)} cells equivalent within {pts}"
            + (f": {', '.join(equivalent)}" if equivalent else "")
        )
        if cells
        else "no cell was run by two backends"
    )
    not_excluded = [f"{cell_label(c, pairs)}: {c['reason']}" for c in cells if c["verdict"] == "undecided"]
    asymmetric = [d for d in diverging if d["asymmetric"]]
    settle = None
    if exact["status"] == "failed":
        verdict, reason = "disagree", exact["summary"]
    elif differ:
        verdict, reason = "disagree", f"the twins' outcomes differ beyond {pts} in {', '.join(differ)}"
    elif asymmetric:
        d = asymmetric[0]
        verdict = "disagree"
        reason = (f"{d['backends'][0]} diverged alone in {d['only_first']} seeds, {d['backends'][1]} in "
                  f"{d['only_second']} (sign test p = {d['p']:.2g})")  # fmt: skip
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
        verdict = "exact_outcomes_undecided"
        reason = f"the recipe is exact in float64; {shown}; undecided: {', '.join(undecided)} (see not excluded)"
        settle = "seeds for 80 % power of the equivalence test: " + "; ".join(
            f"{cell_label(c, pairs)} {_seeds_to_settle(c)}" for c in cells if c["verdict"] == "undecided"
        )
    else:
        verdict, reason = "agree", f"the recipe is exact in float64; {shown}"
    return {"verdict": verdict, "reason": reason, "settle": settle, **header, "exactness": exact,
            "proved": exact["summary"], "shown": shown, "not_excluded": not_excluded, "divergence": diverging,
            "cells": cells}  # fmt: skip
