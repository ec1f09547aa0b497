"""The study folder's JSON files: study.json (the study's config and id), settle.json (a `--settle`
study's first look) and timings.json (where its time went)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from study.core.errors import UserError
from study.files import SETTLE, STUDY, TIMINGS
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
    Part,
    Positive,
    Record,
    Seconds,
    Seed,
    Shortcut,
    Text,
)

StudyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]  # a W&B group name too


class StudyConfigRecord(Part):
    """A study's grid and recipe as `study.configs.StudyConfig.to_dict` writes it: the grid's axes, the
    recipe fields the study sets, any other recipe field only where it is not the default. The rules
    between fields (6n+2 depths, distinct seeds, warm-up within the epochs, ...) are StudyConfig's own,
    applied on read."""

    name: Name
    dataset: Dataset
    backends: list[Backend] = Field(min_length=1)
    archs: list[Arch] = Field(min_length=1)
    depths: list[Depth] = Field(min_length=1)
    seeds: list[Seed] = Field(min_length=1, max_length=100_000)
    epochs: Positive
    warmup_epochs: Annotated[float, Field(ge=0)] = 0.0
    batch_size: Batch = 128
    shortcut: Shortcut = "A"
    activations: list[Activation] = ["relu"]
    norms: list[Norm] = ["batch"]
    gradflow_depths: list[Depth] = []
    exactness_depths: list[Depth] = []
    probe_backend: Backend = "lightning"
    budgets: list[Positive] = []
    settle: Count = 0
    lr: Annotated[float, Field(gt=0)] | None = None
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None
    weight_decay: Annotated[float, Field(ge=0)] | None = None
    lr_milestones: list[Fraction] | None = None
    lr_drop: Annotated[float, Field(gt=0, le=1)] | None = None
    warmup_lr: Annotated[float, Field(gt=0)] | None = None
    augment: bool | None = None

    @model_validator(mode="after")
    def _a_study_config(self):
        from study.configs import StudyConfig

        try:
            StudyConfig.from_dict(self.model_dump(exclude_unset=True))
        except UserError as error:
            raise ValueError(str(error).removeprefix("not a study config: ")) from None
        return self


class StudyFile(Record):
    """study.json: the study's id (its W&B group: the config's name and a hash of it) and its config."""

    FILE = STUDY
    KIND = "study"

    study_id: StudyId
    config: StudyConfigRecord


class Cell(Part):
    arch: Arch
    depth: Depth


class LookOne(Part):
    alpha: Annotated[float, Field(gt=0, lt=1)]
    margin: Annotated[float, Field(gt=0, lt=1)]
    verdict: Name
    undecided: list[Text] = []
    why_none: Text | None = None
    runs: Count | None = None
    minutes: Seconds | None = None
    power_at_look_two: dict[Text, Fraction] = {}


class SettleFile(Record):
    """settle.json: a `--settle` study's look 1 (`study.experiment.settle`) — the grid's seeds, the seeds
    added (disjoint from them) and the cells they were added to, and what look 1 decided."""

    FILE = SETTLE
    KIND = "settle"

    declared: Count | None = None
    grid_seeds: list[Seed] = Field(min_length=1)
    extra_seeds: list[Seed] = Field(min_length=1)
    cells: list[Cell]
    look_one: LookOne | None = None

    @model_validator(mode="after")
    def _seeds_differ(self):
        for name in ("grid_seeds", "extra_seeds"):
            if len(set(getattr(self, name))) != len(getattr(self, name)):
                raise ValueError(f"{name} repeat a seed")
        if set(self.grid_seeds) & set(self.extra_seeds):
            raise ValueError("extra_seeds repeat a grid seed")
        return self


class Phase(Part):
    phase: Name
    tasks: Count
    wall_s: Seconds
    cpu_s: Seconds


class Task(Part):
    phase: Name
    key: Name
    wall_s: Seconds
    cpu_s: Seconds


class TimingsFile(Record):
    """timings.json (`study.experiment.timings`): the invocation's wall time, how many runs it trained at
    once, each phase's seconds summed over its tasks, and each run's own tasks (what `plan` learns a
    run's cost from; absent in files of older versions)."""

    FILE = TIMINGS
    KIND = "timings"

    wall_s: Seconds
    workers: Annotated[int, Field(ge=1, le=4096)] | None = None
    phases: list[Phase]
    tasks: list[Task] | None = None
