"""`sweep`: a W&B grid sweep whose agents each run one grid point (`run-point`) on any machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from study.cli.flags import UsageError
from study.cli.study import GRID_AXES, add_study_arguments, study_config_from_args
from study.files import atomic_write_text
from study.tracking.wandb_run import project

FIXED_FLAGS = ("dataset", "data_dir", "epochs", "warmup_epochs", "shortcut", "device")  # given once, not swept


def register(commands) -> None:
    parser = commands.add_parser("sweep", help="write a W&B sweep (grid) that runs the study on many machines")
    add_study_arguments(parser)
    parser.add_argument("--out", type=Path, help="study folder the agents write into (shared or later collected)")
    parser.add_argument("--file", help="write the YAML here instead of stdout")
    parser.set_defaults(run=sweep)


def sweep_definition(args: argparse.Namespace) -> dict:
    """The sweep: the agent picks the point (${args}: --backend, --arch, --depth, --seed); the command
    fixes the rest, the grid included, so every agent opens the same study (same config, so the same
    study id and W&B group) whichever machine it runs on."""
    config = study_config_from_args(args)
    if config.budgets:
        raise UsageError(f"sweep: the {config.name} config's training budgets are not a sweep axis yet; use run")
    fixed = []
    for flag in FIXED_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            fixed += [f"--{flag.replace('_', '-')}", str(value)]
    for axis in GRID_AXES:
        fixed += [f"--{axis}", ",".join(map(str, getattr(config, axis)))]
    if not args.log_model:
        fixed.append("--no-log-model")
    out = str(args.out or Path("runs") / config.name)
    command = ["${env}", "resnet-study", "run-point", "--config", config.name, "--out", out, *fixed,
               "--wandb", "online", "${args}"]  # fmt: skip
    return {
        "name": f"resnet-study-{config.study_id}",
        "project": project(),
        "method": "grid",
        "metric": {"name": "final_train_error", "goal": "minimize"},
        "parameters": {axis.removesuffix("s"): {"values": list(getattr(config, axis))} for axis in GRID_AXES},
        "command": command,
    }


HEADER = "# resnet-study sweep (W&B grid): written by `resnet-study sweep`\n"


def sweep(args: argparse.Namespace) -> int:
    import yaml

    text = HEADER + yaml.safe_dump(sweep_definition(args), sort_keys=False)
    if args.file:
        path = Path(args.file)
        if path.exists() and (not path.is_file() or not path.read_bytes().startswith(HEADER.encode())):
            raise UsageError(f"--file {path} exists and is not a sweep this tool wrote; choose a new file name")
        atomic_write_text(path, text)
        print(f"wrote {args.file}: wandb sweep {args.file} && wandb agent <sweep id> (on each machine)")
    else:
        print(text, end="")
    return 0
