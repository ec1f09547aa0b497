"""compare.json (`resnet-study compare`): the machine, the settings, every backend's speed, agreement
and drift rows, what was missing or failed, and the picks. `plan --throughput` reads its speed rows
(and a table in its shape: docs/data/gpu-throughput-assumed.json)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from study.core.records import PRECISIONS
from study.schemas.base import Backend, Name, Number, Open, Part, Record, Text

COMPARE = "compare.json"
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]
Rate = Annotated[float, Field(gt=0)]


class SpeedRow(Open):
    """One backend, network and precision timed (`study.measure.bench`); its other measurements (ratio
    to the raw loop, MFU, ...) kept as written."""

    backend: Backend
    device: Name | None = None
    spec: Name
    precision: Precision
    compile: bool = False
    train_img_per_s: Rate
    infer_img_per_s: Rate
    first_step_s: Number | None = None
    train_epochs: list[Number] = []
    infer_epochs: list[Number] = []
    peak_host_mb: Number | None = None
    peak_device_mb: Number | None = None


class AgreementRow(Open):
    backend: Backend
    spec: Name
    dtype: Literal["float64", "float32"]
    passed: bool


class Missing(Part):
    backend: Backend
    reason: Text
    install: Text


class Failure(Part):
    backend: Backend | None = None
    step: Name
    error: Text


class Comparison(Record):
    """A comparison; every list may be empty (a backend that was not installed, a step that failed)."""

    FILE = COMPARE
    KIND = "comparison"

    schema_: int = Field(1, alias="schema", ge=1, le=1)
    created: Name | None = None
    machine: Open | None = None
    settings: Open | None = None
    devices: list[Name] = []
    gpu_seen_by: dict[Backend, Text] = {}
    versions: dict[Backend, Open] = {}
    speed: list[SpeedRow]
    agreement: list[AgreementRow] = []
    drift: list[Open] = []
    missing: list[Missing] = []
    failures: list[Failure] = []
    recommendations: Open | None = None
    about: Text | None = None  # a table of assumed rates says what it is
    assumptions: list[Text] = []  # ... and what it assumes
