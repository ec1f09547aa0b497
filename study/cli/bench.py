"""`bench SPEC --backend B`: the twin's training path against a raw loop of the same network
(`study.measure.bench`)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from study.cli.flags import (
    UsageError,
    add_device,
    add_json,
    add_spec_arguments,
    batch,
    check_compile,
    positive_int,
    spec_from_args,
)
from study.configs import CONFIGS
from study.core.records import PRECISIONS
from study.core.twin import BACKENDS


def register(commands) -> None:
    parser = commands.add_parser(
        "bench", help="training and inference throughput against a raw loop; --study: the main job's phases"
    )
    add_spec_arguments(parser, optional=True)
    parser.add_argument("--backend", choices=BACKENDS, help="the twin to time (required unless --study)")
    parser.add_argument("--batch", type=batch, default=128)
    parser.add_argument("--steps", type=positive_int, default=20, help="steps per timed epoch")
    parser.add_argument("--repeats", type=positive_int, default=7, help="timed epochs (after one warm-up)")
    add_device(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default="32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the lightning twin (and its raw loop)")
    parser.add_argument(
        "--study", action="store_true", help="instead: run the main job (`run`) afresh and time its phases"
    )
    parser.add_argument("--config", choices=tuple(CONFIGS), default="default", help="--study's config")
    parser.add_argument("--out", type=Path, help="--study's folder: new or empty (default: a new temporary one)")
    add_json(parser)
    parser.set_defaults(run=bench)


def bench(args: argparse.Namespace) -> int:
    if args.study:
        if args.spec or args.backend:
            raise UsageError("bench --study times the whole main job: give no SPEC or --backend with it")
        return bench_study(args)
    if not args.spec or not args.backend:
        raise UsageError("bench needs a SPEC and --backend (or --study)")
    from study.core.twin import load
    from study.experiment.training_run import resolve_device
    from study.measure.bench import run_bench

    spec = spec_from_args(args)
    device = resolve_device(load(args.backend), args.device)
    check_compile(args)
    result = run_bench(spec, args.backend, args.batch, args.steps, args.repeats, device, args.precision, args.compile)
    if args.json:
        print(json.dumps(result))
    else:
        low, high = result["ratio_range"]
        print(
            f"{result['backend']} {result['spec']} on {device} ({args.precision}), batch {args.batch}: "
            f"train {result['train_img_per_s']:.0f} img/s vs raw {result['raw_train_img_per_s']:.0f} "
            f"(ratio {result['ratio_to_raw']:.3f}, per epoch {low:.3f}-{high:.3f}); "
            f"inference {result['infer_img_per_s']:.0f} img/s; "
            f"peak memory {result['peak_mem_mb']:.0f} MB ({result['peak_mem_kind']}); MFU {100 * result['mfu']:.2f} % "
            f"of {result['peak_tflops']:.2f} TFLOP/s ({result['peak_source']})"
        )
    return 0


def bench_study(args: argparse.Namespace) -> int:
    """The main job run afresh, its phases timed (`study.experiment.timings`)."""
    from study.experiment.timings import bench_study as time_study

    if args.out is not None and args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"bench --study times a fresh study: --out {args.out} must be a new or empty folder")
    out = args.out or Path(tempfile.mkdtemp(prefix="resnet-study-bench-"))
    try:
        result = time_study(out, args.config)
    except RuntimeError as error:
        raise UsageError(f"bench --study: {error}") from None
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.config} study in {out}: {result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU; "
          + ", ".join(f"{name} {verdict}" for name, verdict in result["verdicts"].items()))  # fmt: skip
    print(f"{'phase':<32} {'tasks':>5} {'task s':>8} {'CPU s':>8}")
    for phase in result["phases"]:
        print(f"{phase['phase']:<32} {phase['tasks']:>5} {phase['wall_s']:>8.1f} {phase['cpu_s']:>8.1f}")
    print("task s: each task's own time in its worker, summed (tasks of parallel workers overlap in wall time)")
    return 0
