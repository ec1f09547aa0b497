"""Where `plan`'s throughput tables come from (`study.experiment.throughput.Throughput`): the one
shipped with the product (`SHIPPED`), a table saved by `plan --save-table`, a `compare.json`
(`from_compare`) or a finished study folder (`from_study`, whose own schedule `plan` simulates to
find what its wall time held beyond its tasks). Every file read is checked: a malformed table is one
line (`PlanError`).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from study.configs import StudyConfig
from study.core.errors import UserError
from study.core.spec import NetworkSpec
from study.experiment.plan import plan_study
from study.experiment.throughput import (
    SHIPPED,
    PlanError,
    Rate,
    Throughput,
    dataset_facts,
    lesion_evaluations,
)
from study.schemas.base import read_json
from study.schemas.comparison import Comparison
from study.schemas.study_folder import TimingsFile


def load_throughput(path: Path | None) -> Throughput:
    """The shipped table (None), a study folder's measured runs, or a compare.json."""
    if path is None:
        return Throughput.from_dict(json.loads(SHIPPED.read_text()), str(SHIPPED))
    path = Path(path)
    if path.is_dir():
        return from_study(path)
    return from_compare(path, _read_json(path))


def _read_json(path: Path) -> dict:
    if path.exists() and not path.is_file():  # a pipe or device would block or never end
        raise PlanError(f"--throughput {path}: not a regular file")
    data = read_json(path, PlanError, "--throughput")
    if not isinstance(data, dict):
        raise PlanError(f"--throughput {path}: not a compare.json (a JSON object with speed rows)")
    return data


def from_compare(path: Path, data: dict) -> Throughput:
    """The fp32, eager speed rows of a compare.json (`resnet-study compare`): train and inference
    rates, the first step as the fixed cost. compare measures one network at a time on the whole
    device; the study's probes are not measured there (the shipped table's probe factor is used)."""
    if "rates" in data and "probe_factor" in data:  # a table written by `plan --save-table` or shipped
        return Throughput.from_dict(data, f"--throughput {path}")
    comparison = Comparison.check(data, f"--throughput {path}", PlanError)  # docs/schemas/compare.schema.json
    data = comparison.as_dict()
    rows = data["speed"]
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
    from study.files import HISTORY, RESULTS, RUNS, STUDY, SUMMARY, TIMINGS
    from study.verdicts.inputs import load_history, load_results, load_study, load_summary

    where = f"--throughput {folder}"
    if not all((folder / name).is_file() for name in (STUDY, RESULTS, HISTORY, TIMINGS)):
        raise PlanError(f"{where}: not a finished study folder (study.json, results.csv, history.csv, timings.json)")
    try:
        config = load_study(folder / STUDY)["config"]
        timings = TimingsFile.read(folder / TIMINGS, PlanError).as_dict()
        results, history = load_results(folder / RESULTS), load_history(folder / HISTORY)
        tasks = timings.get("tasks")
        if tasks is None:
            raise PlanError(f"{where}: its timings.json has no per-task seconds (written by an older version)")
        task_s = {(str(t["phase"]).split()[0], str(t["key"])): float(t["wall_s"]) for t in tasks if t.get("key")}
        shape, classes, n_train, n_test = dataset_facts(str(config["dataset"]))
        probe_backend = str(config.get("probe_backend", "lightning"))
        per: dict[tuple[str, str, NetworkSpec], list[dict]] = {}
        for row in results.itertuples():
            epochs = history[history.run_key == row.run_key]
            if row.diverged or epochs.empty or ("train", row.run_key) not in task_s:
                continue
            summary = load_summary(folder / RUNS / row.run_key / SUMMARY)
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
    own = plan_study(StudyConfig.from_dict(config), table, workers=workers)  # the study's own schedule
    table.study_s["start"] = max(0.0, wall - own.wall_s)  # what its wall time held beyond its tasks
    return table


def _workers(timings: dict) -> int:
    value = timings.get("workers")
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 4096 else 1
