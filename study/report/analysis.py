"""`analyze`: a study folder's tables in; verdict.json, report.md and report.html out.

Needs only results.csv; history.csv and gradnorms.csv (from the runner) add the training curves and
the after-training gradient norms, gradflow.csv the at-initialization ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from study.files import FIGURES, REPORT_HTML, REPORT_MD, VERDICT, atomic_write_text
from study.report.sections import report
from study.verdicts.analyze import analyze
from study.verdicts.inputs import read_study_folder


def analyze_folder(folder: Path, alpha: float = 0.05, margin: float = 0.05) -> dict:
    """Read the tables in `folder`, decide, draw, and write verdict.json, report.md and report.html."""
    folder = Path(folder)
    tables = read_study_folder(folder)
    for debris in [*folder.glob(".report.*"), *folder.glob(f".{VERDICT}.*"), *folder.glob(f"{FIGURES}/.*.png.*")]:
        debris.unlink(missing_ok=True)  # the temporary files of an analysis killed mid-write
    verdict = analyze(
        tables.results, alpha, margin, tables.exactness, tables.lesion, tables.norms, tables.gradflow_fit,
        tables.history, tables.settle,
    )  # fmt: skip
    doc = report(folder, verdict, tables, alpha)
    atomic_write_text(folder / VERDICT, json.dumps(verdict, indent=2, allow_nan=False))
    atomic_write_text(folder / REPORT_MD, doc.markdown())
    atomic_write_text(folder / REPORT_HTML, doc.html("ResNet depth study"))
    return verdict
