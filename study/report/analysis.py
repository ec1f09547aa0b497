"""`analyze`: a study folder's tables in; verdict.json, report.md and report.html out.

Needs only results.csv; history.csv and gradnorms.csv (from the runner) add the training curves and
the after-training gradient norms, gradflow.csv the at-initialization ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from study.core.errors import UserError
from study.files import FIGURES, REPORT_HTML, REPORT_MD, STUDY, VERDICT, atomic_write_text
from study.report.explorer import STYLE, explorer_data, explorer_html
from study.report.sections import report
from study.verdicts.analyze import analyze
from study.verdicts.inputs import StudyTables, read_json, read_study_folder


def check_outputs_are_ours(folder: Path) -> None:
    """analyze rewrites verdict.json, the report and figures/: only where they are this tool's (a study
    folder, or a folder it analyzed before: its verdict.json). A user's files of those names are refused."""
    if (folder / STUDY).exists():
        return
    if (folder / VERDICT).exists():
        try:
            ours = isinstance(verdict := read_json(folder / VERDICT), dict) and "degradation" in verdict
        except UserError:
            ours = False
        if ours:
            return
        clashes = [VERDICT]
    else:
        clashes = [name for name in (REPORT_MD, REPORT_HTML, FIGURES) if (folder / name).exists()]
    if clashes:
        raise UserError(
            f"{folder} holds {', '.join(clashes)} that this tool did not write; analyze a copy of results.csv in a "
            "new folder (nothing was touched)"
        )


@dataclass(frozen=True)
class Analysis:
    """What `analyze_folder` read and decided, for whoever shows it next (the W&B analysis run)."""

    folder: Path
    tables: StudyTables
    verdict: dict
    explorer: dict  # the explorer's data: report.html's views, and the W&B run's charts


def analyze_folder(folder: Path, alpha: float = 0.05, margin: float = 0.05) -> Analysis:
    """Read the tables in `folder`, decide, draw, and write verdict.json, report.md and report.html."""
    folder = Path(folder)
    tables = read_study_folder(folder)
    check_outputs_are_ours(folder)
    for debris in [*folder.glob(".report.*"), *folder.glob(f".{VERDICT}.*"), *folder.glob(f"{FIGURES}/.*.png.*")]:
        debris.unlink(missing_ok=True)  # the temporary files of an analysis killed mid-write
    verdict = analyze(
        tables.results, alpha, margin, tables.exactness, tables.lesion, tables.norms, tables.gradflow_fit,
        tables.history, tables.settle,
    )  # fmt: skip
    doc = report(folder, verdict, tables, alpha)
    atomic_write_text(folder / VERDICT, json.dumps(verdict, indent=2, allow_nan=False))
    atomic_write_text(folder / REPORT_MD, doc.markdown())
    explorer = explorer_data(tables, verdict)
    page = doc.html("ResNet depth study", folder, {"explorer": explorer_html(explorer)}, STYLE)
    atomic_write_text(folder / REPORT_HTML, page)
    return Analysis(folder, tables, verdict, explorer)
