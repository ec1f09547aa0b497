"""`describe SPEC`: depth, weighted layers, parameters and MACs, analytic and, with `--backend`,
counted from the built model."""

from __future__ import annotations

import argparse
import json

from study.cli.flags import add_json, add_spec_arguments, spec_from_args
from study.core.twin import BACKENDS


def register(commands) -> None:
    parser = commands.add_parser("describe", help="layers, parameters and MACs of a spec")
    add_spec_arguments(parser)
    parser.add_argument("--backend", choices=BACKENDS, help="also build it and count from the model")
    add_json(parser)
    parser.set_defaults(run=describe)


def describe(args: argparse.Namespace) -> int:
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
        from study.core.twin import load

        twin = load(args.backend)
        model = twin.build(spec)
        counted = {
            "trainable_params": twin.count_trainable_params(model),
            "macs": twin.count_macs(model, spec.input_shape),
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
