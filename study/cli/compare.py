"""`compare`: every installed backend on this machine side by side — speed, memory, agreement with
the Lightning twin — and what to pick for each use case (`study.compare`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from study.cli.flags import UsageError, add_device, add_json, add_wandb, batch, name_list, nonnegative_int, positive_int
from study.core.records import PRECISIONS
from study.core.twin import BACKENDS

CPU_DEFAULTS = {"batch": 32, "steps": 4, "repeats": 3, "precisions": ("32",)}  # all four backends in ~4 min on 2 cores
GPU_DEFAULTS = {"batch": 128, "steps": 20, "repeats": 5, "precisions": ("32", "bf16")}


def spec_names(text: str) -> tuple[str, ...]:
    from study.core.presets import parse_spec

    names = tuple(name for name in text.split(",") if name)
    if not names:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated network names (e.g. resnet20,resnet56); got {text!r}"
        )
    specs = {}
    for name in names:
        try:
            spec = parse_spec(name)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if spec in specs:  # resnet20 and resnet-20 are one network
            raise argparse.ArgumentTypeError(f"networks must differ: {name} is {specs[spec]} again in {text!r}")
        specs[spec] = name
    return names


def register(commands) -> None:
    parser = commands.add_parser("compare", help="every installed backend on this machine, and what to pick")
    add_device(parser)
    parser.add_argument("--specs", type=spec_names, default=("resnet20", "resnet56"), help="networks to time")
    parser.add_argument(
        "--precisions", type=name_list(PRECISIONS), help="comma-separated (default: 32 on a CPU, 32,bf16 on a GPU)"
    )
    parser.add_argument("--backends", type=name_list(BACKENDS), default=BACKENDS, help="comma-separated (default: all)")
    parser.add_argument("--compile", action="store_true", help="also time the lightning twin with torch.compile")
    parser.add_argument("--batch", type=batch, help="training batch (default: 32 on a CPU, 128 on a GPU)")
    parser.add_argument("--steps", type=positive_int, help="steps per timed epoch (default: 4 on a CPU, 20 on a GPU)")
    parser.add_argument("--repeats", type=positive_int, help="timed epochs after one warm-up (default: 3 / 5)")
    parser.add_argument(
        "--agree-specs", type=spec_names, help="networks the agreement checks run on (default: the first of --specs)"
    )
    parser.add_argument(
        "--train-steps", type=nonnegative_int, default=3, metavar="K", help="training steps compared (default 3)"
    )
    parser.add_argument("--timeout", type=positive_int, default=900, help="seconds per backend (default 900)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/compare"), help="a new folder, or an earlier comparison's"
    )
    add_wandb(parser)
    add_json(parser, "compare.json on stdout")
    parser.set_defaults(run=compare)


def compare(args: argparse.Namespace) -> int:
    from study.compare.machine import nvidia_gpus
    from study.compare.render import recommendation_lines
    from study.compare.runner import Settings, compare, succeeded
    from study.tracking.comparison import log_comparison
    from study.tracking.wandb_run import resolve_mode

    wandb_mode = resolve_mode(args.wandb)
    gpu = args.device == "gpu" or (args.device == "auto" and bool(nvidia_gpus()))
    defaults = GPU_DEFAULTS if gpu else CPU_DEFAULTS
    if args.compile and "lightning" not in args.backends:
        raise UsageError("--compile is torch.compile for the lightning backend, which --backends leaves out")
    settings = Settings(
        backends=args.backends,
        specs=args.specs,
        precisions=args.precisions or defaults["precisions"],
        device=args.device,
        compile=args.compile,
        batch=args.batch or defaults["batch"],
        steps=args.steps or defaults["steps"],
        repeats=args.repeats or defaults["repeats"],
        agree_specs=args.agree_specs or args.specs[:1],
        train_steps=args.train_steps,
        timeout_s=float(args.timeout),
    )
    echo = (lambda line: None) if args.json else (lambda line: print(f"compare: {line}", flush=True))
    result = compare(settings, args.out, echo)
    log_comparison(result, wandb_mode, args.out)
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(recommendation_lines(result)))
        print(f"compare: the tables are in {args.out / 'compare.md'} and {args.out / 'compare.html'}")
    return 0 if succeeded(result) else 1
