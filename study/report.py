"""`analyze`: verdicts (study.verdicts.degradation) + figures (matplotlib) -> verdict.json, report.md, report.html.

Needs only results.csv; history.csv and gradnorms.csv (from the runner) add the training curves and
the after-training gradient norms, gradflow.csv the at-initialization ones.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as t_dist

from study.core.spec import ARCHS
from study.files import (
    BLOCK_RATIOS,
    EXACTNESS,
    FIGURES,
    GRADFLOW,
    GRADFLOW_FIT,
    GRADNORMS,
    HISTORY,
    LESION,
    REPORT_HTML,
    REPORT_MD,
    RESULTS,
    STUDY,
    VERDICT,
    atomic_write_text,
)
from study.findings import findings
from study.verdicts.agreement import cell_label
from study.verdicts.analyze import analyze, main_experiment
from study.verdicts.inputs import load_exactness, load_results, read_optional

BOLD = re.compile(r"[*][*](.+?)[*][*]")  # Markdown's **bold** in a paragraph
COLORS = {"plain": "tab:red", "resnet": "tab:blue"}


# -- figures -------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def figure_curves(history: pd.DataFrame, path: Path) -> Path:
    """He et al. Fig. 6 layout: training (solid) and test (dashed) error per epoch, one line per
    depth (mean over seeds); plain nets left, residual nets right; one row per backend."""
    plt = _plt()
    backends = sorted(history.backend.unique())
    fig, axes = plt.subplots(len(backends), 2, figsize=(10, 3.4 * len(backends)), squeeze=False, sharey=True)
    depths = sorted(history.depth.unique())
    cmap = plt.get_cmap("viridis", len(depths) + 1)
    for row, backend in enumerate(backends):
        for col, arch in enumerate(ARCHS):
            ax = axes[row][col]
            for i, depth in enumerate(depths):
                cell = history[(history.backend == backend) & (history.arch == arch) & (history.depth == depth)]
                if cell.empty:
                    continue
                mean = cell.groupby("epoch")[["train_error", "test_error"]].mean()
                ax.plot(mean.index, 100 * mean.train_error, color=cmap(i), label=f"{arch}-{depth}")
                ax.plot(mean.index, 100 * mean.test_error, color=cmap(i), linestyle="--", linewidth=0.9)
            ax.set_title(f"{backend}: {arch} nets")
            ax.set_xlabel("epoch")
            ax.set_ylabel("error (%)")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    return _save(fig, path)


def figure_error_vs_depth(degradation: dict, results: pd.DataFrame, path: Path) -> Path:
    """Final train and test error vs depth, mean with a t-based 95 % CI, per backend and arch."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, metric in zip(axes, ("final_train_error", "final_test_error"), strict=True):
        for (backend, arch), group in results.groupby(["backend", "arch"]):
            summary = group.groupby("depth")[metric].agg(["mean", "sem", "count"])
            half = summary["sem"].fillna(0) * np.array(
                [t_dist.ppf(0.975, n - 1) if n > 1 else 0.0 for n in summary["count"]]
            )
            style = "-o" if backend == "lightning" else "--s"
            ax.errorbar(
                summary.index,
                100 * summary["mean"],
                yerr=100 * half,
                fmt=style,
                capsize=3,
                color=COLORS.get(arch),
                label=f"{arch} ({backend})",
            )
        ax.set_xlabel("depth (weighted layers)")
        ax.set_ylabel(f"{metric.replace('final_', '').replace('_', ' ')} (%)")
        ax.legend(fontsize=8)
    axes[0].set_title(f"degradation: {degradation['verdict']}")
    return _save(fig, path)


def figure_agreement(agreement: dict, path: Path) -> Path:
    """Per cell and metric, the difference of the twins' mean errors with its 95 % CI (Welch) and the
    equivalence margin: a cell is shown equivalent when its interval (at the Holm level) lies inside
    the band. Crosses mark the differences the cell excludes (±bound)."""
    plt = _plt()
    metrics = agreement["metrics"]
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(5 * len(metrics), 0.45 * len(agreement["cells"]) + 1.6), squeeze=False, sharey=True
    )
    labels = [cell_label(c, agreement["pairs"], " − ") for c in agreement["cells"]]
    margin = 100 * agreement["margin"]
    for ax, metric in zip(axes[0], metrics, strict=True):
        for row, cell in enumerate(agreement["cells"]):
            test = cell["tests"][metric]
            if test["mean_diff"] is None:
                continue
            color = {"equivalent": "tab:green", "bounded": "tab:orange", "differs": "tab:red"}.get(
                cell["verdict"], "grey"
            )
            low, high = (test["ci_low"], test["ci_high"]) if test["ci_low"] is not None else (None, None)
            ax.plot(100 * test["mean_diff"], row, "o", color=color)
            if low is not None:
                ax.plot([100 * low, 100 * high], [row, row], color=color)
            if test["bound"] is not None:
                ax.plot([-100 * test["bound"], 100 * test["bound"]], [row, row], "x", color=color, alpha=0.6)
        ax.axvspan(-margin, margin, color="grey", alpha=0.15)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        pair = " − ".join(agreement["pairs"][0]) if len(agreement["pairs"]) == 1 else "first − second"
        ax.set_xlabel(f"{pair}: {metric.replace('final_', '').replace('_', ' ')} (points)")
    axes[0][0].set_title(f"agreement: {agreement['verdict']} (band ±{margin:.1f} points)", loc="left")
    return _save(fig, path)


def figure_gradient_norms(
    gradnorms: pd.DataFrame | None, gradflow: pd.DataFrame | None, config: dict, path: Path
) -> Path:
    """Per-layer gradient norm (log scale), input on the left: at initialization (dashed, from
    gradflow, the study's activation and normalization) and at the last epoch (solid, mean over
    runs), one colour per depth; plain vs residual."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    frames = [f for f in (gradnorms, gradflow) if f is not None and not f.empty]
    depths = sorted(set().union(*(set(f.depth) for f in frames)))
    color = dict(zip(depths, plt.get_cmap("viridis", len(depths) + 1).colors, strict=False))
    for ax, arch in zip(axes, ARCHS, strict=True):
        if gradnorms is not None and not gradnorms.empty:
            last = gradnorms[gradnorms.epoch == gradnorms.groupby("run_key").epoch.transform("max")]
            for depth, group in last[last.arch == arch].groupby("depth"):
                mean = group.groupby("layer_index").grad_norm.mean()
                ax.semilogy(mean.index, mean.values, color=color[depth], label=f"{arch}-{depth} trained")
        if gradflow is not None and not gradflow.empty:
            init = gradflow[
                (gradflow.arch == arch)
                & (gradflow.activation == config.get("activations", ["relu"])[0])
                & (gradflow.norm == config.get("norms", ["batch"])[0])
            ]
            for depth, group in init.groupby("depth"):
                mean = group.groupby("layer_index").grad_norm.mean()
                ax.semilogy(mean.index, mean.values, color=color[depth], linestyle="--", label=f"{arch}-{depth} init")
        ax.set_title(f"{arch} nets: gradient norm per layer")
        ax.set_xlabel("weighted layer (input -> output)")
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("||dL/dW||")
    return _save(fig, path)


def figure_gradflow(gradflow: pd.DataFrame, path: Path) -> Path:
    """At initialization: activation (columns) x normalization (rows), plain vs residual per depth."""
    plt = _plt()
    norms, activations = sorted(gradflow.norm.unique()), list(dict.fromkeys(gradflow.activation))
    fig, axes = plt.subplots(
        len(norms), len(activations), figsize=(4 * len(activations), 3.2 * len(norms)), squeeze=False, sharey=True
    )
    for r, norm in enumerate(norms):
        for c, activation in enumerate(activations):
            ax = axes[r][c]
            cell = gradflow[(gradflow.norm == norm) & (gradflow.activation == activation)]
            for (arch, depth), group in cell.groupby(["arch", "depth"]):
                mean = group.groupby("layer_index").grad_norm.mean()
                ax.semilogy(
                    mean.index,
                    mean.values,
                    color=COLORS[arch],
                    alpha=0.35 + 0.65 * depth / cell.depth.max(),
                    label=f"{arch}-{depth}",
                )
            ax.set_title(f"{activation}, norm={norm}")
            ax.set_xlabel("weighted layer (input -> output)")
            ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def figure_lesion(lesion: pd.DataFrame, verdict: dict, path: Path) -> Path:
    """Left: test error with one block deleted, by block (mean over networks), per arch and depth, the
    intact error dotted. Right: test error with k random blocks deleted (k = 0: intact, 1: one block)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    depths = sorted(lesion.depth.unique())
    shade = {d: 0.35 + 0.65 * (i + 1) / len(depths) for i, d in enumerate(depths)}
    for (arch, depth), cell in lesion.groupby(["arch", "depth"]):
        single = cell[cell.kind == "single"]
        order = {name: i for i, name in enumerate(dict.fromkeys(single.blocks))}
        by_block = single.assign(index=single.blocks.map(order)).groupby("index").test_error.mean()
        style = {"color": COLORS[arch], "alpha": shade[depth]}
        axes[0].plot(by_block.index, 100 * by_block.values, "-o", markersize=3, label=f"{arch}-{depth}", **style)
        intact = cell[cell.kind == "intact"].test_error.mean()
        axes[0].axhline(100 * intact, linestyle=":", linewidth=0.8, **style)
        curve = cell.groupby("k").test_error.mean()
        axes[1].plot(curve.index, 100 * curve.values, "-o", markersize=3, label=f"{arch}-{depth}", **style)
    axes[0].set_xlabel("deleted block (input -> output)")
    axes[0].set_ylabel("test error (%)")
    axes[0].set_title(f"lesion: {verdict['verdict']}", loc="left")
    axes[1].set_xlabel("blocks deleted at once (k)")
    for ax in axes:
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def figure_norms(norms: pd.DataFrame, verdict: dict, path: Path) -> Path:
    """Median ratio ||dL/dx_in|| / ||dL/dx_out|| per block (log scale; 1 = norm-preserving), per arch
    and depth, at initialization and after training."""
    plt = _plt()
    stages = [s for s in ("init", "trained") if s in set(norms.stage)]
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 3.8), squeeze=False, sharey=True)
    depths = sorted(norms.depth.unique())
    shade = {d: 0.35 + 0.65 * (i + 1) / len(depths) for i, d in enumerate(depths)}
    for ax, stage in zip(axes[0], stages, strict=True):
        for (arch, depth), cell in norms[norms.stage == stage].groupby(["arch", "depth"]):
            ratio = cell.groupby("block_index").ratio.median()
            ax.semilogy(ratio.index, ratio.values, color=COLORS[arch], alpha=shade[depth], label=f"{arch}-{depth}")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{stage}", loc="left")
        ax.set_xlabel("block (input -> output)")
        ax.legend(fontsize=7, ncol=2)
    axes[0][0].set_ylabel("||dL/dx_in|| / ||dL/dx_out||")
    fig.suptitle(f"norm preservation: {verdict['verdict']}", x=0.01, ha="left", fontsize=10)
    return _save(fig, path)


# -- the report ----------------------------------------------------------------------------------


def _fmt(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _pct_ci(mean, low, high) -> str:
    if mean is None:
        return "–"
    if low is None or high is None:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}]"


class Document:
    """A report as blocks, rendered to both Markdown and HTML."""

    def __init__(self):
        self.blocks: list[tuple] = []

    def heading(self, text, level=2):
        self.blocks.append(("h", level, text))

    def para(self, text):
        self.blocks.append(("p", text))

    def table(self, header, rows):
        self.blocks.append(("table", header, [[_fmt(v) for v in row] for row in rows]))

    def figure(self, path: Path, caption: str):
        self.blocks.append(("img", path, caption))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            if block[0] == "h":
                out.append(f"{'#' * block[1]} {block[2]}")
            elif block[0] == "p":
                out.append(block[1])
            elif block[0] == "table":
                out.append("| " + " | ".join(block[1]) + " |\n|" + "---|" * len(block[1]))
                out[-1] += "".join("\n| " + " | ".join(row) + " |" for row in block[2])
            else:
                out.append(f"![{block[2]}]({block[1].as_posix()})\n\n*{block[2]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = [
            f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}</style>",
        ]
        for block in self.blocks:
            if block[0] == "h":
                out.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif block[0] == "p":
                out.append("<p>" + BOLD.sub(r"<b>\1</b>", html.escape(block[1])) + "</p>")
            elif block[0] == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block[2]
                )
                out.append(f"<table><tr>{head}</tr>{body}</table>")
            else:
                out.append(
                    f"<figure><img src='{block[1].as_posix()}'>"
                    f"<figcaption>{html.escape(block[2])}</figcaption></figure>"
                )
        return "\n".join(out) + "\n"


def analyze_folder(folder: Path, alpha: float = 0.05, margin: float = 0.05) -> dict:
    """Read the tables in `folder`, decide, draw, and write verdict.json, report.md and report.html."""
    folder = Path(folder)
    results = load_results(folder / RESULTS)
    exactness = load_exactness(folder / EXACTNESS) if (folder / EXACTNESS).exists() else None
    history, gradnorms = read_optional(folder / HISTORY), read_optional(folder / GRADNORMS)
    gradflow, gradflow_fit = read_optional(folder / GRADFLOW), read_optional(folder / GRADFLOW_FIT)
    lesion, norms = read_optional(folder / LESION), read_optional(folder / BLOCK_RATIOS)
    verdict = analyze(results, alpha, margin, exactness, lesion, norms, gradflow_fit)
    config = json.loads((folder / STUDY).read_text())["config"] if (folder / STUDY).exists() else {}
    datasets = sorted(results.dataset.unique())
    context = {
        "dataset": ", ".join(datasets),
        "epochs": int(results.epochs.max()),
        "shape": {
            "digits": "8x8 grey images",
            "cifar10": "32x32 colour images",
            "synthetic": "8x8 synthetic images",
        }.get(datasets[0], ""),
    }

    (folder / FIGURES).mkdir(exist_ok=True)
    fig = lambda name: Path(FIGURES) / name  # noqa: E731 (relative to the report)
    doc = Document()
    doc.heading("ResNet depth study", 1)
    doc.para(
        f"{len(results)} runs: backends {', '.join(sorted(results.backend.unique()))}; depths "
        f"{', '.join(map(str, sorted(results.depth.unique())))}; seeds per cell up to "
        f"{results.groupby(['backend', 'arch', 'depth']).seed.nunique().max()}; data set "
        f"{', '.join(datasets)}; {int(results.epochs.max())} epochs. "
        f"Total training time {results.wall_s.sum() / 60:.1f} min. Diverged runs: {verdict['diverged']['count']} "
        "(counted as failures with their last error, chance level if no epoch finished)."
    )
    doc.heading("Findings")
    for paragraph in findings(verdict, context):
        doc.para(paragraph)

    deg = verdict["degradation"]
    doc.heading(f"Degradation: {deg['verdict']}")
    doc.para(f"{deg['reason']} Metric: {deg['metric']}; Holm-corrected at alpha = {alpha} across all tests below.")
    for backend, b in deg["backends"].items():
        doc.heading(f"{backend}: {b['verdict']}", 3)
        doc.para(b["reason"])
        doc.table(
            ["arch", "depth", "runs", "mean error % [95% CI]"],
            [[c["arch"], c["depth"], c["n"], _pct_ci(c["mean"], c["ci_low"], c["ci_high"])] for c in b["cells"]],
        )
        rows = []
        for name, t in b["tests"].items():
            effect = t.get("mean_diff", t.get("coef"))
            rows.append(
                [
                    name,
                    _fmt(t.get("statistic", t.get("coef"))),
                    t.get("p"),
                    t.get("p_holm"),
                    t.get("significant"),
                    _pct_ci(effect, t.get("ci_low"), t.get("ci_high")) if effect is not None else "–",
                ]
            )
        doc.table(["test", "statistic", "p", "p (Holm)", "significant", "effect, error points % [95% CI]"], rows)
    doc.figure(
        figure_error_vs_depth(deg, results, folder / fig("error_vs_depth.png")).relative_to(folder),
        "Final training and test error vs depth (mean, 95% CI over seeds).",
    )
    if history is not None:
        doc.figure(
            figure_curves(history, folder / fig("training_curves.png")).relative_to(folder),
            "Training (solid) and test (dashed) error per epoch, mean over seeds (He et al. Fig. 6 layout).",
        )

    agr = verdict["agreement"]
    doc.heading(f"Agreement of the twins: {agr['verdict']}")
    doc.para(agr["reason"] + (f" What would settle it: {agr['settle']}." if agr["settle"] else ""))
    doc.para(f"Proved exactly: {agr['proved']}.")
    doc.para(
        f"Shown statistically: {agr['shown']}. Welch TOST at ±{100 * agr['margin']:.1f} points on the final train "
        f"and test error, Holm over all cells and metrics; {agr['design']}."
    )
    doc.para(
        "Not excluded: "
        + ("; ".join(agr["not_excluded"]) if agr["not_excluded"] else "nothing beyond the margin in any cell")
        + "."
    )
    rows = []
    for cell in agr["cells"]:
        for metric, t in cell["tests"].items():
            rows.append(
                [
                    cell_label(cell, agr["pairs"], " − "),  # several pairs: first minus second
                    metric.replace("final_", ""),
                    "+".join(map(str, t["n"])),
                    _pct_ci(t["mean_diff"], t["ci_low"], t["ci_high"]),
                    t["p_tost_holm"],
                    t["p_diff_holm"],
                    None if t["bound"] is None else f"±{100 * t['bound']:.1f}",
                    None if t["mdd"] is None else f"{100 * t['mdd']:.1f}",
                    t["pair_correlation"],
                    cell["verdict"],
                ]
            )
    doc.table(
        [
            "cell",
            "metric",
            "runs",
            f"{' − '.join(agr['pairs'][0]) if len(agr['pairs']) == 1 else 'difference'}, points [95% CI]",
            "p TOST (Holm)",
            "p diff (Holm)",
            "excluded beyond",
            "detectable (80 %)",
            "seed pairing r",
            "verdict",
        ],
        rows,
    )
    if agr["cells"]:
        doc.figure(
            figure_agreement(agr, folder / fig("agreement.png")).relative_to(folder),
            "Difference of the twins' mean final errors per cell with its 95 % CI; the band is the equivalence margin, "
            "the crosses the differences each cell excludes.",
        )

    rs = verdict["relu_vs_skip"]
    doc.heading(f"ReLU or skip: {rs['verdict']}")
    doc.para(rs["reason"] + ".")
    if rs["cells"]:
        doc.table(
            ["activation", "norm", "depth", "plain error %", "residual error %", "p (Holm)", "skip helps"],
            [
                [
                    c["activation"],
                    c["norm"],
                    c["depth"],
                    _pct_ci(c["plain"], c["plain_ci_low"], c["plain_ci_high"]),
                    _pct_ci(c["resnet"], c["resnet_ci_low"], c["resnet_ci_high"]),
                    c["p_holm"],
                    c["skip_helps"],
                ]
                for c in rs["cells"]
            ],
        )
    if rs["at_init"]:
        doc.table(
            ["arch", "activation", "norm", "depth", "log10 decay / layer", "first/last layer gradient"],
            [
                [c["arch"], c["activation"], c["norm"], c["depth"], c["decay_per_layer"], c["first_to_last"]]
                for c in rs["at_init"]
            ],
        )

    les = verdict["lesion"]
    doc.heading(f"Lesion: {les['verdict']}")
    doc.para(les["reason"] + ".")
    if les["depths"]:
        doc.table(
            ["depth", "arch", "networks", "intact test error %", "rise per deleted block, points [95% CI]"],
            [
                [
                    d["depth"],
                    arch,
                    d[arch]["n"],
                    _pct_ci(d[arch]["intact_error"], None, None),
                    _pct_ci(d[arch]["rise"], d[arch]["ci_low"], d[arch]["ci_high"]),
                ]
                for d in les["depths"]
                for arch in ARCHS
                if arch in d
            ],
        )
    if lesion is not None:
        doc.figure(
            figure_lesion(main_experiment(lesion), les, folder / fig("lesion.png")).relative_to(folder),
            "Test error with one block deleted, per block (left; dotted: intact) and with k random blocks (right).",
        )

    nrm = verdict["norm_preservation"]
    doc.heading(f"Norm preservation: {nrm['verdict']}")
    doc.para(nrm["reason"] + ".")
    rows = [
        [stage, c["arch"], c["depth"], c["n"], c["mean_ratio"], c["deviation"]]
        for stage, entry in nrm["stages"].items()
        for c in entry["cells"]
    ]
    if rows:
        doc.table(["stage", "arch", "depth", "networks", "median block ratio", "mean |log10 ratio|"], rows)
    if norms is not None:
        doc.figure(
            figure_norms(main_experiment(norms), nrm, folder / fig("norms.png")).relative_to(folder),
            "Median ratio ||dL/dx_in|| / ||dL/dx_out|| per block, at initialization and after training.",
        )

    doc.heading("Gradient flow")
    if gradnorms is not None or gradflow is not None:
        doc.figure(
            figure_gradient_norms(gradnorms, gradflow, config, folder / fig("gradient_norms.png")).relative_to(folder),
            "Per-layer gradient norm at initialization (dashed) and after training (solid).",
        )
    if gradflow is not None:
        doc.figure(
            figure_gradflow(gradflow, folder / fig("gradflow.png")).relative_to(folder),
            "Gradient norm per layer at initialization: activation x normalization, plain vs residual.",
        )
    if gradflow_fit is not None:
        doc.para(
            "Per-layer decay of the gradient norm at initialization: slope of log10 norm per layer of distance "
            "from the output (negative: vanishing towards the input), and first-to-last layer ratio."
        )
        fit = gradflow_fit.groupby(["arch", "activation", "norm", "depth"], as_index=False)[
            ["decay_per_layer", "first_to_last"]
        ].mean()
        doc.table(["arch", "activation", "norm", "depth", "log10 decay / layer", "first/last"], fit.values.tolist())
    if gradnorms is None and gradflow is None:
        doc.para("No gradient data in this folder (gradnorms.csv, gradflow.csv).")

    atomic_write_text(folder / VERDICT, json.dumps(verdict, indent=2, allow_nan=False))
    atomic_write_text(folder / REPORT_MD, doc.markdown())
    atomic_write_text(folder / REPORT_HTML, doc.html("ResNet depth study"))
    return verdict
