"""`resnet-study` (also `python -m study`): the command-line contract of DESIGN.md.

Every error a user can cause prints one line on stderr naming the problem and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from study.spec import ACTIVATIONS, NORMS, SHORTCUTS, NetworkSpec, SpecError, parse_spec

PROG = "resnet-study"


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


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
        report = compare_twins(spec, dtype=args.dtype, batch=args.batch, seed=args.seed)
    except TwinMismatch as error:
        if args.json:
            print(json.dumps({"spec": spec.name, "dtype": args.dtype, "passed": False, "error": str(error)}))
        else:
            print(f"FAIL {spec.name} ({args.dtype}): {error}")
        return 1
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"{spec.name} ({args.dtype}), tolerance {report.tolerance:g}")
        for quantity, error in report.max_rel_error.items():
            floor = report.noise_floor.get(quantity)
            note = f"  (float32 ReLU-kink noise floor {floor:.3e})" if floor is not None else ""
            print(f"  {quantity:<18} {error:.3e}  {'ok' if report.quantity_passed(quantity) else 'FAIL'}{note}")
        print("PASS" if report.passed else "FAIL")
    return 0 if report.passed else 1


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
    agree.add_argument("--json", action="store_true", help="one JSON object on stdout")
    agree.set_defaults(run=cmd_agree)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = make_parser().parse_args(argv)
        return args.run(args)
    except (UsageError, SpecError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
