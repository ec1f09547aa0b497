"""`resnet-study` (also `python -m study`): the command-line contract of DESIGN.md.

Every error a user can cause prints one line on stderr naming the problem and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from study.errors import UserError
from study.spec import ACTIVATIONS, NORMS, SHORTCUTS, NetworkSpec, parse_spec

PROG = "resnet-study"


class UsageError(UserError):
    """Bad command-line arguments."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage dump) with exit code 2."""

    def error(self, message: str):
        raise UsageError(message)


def parse_input_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"--input must be three integers H,W,C (e.g. 32,32,3); got {text!r}")
    return shape


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="preset (resnet56, plain20, resnet50, ...) or resnet-<6n+2> / plain-<6n+2>")
    parser.add_argument("--shortcut", choices=SHORTCUTS, help="A: zero-pad identity, B: projection")
    parser.add_argument("--activation", choices=ACTIVATIONS)
    parser.add_argument("--norm", choices=NORMS)
    parser.add_argument("--input", type=parse_input_shape, metavar="H,W,C", help="input shape")
    parser.add_argument("--classes", type=int, metavar="K")
    parser.add_argument("--bottleneck-stride", choices=("3x3", "1x1"), help="3x3: v1.5 (default), 1x1: v1")


def spec_from_args(args: argparse.Namespace) -> NetworkSpec:
    return parse_spec(
        args.spec,
        shortcut=args.shortcut,
        activation=args.activation,
        norm=args.norm,
        input_shape=args.input,
        classes=args.classes,
        bottleneck_stride=args.bottleneck_stride,
    )


def cmd_describe(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    info = {
        "name": spec.name,
        **spec.to_dict(),
        "arch": spec.arch,
        "block": spec.block_kind,
        "weighted_layers": spec.weighted_layers,
        "trainable_params": spec.trainable_params,
        "macs": spec.macs,
    }
    exit_code = 0
    if args.backend:
        from study import backends

        twin = backends.load(args.backend)
        model = twin.models.build(spec)
        counted = {
            "trainable_params": twin.models.count_trainable_params(model),
            "macs": twin.models.count_macs(model, spec.input_shape),
        }
        info["backend"] = args.backend
        info["counted"] = counted
        if counted["trainable_params"] != spec.trainable_params or counted["macs"] != spec.macs:
            exit_code = 1
    if args.json:
        print(json.dumps(info))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return exit_code


def cmd_agree(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    from study.agree import TwinMismatch, compare_twins

    try:
        report = compare_twins(spec, dtype=args.dtype, batch=args.batch, seed=args.seed, train_steps=args.train_steps)
    except TwinMismatch as error:
        if args.json:
            print(json.dumps({"spec": spec.name, "dtype": args.dtype, "passed": False, "error": str(error)}))
        else:
            print(f"FAIL {spec.name} ({args.dtype}): {error}")
        return 1
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"{spec.name} ({args.dtype}): relative error (tolerance)")
        for quantity, error in report.max_rel_error.items():
            floor = report.noise_floor.get(quantity)
            note = f"  (float32 ReLU-kink noise floor {floor:.3e})" if floor is not None else ""
            verdict = "ok" if report.quantity_passed(quantity) else "FAIL"
            print(f"  {quantity:<22} {error:.3e} ({report.tolerance(quantity):g})  {verdict}{note}")
        print("PASS" if report.passed else "FAIL")
    return 0 if report.passed else 1


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    from study import data
    from study.spec import TrainSpec
    from study.train import run_training

    if args.dataset not in data.DATASETS:
        raise UsageError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(data.DATASETS)}")
    spec = spec_from_args(args)
    train_spec = TrainSpec(
        epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup_epochs
    )
    summary = run_training(
        spec,
        train_spec,
        backend=args.backend,
        dataset_name=args.dataset,
        out=args.out,
        data_dir=args.data_dir,
        wandb_mode=args.wandb,
        device=args.device,
        precision=args.precision,
        input_given=args.input is not None,
        verbose=0 if args.json else 1,
    )
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    else:
        print(
            f"{summary['backend']} {summary['spec_name']}: train error {summary['final_train_error']}, "
            f"test error {summary['final_test_error']}, diverged {summary['diverged']}, "
            f"{summary['wall_s']:.1f} s -> {args.out}"
        )
    return 0


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG, description="ResNet vs plain depth-scaling study with Keras and Lightning twins."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    describe = commands.add_parser("describe", help="layers, parameters and MACs of a spec")
    add_spec_arguments(describe)
    describe.add_argument("--backend", choices=("keras", "lightning"), help="also build it and count from the model")
    describe.add_argument("--json", action="store_true", help="one JSON object on stdout")
    describe.set_defaults(run=cmd_describe)

    agree = commands.add_parser("agree", help="prove the two twins compute the same numbers")
    add_spec_arguments(agree)
    agree.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    agree.add_argument("--batch", type=int, default=8, help="examples in the compared batch (default 8)")
    agree.add_argument("--seed", type=int, default=0)
    agree.add_argument(
        "--train-steps", type=int, default=0, metavar="K", help="also compare K SGD steps of both training loops"
    )
    agree.add_argument("--json", action="store_true", help="one JSON object on stdout")
    agree.set_defaults(run=cmd_agree)

    train = commands.add_parser("train", help="train one twin on a data set, tracked in W&B")
    add_spec_arguments(train)
    train.add_argument("--backend", choices=("keras", "lightning"), required=True)
    train.add_argument(
        "--dataset", default="digits", help="digits (embedded, default), cifar10 (--data-dir), synthetic"
    )
    train.add_argument("--data-dir", help="folder with the CIFAR-10 python version files")
    train.add_argument("--epochs", type=positive_int, default=30)
    train.add_argument("--batch-size", type=positive_int, default=128)
    train.add_argument("--lr", type=float, default=0.1)
    train.add_argument(
        "--warmup-epochs", type=float, default=0.0, help="epochs at LR 0.01 first (the paper's ResNet-110 trick)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, default=Path("runs/train"))
    train.add_argument("--wandb", choices=("offline", "online", "disabled"), default="offline")
    train.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    train.add_argument("--precision", choices=("32", "bf16"), default="32")
    train.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    train.set_defaults(run=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = make_parser().parse_args(argv)
        return args.run(args)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
