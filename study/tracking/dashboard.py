"""The study on the W&B dashboard: each run's checkpoint as a model artifact, and one analysis run.

After `analyze`, one more run joins the study's group (job type ``analysis``, id ``analysis-<study>``,
so analysing again updates the same run): the results as a `wandb.Table`, every figure as a
`wandb.Image`, the verdicts and their key statistics in its summary, and the study's files (results,
verdict, exactness, report, figures) as an artifact of type ``study``.

Lineage: each training run logs its checkpoint as an artifact of type ``model``; the analysis run
declares them as its inputs (`use_artifact`). W&B allows that only online — an offline run cannot
use an artifact — so offline the study artifact lists its inputs in its metadata, and
`resnet-study analyze DIR --wandb online`, after `wandb sync`, declares them on the server.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from study.files import (
    EXACTNESS,
    FIGURES,
    GRADFLOW,
    GRADFLOW_FIT,
    GRADNORMS,
    HISTORY,
    REPORT_HTML,
    REPORT_MD,
    RESULTS,
    RUNS,
    STUDY,
    SUMMARY,
    VERDICT,
)
from study.report.analysis import Analysis
from study.tracking.wandb_run import start_wandb
from study.verdicts.inputs import StudyTables, load_summary

STUDY_FILES = (RESULTS, VERDICT, EXACTNESS, REPORT_MD, REPORT_HTML, HISTORY, GRADNORMS, GRADFLOW, GRADFLOW_FIT, STUDY)


def model_artifact_name(run_key: str) -> str:
    return f"model-{run_key}"


def log_model(run, name: str, checkpoint: Path, metadata: dict) -> str:
    """Log a run's checkpoint as a model artifact (the file is referenced, not copied); returns its name."""
    import wandb

    artifact = wandb.Artifact(name, type="model", metadata=metadata)
    artifact.add_file(str(checkpoint), policy="immutable")  # written once, at the end of the run
    run.log_artifact(artifact)
    return name


def verdict_summary(verdict: dict) -> dict:
    """The verdicts and the statistics a dashboard user compares, as flat summary keys."""
    from study.report.headlines import HEADLINES, headline

    summary = {}
    for name in ("degradation", "agreement"):
        summary[f"{name}/verdict"] = verdict[name]["verdict"]
        summary[f"{name}/reason"] = verdict[name]["reason"]
    for name in HEADLINES:  # every answer in the one plain sentence the report opens it with
        if name in verdict:
            summary[f"{name}/answer"] = headline(name, verdict[name])
    for backend, entry in verdict["degradation"]["backends"].items():
        summary[f"degradation/{backend}/verdict"] = entry["verdict"]
        for test, values in entry["tests"].items():
            for key in ("p", "estimate", "ci_low", "ci_high"):
                if values.get(key) is not None:
                    summary[f"degradation/{backend}/{test}/{key}"] = values[key]
    agreement = verdict["agreement"]
    summary["agreement/exactness"] = agreement["exactness"]["status"]
    if agreement["exactness"].get("largest_difference") is not None:
        summary["agreement/exactness_largest_difference"] = agreement["exactness"]["largest_difference"]
    for cell in agreement["cells"]:
        prefix = f"agreement/{cell['arch']}-{cell['depth']}" + (
            f"/{'-'.join(cell['backends'])}" if len(agreement["pairs"]) > 1 else ""
        )
        summary[f"{prefix}/verdict"] = cell["verdict"]
        for metric, test in cell["tests"].items():
            for key in ("median_diff", "mean_diff", "bound", "inside", "p_tost_holm"):
                if test.get(key) is not None:
                    summary[f"{prefix}/{metric}/{key}"] = test[key]
    summary["diverged/count"] = verdict["diverged"]["count"]
    return summary


def explorer_charts(data: dict) -> dict:
    """The explorer's views as W&B line plots (`study.report.explorer.explorer_data`'s numbers), one per
    network: training curves and lesion curves per seed, gradient norms per layer and block gradient
    ratios at initialization and after training; and the error-vs-depth cells as a table. One backend
    (the first), activation and norm (the page's first choice) stand for the study, and the first seed
    where a view shows one run: the page itself lets one pick."""
    import wandb

    def series(name: str, title: str, xname: str, entries: list, x: str, y: str) -> None:
        if entries:
            charts[name] = wandb.plot.line_series([e[x] for _, e in entries], [e[y] for _, e in entries],
                                                  [label for label, _ in entries], title, xname)  # fmt: skip

    charts, start = {}, data["start"]
    for arch in data["axes"]["arch"]:
        for depth in data["axes"]["depth"]:
            net, name = f"{arch}|{depth}|{start['activation']}|{start['norm']}", f"{arch}-{depth}"
            keys = {seed: "|".join(map(str, (start["backend"], arch, depth, seed, start["activation"], start["norm"],
                                             start["epochs"]))) for seed in data["axes"]["seed"]}  # fmt: skip
            runs = {f"seed {seed}": data["run_index"][key] for seed, key in keys.items() if key in data["run_index"]}
            first = next(iter(runs.values()), None)

            def stages(table: str, net=net, first=first) -> list:
                return [(label, entry) for label, entry in (("at initialization", data[f"init_{table}"].get(net)),
                        ("after training", data[f"trained_{table}"].get(first))) if entry]  # fmt: skip

            def per_seed(table: str, runs=runs) -> list:
                return [(label, data[table][run]) for label, run in runs.items() if run in data[table]]

            series(f"explorer/curves/{name}", f"{name}: training error", "epoch", per_seed("history"), "epoch",
                   "train_error")  # fmt: skip
            series(f"explorer/grad_norms/{name}", f"{name}: gradient norm per layer", "layer", stages("grads"),
                   "layer_index", "grad_norm")  # fmt: skip
            series(f"explorer/block_ratios/{name}", f"{name}: block gradient ratio", "block", stages("ratios"),
                   "block_index", "ratio")  # fmt: skip
            series(f"explorer/lesion/{name}", f"{name}: test error vs blocks deleted", "blocks deleted",
                   per_seed("lesion"), "k", "test_error")  # fmt: skip
    if data["depth_error"]:
        charts["explorer/error_vs_depth"] = wandb.Table(dataframe=pd.DataFrame(data["depth_error"]))
    return charts


def _model_inputs(folder: Path) -> list[str]:
    """The model artifacts the study's runs logged (their summary.json names them)."""
    names = []
    for path in sorted((folder / RUNS).glob(f"*/{SUMMARY}")):
        name = load_summary(path).get("model_artifact")
        if name:
            names.append(name)
    return names


def study_id_of(folder: Path, tables: StudyTables) -> str:
    """study.json's id; else the one study results.csv names; else the folder's name."""
    if tables.study_id is not None:
        return tables.study_id
    ids = tables.results["study"].dropna().unique() if "study" in tables.results else []
    return str(ids[0]) if len(ids) == 1 else folder.resolve().name


def publish_study(analysis: Analysis, mode: str) -> str | None:
    """The analysis run of the study `analysis` read and decided (the module docstring; nothing read
    again); returns its W&B id."""
    if mode == "disabled":
        return None
    import wandb

    folder, verdict, results = analysis.folder, analysis.verdict, analysis.tables.results
    study = study_id_of(folder, analysis.tables)
    inputs = _model_inputs(folder)
    run_id = f"analysis-{study}"
    config = {"study": study, "runs": len(results), "inputs": inputs}
    run = start_wandb(mode, folder, config, study, "analysis", ["analysis", f"study-{study}"], run_id, run_id)
    figures = sorted((folder / FIGURES).glob("*.png"))
    run.log({"results": wandb.Table(dataframe=results)} | {
        f"figures/{path.stem}": wandb.Image(str(path), caption=path.stem.replace("_", " ")) for path in figures
    } | explorer_charts(analysis.explorer))  # fmt: skip
    if (folder / REPORT_HTML).exists():  # the explorer itself, as W&B shows an HTML page
        run.log({"explorer/page": wandb.Html(str(folder / REPORT_HTML), inject=False)})
    run.summary.update(verdict_summary(verdict))
    artifact = wandb.Artifact(f"study-{study}", type="study", metadata={"inputs": inputs, "runs": len(results)})
    for name in STUDY_FILES:
        if (folder / name).exists():
            artifact.add_file(str(folder / name))
    if figures:
        artifact.add_dir(str(folder / FIGURES), name=FIGURES)
    if mode == "online":  # lineage: W&B refuses use_artifact offline (module docstring)
        for name in inputs:
            run.use_artifact(f"{name}:latest")
    run.log_artifact(artifact)
    run.finish()
    return run_id
