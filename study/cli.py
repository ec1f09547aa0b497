"""`resnet-study` (also `python -m study`): the command-line contract of docs/design.md.

Every error a user can cause prints one line on stderr naming the problem and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from study.core.data import DATASETS
from study.core.errors import UserError
from study.core.presets import parse_spec
from study.core.records import DEVICE_REQUESTS, DTYPES, PRECISIONS
from study.core.spec import ACTIVATIONS, ARCHS, BOTTLENECK_STRIDES, NORMS, SHORTCUTS, NetworkSpec
from study.core.twin import BACKENDS, KERAS_BACKENDS
from study.experiment.memory import keep_freed_memory
from study.files import REPORT_HTML, REPORT_MD, VERDICT, atomic_write_text
from study.tracking.wandb_run import WANDB_MODES, project, resolve_mode

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


def cmd_agree(args: argparse.Namespace) -> int:
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return value


def check_dataset(name: str) -> None:
    """Before anything is written: the training run would only find out after creating --out."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def check_compile(args: argparse.Namespace) -> None:
    if args.compile and args.backend != "lightning":
        raise UsageError("--compile is torch.compile for the lightning backend; Keras uses XLA on GPUs")


def cmd_train(args: argparse.Namespace) -> int:
    from study.core.recipe import TrainSpec
    from study.experiment.training_run import RunRequest, run_training

    check_dataset(args.dataset)
    check_compile(args)
    train_spec = TrainSpec(
        epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr, warmup_epochs=args.warmup_epochs
    )
    request = RunRequest(
        spec_from_args(args),
        train_spec,
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


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (e.g. 8,20,56); got {text!r}") from None


def name_list(choices: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(v for v in text.split(",") if v)
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (comma-separated); got {text!r}")
        return names

    return parse


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """The grid overrides shared by `run`, `run-point` and `sweep`."""
    parser.add_argument(
        "--config", default="default", help="study config: default (digits, CPU) or paper (CIFAR-10, GPU)"
    )
    parser.add_argument("--dataset", help="override the config's data set")
    parser.add_argument("--data-dir", help="folder with the CIFAR-10 python version files")
    parser.add_argument("--backends", type=name_list(BACKENDS), help="e.g. keras,lightning")
    parser.add_argument("--archs", type=name_list(ARCHS), help="e.g. plain,resnet")
    parser.add_argument("--depths", type=int_list, help="CIFAR-style 6n+2 depths, e.g. 8,20,56")
    parser.add_argument("--seeds", type=int_list, help="e.g. 0,1,2")
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--warmup-epochs", type=float)
    parser.add_argument("--shortcut", choices=SHORTCUTS)
    parser.add_argument("--activations", type=name_list(ACTIVATIONS), help="e.g. relu,tanh,sigmoid")
    parser.add_argument("--norms", type=name_list(NORMS), help="e.g. batch,none")
    parser.add_argument("--wandb", choices=WANDB_MODES, help="W&B mode (default: $WANDB_MODE, else offline)")
    parser.add_argument(
        "--log-model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log each run's checkpoint as a W&B model artifact (default: yes)",
    )
    parser.add_argument("--device", choices=DEVICE_REQUESTS, default="auto")


def study_config_from_args(args: argparse.Namespace):
    from study.configs import get_config

    config = get_config(args.config).with_overrides(
        dataset=args.dataset,
        backends=args.backends,
        archs=args.archs,
        depths=args.depths,
        seeds=args.seeds,
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        shortcut=args.shortcut,
        activations=args.activations,
        norms=args.norms,
    )
    check_dataset(config.dataset)
    if config.dataset == "cifar10" and not args.data_dir:
        raise UsageError("--dataset cifar10 needs --data-dir (the folder with the CIFAR-10 python version files)")
    if config.dataset != "cifar10" and args.data_dir:
        raise UsageError(f"--data-dir is only used with --dataset cifar10, not {config.dataset}")
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from study.core import data
    from study.experiment.console import LOG, frameworks_to
    from study.experiment.runner import run_study
    from study.measure import gradflow
    from study.report.analysis import analyze_folder
    from study.tracking.dashboard import publish_study

    config = study_config_from_args(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1; got {args.workers}")
    out = args.out or Path("runs") / config.name
    dataset = data.load_dataset(config.dataset, args.data_dir)  # fail fast, before any run, on bad data
    mode = resolve_mode(args.wandb)
    with frameworks_to(out / LOG) as terminal:  # the terminal shows the study's own lines only
        shown = None if args.json else terminal
        run_study(config, out, args.workers, args.data_dir, mode, args.device, shown, args.log_model)
        if shown is not None:
            print("gradient flow at initialization, analysis, W&B ...", file=shown, flush=True)
        gradflow.write_gradflow(out, *gradflow.measure(config.gradflow_depths or config.depths, dataset))
        verdict = analyze_folder(out, alpha=args.alpha, margin=args.margin)
        publish_study(out, verdict, mode)
    print_verdict(verdict, out, args.json)
    return 0


def cmd_run_point(args: argparse.Namespace) -> int:
    """One grid point, as a W&B sweep agent runs it (`resnet-study sweep` writes the command)."""
    from study.configs import GridPoint
    from study.experiment.runner import open_study, run_point

    config = study_config_from_args(args)
    point = GridPoint(config, args.backend, args.arch, args.depth, args.seed, args.activation, args.norm)
    point.network_spec()
    study_id = open_study(args.out, config)
    summary = run_point(point, args.out, study_id, args.data_dir, args.wandb, args.device, args.log_model)
    if args.json:
        print(
            json.dumps(
                {"run_key": point.run_key, "skipped": summary is None}
                | {k: v for k, v in (summary or {}).items() if k != "config"}
            )
        )
    else:
        print(f"{point.run_key}: " + ("running elsewhere, skipped" if summary is None else "finished"))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import yaml

    config = study_config_from_args(args)
    # The agent picks the point (${args}: --backend, --arch, --depth, --seed); the command fixes the rest,
    # the grid included, so every agent opens the same study (same config, so the same study id and
    # W&B group) whichever machine it runs on.
    fixed = []
    for flag in ("dataset", "data_dir", "epochs", "warmup_epochs", "shortcut", "device"):
        value = getattr(args, flag)
        if value is not None:
            fixed += [f"--{flag.replace('_', '-')}", str(value)]
    for axis in ("backends", "archs", "depths", "seeds", "activations", "norms"):
        fixed += [f"--{axis}", ",".join(map(str, getattr(config, axis)))]
    if not args.log_model:
        fixed.append("--no-log-model")
    out = str(args.out or Path("runs") / config.name)
    command = [
        "${env}",
        "resnet-study",
        "run-point",
        "--config",
        config.name,
        "--out",
        out,
        *fixed,
        "--wandb",
        "online",
        "${args}",
    ]
    sweep = {
        "name": f"resnet-study-{config.study_id}",
        "project": project(),
        "method": "grid",
        "metric": {"name": "final_train_error", "goal": "minimize"},
        "parameters": {
            "backend": {"values": list(config.backends)},
            "arch": {"values": list(config.archs)},
            "depth": {"values": list(config.depths)},
            "seed": {"values": list(config.seeds)},
            "activation": {"values": list(config.activations)},
            "norm": {"values": list(config.norms)},
        },
        "command": command,
    }
    text = yaml.safe_dump(sweep, sort_keys=False)
    if args.file:
        atomic_write_text(Path(args.file), text)
        print(f"wrote {args.file}: wandb sweep {args.file} && wandb agent <sweep id> (on each machine)")
    else:
        print(text, end="")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from study.experiment.runner import collect

    rows = collect(args.out, args.sources)
    print(f"{args.out}: {len(rows)} finished runs in results.csv")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from study.report.analysis import analyze_folder
    from study.tracking.dashboard import publish_study

    if not Path(args.folder).is_dir():
        raise UsageError(f"{args.folder} is not a folder")
    verdict = analyze_folder(Path(args.folder), alpha=args.alpha, margin=args.margin)
    publish_study(Path(args.folder), verdict, resolve_mode(args.wandb))
    print_verdict(verdict, Path(args.folder), args.json)
    return 0


def cmd_gradflow(args: argparse.Namespace) -> int:
    from study.core import data
    from study.measure import gradflow

    dataset = data.load_dataset(args.dataset, args.data_dir)
    rows, fits = gradflow.measure(args.depths, dataset, backend=args.backend, seeds=args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    gradflow.write_gradflow(args.out, rows, fits)
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


def cmd_bench(args: argparse.Namespace) -> int:
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


def print_verdict(verdict: dict, out: Path, as_json: bool) -> None:
    if as_json:
        print(json.dumps(verdict))
        return
    for name in ("degradation", "agreement"):
        print(f"{name}: {verdict[name]['verdict']} - {verdict[name]['reason']}")
    print(f"report: {out / REPORT_MD} (and {REPORT_HTML}, {VERDICT})")


def make_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG, description="ResNet vs plain depth-scaling study with Keras and Lightning twins."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    describe = commands.add_parser("describe", help="layers, parameters and MACs of a spec")
    add_spec_arguments(describe)
    describe.add_argument("--backend", choices=BACKENDS, help="also build it and count from the model")
    describe.add_argument("--json", action="store_true", help="one JSON object on stdout")
    describe.set_defaults(run=cmd_describe)

    agree = commands.add_parser("agree", help="prove the two twins compute the same numbers")
    add_spec_arguments(agree)
    agree.add_argument("--dtype", choices=DTYPES, default="float32")
    agree.add_argument(
        "--keras-backend", choices=tuple(KERAS_BACKENDS), default="tensorflow", help="the Keras twin's backend"
    )
    agree.add_argument("--batch", type=int, default=8, help="examples in the compared batch (default 8)")
    agree.add_argument("--seed", type=int, default=0)
    agree.add_argument(
        "--train-steps", type=int, default=0, metavar="K", help="also compare K SGD steps of both training loops"
    )
    agree.add_argument("--json", action="store_true", help="one JSON object on stdout")
    agree.set_defaults(run=cmd_agree)

    train = commands.add_parser("train", help="train one twin on a data set, tracked in W&B")
    add_spec_arguments(train)
    train.add_argument("--backend", choices=BACKENDS, required=True)
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
    train.add_argument("--wandb", choices=WANDB_MODES, help="W&B mode (default: $WANDB_MODE, else offline)")
    train.add_argument(
        "--log-model", action="store_true", help="log the checkpoint as a W&B model artifact (default: no)"
    )
    train.add_argument("--device", choices=DEVICE_REQUESTS, default="auto")
    train.add_argument("--precision", choices=PRECISIONS, default="32")
    train.add_argument("--compile", action="store_true", help="torch.compile the backbone (lightning backend)")
    train.add_argument(
        "--devices",
        type=positive_int,
        default=1,
        help="data parallel over N devices (GPUs, or N CPU processes/replicas)",
    )
    train.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    train.set_defaults(run=cmd_train)

    run = commands.add_parser("run", help="the depth study: every grid point, resumable, then analyze")
    add_study_arguments(run)
    run.add_argument("--out", type=Path, help="study folder (default runs/<config>); an existing one is resumed")
    run.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="parallel runs, each with cores/N threads (default: cores, at most 4; small nets use cores poorly)",
    )
    run.add_argument("--alpha", type=float, default=0.05)
    run.add_argument("--margin", type=float, default=0.05, help="equivalence margin for the twins' errors")
    run.add_argument("--json", action="store_true", help="print verdict.json instead of progress")
    run.set_defaults(run=cmd_run)

    point = commands.add_parser("run-point", help="one grid point of a study (what a W&B sweep agent runs)")
    add_study_arguments(point)
    point.add_argument("--out", type=Path, required=True)
    point.add_argument("--backend", choices=BACKENDS, required=True)
    point.add_argument("--arch", choices=ARCHS, required=True)
    point.add_argument("--depth", type=int, required=True)
    point.add_argument("--seed", type=int, required=True)
    point.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    point.add_argument("--norm", choices=NORMS, default="batch")
    point.add_argument("--json", action="store_true")
    point.set_defaults(run=cmd_run_point)

    sweep = commands.add_parser("sweep", help="write a W&B sweep (grid) that runs the study on many machines")
    add_study_arguments(sweep)
    sweep.add_argument("--out", type=Path, help="study folder the agents write into (shared or later collected)")
    sweep.add_argument("--file", help="write the YAML here instead of stdout")
    sweep.set_defaults(run=cmd_sweep)

    collect = commands.add_parser("collect", help="merge study folders from several machines into one")
    collect.add_argument("out", type=Path)
    collect.add_argument("sources", type=Path, nargs="+")
    collect.set_defaults(run=cmd_collect)

    analyze = commands.add_parser("analyze", help="verdicts, figures and report from a study folder")
    analyze.add_argument("folder", type=Path)
    analyze.add_argument("--alpha", type=float, default=0.05)
    analyze.add_argument("--margin", type=float, default=0.05)
    analyze.add_argument(
        "--wandb", choices=WANDB_MODES, help="W&B mode of the analysis run (default: $WANDB_MODE, else offline)"
    )
    analyze.add_argument("--json", action="store_true")
    analyze.set_defaults(run=cmd_analyze)

    bench = commands.add_parser("bench", help="training and inference throughput against a raw loop")
    add_spec_arguments(bench)
    bench.add_argument("--backend", choices=BACKENDS, required=True)
    bench.add_argument("--batch", type=positive_int, default=128)
    bench.add_argument("--steps", type=positive_int, default=20, help="steps per timed epoch")
    bench.add_argument("--repeats", type=positive_int, default=7, help="timed epochs (after one warm-up)")
    bench.add_argument("--device", choices=DEVICE_REQUESTS, default="auto")
    bench.add_argument("--precision", choices=PRECISIONS, default="32")
    bench.add_argument("--compile", action="store_true", help="torch.compile the lightning twin (and its raw loop)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(run=cmd_bench)

    flow = commands.add_parser("gradflow", help="per-layer gradient norms at initialization and their decay")
    flow.add_argument("--depths", type=int_list, default=(8, 20, 56, 110))
    flow.add_argument("--seeds", type=int_list, default=(0,))
    flow.add_argument("--dataset", choices=DATASETS, default="digits")
    flow.add_argument("--data-dir")
    flow.add_argument("--backend", choices=BACKENDS, default="lightning")
    flow.add_argument("--out", type=Path, default=Path("runs/gradflow"))
    flow.add_argument("--json", action="store_true")
    flow.set_defaults(run=cmd_gradflow)
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


if __name__ == "__main__":
    sys.exit(main())
