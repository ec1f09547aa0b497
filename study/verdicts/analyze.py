"""Every verdict of a study folder, from its tables: degradation, the twins' agreement, the lesion
study, norm preservation, ReLU vs skip, the training budget, diverged runs.

`analyze` is the one place that puts them together; `study.report.analysis` writes its result to verdict.json
and the report (schema in docs/design.md). Only `results` is required: a verdict whose table is
missing says so.
"""

from __future__ import annotations

import pandas as pd

from study.verdicts.agreement import agreement
from study.verdicts.budget import budget_verdict
from study.verdicts.degradation import degradation
from study.verdicts.lesion import lesion_verdict
from study.verdicts.norm_preservation import norm_verdict
from study.verdicts.relu_skip import relu_skip_verdict

MAIN = {"activation": "relu", "norm": "batch"}  # the experiment of He et al.; other values: `relu_skip`


def main_experiment(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """The rows of He et al.'s experiment (ReLU, BN) where a study's grid also varies them, and of its
    largest training budget where the grid varies that (`study.verdicts.budget` reads them all)."""
    if frame is None:
        return frame
    if set(MAIN) <= set(frame.columns):
        keep = (frame.activation == MAIN["activation"]) & (frame.norm == MAIN["norm"])
        frame = frame[keep] if keep.any() else frame
    if "epochs" in frame.columns and frame.epochs.nunique() > 1:
        frame = frame[frame.epochs == frame.epochs.max()]
    return frame


def main_experiment_of_every_budget(frame: pd.DataFrame) -> pd.DataFrame:
    """He et al.'s experiment (ReLU, BN) at every training budget."""
    if not set(MAIN) <= set(frame.columns):
        return frame
    keep = (frame.activation == MAIN["activation"]) & (frame.norm == MAIN["norm"])
    return frame[keep] if keep.any() else frame


def of_runs(frame: pd.DataFrame | None, runs: pd.Series) -> pd.DataFrame | None:
    """The rows of a per-run table (lesion.csv, norms.csv) for these runs; norms.csv's initialization
    rows belong to no run and stay."""
    if frame is None:
        return None
    keep = frame.run_key.isin(runs)
    return frame[keep | (frame.stage == "init")] if "stage" in frame.columns else frame[keep]


def diverged_runs(results: pd.DataFrame) -> dict:
    """The diverged runs, listed and counted per (backend, arch, depth) with the cell's run count."""
    counts = results.groupby(["backend", "arch", "depth"]).diverged.agg(["sum", "size"])
    by_cell = [
        {"backend": backend, "arch": arch, "depth": int(depth), "diverged": int(row["sum"]), "runs": int(row["size"])}
        for (backend, arch, depth), row in counts.iterrows()
    ]
    diverged = results.run_key[results.diverged.astype(bool)]
    return {"count": len(diverged), "runs": [str(key) for key in diverged], "by_cell": by_cell}


def analyze(
    results: pd.DataFrame,
    alpha: float = 0.05,
    margin: float = 0.05,
    exactness: dict | None = None,
    lesion: pd.DataFrame | None = None,
    norms: pd.DataFrame | None = None,
    gradflow_fit: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    settle: dict | None = None,
) -> dict:
    """All verdicts of one results table (`study.verdicts.inputs.load_results`) and, where given, the
    exactness evidence (`load_exactness`), the lesion, norms, gradflow_fit and history tables, and a
    `--settle` study's look 1 (`load_settle`): its added seeds enter the agreement's second look only,
    every other verdict is on the grid seeds (their number was not chosen from the data)."""
    every_run, everything = results, main_experiment(results)
    if settle is not None:
        results = results[results.seed.isin(settle["grid_seeds"])]
    main = main_experiment(results)
    return {
        "degradation": degradation(main, alpha=alpha, history=of_runs(history, main.run_key)),
        "agreement": agreement(everything, alpha=alpha, margin=margin, exactness=exactness, settle=settle),
        "lesion": lesion_verdict(main_experiment(of_runs(lesion, main.run_key)), alpha=alpha),
        "norm_preservation": norm_verdict(main_experiment(of_runs(norms, main.run_key)), alpha=alpha),
        "relu_vs_skip": relu_skip_verdict(results, gradflow_fit, alpha=alpha),
        "training_budget": budget_verdict(main_experiment_of_every_budget(results), alpha=alpha),
        "diverged": diverged_runs(every_run),
        "alpha": alpha,
        "margin": margin,
    }
