"""What a training run is given and what it returns, framework-neutral.

Both twins fill the same `EpochRecord`s, so `history.csv` and the W&B keys are identical whichever
backend ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.core.data import steps_per_epoch
from study.core.recipe import TrainSpec
from study.core.spec import NetworkSpec

# The numeric precision of a run: float32, bf16 mixed precision (what a user trains in), or float64
# throughout (the agreement checks only: `study.measure.numerics`).
PRECISIONS = ("32", "bf16")
FLOAT64 = "64"
DEVICES = ("cpu", "gpu")  # where a twin trains (`RunContext.device`)
DEVICE_REQUESTS = ("auto", *DEVICES)  # --device: auto takes a GPU where the twin's framework sees one
DTYPES = ("float64", "float32")  # what a twin builds a network in (`Twin.build`; `agree --dtype`)
STEP_METRIC = "epoch"  # the W&B x-axis of every per-epoch metric: 1-based, the same for every twin


def run_determinants(backend: str, dataset: str, spec: NetworkSpec, train_spec: TrainSpec) -> dict:
    """What determines a training run's result (not where or how fast it runs): run.json's identity
    starts with it and a study grid point's run key hashes it."""
    return {"backend": backend, "dataset": dataset, "spec": spec.to_dict(), "train_spec": train_spec.to_dict()}


def weighted_layer_names(spec: NetworkSpec) -> list[str]:
    """Main-path convolutions and the classifier, input to output: one gradient norm each."""
    return [layer.name for layer in spec.layers() if layer.main_path] + ["fc"]


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's train-mode steps, weighted by batch size
    train_error: float  # fraction in [0, 1], same averaging
    test_loss: float  # eval mode, after the epoch
    test_error: float
    lr: float  # learning rate of the epoch's last step
    wall_s: float  # the whole epoch, evaluation included
    train_img_per_s: float  # training examples / training time of the epoch
    grad_norms: dict[str, float] = field(default_factory=dict)  # L2 norm of dL/dkernel, last step

    def to_row(self) -> dict[str, float]:
        row = {k: v for k, v in self.__dict__.items() if k != "grad_norms"}
        return row | {f"grad_norm/{name}": value for name, value in self.grad_norms.items()}

    def wandb_row(self) -> dict[str, float]:
        """What W&B logs for the epoch, the same keys for every twin: the step metric and ``epoch/<column>``."""
        return {STEP_METRIC: self.epoch} | {f"epoch/{k}": v for k, v in self.to_row().items() if k != "epoch"}


@dataclass
class TrainOutcome:
    """What a twin's `train` returns."""

    records: list[EpochRecord]  # one per completed epoch
    diverged: bool  # the loss became NaN/inf; training stopped there
    checkpoint: Path  # the trained backbone in the framework's native format
    batch_losses: list[float]  # every step's train-mode loss when RunContext.trace_steps, else []
    resumed_epochs: int = 0  # epochs restored from an earlier attempt's checkpoint (RunContext.resume)
    transient: tuple[Path, ...] = ()  # resume files the caller deletes once the run's summary is written


@dataclass
class RunContext:
    """Everything a twin's `train` needs besides the spec, recipe and data."""

    out_dir: Path
    train_spec: TrainSpec  # the recipe: every twin reads it (and its epochs) from here
    n_train: int  # training examples per epoch
    precision: str = "32"  # one of PRECISIONS, or FLOAT64
    device: str = "cpu"  # one of DEVICES
    devices: int = 1  # > 1: data parallel (Lightning DDP, Keras MirroredStrategy) over this many devices
    wandb_run: Any = None  # a wandb Run, or None when W&B is disabled
    epoch_hook: Callable[[EpochRecord], None] | None = None  # called by `publish` after W&B (bench)
    trace_steps: bool = False  # record every step's loss (study.measure.numerics); costs a device sync per step
    compile: bool = False  # torch.compile the Lightning twin's backbone (Keras compiles with XLA on GPUs)
    resume: bool = False  # continue from the checkpoint in out_dir, if an earlier attempt left one

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.n_train, self.train_spec.batch_size)

    def publish(self, record: EpochRecord) -> None:
        """Every twin's last act of an epoch, after its state is saved: log the record to W&B (its step
        is the 1-based epoch, so a resumed run continues the same axis) and call the epoch hook."""
        if self.wandb_run is not None:
            self.wandb_run.log(record.wandb_row(), step=record.epoch)
        if self.epoch_hook is not None:
            self.epoch_hook(record)

    def record(
        self, epoch: int, train_loss, train_error, test_loss, test_error, wall_s, train_s, grad_norms
    ) -> EpochRecord:
        """`epoch` is 0-based as frameworks count; the record is 1-based as people do."""
        return EpochRecord(
            epoch=epoch + 1,
            train_loss=train_loss,
            train_error=train_error,
            test_loss=test_loss,
            test_error=test_error,
            lr=self.train_spec.lr_at((epoch + 1) * self.steps_per_epoch - 1, self.steps_per_epoch),
            wall_s=wall_s,
            train_img_per_s=self.n_train / train_s if train_s > 0 else float("nan"),
            grad_norms=grad_norms,
        )
