"""exactness.json: the float64 replay of the study's recipe by every twin (`study.measure.exactness`),
the evidence that the twins compute the same numbers. Schema 2 adds each network's rounding
sensitivity; schema 1 files still read."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from study.files import EXACTNESS, EXACTNESS_QUANTITIES, EXACTNESS_SCHEMAS
from study.schemas.base import Arch, Backend, Count, Dataset, Depth, Name, Number, Open, Part, Record

Error = Number | Literal["inf"]  # "inf": the twins ran different lengths (JSON has no infinity)
Quantity = Literal[EXACTNESS_QUANTITIES]  # type: ignore[valid-type]
Positive = Annotated[float, Field(gt=0)]


class Errors(Part):
    """The largest relative error of every quantity the replay compares (docs/design.md)."""

    step_losses: Error
    train_loss: Error
    train_error: Error
    test_loss: Error
    test_error: Error
    lr: Error
    grad_norms: Error
    final_weights: Error
    final_bn_stats: Error

    def within(self, limit: float) -> bool:
        return all(value != "inf" and value <= limit for value in self.model_dump().values())


class Pair(Part):
    backends: list[Backend] = Field(min_length=2, max_length=2)
    errors: Errors
    worst: Quantity | None = None
    passed: bool


class Rounding(Part):
    """One twin's replay from initial weights perturbed by `perturbation` against its own: how far
    rounding alone moves the network (a chaotic net is not judged by the replay)."""

    backend: Backend
    perturbation: Positive
    errors: Errors
    worst: Quantity | None = None
    replayable: bool


class Network(Part):
    spec: Name
    arch: Arch | None = None
    depth: Depth | None = None
    steps: dict[Backend, Count] = {}
    rounding: Rounding | None = None  # schema 2
    pairs: list[Pair]


class Worst(Part):
    error: Error
    quantity: Quantity
    spec: Name
    backends: list[Backend]


class Exactness(Record):
    """Every pair of twins on every replayed network, and the verdict: `passed` when every pair of every
    network that rounding does not move past `rounding_limit` stays within `tolerance`."""

    FILE = EXACTNESS
    KIND = "exactness"

    # an int, not a Literal: Python's True == 1 would let `"schema": true` through a Literal[1, 2]
    schema_: int = Field(alias="schema", ge=min(EXACTNESS_SCHEMAS), le=max(EXACTNESS_SCHEMAS))
    dtype: Literal["float64"] = "float64"
    tolerance: Positive
    rounding_limit: Positive | None = None  # schema 2
    passed: bool
    worst: Worst | None = None
    recipe: Open | None = None
    n_train: Count | None = None
    n_test: Count | None = None
    dataset: Dataset | None = None
    backends: list[Backend] = []
    networks: list[Network] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self):
        if self.schema_ >= 2 and self.rounding_limit is None:
            raise ValueError("schema 2 needs rounding_limit")
        judged = []
        for network in self.networks:
            for pair in network.pairs:
                if pair.passed != pair.errors.within(self.tolerance):
                    raise ValueError(f"{network.spec}: 'passed' contradicts the errors")
            if self.schema_ < 2:
                judged.append(network)
                continue
            if network.rounding is None:
                raise ValueError(f"{network.spec}: each network needs its 'rounding' sensitivity")
            if network.rounding.replayable != network.rounding.errors.within(self.rounding_limit):
                raise ValueError(f"{network.spec}: 'replayable' contradicts the errors")
            if network.rounding.replayable:
                judged.append(network)
        pairs = [pair for network in judged for pair in network.pairs]
        if self.passed != ((bool(pairs) or self.schema_ < 2) and all(pair.passed for pair in pairs)):
            raise ValueError("'passed' contradicts the networks' pairs")
        return self
