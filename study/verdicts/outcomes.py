"""The twins' float32 outcomes cell by cell (`study.verdicts.agreement` puts them together): per
(arch, depth) cell, pair of backends and metric, the paired tests on the per-seed differences, their
Holm correction over all cells and metrics, each cell's verdict, and look 2 of a sequential
(`--settle`) study. The procedure: agreement's module docstring and docs/design.md.

A *chaotic* cell (its network amplifies rounding: the float64 replay's rounding sensitivity beyond
`EXACTNESS_ROUNDING_LIMIT`) is compared in distribution only: correct twins' runs of one seed there are
two draws of one distribution, not one number computed twice, so equivalence seed by seed is not
asked of it (its TOST leaves the Holm family, which the reproducible cells' claims keep). If the twins
compute the same thing, a seed's two runs are exchangeable and the sign of their difference is a fair
coin however chaotic the net: the two-sided exact sign test on the difference of the training error
(`DISTRIBUTION_METRIC`, the metric that is chaotic) keeps its level and catches one twin's
distribution shifted (it fails more often, say). A false "differs" can then come from either kind
of cell, so α is split: the reproducible cells' difference tests at α/2 (Holm), the chaotic cells'
at α/2 (Holm over them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.verdicts.common import as_float, holm
from study.verdicts.signs import (
    MAX_SEEDS,
    critical,
    median_interval,
    shares,
    sign_p,
    tail_bound,
    tost_power,
    tost_seeds,
)

DISTRIBUTION_METRIC = "final_train_error"  # a chaotic cell's comparison (the first metric where it is not run)


def paired_test(d: np.ndarray, margin: float, alpha: float, family: int, power: bool = True) -> dict:
    """The tests of one cell and metric on the per-seed differences `d` (see the module docstring);
    without `power`, the p-values alone (what a simulation of the procedure needs).

    Every test is an exact sign test on the typical seed (`study.verdicts.signs`): equivalence (TOST)
    counts the seeds above −margin and those below +margin; "beyond the margin" the seeds above +margin
    and those below −margin (Bonferroni over the two sides); "differ" the seeds above and below 0. A
    seed exactly at a threshold counts against the claim, so identical runs are evidence of a bounded
    kind, never p = 0: 5 seeds without a difference reach p = 1/32 and leave up to 45 % of seeds open."""
    n = len(d)
    level = alpha / max(1, family)  # Holm's first step: the power stated is at least the procedure's
    out = {"n": n, "mean_diff": float(d.mean()) if n else None, "median_diff": float(np.median(d)) if n else None}
    out |= dict.fromkeys(("sd", "ci_low", "ci_high", "ci_coverage", "p_tost", "p_diff", "p_beyond", "bound",
                          "higher_first", "higher_second", "tost_power", "inside", "tail_bound"))  # fmt: skip
    out |= {"tost_power_at_alpha": None, "seeds_needed": None, "level": level, "note": None,
            "method": "exact sign tests (the typical seed)"}  # fmt: skip
    if n < 2:
        out["note"] = "fewer than 2 seeds run by both twins"
        return out
    inside = int(np.count_nonzero(np.abs(d) < margin))
    below, above = int(np.count_nonzero(d <= -margin)), int(np.count_nonzero(d >= margin))
    low, high, coverage = median_interval(d)
    out |= {
        "sd": float(d.std(ddof=1)),
        "ci_low": low,
        "ci_high": high,
        "ci_coverage": coverage,
        "p_tost": max(sign_p(int(np.count_nonzero(d > -margin)), n), sign_p(int(np.count_nonzero(d < margin)), n)),
        "p_diff": min(1.0, 2 * min(sign_p(int(np.count_nonzero(d > 0)), n), sign_p(int(np.count_nonzero(d < 0)), n))),
        "p_beyond": min(1.0, 2 * min(sign_p(int(np.count_nonzero(d > margin)), n),
                                     sign_p(int(np.count_nonzero(d < -margin)), n))),
        "bound": equivalence_bound(d, level),
        "higher_first": int(np.count_nonzero(d > 0)),
        "higher_second": int(np.count_nonzero(d < 0)),
        "inside": inside,
        "below": below,
        "above": above,
        "tail_bound": tail_bound(n - inside, n),
    }  # fmt: skip
    if not np.any(d):
        out["note"] = "identical in every run"
    if power:
        low, high, _ = shares((below, above, inside))  # the observed shares, by Laplace's rule
        out |= {
            "tost_power": tost_power(low, high, n, level),  # at least this: Holm's first step
            "tost_power_at_alpha": tost_power(low, high, n, alpha),  # at most this: Holm's last step
            "seeds_needed": tost_seeds(low, high, level),
        }
    return out


def equivalence_bound(d: np.ndarray, level: float) -> float:
    """The smallest margin b the sign TOST at `level` shows (|difference| < b in the typical seed): the
    c-th smallest |d| on each side, c the seeds a claim at `level` needs (1.0: not even every seed)."""
    c = critical(len(d), level)
    if c is None:
        return 1.0
    ordered = np.sort(d)
    # c seeds below b: b above the c-th smallest; c seeds above -b: -b below the c-th largest
    needed = max(float(ordered[c - 1]), -float(ordered[len(d) - c]), 0.0)
    return float(min(1.0, np.nextafter(needed, np.inf)))


def look_two_power(test: dict, seeds: int, margin: float) -> float | None:
    """The sign TOST's power with `seeds` seeds at the test's level and its observed shares below, above
    and within the margin (Laplace's rule), for `run --settle`'s plan of look 2."""
    if test.get("inside") is None:
        return None
    low, high, _ = shares((test["below"], test["above"], test["inside"]))
    return tost_power(low, high, seeds, test["level"])


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of the twins' values over their common seeds (None with fewer than 3 or no spread)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def cell_verdict(tests: dict, alpha: float, margin: float, adjusted: str = "Holm") -> tuple[str, str]:
    pts = lambda v: f"{100 * v:.1f}"  # noqa: E731 (error fractions as percentage points)
    if undecided := [m for m, t in tests.items() if t["p_tost"] is None]:
        return "undecided", f"fewer than 2 seeds run by both twins ({', '.join(undecided)})"
    if differ := [m for m, t in tests.items() if t["p_beyond_holm"] < alpha]:
        return "differs", "; ".join(
            f"{m}: difference {pts(tests[m]['median_diff'])} points in the median seed, beyond ±{pts(margin)} "
            f"(sign test p = {tests[m]['p_beyond_holm']:.2g})"
            for m in differ
        )
    if all(t["p_tost_holm"] < alpha for t in tests.values()):
        left = max(t["tail_bound"] for t in tests.values())
        same = "identical in every run" if all(t["note"] == "identical in every run" for t in tests.values()) else (
            f"equivalent within ±{pts(margin)} points in the typical seed (sign TOST, {adjusted})")  # fmt: skip
        return "equivalent", f"{same}; the seeds do not exclude that up to {100 * left:.0f} % of seeds differ more"
    open_metrics = [m for m, t in tests.items() if t["p_tost_holm"] >= alpha]

    def what(t: dict) -> str:
        excluded = "nothing excluded" if t["bound"] >= 1 else f"differences beyond ±{pts(t['bound'])} points excluded"
        inside = f"{t['inside']} of {t['n']} seeds within ±{pts(margin)}" + (
            " (identical in every run)" if t["note"] == "identical in every run" else "")  # fmt: skip
        seeds = (f"about {t['seeds_needed']}" if t["seeds_needed"] else f"more than {MAX_SEEDS}") if t.get(
            "tost_power") is not None else None  # fmt: skip
        return f"{inside}, {excluded}" + (f"; {seeds} seeds would settle ±{pts(margin)}" if seeds else "")

    return "undecided", "; ".join(f"{m}: not shown within ±{pts(margin)}; {what(tests[m])}" for m in open_metrics)


def chaotic_verdict(tests: dict, distribution: tuple[str, dict], alpha: float, sensitivity: float) -> tuple[str, str]:
    """A chaotic cell's verdict: *differs* (one twin's runs shifted: the two-sided sign test on
    `distribution`'s metric, adjusted) or *chaotic* (compared in distribution, no shift shown; never
    called equivalent)."""
    pts = lambda v: f"{100 * v:.1f}"  # noqa: E731
    if any(t["p_tost"] is None for t in tests.values()):
        return "undecided", "fewer than 2 seeds run by both twins"
    metric, test = distribution
    medians = (f"{metric}: medians {pts(test['median_first'])} and {pts(test['median_second'])} %, the median "
               f"seed's difference {pts(test['median_diff'])} points; the first twin higher in {test['higher_first']} "
               f"of {test['n']} seeds, lower in {test['higher_second']} (two-sided sign test p = "
               f"{test['p_distribution']:.2g}, adjusted)")  # fmt: skip
    why = f"rounding alone moves this net by {sensitivity:.1g} in the float64 replay"
    if test["p_distribution"] < alpha:
        return "differs", f"chaotic ({why}), compared in distribution: one twin's runs are shifted ({medians})"
    return "chaotic", (f"chaotic ({why}): its runs are compared in distribution, not seed by seed; no shift shown "
                       f"({medians}); not claimed equivalent")  # fmt: skip


def outcome_cells(results: pd.DataFrame, pairs: list, metrics, margin: float, alpha: float, power: bool,
                  chaotic: dict | None = None) -> list[dict]:  # fmt: skip
    """Every (arch, depth) cell both backends of a pair ran, with its paired tests per metric (Holm over
    all of them) and its verdict. `chaotic` maps (arch, depth) to the rounding sensitivity of a cell
    compared in distribution only (the module docstring): its equivalence tests leave the family."""
    chaotic = chaotic or {}
    metrics = list(metrics)
    wide = results.pivot_table(index=["arch", "depth", "seed"], columns="backend", values=metrics, aggfunc="first")
    values, column = wide.to_numpy(float), {key: j for j, key in enumerate(wide.columns)}
    rows: dict[tuple, list[int]] = {}  # (arch, depth) -> its rows of `wide` (NumPy: simulations call this a lot)
    for i, (arch, depth, _) in enumerate(wide.index):
        rows.setdefault((arch, int(depth)), []).append(i)
    timed = None
    if "wall_s" in results:  # what a run of this cell costs, for what settling it would cost
        wall = results.assign(wall_s=pd.to_numeric(results.wall_s, errors="coerce"))
        timed = wall.groupby(["arch", "depth", "backend"]).wall_s.agg(["sum", "count"])
    cells = []
    for first, second in pairs:
        for (arch, depth), index in rows.items():
            block = values[index]
            counts = [int(np.count_nonzero(~np.isnan(block[:, column[(metrics[0], backend)]])))
                      if (metrics[0], backend) in column else 0 for backend in (first, second)]  # fmt: skip
            if min(counts) == 0:
                continue
            cell = {"arch": arch, "depth": depth, "backends": [first, second], "tests": {}}
            if timed is not None:
                runs = timed.reindex([(arch, depth, first), (arch, depth, second)]).sum()
                cell["wall_s"] = as_float(runs["sum"] / runs["count"]) if runs["count"] else None
            for metric in metrics:
                both = block[:, [column[(metric, first)], column[(metric, second)]]]
                both = both[~np.isnan(both).any(axis=1)]
                cell["tests"][metric] = {"a": both[:, 0], "b": both[:, 1], "unpaired_runs": sum(counts) - 2 * len(both)}
            if (arch, depth) in chaotic:
                cell["rounding_sensitivity"] = float(chaotic[(arch, depth)])
            cells.append(cell)
    family = tost_family(cells, metrics)
    for cell in cells:
        for metric, pair in cell["tests"].items():
            a, b = pair.pop("a"), pair.pop("b")
            cell["tests"][metric] = paired_test(a - b, margin, alpha, family, power) | {
                "pair_correlation": _correlation(a, b),
                "median_first": float(np.median(a)) if len(a) else None,
                "median_second": float(np.median(b)) if len(b) else None,
                **pair,
            }
    judged = [test for cell in cells if "rounding_sensitivity" not in cell for test in cell["tests"].values()]
    wild = [cell for cell in cells if "rounding_sensitivity" in cell]
    split = 2.0 if wild else 1.0  # with chaotic cells, half of alpha for each kind's difference tests
    for cell in wild:
        for test in cell["tests"].values():
            test |= {"p_tost_holm": None, "p_diff_holm": None, "p_beyond_holm": None}
    for kind in ("p_tost", "p_diff", "p_beyond"):
        times = 1.0 if kind == "p_tost" else split
        for test, adjusted in zip(judged, holm([test[kind] for test in judged]), strict=True):
            test[f"{kind}_holm"] = None if adjusted is None else min(1.0, times * adjusted)
    metric = DISTRIBUTION_METRIC if DISTRIBUTION_METRIC in metrics else metrics[0]
    for cell, adjusted in zip(wild, holm([cell["tests"][metric]["p_diff"] for cell in wild]), strict=True):
        test = cell["tests"][metric]
        test["p_distribution"] = None if adjusted is None else min(1.0, split * adjusted)
    for cell in cells:
        if "rounding_sensitivity" in cell:
            cell["distribution_metric"] = metric
            cell["verdict"], cell["reason"] = chaotic_verdict(cell["tests"], (metric, cell["tests"][metric]), alpha,
                                                              cell["rounding_sensitivity"])  # fmt: skip
        else:
            cell["verdict"], cell["reason"] = cell_verdict(cell["tests"], alpha, margin)
    return cells


def tost_family(cells: list[dict], metrics) -> int:
    """The equivalence tests' Holm family: every metric of every cell not compared in distribution only."""
    return max(1, sum(1 for cell in cells if "rounding_sensitivity" not in cell) * len(list(metrics)))


def second_look(cells: list[dict], results: pd.DataFrame, settle: dict, metrics, margin: float, alpha: float,
                 power: bool) -> None:  # fmt: skip
    """Look 2 of a sequential study (module docstring), in place: each cell undecided at look 1 that
    `settle` chose, on all its seeds, at alpha (already halved) with Bonferroni over look 1's K tests."""
    family = tost_family(cells, metrics)  # look 1's families: the reproducible cells' tests, the difference
    every_test = family * (2 if any("rounding_sensitivity" in c for c in cells) else 1)  # ones at alpha/2 there
    chosen = {(c["arch"], int(c["depth"])) for c in settle["cells"]}
    seeds = [*settle["grid_seeds"], *settle["extra_seeds"]]
    for cell in cells:
        cell["look"] = 1
        if cell["verdict"] != "undecided" or (cell["arch"], cell["depth"]) not in chosen:
            continue
        rows = results[(results.arch == cell["arch"]) & (results.depth == cell["depth"]) & results.seed.isin(seeds)]
        wide = rows.pivot_table(index="seed", columns="backend", values=list(metrics), aggfunc="first")
        columns = [(m, b) for m in metrics for b in cell["backends"]]
        ran = wide.reindex(columns=columns).dropna() if all(c in wide for c in columns) else wide.iloc[:0]
        added = len(set(ran.index) & set(settle["extra_seeds"]))
        if added < len(settle["extra_seeds"]):
            cell["reason"] += (f"; look 2 waits for its added seeds ({added} of {len(settle['extra_seeds'])} "
                               "run by both twins)")  # fmt: skip
            continue
        tests = {}
        for metric in metrics:
            a, b = (ran[(metric, backend)].to_numpy(float) for backend in cell["backends"])
            test = paired_test(a - b, margin, alpha, family, power) | {
                "pair_correlation": _correlation(a, b), "median_first": float(np.median(a)),
                "median_second": float(np.median(b)), "unpaired_runs": 0}  # fmt: skip
            for kind, size in (("p_tost", family), ("p_diff", every_test), ("p_beyond", every_test)):
                test[f"{kind}_holm"] = None if test[kind] is None else min(1.0, size * test[kind])
            tests[metric] = test
        verdict, reason = cell_verdict(tests, alpha, margin, "Bonferroni")
        cell |= {"look": 2, "look_one": {"verdict": cell["verdict"], "reason": cell["reason"]}, "tests": tests,
                 "verdict": verdict, "reason": f"look 2, {len(ran)} seeds: {reason}"}  # fmt: skip
