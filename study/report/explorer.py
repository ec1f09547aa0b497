"""The study explorer: report.html as one self-contained page of linked, interactive views.

The measurements of the study folder (`study.verdicts.inputs.StudyTables`: history, gradient norms at
initialization and after training, block gradient ratios, lesion curves, final errors) go into the
page as one JSON document (`explorer_data`), and `explorer.js` draws them with Plotly, embedded from
the `plotly` Python package (no network: the page opens from disk). The controls (backend, depth,
arch, seed, activation, norm, epochs) drive every view; hovering shows the numbers and the run key. A table
a folder lacks leaves its view with one line saying so. The means and intervals of the error-vs-depth
view are the degradation verdict's own (`verdict.json`), not recomputed.
"""

from __future__ import annotations

import html
import importlib.util
import json
import math
import re
from pathlib import Path

import pandas as pd

from study.verdicts.inputs import StudyTables

AXES = ("backend", "depth", "arch", "seed", "activation", "norm", "epochs")  # epochs: the budget config's
VIEWS = (  # (id, heading, what it shows)
    ("chart-curves", "Training curves", "train (solid) and test (dotted) error per epoch, the selected arch at "
     "every depth: the plain nets' curves part with depth, the residual nets' do not"),
    ("chart-grads", "Gradient norms per layer", "at initialization (dotted) and after training (solid), plain "
     "and residual side by side, log scale: how the gradient changes from the output back to the input"),
    ("chart-ratios", "Block gradient ratios (norm preservation)", "|dL/dx_in| / |dL/dx_out| of each block; 1 "
     "is norm-preserving, the residual blocks' 1 + dF/dx argument"),
    ("chart-lesion", "Lesion", "test error after deleting blocks of the trained net, every seed"),
    ("chart-depth", "Final error vs depth", "each run's final training error and the verdict's mean and "
     "interval per cell"),
)  # fmt: skip


UNSAFE = re.compile(r"[^A-Za-z0-9._:|()\- ]")  # what a name from a file may not bring into the page


def _safe(value):
    """`value` with every string (dict keys too) stripped of what HTML or Plotly's hover templates would
    read as markup (`<`, `&`, `%{`...): run keys and layer names come from the folder's files, which are
    untrusted. The same mapping everywhere, so the page's keys still link its tables."""
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe(v) for v in value]
    return UNSAFE.sub("_", value) if isinstance(value, str) else value


def _number(value) -> float | None:
    """A float rounded to 5 significant digits for the page (None for inf/NaN: JSON has neither)."""
    value = float(value)
    return float(f"{value:.5g}") if math.isfinite(value) else None


def _column(frame: pd.DataFrame, name: str) -> list:
    if frame[name].dtype.kind in "fc":
        return [_number(v) for v in frame[name]]
    return [v.item() if hasattr(v, "item") else v for v in frame[name]]


def _identity(frame: pd.DataFrame) -> pd.DataFrame:
    """`activation` and `norm` filled with the study's defaults where a table has no such column."""
    frame = frame.copy()
    if "backend" in frame:  # empty where a row is the same for every twin (norms.csv's init rows)
        frame["backend"] = frame["backend"].fillna("").astype(str)
    for column, default in (("activation", "relu"), ("norm", "batch")):
        if column not in frame:
            frame[column] = default
        frame[column] = frame[column].fillna(default).replace("", default).astype(str)
    return frame


def _network(row) -> str:
    return "|".join(str(v) for v in (row.arch, int(row.depth), row.activation, row.norm))


def _per_network(frame: pd.DataFrame, x: str, label: str, y: str) -> dict:
    """{arch|depth|activation|norm: the first seed's (and backend's) series}: tables measured per network."""
    out = {}
    frame = _identity(frame).sort_values(["seed", x])
    for network, group in frame.groupby(frame.apply(_network, axis=1), sort=False):
        first = group[(group.seed == group.seed.iloc[0]) & (group.backend == group.backend.iloc[0])]
        out[network] = {x: _column(first, x), label: _column(first, label), y: _column(first, y),
                        "seed": int(first.seed.iloc[0]), "backend": str(first.backend.iloc[0]) or "any"}  # fmt: skip
    return out


def _per_run(frame: pd.DataFrame, columns: list[str], order: str) -> dict:
    return {run: {c: _column(group, c) for c in columns} for run, group in frame.sort_values(order).groupby("run_key")}


def _lesion(frame: pd.DataFrame) -> dict:
    """Per run: mean test error by blocks deleted (0 intact, 1 every single block, k random draws)."""
    means = frame.groupby(["run_key", "k"]).test_error.agg(["mean", "size"]).reset_index()
    return {run: {"k": _column(g, "k"), "test_error": _column(g, "mean"), "n": _column(g, "size")}
            for run, g in means.groupby("run_key")}  # fmt: skip


def _start(axes: dict) -> dict:
    """The first view: the deepest plain net of the main experiment (ReLU, BN, the longest budget: the
    runs `study.verdicts.analyze.main_experiment` judges)."""
    preferred = {"depth": max(axes["depth"]), "arch": "plain", "activation": "relu", "norm": "batch",
                 "epochs": max(axes["epochs"])}  # fmt: skip
    return {axis: preferred[axis] if preferred.get(axis) in axes[axis] else axes[axis][0] for axis in AXES}


def explorer_data(tables: StudyTables, verdict: dict) -> dict:
    """The page's JSON: the controls' values, each run's measurements, and what the folder lacks (its
    strings made safe for the page: `_safe`)."""
    results = _identity(tables.results)
    axes = {axis: sorted(results[axis].unique().tolist()) for axis in AXES}
    axes = {axis: [v.item() if hasattr(v, "item") else v for v in values] for axis, values in axes.items()}
    identity = ("backend", "arch", "depth", "seed", "activation", "norm", "epochs")
    run_index = {"|".join(str(getattr(r, a)) for a in identity): r.run_key for r in results.itertuples()}
    missing, data = [], {}
    if tables.history is not None:
        data["history"] = _per_run(tables.history, ["epoch", "train_error", "test_error"], "epoch")
    else:
        missing.append("history.csv (training curves)")
    if tables.gradnorms is not None:
        last = tables.gradnorms[tables.gradnorms.epoch == tables.gradnorms.groupby("run_key").epoch.transform("max")]
        data["trained_grads"] = _per_run(last, ["layer_index", "layer", "grad_norm", "epoch"], "layer_index")
        for entry in data["trained_grads"].values():
            entry["epoch"] = entry["epoch"][0]
    else:
        missing.append("gradnorms.csv (gradient norms after training)")
    if tables.gradflow is not None:
        data["init_grads"] = _per_network(tables.gradflow, "layer_index", "layer", "grad_norm")
    else:
        missing.append("gradflow.csv (gradient norms at initialization)")
    if tables.norms is not None:
        norms = tables.norms
        data["init_ratios"] = _per_network(norms[norms.stage == "init"], "block_index", "block", "ratio")
        data["trained_ratios"] = _per_run(norms[norms.stage == "trained"], ["block_index", "block", "ratio"],
                                          "block_index")  # fmt: skip
    else:
        missing.append("norms.csv (block gradient ratios)")
    if tables.lesion is not None:
        data["lesion"] = _lesion(tables.lesion)
    else:
        missing.append("lesion.csv (lesion curves)")
    cells = [
        {"backend": backend, **{k: (_number(v) if isinstance(v, float) else v) for k, v in cell.items()}}
        for backend, entry in verdict["degradation"].get("backends", {}).items()
        for cell in entry.get("cells", [])
    ]
    final = results[["run_key", *identity, "final_train_error"]]
    start = _start(axes)
    return _safe({
        "axes": axes,
        "start": start,
        "main": {axis: start[axis] for axis in ("activation", "norm", "epochs")},  # the verdict's runs
        "run_index": run_index,
        "alpha": verdict.get("alpha", 0.05),
        "history": {}, "trained_grads": {}, "init_grads": {}, "init_ratios": {}, "trained_ratios": {}, "lesion": {},
        **data,
        "depth_error": cells,
        "final": [dict(zip(final.columns, (_number(v) if isinstance(v, float) else v for v in row), strict=True))
                  for row in final.itertuples(index=False)],
        "missing": missing,
    })  # fmt: skip


def plotly_js() -> str | None:
    """plotly.js, minified, as the `plotly` Python package ships it (`package_data/plotly.min.js`, what its
    `get_plotlyjs` returns), read without importing plotly; None where the package is not installed."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def explorer_html(data: dict) -> str:
    """The explorer's section of report.html: controls, one block per view, the data and the code."""
    plotly = plotly_js()
    if plotly is None:  # e.g. an image with the study's frameworks only: the page without its views
        return ("<h2 id='explorer'>Explore the measurements</h2><p class='missing'>The interactive views need "
                "the plotly package, which is not installed here: `pip install plotly`, then `resnet-study "
                "explore DIR`.</p>")  # fmt: skip
    views = "".join(
        f"<section class='view'><h3>{html.escape(title)}</h3><p class='what'>{html.escape(what)}</p>"
        f"<div id='{view}' class='chart'></div><p id='{view}-note' class='missing'></p></section>"
        for view, title, what in VIEWS
    )
    lacks = (
        "<p class='missing'>This folder has no " + html.escape("; no ".join(data["missing"])) + ": those views are "
        "empty. `resnet-study run` writes every table.</p>"
        if data["missing"]
        else ""
    )
    payload = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    code = Path(__file__).with_name("explorer.js").read_text()
    return (
        "<h2 id='explorer'>Explore the measurements</h2><p>Pick a depth, arch, backend and seed: every view "
        f"follows. Hover for the numbers and the run key.</p>{lacks}<div id='explorer-controls'></div>"
        f"<div class='views'>{views}</div>"
        f"<script type='application/json' id='study-data'>{payload}</script>"
        f"<script>{plotly}</script><script>{code}</script>"
    )


STYLE = (
    "#explorer-controls{position:sticky;top:0;background:#fff;padding:.5em 0;z-index:10;border-bottom:1px solid #ddd}"
    "#explorer-controls label{margin-right:1.2em}.chart{height:420px}.views .view{margin:1.5em 0}"
    ".what{color:#555;margin:.2em 0}.missing{color:#a33}"
)
