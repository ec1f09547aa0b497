"""The twins' float32 outcomes cell by cell (`study.verdicts.agreement` puts them together): per
(arch, depth) cell, pair of backends and metric, the paired tests on the per-seed differences, their
Holm correction over all cells and metrics, each cell's verdict, and look 2 of a sequential
(`--settle`) study. The procedure: agreement's module docstring and docs/design.md.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special

from study.verdicts.common import CI_LEVEL, as_float, holm
from study.verdicts.power import MAX_SEEDS, beyond_mdd, seeds_needed, tost_power


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
    cdf, sf = (lambda x: float(special.stdtr(df, x))), (lambda x: float(special.stdtr(df, -x)))  # Student t
    half = float(special.stdtrit(df, 0.5 + CI_LEVEL / 2)) * se
    out |= {
        "ci_low": diff - half,
        "ci_high": diff + half,
        "p_tost": max(sf((diff + margin) / se), cdf((diff - margin) / se)),
        "p_diff": 2 * sf(abs(diff) / se),
        "p_beyond": min(1.0, 2 * min(sf((diff - margin) / se), cdf((diff + margin) / se))),
        "bound": float(min(1.0, abs(diff) + special.stdtrit(df, 1 - level) * se)),
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
    return float(np.corrcoef(a, b)[0, 1])


def cell_verdict(tests: dict, alpha: float, margin: float, adjusted: str = "Holm") -> tuple[str, str]:
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
        return "equivalent", f"equivalent within ±{pts(margin)} points (paired TOST, {adjusted})"
    open_metrics = [m for m, t in tests.items() if t["p_tost_holm"] >= alpha]

    def what(t: dict) -> str:
        excluded = "nothing excluded" if t["bound"] >= 1 else f"differences beyond ±{pts(t['bound'])} points excluded"
        seeds = f"about {t['seeds_needed']}" if t["seeds_needed"] else f"more than {MAX_SEEDS}"
        detects = "no difference detectable" if t["mdd"] is None else f"detectable difference {pts(t['mdd'])} points"
        return (f"{excluded}, {detects}; {seeds} seeds would settle "
                f"±{pts(margin)}")  # fmt: skip

    return "undecided", "; ".join(f"{m}: not shown within ±{pts(margin)}; {what(tests[m])}" for m in open_metrics)


def outcome_cells(results: pd.DataFrame, pairs: list, metrics, margin: float, alpha: float, power: bool) -> list[dict]:
    """Every (arch, depth) cell both backends of a pair ran, with its paired tests per metric (Holm over
    all of them) and its verdict."""
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
        cell["verdict"], cell["reason"] = cell_verdict(cell["tests"], alpha, margin)
    return cells


def second_look(cells: list[dict], results: pd.DataFrame, settle: dict, metrics, margin: float, alpha: float,
                 power: bool) -> None:  # fmt: skip
    """Look 2 of a sequential study (module docstring), in place: each cell undecided at look 1 that
    `settle` chose, on all its seeds, at alpha (already halved) with Bonferroni over look 1's K tests."""
    family = len(cells) * len(metrics)
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
            test = paired_test(a - b, margin, alpha, family, power) | {"pair_correlation": _correlation(a, b),
                                                                       "unpaired_runs": 0}  # fmt: skip
            for kind in ("p_tost", "p_diff", "p_beyond"):
                test[f"{kind}_holm"] = None if test[kind] is None else min(1.0, family * test[kind])
            tests[metric] = test
        verdict, reason = cell_verdict(tests, alpha, margin, "Bonferroni")
        cell |= {"look": 2, "look_one": {"verdict": cell["verdict"], "reason": cell["reason"]}, "tests": tests,
                 "verdict": verdict, "reason": f"look 2, {len(ran)} seeds: {reason}"}  # fmt: skip
