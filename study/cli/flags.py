"""What the subcommands share: the one-line usage error, value parsers, and each flag used by more than
one subcommand, defined once (`--json`, `--wandb`, `--device`, `--data-dir`, the spec and its
overrides, the recipe's flags, `--alpha` and `--margin`)."""

from __future__ import annotations

import argparse
import dataclasses
import math

from study.core.data import DATASETS
from study.core.errors import UserError
from study.core.presets import parse_spec
from study.core.recipe import MAX_BATCH, MAX_SEED, TrainSpec
from study.core.records import DEVICE_REQUESTS
from study.core.spec import ACTIVATIONS, BOTTLENECK_STRIDES, NORMS, SHORTCUTS, NetworkSpec
from study.tracking.wandb_run import WANDB_MODES

ALPHA, MARGIN = 0.05, 0.05  # the verdicts' test level and the twins' equivalence margin (error fraction)


class UsageError(UserError):
    """Bad command-line arguments."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage dump) with exit code 2."""

    def error(self, message: str):
        raise UsageError(message)


# -- value parsers ---------------------------------------------------------------------------------


def whole(low: int, high: int | None = None, what: str = "must be an integer"):
    """A parser of a whole number from `low` (up to `high`), refused in one line with `what` it must be."""
    expected = f"{what} >= {low}" if high is None else f"{what} in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{expected}; got {text!r}")
        return value

    return parse


positive_int = whole(1)
nonnegative_int = whole(0)
seed = whole(0, MAX_SEED, "a seed must be an integer")
batch = whole(1, MAX_BATCH, "a batch must be an integer")  # refused before anything is allocated


def distinct(values: tuple, text: str, what: str = "values") -> tuple:
    """`values` parsed from `text`, refused in one line if one is listed twice: a duplicate would
    measure or train the same thing twice (and be counted twice) before anything noticed."""
    seen = set()
    for value in values:
        if value in seen:
            raise argparse.ArgumentTypeError(f"{what} must differ: {value} is listed twice in {text!r}")
        seen.add(value)
    return values


def seed_list(text: str) -> tuple[int, ...]:
    return distinct(tuple(seed(v) for v in text.split(",")), text, "seeds")


def finite(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    """A parser of a finite number in the interval from `low` to `high` (open where said)."""
    left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
    interval = f"{left}{low:g}, {'inf' if high == math.inf else f'{high:g}'}{right}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}; got {text!r}")
        return value

    return parse


probability = finite(0.0, 1.0, low_open=True, high_open=True)  # --alpha, --margin


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (e.g. 8,20,56); got {text!r}") from None
    return distinct(values, text)


def name_list(choices: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(v for v in text.split(",") if v)
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (comma-separated); got {text!r}")
        return distinct(names, text)

    return parse


def parse_input_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"--input must be three integers H,W,C (e.g. 32,32,3); got {text!r}")
    return shape


# -- shared flags ------------------------------------------------------------------------------------


def add_json(parser: argparse.ArgumentParser, help: str = "one JSON object on stdout") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_wandb(parser: argparse.ArgumentParser, what: str = "W&B mode") -> None:
    parser.add_argument("--wandb", choices=WANDB_MODES, help=f"{what} (default: $WANDB_MODE, else offline)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICE_REQUESTS, default="auto")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="folder with the CIFAR-10 python version files")


def add_verdict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alpha", type=probability, default=ALPHA, help="the verdicts' test level, in (0, 1)")
    parser.add_argument(
        "--margin", type=probability, default=MARGIN, help="equivalence margin for the twins' errors, in (0, 1)"
    )


def check_dataset(name: str) -> None:
    """Before anything is written: the training run would only find out after creating --out."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def check_compile(args: argparse.Namespace) -> None:
    if args.compile and args.backend != "lightning":
        raise UsageError("--compile is torch.compile for the lightning backend; Keras uses XLA on GPUs")


# -- the network: a spec and its overrides ---------------------------------------------------------


def add_spec_arguments(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    parser.add_argument(
        "spec",
        nargs="?" if optional else None,
        help="preset (resnet56, plain20, resnet50, ...) or resnet-<6n+2> / plain-<6n+2>",
    )
    parser.add_argument("--shortcut", choices=SHORTCUTS, help="A: zero-pad identity, B: projection")
    parser.add_argument("--activation", choices=ACTIVATIONS)
    parser.add_argument("--norm", choices=NORMS)
    parser.add_argument("--input", type=parse_input_shape, metavar="H,W,C", help="input shape")
    parser.add_argument("--classes", type=int, metavar="K")
    parser.add_argument("--bottleneck-stride", choices=BOTTLENECK_STRIDES, help="3x3: v1.5 (default), 1x1: v1")


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


# -- the recipe: flags and defaults from `TrainSpec`'s fields ----------------------------------------

RECIPE_FLAGS = {  # TrainSpec field -> the flag's type and help
    "epochs": (positive_int, "training epochs"),
    "batch_size": (batch, "examples per SGD step"),
    "lr": (finite(0.0, low_open=True), "learning rate after the warm-up"),
    "warmup_epochs": (finite(0.0), f"epochs at LR {TrainSpec.warmup_lr} first (the paper's ResNet-110 trick)"),
    "seed": (seed, "initial weights, data order and augmentation"),
}


def add_recipe_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...], defaults: bool = True) -> None:
    """The recipe's flags `names` (TrainSpec fields); defaults are TrainSpec's own, or None (keep the
    study config's) when `defaults` is False."""
    fields = {field.name: field for field in dataclasses.fields(TrainSpec)}
    for name in names:
        kind, help = RECIPE_FLAGS[name]
        default = fields[name].default if defaults else None
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=help)


def recipe_from_args(args: argparse.Namespace) -> TrainSpec:
    return TrainSpec(**{name: getattr(args, name) for name in RECIPE_FLAGS})
