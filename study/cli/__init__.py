"""`resnet-study` (also `python -m study`): the command-line contract of docs/design.md.

One module per subcommand, its flags beside its handler (`register` adds both); the flags several
subcommands share are defined once in `flags`. Every error a user can cause prints one line on
stderr naming the problem and exits with code 2.
"""

from __future__ import annotations

import os
import sys

from study.cli import (
    agree,
    analyze,
    bench,
    collect,
    compare,
    describe,
    design,
    explore,
    gradflow,
    plan,
    study,
    sweep,
    train,
)
from study.cli.flags import ArgumentParser
from study.core.errors import UserError
from study.experiment.memory import keep_freed_memory

PROG = "resnet-study"
# in `--help` order
COMMANDS = (describe, agree, train, study, plan, design, sweep, collect, analyze, explore, bench, compare, gradflow)


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG, description="ResNet vs plain depth-scaling study with Keras and Lightning twins."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # training reuses its buffers instead of faulting them in each step
    os.environ.setdefault("WANDB_SILENT", "true")  # W&B's own notes; our lines say where runs are
    try:
        args = make_parser().parse_args(argv)
        return args.run(args)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the environment (a full disk, a read-only folder) where no line names it yet
        where = f" ({error.filename})" if error.filename else ""
        print(f"{PROG}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
