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
import uuid
from pathlib import Path

from study.core import data as datasets
from study.core.errors import UserError
from study.core.recipe import TrainSpec
from study.core.records import DEVICES, EpochRecord, RunContext
from study.core.spec import NetworkSpec
from study.core.twin import Twin, check_devices, load, request_cpu_devices
from study.files import HISTORY, RUN_STATE, SUMMARY, atomic_write_text, write_csv
from study.tracking.dashboard import log_model as log_model_artifact
from study.tracking.dashboard import model_artifact_name
from study.tracking.wandb_run import library_versions, resolve_mode, run_tags, start_wandb

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


def claim_out_dir(out: Path, identity: dict) -> dict:
    """The run state of `out` (run.json): a new one, or an unfinished earlier attempt's with the same
    identity (which this run resumes). Another configuration's unfinished run is refused."""
    path = out / RUN_STATE
    if path.exists():
        try:
            state = json.loads(path.read_text())
            same = state["identity"] == identity
        except (OSError, ValueError, KeyError, TypeError):
            raise RunError(f"--out {out}: {RUN_STATE} is unreadable; choose another folder") from None
        if not same:
            raise RunError(
                f"--out {out} holds an unfinished run of another configuration; resume it with the same "
                "flags or choose another folder"
            )
        state["attempts"] += 1
    else:
        state = {"identity": identity, "wandb_id": uuid.uuid4().hex[:12], "attempts": 1}
    atomic_write_text(path, json.dumps(state, indent=2))
    return state


def run_training(
    spec: NetworkSpec,
    train_spec: TrainSpec,
    backend: str,
    dataset_name: str,
    out: Path,
    data_dir: str | None = None,
    wandb_mode: str | None = None,
    device: str = "auto",
    precision: str = "32",
    input_given: bool = False,
    devices: int = 1,
    compile: bool = False,
    study: str | None = None,
    log_model: bool = False,
    artifact_name: str | None = None,
    verbose: int = 1,
) -> dict:
    """Train one twin and return the summary (also written to `out/summary.json`).

    A folder holding an unfinished attempt of the same run resumes it: the twin continues from its
    checkpoint of the last completed epoch, and the W&B run continues under the same id. With
    `log_model`, the checkpoint becomes a W&B model artifact (`artifact_name`, or one made of the run).
    """
    check_devices(backend, devices)
    out = prepare_out_dir(out)
    try:
        dataset = datasets.load_dataset(dataset_name, data_dir, seed=train_spec.seed)
    except datasets.DataError as error:
        raise RunError(str(error)) from None
    spec = fit_spec_to_data(spec, dataset, input_given)
    wandb_mode = resolve_mode(wandb_mode)
    if device != "gpu":
        request_cpu_devices(backend, devices)
    twin = load(backend)
    device = resolve_device(twin, device)
    steps = datasets.steps_per_epoch(len(dataset.y_train), train_spec.batch_size)
    identity = {"backend": backend, "dataset": dataset_name, "spec": spec.to_dict(), "train_spec": train_spec.to_dict(),
                "precision": precision, "devices": devices}  # fmt: skip
    state = claim_out_dir(out, identity)
    config = {
        # The keys a dashboard groups and filters by, at the top level (README: the W&B dashboard).
        "arch": spec.arch,
        "depth": spec.depth,
        "backend": backend,
        "seed": train_spec.seed,
        "study": study,
        "dataset": dataset_name,
        "spec": spec.to_dict(),
        "train_spec": train_spec.to_dict(),
        "device": device,
        "precision": precision,
        "devices": devices,
        "compile": compile,
        "trainable_params": spec.trainable_params,
        "steps_per_epoch": steps,
        "versions": library_versions(twin),
    }
    tags = run_tags(spec.arch, spec.depth, backend, train_spec.seed, dataset_name, study)
    name = f"{backend}-{spec.name}-s{train_spec.seed}"
    wandb_run = start_wandb(wandb_mode, out, config, study or "adhoc", backend, tags, name, state["wandb_id"])
    # Spawned data-parallel processes cannot carry a live W&B run: their epochs are logged afterwards.
    live_wandb = wandb_run if devices == 1 else None
    run = RunContext(
        out, train_spec, steps, len(dataset.y_train), precision, device, devices, live_wandb, compile=compile,
        resume=state["attempts"] > 1,
    )  # fmt: skip
    start = time.perf_counter()
    outcome = twin.train(spec, train_spec, dataset, run, verbose=verbose)
    # Wall time of the training: this attempt's, and the epochs an earlier attempt completed.
    wall_s = time.perf_counter() - start + sum(r.wall_s for r in outcome.records[: outcome.resumed_epochs])
    if wandb_run is not None and live_wandb is None:
        for record in outcome.records:
            wandb_run.log(record.wandb_row(), step=record.epoch)
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
        "attempts": state["attempts"],
        "resumed_from_epoch": outcome.resumed_epochs,
        "params": spec.trainable_params,
        "device": device,
        "precision": precision,
        "checkpoint": str(outcome.checkpoint),
        "wandb_id": state["wandb_id"] if wandb_run is not None else None,
        "model_artifact": None,
        "wandb_dir": wandb_run.dir if wandb_run is not None else None,
        "config": config,
    }
    write_history(out / HISTORY, outcome.records)
    if wandb_run is not None and log_model:
        name = artifact_name or model_artifact_name(f"{name}-{state['wandb_id']}")
        metadata = {k: summary[k] for k in ("backend", "arch", "depth", "seed", "dataset", "final_train_error",
                                            "final_test_error", "diverged")} | {"spec": config["spec"]}  # fmt: skip
        summary["model_artifact"] = log_model_artifact(wandb_run, name, outcome.checkpoint, metadata)
    if wandb_run is not None:
        wandb_run.summary.update({k: v for k, v in summary.items() if k != "config" and v is not None})
        wandb_run.finish()
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2))
    return summary
