"""One training run of either twin: validate, load data, track in W&B, write history and summary.

`summary.json` is written last and atomically: a folder without it holds no finished run, whatever
else is there.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from study.core import data as datasets
from study.core.errors import UserError
from study.core.records import DEVICES, EpochRecord, RunContext
from study.core.spec import NetworkSpec, TrainSpec
from study.core.twin import Twin, load
from study.files import HISTORY, SUMMARY, atomic_write_text, write_csv
from study.tracking import library_versions, start_wandb

DEVICE_REQUESTS = ("auto", *DEVICES)  # --device: auto takes a GPU where the twin's framework sees one


class RunError(UserError):
    """A problem with the run's inputs or environment; the message is one line for the user."""


def prepare_out_dir(out: Path) -> Path:
    out = Path(out)
    if (out / SUMMARY).exists():
        raise RunError(f"--out {out} already holds a finished run ({SUMMARY}); choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as error:
        raise RunError(f"--out {out} is not writable: {error.strerror or error}") from None
    return out


def resolve_device(twin: Twin, device: str) -> str:
    """ "cpu" or "gpu" for a requested --device (auto: a GPU where the twin's framework sees one)."""
    has_gpu = twin.gpu_count() > 0
    if device == "gpu" and not has_gpu:
        raise RunError(f"--device gpu: no GPU is visible to the {twin.NAME} backend; use --device cpu or auto")
    resolved = "gpu" if device == "gpu" or (device == "auto" and has_gpu) else "cpu"
    if resolved == "cpu" and has_gpu:
        twin.use_cpu_only()
    return resolved


def fit_spec_to_data(spec: NetworkSpec, dataset: datasets.Dataset, input_given: bool) -> NetworkSpec:
    """The data set fixes the input shape and class count."""
    if input_given and tuple(spec.input_shape) != dataset.input_shape:
        raise RunError(
            f"--input {spec.input_shape} conflicts with the {dataset.name} data set's shape {dataset.input_shape}"
        )
    return spec.with_overrides(input_shape=dataset.input_shape, classes=dataset.classes)


def write_history(path: Path, records: list[EpochRecord]) -> None:
    write_csv(path, [r.to_row() for r in records])


def summarize(records: list[EpochRecord], diverged: bool) -> dict:
    def finite(value):
        return value if value is not None and math.isfinite(value) else None

    last = records[-1] if records else None
    speeds = [r.train_img_per_s for r in records[1:] or records]  # the first epoch includes warm-up
    return {
        "epochs_completed": len(records),
        "final_train_loss": finite(last.train_loss) if last else None,
        "final_train_error": last.train_error if last else None,
        "final_test_error": last.test_error if last else None,
        "best_test_error": min(r.test_error for r in records) if records else None,
        "diverged": diverged,
        "train_img_per_s": statistics.median(speeds) if speeds else None,
    }


def run_training(
    spec: NetworkSpec,
    train_spec: TrainSpec,
    backend: str,
    dataset_name: str,
    out: Path,
    data_dir: str | None = None,
    wandb_mode: str = "offline",
    device: str = "auto",
    precision: str = "32",
    input_given: bool = False,
    devices: int = 1,
    compile: bool = False,
    group: str | None = None,
    verbose: int = 1,
) -> dict:
    """Train one twin and return the summary (also written to `out/summary.json`)."""
    out = prepare_out_dir(out)
    try:
        dataset = datasets.load_dataset(dataset_name, data_dir, seed=train_spec.seed)
    except datasets.DataError as error:
        raise RunError(str(error)) from None
    spec = fit_spec_to_data(spec, dataset, input_given)
    twin = load(backend)
    device = resolve_device(twin, device)
    steps = datasets.steps_per_epoch(len(dataset.y_train), train_spec.batch_size)
    config = {
        "spec": spec.to_dict(),
        "train_spec": train_spec.to_dict(),
        "backend": backend,
        "arch": spec.arch,
        "depth": spec.depth,
        "dataset": dataset_name,
        "device": device,
        "precision": precision,
        "devices": devices,
        "compile": compile,
        "trainable_params": spec.trainable_params,
        "versions": library_versions(twin),
    }
    tags = [spec.arch, f"depth-{spec.depth}", backend, dataset_name]
    wandb_run = start_wandb(
        wandb_mode, out, config, group or "adhoc", backend, tags, f"{backend}-{spec.name}-s{train_spec.seed}"
    )
    # Spawned data-parallel processes cannot carry a live W&B run: their epochs are logged afterwards.
    live_wandb = wandb_run if devices == 1 else None
    run = RunContext(
        out, train_spec, steps, len(dataset.y_train), precision, device, devices, live_wandb, compile=compile
    )
    start = time.perf_counter()
    outcome = twin.train(spec, train_spec, dataset, run, verbose=verbose)
    wall_s = time.perf_counter() - start
    if wandb_run is not None and live_wandb is None:
        for record in outcome.records:
            wandb_run.log({f"epoch/{key}": value for key, value in record.metrics().items()} | {"epoch": record.epoch})
    summary = {
        "backend": backend,
        "spec_name": spec.name,
        "arch": spec.arch,
        "depth": spec.depth,
        "dataset": dataset_name,
        "seed": train_spec.seed,
        "epochs": train_spec.epochs,
        **summarize(outcome.records, outcome.diverged),
        "wall_s": wall_s,
        "params": spec.trainable_params,
        "device": device,
        "precision": precision,
        "checkpoint": str(outcome.checkpoint),
        "wandb_dir": wandb_run.dir if wandb_run is not None else None,
        "config": config,
    }
    write_history(out / HISTORY, outcome.records)
    if wandb_run is not None:
        wandb_run.summary.update({k: v for k, v in summary.items() if k != "config" and v is not None})
        wandb_run.finish()
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2))
    return summary
