"""A training folder's JSON files: run.json (the run's identity and W&B id, written when it starts: how a
restart resumes it) and summary.json (written last: a folder without it holds no finished run)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from study.core.records import FLOAT64, PRECISIONS
from study.core.spec import FAMILIES
from study.files import RUN_STATE, SUMMARY
from study.schemas.base import (
    Activation,
    Arch,
    Backend,
    Batch,
    Count,
    Dataset,
    Depth,
    Fraction,
    Name,
    Norm,
    Number,
    Open,
    Positive,
    Record,
    Seconds,
    Seed,
    Shortcut,
    Text,
)

Precision = Literal[(*PRECISIONS, FLOAT64)]  # type: ignore[valid-type]
WandbId = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,64}$")]


class SpecRecord(Open):
    """A network's specification (`study.core.spec.NetworkSpec.to_dict`): what the study's tables and
    reports read of it checked; every other key kept as written (the spec's own rules apply when it is
    built)."""

    family: Literal[FAMILIES]  # type: ignore[valid-type]
    depth: Depth
    residual: bool
    shortcut: Shortcut
    activation: Activation
    norm: Norm
    input_shape: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(min_length=3, max_length=3)
    classes: Annotated[int, Field(ge=2, le=100_000)]


class TrainSpecRecord(Open):
    """The training recipe (`study.core.recipe.TrainSpec.to_dict`)."""

    epochs: Positive
    batch_size: Batch
    seed: Seed


class Identity(Open):
    """What determines the run's result, and how it trains (`RunRequest.identity`)."""

    backend: Backend
    dataset: Dataset
    spec: SpecRecord
    train_spec: TrainSpecRecord
    precision: Precision
    devices: Positive


class RunState(Record):
    """run.json: a run's identity and W&B id; a restart with the same identity resumes the run (another
    attempt) and continues its W&B run, another identity is refused."""

    FILE = RUN_STATE
    KIND = "run state"

    wandb_id: WandbId
    attempts: Positive
    identity: Identity


class RunConfig(Open):
    """The run's configuration as W&B records it (`RunRequest.wandb_config`): its spec checked."""

    spec: SpecRecord


class Summary(Record):
    """summary.json: a finished run — what trained, how it ended, what it cost, where its files are."""

    FILE = SUMMARY
    KIND = "summary"

    backend: Backend
    spec_name: Name | None = None
    arch: Arch
    depth: Depth
    dataset: Dataset
    seed: Seed
    epochs: Positive
    epochs_completed: Count
    final_train_loss: Number | None  # None: no epoch completed, or the loss was not finite
    final_train_error: Fraction | None
    final_test_error: Fraction | None
    best_test_error: Fraction | None
    diverged: bool
    train_img_per_s: Number | None
    wall_s: Seconds | None
    attempts: Positive = 1
    resumed_from_epoch: Count = 0
    restarted: Text | None = None
    params: Annotated[int, Field(ge=0, le=10**12)]
    device: Name | None = None
    precision: Precision = "32"
    checkpoint: Text
    wandb_id: WandbId | None = None
    model_artifact: Text | None = None
    wandb_dir: Text | None = None
    placement: Open | None = None
    config: RunConfig
