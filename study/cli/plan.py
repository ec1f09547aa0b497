"""`plan`: a study's wall time and GPU-hours predicted before it runs (`study.experiment.plan`), from
measured throughput: a finished study folder or a compare.json of the machine, or the shipped table."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from study.cli.flags import UsageError, add_json, positive_int
from study.cli.study import add_study_arguments, study_config_from_args
from study.core.errors import UserError


def register(commands) -> None:
    plan = commands.add_parser(
        "plan", help="predict a study's wall time and GPU-hours from measured throughput, before running it"
    )
    add_study_arguments(plan)
    plan.add_argument("--gpus", type=positive_int, metavar="N", help="plan for N GPUs (default: this machine's CPU)")
    plan.add_argument("--runs-per-gpu", type=positive_int, metavar="K", default=1, help="runs sharing each GPU")
    plan.add_argument("--workers", type=positive_int, help="CPU workers (default: as `run` chooses: cores, at most 4)")
    plan.add_argument("--executor", choices=("local", "ray"), default="local", help="the engine `run` will use")
    plan.add_argument(
        "--throughput",
        type=Path,
        metavar="SOURCE",
        help="measured rates: a finished study folder, or compare.json (`resnet-study compare` on the machine "
        "to plan for); default: the table measured on the 2-core development machine (docs/benchmarks.md)",
    )
    plan.add_argument(
        "--save-table",
        type=Path,
        metavar="FILE",
        help="also write the throughput table used (e.g. measured from a study folder) as JSON, for --throughput later",
    )
    add_json(plan)
    plan.set_defaults(run=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from study.experiment.plan import describe_plan, plan_study
    from study.experiment.throughput_tables import load_throughput

    config = study_config_from_args(args, reads_data=False)
    if args.gpus is None and args.runs_per_gpu != 1:
        raise UsageError("--runs-per-gpu needs --gpus")
    if args.gpus is not None and args.workers is not None:
        raise UsageError("--workers is for CPU plans; on GPUs the slots are --gpus x --runs-per-gpu")
    table = load_throughput(args.throughput)
    if args.save_table is not None:
        save_table(table, args.save_table)
    workers = args.workers or min(4, os.cpu_count() or 1)
    plan = plan_study(config, table, workers=workers, gpus=args.gpus or 0, runs_per_gpu=args.runs_per_gpu,
                      executor=args.executor)  # fmt: skip
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1))
    else:
        print("\n".join(describe_plan(plan)))
    return 0


def save_table(table, path: Path) -> None:
    """The table as JSON at `path`: a new file, or one this command wrote before (never a user's other file)."""
    from study.files import atomic_write_text
    from study.schemas.base import read_json

    if path.is_dir() or path.is_symlink():
        raise UsageError(f"--save-table {path}: a folder or a link; name a new file")
    if path.exists():
        try:
            ours = "probe_factor" in read_json(path)
        except (UserError, TypeError):
            ours = False
        if not ours:
            raise UsageError(f"--save-table {path}: exists and is not a throughput table; name a new file")
    atomic_write_text(path, json.dumps(table.to_dict(), indent=1, allow_nan=False) + "\n")
