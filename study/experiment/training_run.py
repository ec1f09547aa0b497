"""One training run of either twin: validate, load data, track in W&B, write history and summary.

`summary.json` is written last and atomically: a folder without it holds no finished run, whatever
else is there.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from study.configs import GridPoint
from study.core import data as datasets
from study.core.errors import UserError
from study.core.recipe import TrainSpec
from study.core.records import EpochRecord, RunContext, run_determinants
from study.core.spec import NetworkSpec
from study.core.twin import Twin, check_devices, load, request_cpu_devices
from study.experiment.placement import where
from study.files import HISTORY, RUN_STATE, SUMMARY, claim_folder, write_csv
from study.schemas.run import RunState, Summary
from study.tracking.dashboard import log_model as log_model_artifact
from study.tracking.dashboard import model_artifact_name
from study.tracking.wandb_run import library_versions, resolve_mode, run_tags, start_wandb


class RunError(UserError):
    """A problem with the run's inputs or environment; the message is one line for the user."""


def prepare_out_dir(out: Path) -> Path:
    """`out` as this run's folder: new, empty or an unfinished run of this tool (run.json), writable."""
    out = Path(out)
    if (out / SUMMARY).exists():
        raise RunError(f"--out {out} already holds a finished run ({SUMMARY}); choose another folder")
    claim_folder(out, (RUN_STATE,), "training run")
    try:
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
            state = RunState.read(path, RunError).as_dict()
        except RunError as error:
            raise RunError(f"--out {out}: {error}; choose another folder") from None
        if state["identity"] != identity:
            raise RunError(
                f"--out {out} holds an unfinished run of another configuration; resume it with the same "
                "flags or choose another folder"
            )
        state["attempts"] += 1
    else:
        state = {"identity": identity, "wandb_id": uuid.uuid4().hex[:12], "attempts": 1}
    return RunState.model_validate(state).write(path).as_dict()


@dataclass(frozen=True)
class RunRequest:
    """One training run as asked for: what it trains (the first four fields determine its result) and
    where and how. `train` and every study grid point (`for_point`) build one."""

    spec: NetworkSpec
    train_spec: TrainSpec
    backend: str
    dataset: str
    out: Path
    data_dir: str | None = None
    wandb_mode: str | None = None
    device: str = "auto"  # one of DEVICE_REQUESTS
    precision: str = "32"
    input_given: bool = False  # the user set --input (the data set must then have that shape)
    devices: int = 1
    compile: bool = False
    study: str | None = None  # the study id (W&B group), None for a lone run
    log_model: bool = False  # the checkpoint as a W&B model artifact
    artifact_name: str | None = None  # its name (default: made of the run's name and W&B id)
    verbose: int = 1

    @classmethod
    def for_point(cls, point: GridPoint, out: Path, **how) -> RunRequest:
        """A study grid point's training run, into `out`; `how` are the other fields (data_dir, ...)."""
        return cls(point.network_spec(), point.train_spec(), point.backend, point.study.dataset, out, **how)

    def determinants(self) -> dict:
        """What determines the run's result (`run_determinants`)."""
        return run_determinants(self.backend, self.dataset, self.spec, self.train_spec)

    def identity(self) -> dict:
        """What run.json records: a restart with the same identity resumes the run, another is refused."""
        return self.determinants() | {"precision": self.precision, "devices": self.devices}

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.spec.name}-s{self.train_spec.seed}"

    def wandb_config(self, device: str, steps_per_epoch: int, versions: dict) -> dict:
        """The W&B run's config: the keys a dashboard groups and filters by at the top level (README:
        the W&B dashboard), then the whole request."""
        spec, train_spec = self.spec, self.train_spec
        return {"arch": spec.arch, "depth": spec.depth, "backend": self.backend, "seed": train_spec.seed,
                "study": self.study, "dataset": self.dataset, "spec": spec.to_dict(),
                "train_spec": train_spec.to_dict(), "device": device, "precision": self.precision,
                "devices": self.devices, "compile": self.compile, "trainable_params": spec.trainable_params,
                "steps_per_epoch": steps_per_epoch, "versions": versions}  # fmt: skip


def run_training(request: RunRequest) -> dict:
    """Train one twin and return the summary (also written to `request.out`/summary.json).

    A folder holding an unfinished attempt of the same run resumes it: the twin continues from its
    checkpoint of the last completed epoch, and the W&B run continues under the same id. With
    `log_model`, the checkpoint becomes a W&B model artifact (not for a diverged run: its weights are not
    finite, or it has no checkpoint at all when it diverged in its first epoch).
    """
    backend, train_spec = request.backend, request.train_spec
    check_devices(backend, request.devices)
    try:  # before --out is created: bad data writes nothing
        dataset = datasets.load_dataset(request.dataset, request.data_dir, seed=train_spec.seed)
    except datasets.DataError as error:
        raise RunError(str(error)) from None
    request = dataclasses.replace(request, spec=fit_spec_to_data(request.spec, dataset, request.input_given))
    spec = request.spec
    wandb_mode = resolve_mode(request.wandb_mode)
    if request.device != "gpu":
        request_cpu_devices(backend, request.devices)
    twin = load(backend)  # a backend whose framework is missing is one line, before --out exists
    out = prepare_out_dir(request.out)
    device = resolve_device(twin, request.device)
    state = claim_out_dir(out, request.identity())
    restarted = set_aside_unreadable_resume(twin, out) if state["attempts"] > 1 else None
    run = RunContext(
        out, train_spec, len(dataset.y_train), request.precision, device, request.devices,
        compile=request.compile, resume=state["attempts"] > 1 and restarted is None,
    )  # fmt: skip
    config = request.wandb_config(device, run.steps_per_epoch, library_versions(twin))
    tags = run_tags(spec.arch, spec.depth, backend, train_spec.seed, request.dataset, request.study)
    wandb_run = start_wandb(
        wandb_mode, out, config, request.study or "adhoc", backend, tags, request.name, state["wandb_id"]
    )
    # Spawned data-parallel processes cannot carry a live W&B run: their epochs are logged afterwards.
    run.wandb_run = wandb_run if request.devices == 1 else None
    started_at, start = time.time(), time.perf_counter()
    outcome = twin.train(spec, dataset, run, verbose=request.verbose)
    # Wall time of the training: this attempt's, and the epochs an earlier attempt completed.
    wall_s = time.perf_counter() - start + sum(r.wall_s for r in outcome.records[: outcome.resumed_epochs])
    if wandb_run is not None and run.wandb_run is None:
        for record in outcome.records:
            wandb_run.log(record.wandb_row(), step=record.epoch)
    summary = {
        "backend": backend,
        "spec_name": spec.name,
        "arch": spec.arch,
        "depth": spec.depth,
        "dataset": request.dataset,
        "seed": train_spec.seed,
        "epochs": train_spec.epochs,
        **summarize(outcome.records, outcome.diverged),
        "wall_s": wall_s,
        "attempts": state["attempts"],
        "resumed_from_epoch": outcome.resumed_epochs,
        "restarted": restarted,  # why an unfinished attempt's checkpoint was set aside (None: it was not)
        "params": spec.trainable_params,
        "device": device,
        "precision": request.precision,
        "checkpoint": str(outcome.checkpoint),
        "wandb_id": state["wandb_id"] if wandb_run is not None else None,
        "model_artifact": None,
        "wandb_dir": wandb_run.dir if wandb_run is not None else None,
        "placement": where(started_at),  # the host, process and GPUs this attempt trained on
        "config": config,
    }
    write_history(out / HISTORY, outcome.records)
    if wandb_run is not None and request.log_model and not outcome.diverged:  # a diverged net is no model
        name = request.artifact_name or model_artifact_name(f"{request.name}-{state['wandb_id']}")
        metadata = {k: summary[k] for k in ("backend", "arch", "depth", "seed", "dataset", "final_train_error",
                                            "final_test_error", "diverged")} | {"spec": config["spec"]}  # fmt: skip
        summary["model_artifact"] = log_model_artifact(wandb_run, name, outcome.checkpoint, metadata)
    if wandb_run is not None:
        wandb_run.summary.update({k: v for k, v in summary.items() if k != "config" and v is not None})
        wandb_run.finish()
    Summary.model_validate(summary).write(out / SUMMARY)
    for path in outcome.transient:  # the run is finished: its resume files are no longer needed
        path.unlink(missing_ok=True)
    return summary


def set_aside_unreadable_resume(twin: Twin, out: Path) -> str | None:
    """An unfinished attempt's resume file that cannot be loaded safely (`Twin.resume_problem`) is
    renamed to ``<name>.corrupt`` (kept for inspection, never loaded) and the run retrains from epoch
    0; returns the one line that says so (also on stderr), or None."""
    problem = twin.resume_problem(out)
    if problem is None:
        return None
    path, why = problem
    aside = path.with_name(f"{path.name}.corrupt")
    os.replace(path, aside)
    line = f"{path}: {why}; retraining the run from epoch 0 (the file is kept as {aside.name})"
    print(line, file=sys.stderr, flush=True)
    return line
