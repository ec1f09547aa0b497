"""`resnet-study compare`'s conductor: one worker process per backend, one after the other, then
compare.json, compare.md, compare.html and a W&B run, all in a folder of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from study.compare.machine import describe_machine
from study.compare.recommend import recommend
from study.compare.render import markdown, page
from study.core.twin import INSTALL, installed
from study.files import atomic_write_text, claim_folder
from study.schemas.comparison import Comparison

SCHEMA = 1
MARKER = "compare.json"


@dataclass
class Settings:
    backends: tuple[str, ...]
    specs: tuple[str, ...]
    precisions: tuple[str, ...]
    device: str  # auto, cpu or gpu
    compile: bool
    batch: int
    steps: int
    repeats: int
    agree_specs: tuple[str, ...]
    agree_batch: int = 8
    seed: int = 0
    train_steps: int = 3
    dtypes: tuple[str, ...] = ("float64", "float32")
    timeout_s: float = 900.0  # per backend


def run_worker(job: dict, result_path: Path, timeout_s: float, echo: Callable[[str], None]) -> tuple[dict | None, str]:
    """Run one backend's worker; (its result file's content or None, its whole output)."""
    command = [sys.executable, "-m", "study.compare.worker", json.dumps(job), str(result_path), str(os.getpid())]
    env = os.environ | {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout_s, stop)
    timer.start()
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if line.startswith("compare: "):
                echo(line.removeprefix("compare: ").rstrip())
        process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            stop()
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = None
    result_path.unlink(missing_ok=True)
    if expired.is_set():
        output.append(f"[stopped after {timeout_s:.0f} s]\n")
        result = result or {"backend": job["backend"], "speed": [], "agreement": [], "drift": [], "failures": []}
        result["failures"].append({"step": "all", "error": f"stopped at the time limit ({timeout_s:.0f} s)"})
    elif process.returncode != 0 and result is not None:
        result["failures"].append({"step": "all", "error": f"the worker exited with code {process.returncode}"})
    return result, "".join(output)


def compare(settings: Settings, out: Path, echo: Callable[[str], None] = print) -> dict:
    """Measure every backend of `settings` and write the comparison into `out` (a folder of its own)."""
    claim_folder(out, (MARKER,), "comparison")
    result = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": describe_machine(),
        "settings": asdict(settings),
        "devices": [],
        "gpu_seen_by": {},
        "versions": {},
        "speed": [],
        "agreement": [],
        "drift": [],
        "missing": [],
        "failures": [],
    }
    log = []
    for backend in settings.backends:
        if not installed(backend):
            result["missing"].append({"backend": backend, "reason": "not installed", "install": INSTALL[backend]})
            echo(f"{backend}: not installed ({INSTALL[backend]})")
            continue
        job = {key: value for key, value in asdict(settings).items() if key not in ("backends", "timeout_s")}
        job["backend"] = backend
        echo(f"{backend}: measuring ...")
        start = time.perf_counter()
        worker, output = run_worker(job, out / f".{backend}.worker.json", settings.timeout_s, echo)
        log.append(f"== {backend} ({time.perf_counter() - start:.0f} s)\n{output}")
        atomic_write_text(out / "compare.log", "".join(log))
        merge(result, backend, worker)
    result["recommendations"] = recommend(result)
    Comparison.model_validate(result).write(out / MARKER)
    atomic_write_text(out / "compare.md", markdown(result))
    atomic_write_text(out / "compare.html", page(result))
    return result


def merge(result: dict, backend: str, worker: dict | None) -> None:
    """One worker's rows into the comparison; a backend that could not load is listed as missing."""
    if worker is None:
        result["failures"].append({"backend": backend, "step": "all", "error": "the worker wrote no result"})
        return
    load_failure = next((f for f in worker["failures"] if f["step"] == "load"), None)
    if load_failure is not None:
        result["missing"].append({"backend": backend, "reason": load_failure["error"], "install": INSTALL[backend]})
        return
    if worker.get("device") and worker["device"] not in result["devices"]:
        result["devices"].append(worker["device"])
    if worker.get("gpu_name"):
        result["gpu_seen_by"][backend] = worker["gpu_name"]
    result["versions"][backend] = worker.get("versions", {})
    for table in ("speed", "agreement", "drift"):
        result[table] += [{"backend": backend, "device": worker.get("device"), **row} for row in worker[table]]
    result["failures"] += [{"backend": backend, **failure} for failure in worker["failures"]]


def succeeded(result: dict) -> bool:
    """Every measurement ran and every Keras backend agreed with Lightning."""
    return not result["failures"] and all(row["passed"] for row in result["agreement"])
