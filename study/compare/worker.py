"""One backend's part of `resnet-study compare`, in a process of its own (`python -m study.compare.worker
JOB RESULT`): its speed rows (`study.measure.bench`), then its agreement with the Lightning twin
(`study.measure.numerics.compare_twins`, what `agree` runs) and its bf16 drift.

The result file is rewritten (atomically) after every step, so a worker stopped by the runner's time
limit leaves what it measured so far. A step that fails is recorded in one line and the next one runs.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from study.core.errors import UserError
from study.core.presets import parse_spec
from study.files import atomic_write_text

SPEED_KEYS = (
    "spec", "precision", "compile", "batch", "steps", "repeats", "train_img_per_s", "raw_train_img_per_s",
    "ratio_to_raw", "ratio_range", "infer_img_per_s", "infer_epochs", "first_step_s", "peak_host_mb",
    "peak_host_kind", "peak_device_mb", "train_flops_per_image", "mfu", "peak_tflops", "peak_source",
)  # fmt: skip


def say(line: str) -> None:
    """A progress line for the runner (which shows lines starting "compare:" and logs the rest)."""
    print(f"compare: {line}", flush=True)


def speed_row(job: dict, spec_name: str, precision: str, compile: bool) -> dict:
    from study.measure.bench import run_bench

    spec = parse_spec(spec_name)
    result = run_bench(
        spec, job["backend"], job["batch"], job["steps"], job["repeats"], job["device"], precision, compile
    )
    row = {key: result[key] for key in SPEED_KEYS}
    row["train_epochs"] = [epoch["train_img_per_s"] for epoch in result["epochs"]]
    say(
        f"{job['backend']} {spec_name} {precision}{' compiled' if compile else ''}: "
        f"train {row['train_img_per_s']:.0f} img/s (raw loop {row['raw_train_img_per_s']:.0f}), "
        f"inference {row['infer_img_per_s']:.0f} img/s, first step {row['first_step_s']:.1f} s"
    )
    return row


def agreement_row(job: dict, spec_name: str, dtype: str) -> dict:
    from study.core.twin import keras_backend
    from study.measure.numerics import TwinMismatch, compare_twins

    base = {"spec": spec_name, "dtype": dtype, "batch": job["agree_batch"], "seed": job["seed"]}
    base["train_steps"] = job["train_steps"]
    try:
        report = compare_twins(
            parse_spec(spec_name), dtype, job["agree_batch"], job["seed"], job["train_steps"], job["backend"],
            job["device"],
        )  # fmt: skip
    except TwinMismatch as error:
        say(f"{job['backend']} {spec_name} {dtype}: FAIL ({error})")
        return {**base, "passed": False, "error": str(error)}
    row = {**base, **report.to_dict(), "keras_backend": keras_backend(job["backend"])}
    worst = max(report.max_rel_error.values())
    say(f"{job['backend']} vs lightning, {spec_name} {dtype}: largest relative error {worst:.1e}, "
        f"{'agree' if report.passed else 'DISAGREE'}")  # fmt: skip
    return row


def drift_row(job: dict, spec_name: str) -> dict:
    from study.measure.numerics import precision_drift

    drift = precision_drift(
        job["backend"], parse_spec(spec_name), job["agree_batch"], job["seed"], job["train_steps"], job["device"]
    )
    say(f"{job['backend']} {spec_name}: bf16 drift {drift['bf16_drift']['train_final_weights']:.1e} "
        f"(float32 floor {drift['float32_floor']['train_final_weights']:.1e})")  # fmt: skip
    return {"spec": spec_name, "batch": job["agree_batch"], "train_steps": job["train_steps"], **drift}


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, UserError) else f"{type(error).__name__}: {text}"[:500]


def plan(job: dict) -> list[tuple[str, str, Callable[[], dict]]]:
    """(table, step name, step) in the order they run: the eager speed rows of every network and
    precision, the agreement with Lightning, bf16's drift, then the compiled rows (slow to compile),
    so that a worker stopped at its time limit loses those first."""
    backend, steps = job["backend"], []

    def speed(compile: bool) -> None:
        for spec in job["specs"]:
            for precision in job["precisions"]:
                name = f"speed {spec} {precision}{' compiled' if compile else ''}"
                steps.append(("speed", name, lambda s=spec, p=precision, c=compile: speed_row(job, s, p, c)))

    speed(False)
    if backend != "lightning":  # the reference agrees with itself
        for spec in job["agree_specs"]:
            for dtype in job["dtypes"]:
                steps.append(("agreement", f"agree {spec} {dtype}", lambda s=spec, d=dtype: agreement_row(job, s, d)))
    if "bf16" in job["precisions"]:
        for spec in job["agree_specs"]:
            steps.append(("drift", f"bf16 drift {spec}", lambda s=spec: drift_row(job, s)))
    if job["compile"] and backend == "lightning":
        speed(True)
    return steps


def measure(job: dict, save: Callable[[dict], None]) -> dict:
    """Every step of the job in order; `save(result)` after each."""
    from study.core.twin import load
    from study.experiment.training_run import resolve_device
    from study.tracking.wandb_run import library_versions

    backend = job["backend"]
    result = {"backend": backend, "speed": [], "agreement": [], "drift": [], "failures": []}
    try:
        twin = load(backend)
        job["device"] = result["device"] = resolve_device(twin, job["device"])
    except UserError as error:
        result["failures"].append({"step": "load", "error": one_line(error)})
        save(result)
        return result
    result["gpu_name"] = twin.gpu_name() if job["device"] == "gpu" else ""
    result["versions"] = library_versions(twin)
    for table, name, step in plan(job):
        start = time.perf_counter()
        try:
            row = step()
        except Exception as error:  # one step's failure is a result too; the next step runs
            traceback.print_exc()  # into the log; the table gets one line
            result["failures"].append({"step": name, "error": one_line(error)})
            say(f"{backend} {name}: FAILED ({one_line(error)})")
        else:
            result[table].append({**row, "seconds": round(time.perf_counter() - start, 1)})
        save(result)
    return result


def strict(value):
    """`value` with every non-finite float (an error that could not be computed) as None: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(item) for item in value]
    return value


def main(argv: list[str]) -> int:
    from study.experiment.lifetime import exit_with_parent
    from study.experiment.memory import keep_freed_memory

    exit_with_parent(int(argv[2]))  # `compare` killed, even with SIGKILL: this worker ends too
    keep_freed_memory()
    job, out = json.loads(argv[0]), Path(argv[1])
    measure(job, lambda result: atomic_write_text(out, json.dumps(strict(result), allow_nan=False, default=float)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
