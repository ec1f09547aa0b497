"""Every verdict of a study folder, from its tables: degradation, the twins' agreement, the lesion
study, norm preservation, ReLU vs skip, diverged runs.

`analyze` is the one place that puts them together; `study.report.analysis` writes its result to verdict.json
and the report (schema in docs/design.md). Only `results` is required: a verdict whose table is
missing says so.
"""

from __future__ import annotations

import pandas as pd

from study.verdicts.agreement import agreement
from study.verdicts.degradation import degradation
from study.verdicts.lesion import lesion_verdict
from study.verdicts.norm_preservation import norm_verdict
from study.verdicts.relu_skip import relu_skip_verdict

MAIN = {"activation": "relu", "norm": "batch"}  # the experiment of He et al.; other values: `relu_skip`


def main_experiment(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """The rows of He et al.'s experiment (ReLU, BN) where a study's grid also varies them."""
    if frame is None or not set(MAIN) <= set(frame.columns):
        return frame
    keep = (frame.activation == MAIN["activation"]) & (frame.norm == MAIN["norm"])
    return frame[keep] if keep.any() else frame


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
) -> dict:
    """All verdicts of one results table (`study.verdicts.inputs.load_results`) and, where given, the
    exactness evidence (`load_exactness`) and the lesion, norms, gradflow_fit and history tables."""
    main = main_experiment(results)
    if history is not None:
        history = history[history.run_key.isin(main.run_key)]
    return {
        "degradation": degradation(main, alpha=alpha, history=history),
        "agreement": agreement(main, alpha=alpha, margin=margin, exactness=exactness),
        "lesion": lesion_verdict(main_experiment(lesion), alpha=alpha),
        "norm_preservation": norm_verdict(main_experiment(norms), alpha=alpha),
        "relu_vs_skip": relu_skip_verdict(results, gradflow_fit, alpha=alpha),
        "diverged": diverged_runs(results),
        "alpha": alpha,
        "margin": margin,
    }
