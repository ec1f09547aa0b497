"""`train SPEC --backend B`: one training run of one twin (`study.experiment.training_run`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from study.cli.flags import (
    RECIPE_FLAGS,
    add_data_dir,
    add_device,
    add_json,
    add_recipe_arguments,
    add_spec_arguments,
    add_wandb,
    check_compile,
    check_dataset,
    positive_int,
    recipe_from_args,
    spec_from_args,
)
from study.core.records import PRECISIONS
from study.core.twin import BACKENDS


def register(commands) -> None:
    parser = commands.add_parser("train", help="train one twin on a data set, tracked in W&B")
    add_spec_arguments(parser)
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument(
        "--dataset", default="digits", help="digits (embedded, default), cifar10 (--data-dir), synthetic"
    )
    add_data_dir(parser)
    add_recipe_arguments(parser, tuple(RECIPE_FLAGS))
    parser.add_argument("--out", type=Path, default=Path("runs/train"))
    add_wandb(parser)
    parser.add_argument(
        "--log-model", action="store_true", help="log the checkpoint as a W&B model artifact (default: no)"
    )
    add_device(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default="32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone (lightning backend)")
    parser.add_argument(
        "--devices",
        type=positive_int,
        default=1,
        help="data parallel over N devices (GPUs, or N CPU processes/replicas)",
    )
    add_json(parser, "print the summary as one JSON object")
    parser.set_defaults(run=train)


def train(args: argparse.Namespace) -> int:
    from study.experiment.training_run import RunRequest, run_training

    check_dataset(args.dataset)
    check_compile(args)
    request = RunRequest(
        spec_from_args(args),
        recipe_from_args(args),
        args.backend,
        args.dataset,
        args.out,
        data_dir=args.data_dir,
        wandb_mode=args.wandb,
        device=args.device,
        precision=args.precision,
        input_given=args.input is not None,
        devices=args.devices,
        compile=args.compile,
        log_model=args.log_model,
        verbose=0 if args.json else 1,
    )
    summary = run_training(request)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    else:
        print(
            f"{summary['backend']} {summary['spec_name']}: train error {summary['final_train_error']}, "
            f"test error {summary['final_test_error']}, diverged {summary['diverged']}, "
            f"{summary['wall_s']:.1f} s -> {args.out}"
        )
    return 0
