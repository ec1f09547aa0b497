"""`agree SPEC`: the Keras twin (on one Keras backend) and the Lightning twin from one set of weights:
the same numbers out (`study.measure.numerics`)."""

from __future__ import annotations

import argparse
import json

from study.cli.flags import add_json, add_spec_arguments, batch, nonnegative_int, seed, spec_from_args
from study.core.records import DTYPES
from study.core.twin import KERAS_BACKENDS


def register(commands) -> None:
    parser = commands.add_parser("agree", help="prove the two twins compute the same numbers")
    add_spec_arguments(parser)
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument(
        "--keras-backend", choices=tuple(KERAS_BACKENDS), default="tensorflow", help="the Keras twin's backend"
    )
    parser.add_argument("--batch", type=batch, default=8, help="examples in the compared batch (default 8)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument(
        "--train-steps",
        type=nonnegative_int,
        default=0,
        metavar="K",
        help="also compare K SGD steps of both training loops",
    )
    add_json(parser)
    parser.set_defaults(run=agree)


def agree(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    from study.measure.numerics import TwinMismatch, compare_twins

    try:
        keras = KERAS_BACKENDS[args.keras_backend]
        report = compare_twins(spec, args.dtype, args.batch, args.seed, args.train_steps, keras)
    except TwinMismatch as error:
        if args.json:
            print(json.dumps({"spec": spec.name, "dtype": args.dtype, "passed": False, "error": str(error)}))
        else:
            print(f"FAIL {spec.name} ({args.dtype}): {error}")
        return 1
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"{spec.name} ({args.dtype}, {keras} vs lightning): relative error (tolerance)")
        for quantity, error in report.max_rel_error.items():
            floor = report.noise_floor.get(quantity)
            note = f"  (float32 ReLU-kink noise floor {floor:.3e})" if floor is not None else ""
            verdict = "ok" if report.quantity_passed(quantity) else "FAIL"
            print(f"  {quantity:<22} {error:.3e} ({report.tolerance(quantity):g})  {verdict}{note}")
        print("PASS" if report.passed else "FAIL")
    return 0 if report.passed else 1
