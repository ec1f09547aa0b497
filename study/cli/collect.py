"""`collect OUT SRC...`: merge study folders from several machines (`study.experiment.study_folder.collect`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("collect", help="merge study folders from several machines into one")
    parser.add_argument("out", type=Path)
    parser.add_argument("sources", type=Path, nargs="+")
    parser.set_defaults(run=collect)


def collect(args: argparse.Namespace) -> int:
    from study.experiment.study_folder import collect as merge

    rows = merge(args.out, args.sources)
    print(f"{args.out}: {len(rows)} finished runs in results.csv")
    return 0
