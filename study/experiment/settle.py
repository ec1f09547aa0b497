"""Look 1 of a `run --settle N` study: which cells the agreement leaves undecided on the grid seeds,
what adding N seeds to each would cost, and `settle.json`, which records the choice once.

The design and its error control are `study.verdicts.agreement`'s (two looks, alpha/2 each). Look 1
here is the very computation the analysis repeats (the agreement of the grid seeds at alpha/2), so
the runs added are those the verdict's second look tests. settle.json is written once, atomically,
under a lock: a resumed study (or a second process on the same folder) adds the same runs.
"""

from __future__ import annotations

from pathlib import Path

from study.configs import StudyConfig
from study.experiment.study_folder import locked
from study.files import EXACTNESS, RESULTS, SETTLE
from study.schemas.study_folder import SettleFile
from study.verdicts.agreement import agreement, cell_label
from study.verdicts.analyze import main_experiment
from study.verdicts.common import as_float
from study.verdicts.inputs import load_exactness, load_results, load_settle
from study.verdicts.outcomes import look_two_power


def look_one(out: Path, config: StudyConfig, alpha: float, margin: float, workers: int = 1) -> dict:
    """settle.json's record: read where a previous invocation wrote it, else decided from the grid
    seeds' results and written (the study's grid must be finished)."""
    path = Path(out) / SETTLE
    with locked(Path(out) / ".settle.lock"):
        if path.exists():
            return load_settle(path)
        record = _decide(Path(out), config, alpha, margin, workers)
        SettleFile.model_validate(record).write(path)
    return record


def _decide(out: Path, config: StudyConfig, alpha: float, margin: float, workers: int) -> dict:
    results = main_experiment(load_results(out / RESULTS))
    grid = results[results.seed.isin(config.seeds)]
    exactness = load_exactness(out / EXACTNESS) if (out / EXACTNESS).exists() else None
    verdict = agreement(grid, alpha=alpha / 2, margin=margin, exactness=exactness)
    extra = list(config.settle_seeds())
    record = {
        "declared": config.settle,
        "grid_seeds": list(config.seeds),
        "extra_seeds": extra,
        "cells": [],
        "look_one": {"alpha": alpha / 2, "margin": margin, "verdict": verdict["verdict"], "undecided": []},
    }
    if verdict["verdict"] != "exact_outcomes_undecided":  # nothing a second look could change
        record["look_one"]["why_none"] = (
            f"look 1 decided the agreement: {verdict['verdict']}" if verdict["verdict"] != "inconclusive"
            else f"look 1 is inconclusive for want of evidence seeds cannot add: {verdict['reason']}"
        )  # fmt: skip
        return record
    undecided = [c for c in verdict["cells"] if c["verdict"] == "undecided"]
    chosen = {(c["arch"], c["depth"]): c for c in undecided}
    record["cells"] = [{"arch": arch, "depth": depth} for arch, depth in chosen]
    record["look_one"]["undecided"] = [cell_label(c, verdict["pairs"]) for c in undecided]
    power, minutes = {}, 0.0
    for cell in undecided:
        tests = cell["tests"].values()
        powers = [look_two_power(t, t["n"] + len(extra), margin) for t in tests]  # its level alpha/(2K)
        if all(p is not None for p in powers):  # at the observed shares below, within and above the margin
            power[cell_label(cell, verdict["pairs"])] = round(min(powers), 3)
    for arch, depth in chosen:
        per_run = (
            results[(results.arch == arch) & (results.depth == depth)].wall_s.mean() if "wall_s" in results else None
        )
        minutes += (as_float(per_run) or 0.0) * len(extra) * len(config.backends) / 60
    record["look_one"] |= {
        "runs": len(chosen) * len(extra) * len(config.backends),
        "minutes": round(minutes / max(1, workers), 1),
        "power_at_look_two": power,
    }
    return record


def describe(record: dict) -> str:
    """The look-1 decision and what it costs, in one line (printed before the added runs start)."""
    look = record["look_one"]
    if not record["cells"]:
        return f"settle: nothing to add ({look.get('why_none', 'no cell undecided at look 1')})"
    power = ", ".join(f"{cell} {100 * p:.0f} %" for cell, p in look["power_at_look_two"].items())
    return (
        f"settle: look 1 (α/2 = {look['alpha']:g}) leaves {', '.join(look['undecided'])} undecided; adding "
        f"{len(record['extra_seeds'])} seeds: {look['runs']} runs, ~{look['minutes']:.0f} min at the grid's time "
        f"per run" + (f"; look 2's equivalence power at the observed shares: {power}" if power else "")
    )
