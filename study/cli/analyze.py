"""`analyze DIR`: verdicts, figures and the report of a study folder, and its W&B analysis run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from study.cli.flags import UsageError, add_json, add_verdict_arguments, add_wandb
from study.files import REPORT_HTML, REPORT_MD, VERDICT
from study.tracking.wandb_run import resolve_mode


def register(commands) -> None:
    parser = commands.add_parser("analyze", help="verdicts, figures and report from a study folder")
    parser.add_argument("folder", type=Path)
    add_verdict_arguments(parser)
    add_wandb(parser, "W&B mode of the analysis run")
    add_json(parser)
    parser.set_defaults(run=analyze)


def analyze(args: argparse.Namespace) -> int:
    from study.report.analysis import analyze_folder
    from study.tracking.dashboard import publish_study

    if not Path(args.folder).is_dir():
        raise UsageError(f"{args.folder} is not a folder")
    analysis = analyze_folder(Path(args.folder), alpha=args.alpha, margin=args.margin)
    publish_study(analysis, resolve_mode(args.wandb))
    print_verdict(analysis.verdict, Path(args.folder), args.json)
    return 0


def print_verdict(verdict: dict, out: Path, as_json: bool) -> None:
    """verdict.json on stdout, or every question the study asked (a relu-skip or budget study's own
    where it trained for it) with its verdict and evidence, and where the report is."""
    if as_json:
        print(json.dumps(verdict))
        return
    names = ["degradation", "agreement", "lesion", "norm_preservation"]
    names = [name for name in names if name in verdict]
    names += ["relu_vs_skip"] if verdict.get("relu_vs_skip", {}).get("trained") else []
    names += ["training_budget"] if verdict.get("training_budget", {}).get("budgets") else []
    for name in names:
        settle = verdict[name].get("settle")
        print(f"{name}: {verdict[name]['verdict']} - {verdict[name]['reason']}" + (f" ({settle})" if settle else ""))
    print(f"report: {out / REPORT_MD} (and {REPORT_HTML}, {VERDICT})")
