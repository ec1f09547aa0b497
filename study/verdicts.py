"""Every verdict of a study folder, from its tables: degradation, the twins' agreement, diverged runs.

`analyze` is the one place that puts them together; `study.report` writes its result to verdict.json
and the report (schema in docs/design.md).
"""

from __future__ import annotations

import pandas as pd

from study.agreement import agreement
from study.stats import degradation


def diverged_runs(results: pd.DataFrame) -> dict:
    """The diverged runs, listed and counted per (backend, arch, depth) with the cell's run count."""
    counts = results.groupby(["backend", "arch", "depth"]).diverged.agg(["sum", "size"])
    by_cell = [
        {"backend": backend, "arch": arch, "depth": int(depth), "diverged": int(row["sum"]), "runs": int(row["size"])}
        for (backend, arch, depth), row in counts.iterrows()
    ]
    diverged = results.run_key[results.diverged.astype(bool)]
    return {"count": len(diverged), "runs": [str(key) for key in diverged], "by_cell": by_cell}


def analyze(results: pd.DataFrame, alpha: float = 0.05, margin: float = 0.05, exactness: dict | None = None) -> dict:
    """All verdicts of one results table (`study.stats.load_results`) and, if given, the exactness
    evidence (`study.exactness.load_exactness`)."""
    return {
        "degradation": degradation(results, alpha=alpha),
        "agreement": agreement(results, alpha=alpha, margin=margin, exactness=exactness),
        "diverged": diverged_runs(results),
        "alpha": alpha,
        "margin": margin,
    }
