"""`bench SPEC --backend B`: the twin's training path against a raw loop of the same network
(`study.measure.bench`)."""

from __future__ import annotations

import argparse
import json

from study.cli.flags import add_device, add_json, add_spec_arguments, check_compile, positive_int, spec_from_args
from study.core.records import PRECISIONS
from study.core.twin import BACKENDS


def register(commands) -> None:
    parser = commands.add_parser("bench", help="training and inference throughput against a raw loop")
    add_spec_arguments(parser)
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--steps", type=positive_int, default=20, help="steps per timed epoch")
    parser.add_argument("--repeats", type=positive_int, default=7, help="timed epochs (after one warm-up)")
    add_device(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default="32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the lightning twin (and its raw loop)")
    add_json(parser)
    parser.set_defaults(run=bench)


def bench(args: argparse.Namespace) -> int:
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
