"""The report's figures (matplotlib, Agg): each draws one verdict's evidence from the study's tables
into a PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as t_dist

from study.core.spec import ARCHS
from study.files import atomic_write
from study.verdicts.agreement import cell_label

COLORS = {"plain": "tab:red", "resnet": "tab:blue"}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """The figure as a PNG, written atomically (a killed report never truncates a good figure)."""
    fig.tight_layout()
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    finally:
        pyplot().close(fig)
    return path


def figure_curves(history: pd.DataFrame, path: Path) -> Path:
    """He et al. Fig. 6 layout: training (solid) and test (dashed) error per epoch, one line per
    depth (mean over seeds); plain nets left, residual nets right; one row per backend."""
    plt = pyplot()
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
    return save(fig, path)


def figure_error_vs_depth(degradation: dict, results: pd.DataFrame, path: Path) -> Path:
    """Final train and test error vs depth, mean with a t-based 95 % CI, per backend and arch."""
    plt = pyplot()
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
    return save(fig, path)


def figure_agreement(agreement: dict, path: Path) -> Path:
    """Per cell and metric, the twins' difference in the median seed with its distribution-free interval
    and the equivalence margin; crosses mark the differences the cell's sign TOST excludes at its Holm
    level (±bound): a cell is shown equivalent when they lie inside the band."""
    plt = pyplot()
    metrics = agreement["metrics"]
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(5 * len(metrics), 0.45 * len(agreement["cells"]) + 1.6), squeeze=False, sharey=True
    )
    labels = [cell_label(c, agreement["pairs"], " − ") for c in agreement["cells"]]
    margin = 100 * agreement["margin"]
    for ax, metric in zip(axes[0], metrics, strict=True):
        for row, cell in enumerate(agreement["cells"]):
            test = cell["tests"][metric]
            if test["median_diff"] is None:
                continue
            color = {"equivalent": "tab:green", "undecided": "tab:orange", "differs": "tab:red",
                     "chaotic": "tab:gray"}.get(cell["verdict"], "grey")  # fmt: skip
            low, high = (test["ci_low"], test["ci_high"]) if test["ci_low"] is not None else (None, None)
            ax.plot(100 * test["median_diff"], row, "o", color=color)
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
    return save(fig, path)


def figure_gradient_norms(
    gradnorms: pd.DataFrame | None, gradflow: pd.DataFrame | None, config: dict, path: Path
) -> Path:
    """Per-layer gradient norm (log scale), input on the left: at initialization (dashed, from
    gradflow, the study's activation and normalization) and at the last epoch (solid, mean over
    runs), one colour per depth; plain vs residual."""
    plt = pyplot()
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
    return save(fig, path)


def figure_gradflow(gradflow: pd.DataFrame, path: Path) -> Path:
    """At initialization: activation (columns) x normalization (rows), plain vs residual per depth."""
    plt = pyplot()
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
    return save(fig, path)


def figure_lesion(lesion: pd.DataFrame, verdict: dict, path: Path) -> Path:
    """Left: test error with one block deleted, by block (mean over networks), per arch and depth, the
    intact error dotted. Right: test error with k random blocks deleted (k = 0: intact, 1: one block)."""
    plt = pyplot()
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
    return save(fig, path)


def figure_norms(norms: pd.DataFrame, verdict: dict, path: Path) -> Path:
    """Median ratio ||dL/dx_in|| / ||dL/dx_out|| per block (log scale; 1 = norm-preserving), per arch
    and depth, at initialization and after training."""
    plt = pyplot()
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
    return save(fig, path)
