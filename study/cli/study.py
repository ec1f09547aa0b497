"""`run` (the depth study: every grid point, resumable, then analyze) and `run-point` (one grid point,
what a W&B sweep agent runs), with the grid flags they share with `sweep`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

from study.cli.analyze import print_verdict
from study.cli.flags import (
    UsageError,
    add_data_dir,
    add_device,
    add_json,
    add_recipe_arguments,
    add_verdict_arguments,
    add_wandb,
    check_dataset,
    finite,
    int_list,
    name_list,
    nonnegative_int,
    positive_int,
    seed,
    seed_list,
)
from study.core.errors import UserError
from study.core.spec import ACTIVATIONS, ARCHS, NORMS, SHORTCUTS
from study.core.twin import BACKENDS
from study.experiment.placement import machine_gpus
from study.tracking.wandb_run import resolve_mode

GRID_AXES = ("backends", "archs", "depths", "seeds", "activations", "norms")  # StudyConfig's grid


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """The grid overrides shared by `run`, `run-point` and `sweep` (None: the config's)."""
    parser.add_argument(
        "--config",
        default="default",
        help="study config: default (digits, CPU, ~5 min), classic (the earlier default), paper (CIFAR-10, GPU), "
        "relu-skip or budget (digits, CPU)",
    )
    parser.add_argument("--dataset", help="override the config's data set")
    add_data_dir(parser)
    parser.add_argument("--backends", type=name_list(BACKENDS), help="e.g. keras,lightning")
    parser.add_argument("--archs", type=name_list(ARCHS), help="e.g. plain,resnet")
    parser.add_argument("--depths", type=int_list, help="CIFAR-style 6n+2 depths, e.g. 8,20,56")
    parser.add_argument("--seeds", type=seed_list, help="e.g. 0,1,2")
    add_recipe_arguments(parser, ("epochs", "warmup_epochs"), defaults=False)
    parser.add_argument("--shortcut", choices=SHORTCUTS)
    parser.add_argument("--activations", type=name_list(ACTIVATIONS), help="e.g. relu,tanh,sigmoid")
    parser.add_argument("--norms", type=name_list(NORMS), help="e.g. batch,none")
    add_wandb(parser)
    parser.add_argument(
        "--log-model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log each run's checkpoint as a W&B model artifact (default: yes)",
    )
    add_device(parser)


def study_config_from_args(args: argparse.Namespace, reads_data: bool = True):
    """The study config the flags name; `reads_data` False (`plan`): --data-dir is not needed."""
    from study.configs import get_config

    config = get_config(args.config).with_overrides(
        dataset=args.dataset,
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        shortcut=args.shortcut,
        settle=getattr(args, "settle", None),  # `run` only
        **{axis: getattr(args, axis) for axis in GRID_AXES},
    )
    if config.budgets and args.epochs is not None:
        raise UsageError(
            f"--epochs: the {config.name} config trains its own budgets ({', '.join(map(str, config.budgets))})"
        )
    check_dataset(config.dataset)
    if reads_data and config.dataset == "cifar10" and not args.data_dir:
        raise UsageError("--dataset cifar10 needs --data-dir (the folder with the CIFAR-10 python version files)")
    if config.dataset != "cifar10" and args.data_dir:
        raise UsageError(f"--data-dir is only used with --dataset cifar10, not {config.dataset}")
    return config


def register(commands) -> None:
    run = commands.add_parser("run", help="the depth study: every grid point, resumable, then analyze")
    add_study_arguments(run)
    run.add_argument("--out", type=Path, help="study folder (default runs/<config>); an existing one is resumed")
    run.add_argument(
        "--workers",
        type=int,
        help="parallel runs, each with cores/N threads (default: cores, at most 4, since small nets use cores "
        "poorly; on GPUs --runs-per-gpu per GPU)",
    )
    run.add_argument(
        "--runs-per-gpu",
        type=positive_int,
        metavar="K",
        help="on GPUs (CUDA_VISIBLE_DEVICES, else nvidia-smi), K workers share each GPU (default 1)",
    )
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: worker processes of this machine; ray: one Ray task per run on a Ray cluster (extra [ray])",
    )
    run.add_argument(
        "--address",
        help="with --executor ray: the cluster's HOST:PORT, or auto (default: $RAY_ADDRESS, else a new "
        "Ray of this machine for the study)",
    )
    run.add_argument("--gpus-per-run", type=gpus_per_run, metavar="G", help="with --executor ray (default 1 on GPUs)")
    run.add_argument("--cpus-per-run", type=positive_int, metavar="C", help="with --executor ray (default 1)")
    run.add_argument(
        "--settle",
        type=nonnegative_int,
        metavar="N",
        help="declared when the study starts: add N seeds to every cell whose agreement is undecided on the grid's "
        "seeds (two looks, each at alpha/2; docs/design.md)",
    )
    run.add_argument(
        "--confirm-size",
        action="store_true",
        help="run a study of more than 1000 runs or 24 predicted hours on this machine's CPU (refused otherwise)",
    )
    add_verdict_arguments(run)
    add_json(run, "print verdict.json instead of progress")
    run.set_defaults(run=run_study)

    point = commands.add_parser("run-point", help="one grid point of a study (what a W&B sweep agent runs)")
    add_study_arguments(point)
    point.add_argument("--out", type=Path, required=True)
    point.add_argument("--backend", choices=BACKENDS, required=True)
    point.add_argument("--arch", choices=ARCHS, required=True)
    point.add_argument("--depth", type=positive_int, required=True)
    point.add_argument("--seed", type=seed, required=True)
    point.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    point.add_argument("--norm", choices=NORMS, default="batch")
    add_json(point)
    point.set_defaults(run=run_point)


def gpus_per_run(text: str) -> float:
    """A GPU count Ray can place: a fraction of one GPU (runs share it) or whole GPUs."""
    value = finite(0.0, low_open=True)(text)
    if value > 1 and not value.is_integer():
        raise argparse.ArgumentTypeError(f"must be a fraction of one GPU or a whole number of GPUs; got {text!r}")
    return value


def check_engine_flags(args: argparse.Namespace) -> None:
    """Each engine's flags with that engine only (Ray itself is checked when `study_engine` connects,
    before the study folder is touched)."""
    local = {"--workers": args.workers, "--runs-per-gpu": args.runs_per_gpu}
    ray = {"--address": args.address, "--gpus-per-run": args.gpus_per_run, "--cpus-per-run": args.cpus_per_run}
    if args.executor == "ray":
        if given := [flag for flag, value in local.items() if value is not None]:
            raise UsageError(f"{given[0]} is the local runner's; with --executor ray each run declares "
                             "--cpus-per-run and --gpus-per-run and Ray places it")  # fmt: skip
        return
    if given := [flag for flag, value in ray.items() if value is not None]:
        raise UsageError(f"{given[0]} needs --executor ray")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1; got {args.workers}")
    if args.runs_per_gpu is not None and args.device == "cpu":
        raise UsageError("--runs-per-gpu: the runs train on the CPU (--device cpu)")
    if args.runs_per_gpu is not None and not machine_gpus():
        raise UsageError("--runs-per-gpu: no GPU found here (CUDA_VISIBLE_DEVICES is unset and nvidia-smi lists none)")


def study_engine(args: argparse.Namespace):
    """The engine `run` trains on: Ray (connected here), or this machine's workers, one per GPU slot."""
    if args.executor == "ray":
        from study.experiment.ray_engine import RayEngine

        return RayEngine(args.address, args.gpus_per_run, args.cpus_per_run or 1, args.device)
    from study.experiment.runner import LocalEngine

    gpus = machine_gpus() if args.device != "cpu" else []
    if gpus:
        return LocalEngine(args.workers, gpus, args.runs_per_gpu or 1)
    return LocalEngine(args.workers or min(4, os.cpu_count() or 1))


def study_size_line(config, args: argparse.Namespace) -> str:
    """The study's size in one line (runs; predicted time where it trains on this machine's CPU), said
    before anything starts; a study above `plan`'s limits is refused unless --confirm-size."""
    from study.experiment.plan import MAX_UNCONFIRMED_HOURS, MAX_UNCONFIRMED_RUNS, study_size
    from study.experiment.throughput_tables import load_throughput

    on_cpu = args.executor == "local" and (args.device == "cpu" or not machine_gpus())
    runs, hours = len(config.points()), None
    if on_cpu:
        try:
            runs, seconds = study_size(config, load_throughput(None), args.workers or min(4, os.cpu_count() or 1))
            hours = seconds / 3600
        except UserError:  # a backend the shipped table has not measured: the runs alone are said
            pass
    if hours is not None:
        size = f"{runs} runs, predicted {f'{hours * 60:.0f} min' if hours < 2 else f'{hours:.1f} h'} here"
        line = f"study: {size} (`resnet-study plan` with the same flags: the details)"
    elif on_cpu:
        size = f"{runs} runs"
        line = f"study: {size} (no time: the shipped table lacks a backend; `resnet-study compare` measures it)"
    else:
        size = f"{runs} runs"
        line = f"study: {size} (their time: `resnet-study plan --gpus N --throughput compare.json`)"
    if (runs > MAX_UNCONFIRMED_RUNS or (hours or 0) > MAX_UNCONFIRMED_HOURS) and not args.confirm_size:
        raise UsageError(
            f"{size}: above {MAX_UNCONFIRMED_RUNS} runs or {MAX_UNCONFIRMED_HOURS:.0f} predicted hours; rerun "
            "with --confirm-size to start it (nothing was started)"
        )
    return line


def run_study(args: argparse.Namespace) -> int:
    from study.core import data
    from study.experiment.console import LOG, frameworks_to
    from study.experiment.runner import run_study as run_grid
    from study.experiment.study_folder import open_study
    from study.experiment.timings import Timings
    from study.report.analysis import analyze_folder
    from study.tracking.dashboard import publish_study

    start, timings = time.perf_counter(), Timings()
    config = study_config_from_args(args)
    check_engine_flags(args)
    size = study_size_line(config, args)
    if not args.json:
        print(size, flush=True)
    out = args.out or Path("runs") / config.name
    data.load_dataset(config.dataset, args.data_dir)  # fail fast, before any run, on bad data
    mode = resolve_mode(args.wandb)
    with contextlib.closing(study_engine(args)) as engine:  # Ray's cluster checked before the folder is touched
        open_study(out, config)  # the folder is ours (new, empty or this study's) before anything is written
        with frameworks_to(out / LOG) as terminal:  # the terminal shows the study's own lines only
            shown = None if args.json else terminal
            run_grid(config, out, engine, args.data_dir, mode, args.device, shown, args.log_model, args.alpha,
                     args.margin, timings)  # fmt: skip
            if shown is not None:
                print("analysis, W&B ...", file=shown, flush=True)
            with timings.phase("analysis and report"):
                analysis = analyze_folder(out, alpha=args.alpha, margin=args.margin)
            with timings.phase("W&B analysis run"):
                publish_study(analysis, mode)
            timings.write(out, time.perf_counter() - start, engine.parallel)
    print_verdict(analysis.verdict, out, args.json)
    return 0


def run_point(args: argparse.Namespace) -> int:
    """One grid point, as a W&B sweep agent runs it (`resnet-study sweep` writes the command)."""
    from study.configs import GridPoint
    from study.experiment.runner import run_point as run_one
    from study.experiment.study_folder import open_study

    config = study_config_from_args(args)
    if config.budgets:
        raise UsageError(f"run-point: the {config.name} config's training budgets are not a sweep axis yet; use run")
    point = GridPoint(config, args.backend, args.arch, args.depth, args.seed, args.activation, args.norm)
    point.network_spec()
    if point not in config.points():
        raise UsageError(
            f"run-point: {args.backend} {args.arch}-{args.depth} seed {args.seed} ({args.activation}, {args.norm}) "
            f"is not a point of the {config.name} study's grid; pass the grid flags the sweep was written with"
        )
    study_id = open_study(args.out, config)
    summary = run_one(point, args.out, study_id, args.data_dir, args.wandb, args.device, args.log_model)
    if args.json:
        print(
            json.dumps(
                {"run_key": point.run_key, "skipped": summary is None}
                | {k: v for k, v in (summary or {}).items() if k != "config"}
            )
        )
    else:
        print(f"{point.run_key}: " + ("running elsewhere, skipped" if summary is None else "finished"))
    return 0
