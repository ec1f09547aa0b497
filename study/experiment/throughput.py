"""Measured throughput for `resnet-study plan` (`study.experiment.plan`): what one run of a network
costs on a backend and device.

A `Throughput` table holds, per (backend, device kind, network): training and evaluation images per
second, the run's fixed cost outside its epochs, and its probes' seconds; with the probes' factor
(the rebuild per lesion and the block gradients, over the lesion study's test-set passes) and the
study's own seconds (start-up, replay, gradient flow, analysis); where a table comes from is
`study.experiment.throughput_tables`. A network the table lacks is predicted from the backend's
measured networks with the time per image linear in the network's FLOPs (fitted on the same input
size where two such networks were measured), its fixed cost linear in depth.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from study.core.errors import UserError
from study.core.spec import NetworkSpec
from study.measure.lesion import RANDOM_DRAWS, RANDOM_KS, RANDOM_MIN_BLOCKS

SHIPPED = Path(__file__).with_name("throughput_2cpu.json")  # measured here: docs/benchmarks.md
MAX_TABLE_BYTES = 16 * 2**20


class PlanError(UserError):
    """A throughput table or a plan request that cannot be used; the message is one line."""


def lesion_evaluations(spec: NetworkSpec) -> int:
    """Test-set evaluations of one network's lesion study (`study.measure.lesion.lesion_rows`)."""
    blocks = sum(1 for _ in spec.blocks())
    random = sum(RANDOM_DRAWS for k in RANDOM_KS if k < blocks) if blocks >= RANDOM_MIN_BLOCKS else 0
    return 1 + blocks + random


@dataclass(frozen=True)
class Rate:
    """One network measured on one backend and device kind."""

    backend: str
    device: str  # cpu | gpu
    spec: str  # NetworkSpec.name
    input_shape: tuple[int, int, int]
    depth: int
    flops: float  # training FLOPs per image (NetworkSpec.train_flops)
    train_img_s: float
    eval_img_s: float
    fixed_s: float | None = None  # per run, outside its epochs
    probe_s: float | None = None  # the run's probes, in the probe twin


@dataclass
class Throughput:
    """Measured rates and the study's own fixed costs; `source` says where they were measured."""

    source: str
    slots: str  # what one slot was when measured, e.g. "one of 2 workers, 1 thread each"
    rates: list[Rate]
    probe_factor: float = 1.0  # measured probe seconds / (evaluations x test-set pass)
    study_s: dict[str, float] = field(default_factory=dict)  # start, replay, gradflow, analysis
    notes: list[str] = field(default_factory=list)  # the assumptions a prediction from this table makes

    def to_dict(self) -> dict:
        return {"schema": 1, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> Throughput:
        try:
            rates = [Rate(**{**row, "input_shape": tuple(row["input_shape"])}) for row in data["rates"]]
            study_s = {str(k): float(v) for k, v in data["study_s"].items()}
            table = cls(str(data["source"]), str(data["slots"]), rates, float(data["probe_factor"]), study_s,
                        [str(n) for n in data["notes"]])  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise PlanError(f"{where}: not a throughput table ({error})") from None
        table.check(where)
        return table

    def check(self, where: str) -> None:
        def positive(value) -> bool:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            return number and math.isfinite(value) and value > 0

        for rate in self.rates:
            if not (positive(rate.train_img_s) and positive(rate.eval_img_s) and positive(rate.flops)):
                raise PlanError(f"{where}: {rate.backend} {rate.spec}: rates and FLOPs must be finite and > 0")
            for value in (rate.fixed_s, rate.probe_s):
                if value is not None and not (positive(value) or value == 0):
                    raise PlanError(f"{where}: {rate.backend} {rate.spec}: seconds must be finite and >= 0")
        if not (positive(self.probe_factor) and all(positive(v) or v == 0 for v in self.study_s.values())):
            raise PlanError(f"{where}: the probe factor and the study's seconds must be finite and >= 0")

    def backends(self, device: str) -> set[str]:
        return {r.backend for r in self.rates if r.device == device}

    def _rows(self, backend: str, device: str) -> list[Rate]:
        rows = [r for r in self.rates if r.backend == backend and r.device == device]
        if not rows:
            measured = ", ".join(sorted(self.backends(device))) or "none"
            raise PlanError(f"the throughput table ({self.source}) has no {backend} on {device.upper()} "
                            f"(measured there: {measured}); measure it with `resnet-study compare --backends "
                            f"{backend}` and pass --throughput")  # fmt: skip
        return rows

    def per_image(self, backend: str, device: str, spec: NetworkSpec) -> tuple[float, float, bool]:
        """(train seconds per image, eval seconds per image, measured as such) of `spec`."""
        rows = self._rows(backend, device)
        if (r := _measured(rows, spec)) is not None:
            return 1 / r.train_img_s, 1 / r.eval_img_s, True
        same_input = [r for r in rows if r.input_shape == tuple(spec.input_shape)]
        basis = same_input if len({r.flops for r in same_input}) >= 2 else rows
        return (
            _linear([(r.flops, 1 / r.train_img_s) for r in basis], spec.train_flops),
            _linear([(r.flops, 1 / r.eval_img_s) for r in basis], spec.train_flops),
            False,
        )

    def fixed(self, backend: str, device: str, spec: NetworkSpec) -> float:
        rows = [r for r in self._rows(backend, device) if r.fixed_s is not None]
        if (r := _measured(rows, spec)) is not None:
            return r.fixed_s
        return _linear([(r.depth, r.fixed_s) for r in rows], spec.depth) if rows else 0.0

    def probe(self, backend: str, device: str, spec: NetworkSpec, n_test: int) -> float:
        """Seconds of one run's probes in the probe twin `backend`."""
        rows = [r for r in self._rows(backend, device) if r.probe_s is not None]
        if (r := _measured(rows, spec)) is not None:
            return r.probe_s
        return lesion_evaluations(spec) * n_test * self.per_image(backend, device, spec)[1] * self.probe_factor


def _measured(rows: list[Rate], spec: NetworkSpec) -> Rate | None:
    """The row that measured `spec` itself (its name and input size), if any."""
    return next((r for r in rows if r.spec == spec.name and r.input_shape == tuple(spec.input_shape)), None)


def _linear(points: list[tuple[float, float]], x: float) -> float:
    """y at x on the least-squares line through `points` (through the origin where the fitted intercept
    is negative or there is one distinct x); never below zero."""
    xs = [p[0] for p in points]
    if len(set(xs)) >= 2:
        mx, my = statistics.fmean(xs), statistics.fmean(p[1] for p in points)
        slope = sum((px - mx) * (py - my) for px, py in points) / sum((px - mx) ** 2 for px in xs)
        if my - slope * mx >= 0:
            return max(0.0, my + slope * (x - mx))
    return max(0.0, x * sum(p[1] for p in points) / sum(xs)) if sum(xs) > 0 else statistics.fmean(p[1] for p in points)


def dataset_facts(dataset: str) -> tuple[tuple[int, int, int], int, int, int]:
    """(input shape, classes, training images, test images) of a data set, without reading CIFAR-10."""
    from study.core import data

    if dataset == "cifar10":
        return (data.CIFAR10_SIZE, data.CIFAR10_SIZE, 3), data.CIFAR10_CLASSES, 50_000, 10_000
    if dataset == "synthetic":
        return data.SYNTHETIC_SHAPE, data.SYNTHETIC_CLASSES, 512, 256  # load_dataset's default split
    loaded = data.load_dataset(dataset)
    return loaded.input_shape, loaded.classes, len(loaded.y_train), len(loaded.y_test)
