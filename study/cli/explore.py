"""`explore DIR`: the study explorer (report.html) of a study folder, regenerated; prints its path."""

from __future__ import annotations

import argparse
from pathlib import Path

from study.cli.flags import UsageError, add_verdict_arguments
from study.files import REPORT_HTML


def register(commands) -> None:
    parser = commands.add_parser(
        "explore", help="regenerate a study folder's interactive report.html (and its report) and print its path"
    )
    parser.add_argument("folder", type=Path)
    add_verdict_arguments(parser)
    parser.set_defaults(run=explore)


def explore(args: argparse.Namespace) -> int:
    """`analyze` without W&B: the verdicts, report.md and report.html, whose path is printed."""
    from study.report.analysis import analyze_folder

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    analyze_folder(folder, alpha=args.alpha, margin=args.margin)
    print((folder / REPORT_HTML).resolve())
    return 0
