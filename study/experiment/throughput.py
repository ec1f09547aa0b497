"""Measured throughput for `resnet-study plan` (`study.experiment.plan`): what one run of a network
costs on a backend and device, and where those numbers come from.

A `Throughput` table holds, per (backend, device kind, network): training and evaluation images per
second, the run's fixed cost outside its epochs, and its probes' seconds; with the probes' factor
(the rebuild per lesion and the block gradients, over the lesion study's test-set passes) and the
study's own seconds (start-up, replay, gradient flow, analysis). Sources: a finished study folder
(`from_study`: each run's task seconds in timings.json, its epochs in history.csv — that machine, at
the runner's own threads and concurrency), a `compare.json` (`from_compare`: the whole device, one
run at a time), a table saved by `plan --save-table`, or the one shipped with the product (`SHIPPED`,
measured on the 2-core development machine; docs/benchmarks.md). A network the table lacks is
predicted from the backend's measured networks with the time per image linear in the network's FLOPs
(fitted on the same input size where two such networks were measured), its fixed cost linear in depth.
Every file read is checked: a malformed table is one line (`PlanError`).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from study.configs import StudyConfig
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


# -- the tables --------------------------------------------------------------------------------


def load_throughput(path: Path | None) -> Throughput:
    """The shipped table (None), a study folder's measured runs, or a compare.json."""
    if path is None:
        return Throughput.from_dict(json.loads(SHIPPED.read_text()), str(SHIPPED))
    path = Path(path)
    if path.is_dir():
        return from_study(path)
    return from_compare(path, _read_json(path))


def _read_json(path: Path) -> dict:
    try:
        if path.exists() and not path.is_file():  # a pipe or device would block or never end
            raise PlanError(f"--throughput {path}: not a regular file")
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise PlanError(f"--throughput {path}: larger than {MAX_TABLE_BYTES >> 20} MiB; not a compare.json")
        data = json.loads(path.read_text())
    except OSError as error:
        raise PlanError(f"--throughput {path}: cannot read it ({error.strerror or error})") from None
    except (ValueError, RecursionError):
        raise PlanError(f"--throughput {path}: not valid JSON") from None
    if not isinstance(data, dict):
        raise PlanError(f"--throughput {path}: not a compare.json (a JSON object with speed rows)")
    return data


def from_compare(path: Path, data: dict) -> Throughput:
    """The fp32, eager speed rows of a compare.json (`resnet-study compare`): train and inference
    rates, the first step as the fixed cost. compare measures one network at a time on the whole
    device; the study's probes are not measured there (the shipped table's probe factor is used)."""
    if "rates" in data and "probe_factor" in data:  # a table written by `plan --save-table` or shipped
        return Throughput.from_dict(data, f"--throughput {path}")
    rows = data.get("speed")
    if not isinstance(rows, list):
        raise PlanError(f"--throughput {path}: not a compare.json (no speed rows)")
    from study.core.presets import parse_spec

    rates = []
    for row in rows:
        if not isinstance(row, dict) or row.get("precision") != "32" or row.get("compile"):
            continue
        try:
            spec = parse_spec(str(row["spec"]))
            device = "gpu" if str(row["device"]).startswith(("cuda", "gpu")) else "cpu"
            rate = Rate(str(row["backend"]), device, spec.name, tuple(spec.input_shape), spec.depth,
                        spec.train_flops, float(row["train_img_per_s"]), float(row["infer_img_per_s"]),
                        float(row.get("first_step_s") or 0.0))  # fmt: skip
        except (KeyError, TypeError, ValueError, UserError) as error:
            raise PlanError(f"--throughput {path}: a speed row is malformed ({error})") from None
        rates.append(rate)
    if not rates:
        raise PlanError(f"--throughput {path}: no fp32, uncompiled speed rows (the precision studies train in)")
    shipped = load_throughput(None)
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    gpu = next(iter(data.get("gpu_seen_by", {}).values()), None) if isinstance(data.get("gpu_seen_by"), dict) else None
    table = Throughput(
        f"{path} ({gpu or machine.get('cpu') or 'this machine'})",
        "the whole device, one run at a time",
        rates,
        shipped.probe_factor,
        shipped.study_s,
        ["per run, compare's first step is the fixed cost (the W&B run and checkpoints are not in it)",
         f"the probes' rebuild-per-lesion factor ({shipped.probe_factor:.2f}) is the shipped table's",
         *(str(note) for note in data.get("assumptions", []) if isinstance(data.get("assumptions"), list))],
    )  # fmt: skip
    table.check(f"--throughput {path}")
    return table


def from_study(folder: Path) -> Throughput:
    """What each run of a finished study folder cost (results.csv, history.csv, timings.json's tasks):
    its epochs' rates, its fixed cost (its task's seconds less its epochs), its probes' seconds; the
    median per backend and network. The study's own costs (start-up, worker processes, landing, the
    analysis) are what its wall time holds beyond its tasks as `simulate` schedules them."""
    from study.experiment.timings import TIMINGS
    from study.files import HISTORY, RESULTS, RUNS, STUDY, SUMMARY
    from study.verdicts.inputs import load_history, load_results, load_study, read_json

    where = f"--throughput {folder}"
    if not all((folder / name).is_file() for name in (STUDY, RESULTS, HISTORY, TIMINGS)):
        raise PlanError(f"{where}: not a finished study folder (study.json, results.csv, history.csv, timings.json)")
    try:
        config = load_study(folder / STUDY)["config"]
        timings = _read_json(folder / TIMINGS)
        results, history = load_results(folder / RESULTS), load_history(folder / HISTORY)
        tasks = timings.get("tasks")
        if not isinstance(tasks, list):
            raise PlanError(f"{where}: its timings.json has no per-task seconds (written by an older version)")
        task_s = {(str(t["phase"]).split()[0], str(t["key"])): float(t["wall_s"]) for t in tasks if t.get("key")}
        shape, classes, n_train, n_test = dataset_facts(str(config["dataset"]))
        probe_backend = str(config.get("probe_backend", "lightning"))
        per: dict[tuple[str, str, NetworkSpec], list[dict]] = {}
        for row in results.itertuples():
            epochs = history[history.run_key == row.run_key]
            if row.diverged or epochs.empty or ("train", row.run_key) not in task_s:
                continue
            summary = read_json(folder / RUNS / row.run_key / SUMMARY)
            device = "gpu" if str(summary.get("device", "cpu")).startswith(("cuda", "gpu")) else "cpu"
            spec = NetworkSpec(family="cifar", depth=int(row.depth), residual=row.arch == "resnet",
                               shortcut=str(row.shortcut), activation=str(row.activation), norm=str(row.norm),
                               input_shape=shape, classes=classes)  # fmt: skip
            train_s = [n_train / float(v) for v in epochs.train_img_per_s]
            steady = statistics.median(train_s[1:] or train_s)  # the first epoch holds the warm-up
            eval_s = statistics.median(max(1e-6, float(w) - t) for w, t in zip(epochs.wall_s, train_s, strict=True))
            per.setdefault((row.backend, device, spec), []).append({
                "train_img_s": n_train / steady,
                "eval_img_s": n_test / eval_s,
                "fixed_s": max(0.0, task_s[("train", row.run_key)] - len(epochs) * (steady + eval_s)),
                "probe_s": task_s.get(("probe", row.run_key)),
            })  # fmt: skip
        phase_s = {str(p["phase"]): float(p["wall_s"]) for p in timings["phases"]}
        wall, workers = float(timings["wall_s"]), _workers(timings)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise PlanError(f"{where}: its files are not a complete study ({error})") from None
    if not per:
        raise PlanError(f"{where}: no finished run with its task's seconds")
    rates = []
    for (backend, device, spec), runs in sorted(per.items(), key=lambda item: (item[0][0], item[0][2].depth,
                                                                                item[0][2].arch)):  # fmt: skip
        probes = [r["probe_s"] for r in runs if r["probe_s"] is not None]
        rates.append(Rate(backend, device, spec.name, tuple(spec.input_shape), spec.depth, spec.train_flops,
                          *(statistics.median(r[k] for r in runs) for k in ("train_img_s", "eval_img_s", "fixed_s")),
                          statistics.median(probes) if probes else None))  # fmt: skip
    factors = []
    for (backend, device, spec), _ in per.items():
        rate = next(r for r in rates if r.backend == backend and r.device == device and r.spec == spec.name)
        evaluator = next((r for r in rates if r.backend == probe_backend and r.spec == spec.name), rate)
        if rate.probe_s:
            factors.append(rate.probe_s / (lesion_evaluations(spec) * n_test / evaluator.eval_img_s))
    table = Throughput(
        f"the study folder {folder}", f"one of {workers} workers side by side, as there", rates,
        statistics.median(factors) if factors else 1.0,
        {"replay": sum(v for k, v in phase_s.items() if k.startswith("replay")),
         "gradflow": phase_s.get("gradient flow", 0.0),
         "analysis": phase_s.get("analysis and report", 0.0) + phase_s.get("W&B analysis run", 0.0)},
        ["each slot runs as that study's workers did (the same threads, as many side by side)"],
    )  # fmt: skip
    from study.experiment.plan import plan_study

    own = plan_study(StudyConfig.from_dict(config), table, workers=workers)  # the study's own schedule
    table.study_s["start"] = max(0.0, wall - own.wall_s)  # what its wall time held beyond its tasks
    return table


def dataset_facts(dataset: str) -> tuple[tuple[int, int, int], int, int, int]:
    """(input shape, classes, training images, test images) of a data set, without reading CIFAR-10."""
    from study.core import data

    if dataset == "cifar10":
        return (data.CIFAR10_SIZE, data.CIFAR10_SIZE, 3), data.CIFAR10_CLASSES, 50_000, 10_000
    if dataset == "synthetic":
        return data.SYNTHETIC_SHAPE, data.SYNTHETIC_CLASSES, 512, 256  # load_dataset's default split
    loaded = data.load_dataset(dataset)
    return loaded.input_shape, loaded.classes, len(loaded.y_train), len(loaded.y_test)


def _workers(timings: dict) -> int:
    value = timings.get("workers")
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 4096 else 1
