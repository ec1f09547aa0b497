"""The report's sections, one per question, each from its verdict (`verdict.json`'s entries) and the
tables behind it: a heading, the reason, tables of the statistics, and the figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.core.spec import ARCHS
from study.files import FIGURES
from study.report import figures
from study.report.document import Document, fmt, pct_ci
from study.report.findings import findings
from study.report.headlines import headline, words
from study.verdicts.agreement import cell_label
from study.verdicts.analyze import main_experiment
from study.verdicts.common import LEARNED
from study.verdicts.inputs import StudyTables

DATA_SHAPES = {"digits": "8x8 grey images", "cifar10": "32x32 colour images", "synthetic": "8x8 synthetic images"}


@dataclass
class Figures:
    """Draws a figure into the study folder's figures/ and adds it to the document."""

    folder: Path
    doc: Document

    def add(self, name: str, caption: str, draw: Callable[..., Path], *args) -> None:
        (self.folder / FIGURES).mkdir(exist_ok=True)
        path = draw(*args, self.folder / FIGURES / name)
        self.doc.figure(path.relative_to(self.folder), caption)


def overview(doc: Document, verdict: dict, results: pd.DataFrame) -> None:
    """The title, what was run, and the Findings (`study.report.findings`)."""
    datasets = sorted(results.dataset.unique())
    context = {
        "dataset": ", ".join(datasets),
        "epochs": int(results.epochs.max()),
        "shape": DATA_SHAPES.get(datasets[0], ""),
    }
    doc.heading("ResNet depth study", 1)
    verdict_table(doc, verdict)
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
    doc.insert("explorer")  # the web page's interactive views (`study.report.explorer`)
    doc.heading("Tables and figures")


QUESTIONS = (  # (verdict key, the question, what its verdict does not show)
    ("degradation", "Does depth degrade plain nets, not residual ones?",
     "why (the metric is the training error, so not overfitting, but not which optimization failure); nor the "
     "paper's numbers: this data set, recipe and depths only"),
    ("agreement", "Do the twins compute the same thing?",
     "that they run equally fast (`bench`, `compare`); undecided cells' outcomes beyond what they exclude; "
     "chaotic cells' outcomes seed by seed (compared in distribution only)"),
    ("relu_vs_skip", "Is it the ReLU or the skip?",
     "other activations or normalizations than the study's; a mechanism, only trained errors"),
    ("training_budget", "Is the deep plain net only slower?",
     "budgets beyond the longest trained; other learning rates"),
    ("lesion", "Do residual nets survive losing blocks?",
     "which block matters most in one net; deleting several blocks is sampled (random draws)"),
    ("norm_preservation", "Do residual blocks preserve the gradient's norm?",
     "that norm preservation causes trainability: a measured association, at initialization and after training"),
)  # fmt: skip


def verdict_table(doc: Document, verdict: dict) -> None:
    """One row per question the study asked: the answer in one plain sentence
    (`study.report.headlines`), the one-line evidence, what it does not show. A question the study's
    grid cannot answer (one activation, one budget) is not a row: a line after the table names the
    config that asks it and what that costs."""
    asked = [(name, question, caveat) for name, question, caveat in QUESTIONS
             if name in verdict and verdict[name]["verdict"] != "not_asked"]  # fmt: skip
    rows = [[question, headline(name, verdict[name]), verdict[name]["reason"], caveat]
            for name, question, caveat in asked]  # fmt: skip
    doc.table(["question", "answer", "evidence", "what it does not show"], rows)
    for name, question, _ in QUESTIONS:
        if name in verdict and verdict[name]["verdict"] == "not_asked":
            doc.para(f"Not asked by this study: {question} {not_asked(verdict[name])}")


def not_asked(entry: dict) -> str:
    """Which config asks a question this study does not, and what that costs: its runs (the report is
    a pure function of the folder's tables, so the time is `plan`'s to predict on the reader's machine)."""
    from study.configs import get_config

    config = get_config(entry["config"])
    return (f"`resnet-study run --config {config.name}` asks it ({len(config.points())} runs; "
            f"`resnet-study plan --config {config.name}` predicts their time on your machine).")  # fmt: skip


def degradation(doc: Document, figs: Figures, deg: dict, tables: StudyTables, alpha: float) -> None:
    doc.heading(f"Degradation: {words(deg['verdict'])}")
    doc.para(
        f"{deg['reason']}. Metric: {deg['metric']}; minimum effect {100 * deg['margin_effect']:.0f} points. Holds when "
        f"plain_rise and residual_flat are both shown at alpha = {alpha} (an intersection-union test); does not hold "
        f"when plain_flat or residual_rise is shown at alpha/2; exact sign tests on each seed's rise (deepest minus "
        f"shallowest depth): claims about the typical seed, valid whatever the runs' distribution. Cell means carry "
        f"t intervals, which assume normality."
    )
    if deg.get("settle"):
        doc.para(f"To settle it: {deg['settle']}.")
    for backend, b in deg["backends"].items():
        doc.heading(f"{backend}: {words(b['verdict'])}", 3)
        doc.para(b["reason"] + (f". To settle it: {b['settle']}" if b.get("settle") else ""))
        doc.table(
            [
                "arch",
                "depth",
                "runs",
                "mean error % [95% t CI, assumes normality]",
                "median error % [distribution-free CI]",
            ],
            [
                [
                    c["arch"],
                    c["depth"],
                    c["n"],
                    pct_ci(c["mean"], c["ci_low"], c["ci_high"]),
                    pct_ci(c.get("median"), c.get("median_ci_low"), c.get("median_ci_high")),
                ]
                for c in b["cells"]
            ],
        )
        rows = [
            [name, t.get("direction", "–"), fmt(t.get("threshold")), f"{t['beyond']} of {t['n']}", t["p"],
             t.get("level"), t.get("shown", "–"), pct_ci(t["estimate"], t["ci_low"], t["ci_high"]),
             None if t.get("tail_bound") is None else f"{100 * t['tail_bound']:.0f} %"]
            for name, t in b["tests"].items()
        ]  # fmt: skip
        doc.table(["test", "H1: typical seed's rise is", "threshold", "seeds beyond", "p (sign test)", "level", "shown",
                   "median seed's rise, points [distribution-free CI]", "seeds left open (95 %)"], rows)  # fmt: skip
        over = b.get("over_training")
        if over and over["epochs"]:
            doc.para(over_training_text(over))
    figs.add(
        "error_vs_depth.png",
        "Final training and test error vs depth (mean, 95% t CI over seeds, which assumes normality).",
        figures.figure_error_vs_depth,
        deg,
        tables.results,
    )
    if tables.history is not None:
        figs.add(
            "training_curves.png",
            "Training (solid) and test (dashed) error per epoch, mean over seeds (He et al. Fig. 6 layout).",
            figures.figure_curves,
            tables.history,
        )


def agreement(doc: Document, figs: Figures, agr: dict) -> None:
    doc.heading(f"Agreement of the twins: {words(agr['verdict'])}")
    doc.para(agr["reason"] + (f" What would settle it: {agr['settle']}." if agr["settle"] else ""))
    doc.para(f"Proved exactly: {agr['proved']}.")
    doc.para(
        f"Shown statistically: {agr['shown']}. Sign TOST (per seed) at ±{100 * agr['margin']:.1f} points on the "
        f"final train and test error; {agr['design']}."
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
                    t["n"],
                    pct_ci(t["median_diff"], t["ci_low"], t["ci_high"]),
                    t["p_tost_holm"],
                    t["p_diff_holm"] if t["p_diff_holm"] is not None else t.get("p_distribution"),
                    None if t["bound"] is None else f"±{100 * t['bound']:.1f}",
                    None if t["inside"] is None else f"{t['inside']} of {t['n']}",
                    t["pair_correlation"],
                    cell["verdict"] + (" (look 2)" if cell.get("look") == 2 else ""),
                ]
            )
    sequential = any("look" in cell for cell in agr["cells"])  # a --settle study: look 2 is Bonferroni
    doc.table(
        [
            "cell",
            "metric",
            "seeds",
            f"{' − '.join(agr['pairs'][0]) if len(agr['pairs']) == 1 else 'difference'}, median seed, points "
            "[distribution-free CI]",
            "p TOST (adjusted)" if sequential else "p TOST (Holm)",
            "p diff (adjusted)" if sequential else "p diff (Holm; chaotic cells: in distribution)",
            "excluded beyond",
            "seeds within the margin",
            "seed pairing r",
            "verdict",
        ],
        rows,
    )
    if agr["cells"]:
        figs.add(
            "agreement.png",
            "The twins' difference of final errors in the median seed per cell with its distribution-free interval "
            "(93.8 % at 5 seeds, the most they give); the band is the equivalence margin, the crosses the differences "
            "each cell excludes.",
            figures.figure_agreement,
            agr,
        )


def relu_skip(doc: Document, rs: dict) -> None:
    doc.heading(f"ReLU or skip: {words(rs['verdict'])}")
    doc.para(rs["reason"] + "." + (f" To settle it: {rs['settle']}." if rs.get("settle") else ""))
    if rs["cells"]:

        def net(entry: dict) -> str:
            below = f"{entry['below']} of {entry['n']} below {100 * LEARNED:.0f} %"
            return f"{pct_ci(entry['estimate'], entry['ci_low'], entry['ci_high'])}; {below}"

        doc.table(
            ["activation", "norm", "depth", "plain error %, median seed [distribution-free CI]; seeds learned",
             "residual error %, median seed [CI]; seeds learned", "plain − residual > 2 points: seeds",
             "p (sign test)", "skip helps"],
            [
                [c["activation"], c["norm"], c["depth"], net(c["plain"]), net(c["resnet"]),
                 f"{c['skip_helps']['beyond']} of {c['skip_helps']['n']}", c["skip_helps"]["p"],
                 c["skip_helps"]["shown"]]
                for c in rs["cells"]
            ],
        )  # fmt: skip
    if rs["at_init"]:
        doc.table(
            ["arch", "activation", "norm", "depth", "log10 decay / layer", "first/last layer gradient"],
            [
                [c["arch"], c["activation"], c["norm"], c["depth"], c["decay_per_layer"], c["first_to_last"]]
                for c in rs["at_init"]
            ],
        )


def training_budget(doc: Document, budget: dict) -> None:
    """Only where the study varied the training budget."""
    if not budget.get("budgets"):
        return

    def gap(test: dict | None) -> str:
        if test is None:
            return "–"
        return f"{pct_ci(test['estimate'], test['ci_low'], test['ci_high'])}; {test['beyond']} of {test['n']} seeds"

    doc.heading(f"Training budget: {words(budget['verdict'])}")
    doc.para(budget["reason"] + "." + (f" To settle it: {budget['settle']}." if budget.get("settle") else ""))
    doc.table(
        ["epochs", "plain gap, points, median seed [distribution-free CI]; seeds above 2 points",
         "p (sign test: gap > 2 points)", "residual gap, points [CI]; seeds below 2 points"],
        [[b["epochs"], gap(b["plain"]), (b["plain"] or {}).get("p"), gap(b["resnet"])] for b in budget["budgets"]],
    )  # fmt: skip


def lesion(doc: Document, figs: Figures, les: dict, table: pd.DataFrame | None) -> None:
    doc.heading(f"Lesion: {words(les['verdict'])}")
    doc.para(les["reason"] + ".")
    if les["depths"]:
        doc.table(
            [
                "depth",
                "arch",
                "networks",
                "intact test error %",
                "mean rise per deleted block, points [95% t CI, assumes normality]",
            ],
            [
                [
                    d["depth"],
                    arch,
                    d[arch]["n"],
                    pct_ci(d[arch]["intact_error"], None, None),
                    pct_ci(d[arch]["rise"], d[arch]["ci_low"], d[arch]["ci_high"]),
                ]
                for d in les["depths"]
                for arch in ARCHS
                if arch in d
            ],
        )
    if table is not None:
        figs.add(
            "lesion.png",
            "Test error with one block deleted, per block (left; dotted: intact) and with k random blocks (right).",
            figures.figure_lesion,
            main_experiment(table),
            les,
        )


def norm_preservation(doc: Document, figs: Figures, nrm: dict, table: pd.DataFrame | None) -> None:
    doc.heading(f"Norm preservation: {words(nrm['verdict'])}")
    doc.para(nrm["reason"] + "." + (f" To settle it: {nrm['settle']}." if nrm.get("settle") else ""))
    rows = [
        [stage, c["arch"], c["depth"], c["n"], c["mean_ratio"], c["deviation"]]
        for stage, entry in nrm["stages"].items()
        for c in entry["cells"]
    ]
    if rows:
        doc.table(["stage", "arch", "depth", "networks", "median block ratio", "mean |log10 ratio|"], rows)
    if table is not None:
        figs.add(
            "norms.png",
            "Median ratio ||dL/dx_in|| / ||dL/dx_out|| per block, at initialization and after training.",
            figures.figure_norms,
            main_experiment(table),
            nrm,
        )


def gradient_flow(doc: Document, figs: Figures, tables: StudyTables) -> None:
    gradnorms, gradflow, gradflow_fit = tables.gradnorms, tables.gradflow, tables.gradflow_fit
    doc.heading("Gradient flow")
    if gradnorms is not None or gradflow is not None:
        figs.add(
            "gradient_norms.png",
            "Per-layer gradient norm at initialization (dashed) and after training (solid).",
            figures.figure_gradient_norms,
            gradnorms,
            gradflow,
            tables.config,
        )
    if gradflow is not None:
        figs.add(
            "gradflow.png",
            "Gradient norm per layer at initialization: activation x normalization, plain vs residual.",
            figures.figure_gradflow,
            gradflow,
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


def report(folder: Path, verdict: dict, tables: StudyTables, alpha: float) -> Document:
    """The whole report of a study folder, its figures drawn into `folder`/figures."""
    doc = Document()
    figs = Figures(folder, doc)
    overview(doc, verdict, tables.results)
    degradation(doc, figs, verdict["degradation"], tables, alpha)
    agreement(doc, figs, verdict["agreement"])
    relu_skip(doc, verdict["relu_vs_skip"])
    training_budget(doc, verdict.get("training_budget", {}))
    lesion(doc, figs, verdict["lesion"], tables.lesion)
    norm_preservation(doc, figs, verdict["norm_preservation"], tables.norms)
    gradient_flow(doc, figs, tables)
    return doc


def over_training_text(over: dict) -> str:
    """Whether the plain gap (deepest − shallowest depth) holds over training, not only at the end."""
    low, high = over["depths"]
    last = over["epochs"][-1]
    gaps = ", ".join(
        f"epoch {e['epoch']}: {100 * e['estimate']:.1f}" for e in over["epochs"][:: max(1, len(over["epochs"]) // 5)]
    )
    if over["shown_from_epoch"] is None:
        held = f"not shown above {100 * over['threshold']:.0f} points at the last epoch"
    else:
        held = (
            f"shown above {100 * over['threshold']:.0f} points at every epoch from epoch {over['shown_from_epoch']} on"
        )
    return (
        f"Over training: the plain gap (depth {high} − depth {low}, {over['metric']}) is {held}; at the last epoch "
        f"{100 * last['estimate']:.1f} points [{100 * last['ci_low']:.1f}, {100 * last['ci_high']:.1f}]. Points by "
        f"epoch: {gaps}."
    )
