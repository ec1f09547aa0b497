"""`design`: choose a study's grid by measured power within a compute budget
(`study.experiment.design`): candidates resampled from pilot study folders, decided by the product's
verdicts, costed by `plan`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from study.cli.flags import add_json, finite, positive_int, probability
from study.core.errors import UserError

seconds = finite(0.0, low_open=True)


def register(commands) -> None:
    design = commands.add_parser(
        "design", help="score candidate study designs by power (resampled pilot runs) and predicted cost"
    )
    design.add_argument("pilots", nargs="+", type=Path, metavar="PILOT",
                        help="finished study folders to resample (docs/data/pilot-*)")  # fmt: skip
    design.add_argument("--seed-counts", default="5,6,7,8", help="seeds per cell to try (default 5,6,7,8)")
    design.add_argument("--studies", type=positive_int, default=200, help="simulated studies per candidate")
    design.add_argument("--wall-budget", type=seconds, default=300.0, help="seconds of wall time (predicted)")
    design.add_argument("--cpu-budget", type=seconds, default=550.0, help="seconds of CPU time (predicted)")
    design.add_argument("--power", type=probability, default=0.9, help="the power every question asked must reach")
    design.add_argument("--throughput", type=Path, metavar="SOURCE",
                        help="measured rates, as for `plan` (default: the shipped 2-core table)")  # fmt: skip
    design.add_argument("--top", type=positive_int, default=12, help="rows of the table")
    add_json(design)
    design.set_defaults(run=run_design)


def run_design(args: argparse.Namespace) -> int:
    from study.experiment.design import describe, search, seeds_list
    from study.experiment.throughput_tables import load_throughput

    for folder in args.pilots:
        if not folder.is_dir():
            raise UserError(f"pilot {folder} is not a study folder")
    rows = search(args.pilots, seeds_list(args.seed_counts), args.studies, load_throughput(args.throughput),
                  args.wall_budget, args.cpu_budget, args.power)  # fmt: skip
    if args.json:
        print(json.dumps([{**{k: v for k, v in r.items() if k != "candidate"}, "design": r["candidate"].label()}
                          for r in rows], indent=1))  # fmt: skip
    else:
        print("\n".join(describe(rows, args.power, args.top)))
    return 0
