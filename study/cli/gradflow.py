"""`gradflow`: per-layer gradient norms at initialization and their decay (`study.measure.gradflow`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from study.cli.flags import add_data_dir, add_json, int_list, seed_list
from study.core.data import DATASETS
from study.core.twin import BACKENDS
from study.files import STUDY, claim_folder


def register(commands) -> None:
    parser = commands.add_parser("gradflow", help="per-layer gradient norms at initialization and their decay")
    parser.add_argument("--depths", type=int_list, default=(8, 20, 56, 110))
    parser.add_argument("--seeds", type=seed_list, default=(0,))
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    add_data_dir(parser)
    parser.add_argument("--backend", choices=BACKENDS, default="lightning")
    parser.add_argument("--out", type=Path, default=Path("runs/gradflow"))
    add_json(parser)
    parser.set_defaults(run=gradflow)


def gradflow(args: argparse.Namespace) -> int:
    from study.core import data
    from study.measure import gradflow as measure

    dataset = data.load_dataset(args.dataset, args.data_dir)
    rows, fits = measure.measure(args.depths, dataset, backend=args.backend, seeds=args.seeds)
    claim_folder(args.out, ("gradflow.csv", STUDY), "gradient-flow measurement")
    measure.write_gradflow(args.out, rows, fits)
    if args.json:
        print(json.dumps(fits))
    else:
        for fit in fits:
            slope = "–" if fit["decay_per_layer"] is None else f"{fit['decay_per_layer']:+.4f}"
            print(
                f"{fit['arch']:6} {fit['activation']:7} norm={fit['norm']:5} depth {fit['depth']:4}: "
                f"log10 decay/layer {slope}"
            )
    return 0
