"""`collect OUT SRC...`: merge study folders from several machines (`study.experiment.collect`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("collect", help="merge study folders from several machines into one")
    parser.add_argument("out", type=Path)
    parser.add_argument("sources", type=Path, nargs="+")
    parser.set_defaults(run=collect)


def collect(args: argparse.Namespace) -> int:
    from study.experiment.collect import collect as merge

    rows, notes = merge(args.out, args.sources, wait=lambda line: print(line, file=sys.stderr, flush=True))
    for note in notes:  # what was not collected, one line each; the rest is merged
        print(note, file=sys.stderr)
    print(f"{args.out}: {len(rows)} finished runs in results.csv")
    return 0
