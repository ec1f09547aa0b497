"""`resnet-study bench`: the twin's real training path against a raw loop of the same network.

In one process, interleaved: the twin trains (its `train`, with its data path, metrics and
callbacks, W&B off) for `repeats + 1` epochs of `steps` batches of synthetic data; after each of its
epochs the raw baseline (`<twin>/bench.py`: a hand-written torch loop, or a minimal Keras
`compile` + `fit`) runs the same number of steps on a second copy of the network. The first epoch of
each is warm-up and dropped; medians are reported. Throughput ratios, not absolute speeds, are the
claim: they hold on any machine.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from study.core.data import Dataset
from study.core.recipe import TrainSpec
from study.core.records import RunContext
from study.core.spec import NetworkSpec
from study.core.twin import Twin, load
from study.tracking.wandb_run import library_versions

# Dense peak throughput, FLOP/s, by GPU name fragment and precision (vendor data sheets, SXM parts;
# "32" is TF32 tensor-core math, which the agreement checks switch off but training may use:
# docs/design.md, convention 6).
GPU_PEAKS = {
    "H200": {"bf16": 989e12, "32": 494e12},
    "H100": {"bf16": 989e12, "32": 494e12},
    "A100": {"bf16": 312e12, "32": 156e12},
}


def cpu_peak_flops() -> tuple[float, str]:
    """fp32 peak of this CPU: cores x clock x FLOPs/cycle (2 FMA units x SIMD width x 2)."""
    cores = os.cpu_count() or 1
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)] or [2000.0]
    lanes = 16 if " avx512f" in info else 8 if " avx2" in info else 4
    flops = cores * max(mhz) * 1e6 * 2 * lanes * 2
    return flops, f"{cores} cores x {max(mhz):.0f} MHz x {2 * lanes * 2} FLOP/cycle (fp32 FMA, {lanes} lanes, 2 units)"


def peak_flops(twin: Twin, device: str, precision: str) -> tuple[float, str]:
    if device == "gpu":
        name = twin.gpu_name()
        for fragment, peaks in GPU_PEAKS.items():
            if fragment in name:
                return peaks[precision], f"{name} data sheet, dense {precision}"
    return cpu_peak_flops()


def reset_peak_rss() -> bool:
    """Start this process's peak resident memory (VmHWM) afresh, so that a row's peak is its own
    (Linux: writing 5 to /proc/self/clear_refs); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB: VmHWM (since the last `reset_peak_rss`), else ru_maxrss."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    found = re.search(r"^VmHWM:\s*(\d+)\s*kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bench(
    spec: NetworkSpec,
    backend: str,
    batch: int = 128,
    steps: int = 20,
    repeats: int = 7,
    device: str = "cpu",
    precision: str = "32",
    compile: bool = False,
) -> dict:
    """Throughputs (images/s), time per step, peak memory and model FLOPs utilisation."""
    rng = np.random.default_rng(0)
    n = batch * steps
    x = rng.standard_normal((n + batch, *spec.input_shape)).astype("float32")
    y = rng.integers(0, spec.classes, size=n + batch)
    data = Dataset("bench", x[:n], y[:n], x[n:], y[n:], spec.classes, augment=False)
    train_spec = TrainSpec(epochs=repeats + 1, batch_size=batch, augment=False)
    twin = load(backend)
    host_reset = reset_peak_rss()
    raw = twin.raw_loop(spec, train_spec, data.x_train, data.y_train, device, precision, compile)
    raw_seconds, epoch_ends = [], []

    def after_twin_epoch(record) -> None:  # the raw loop's epoch runs right after each of the twin's
        epoch_ends.append(time.perf_counter())
        raw_seconds.append(raw.train_epoch())

    with tempfile.TemporaryDirectory() as out:
        run = RunContext(
            Path(out),
            train_spec,
            n,
            precision,
            device,
            epoch_hook=after_twin_epoch,
            compile=compile,
        )
        start = time.perf_counter()
        outcome = twin.train(spec, data, run, verbose=0)
    # Each timed twin epoch is paired with the raw epoch run right after it, so slow drifts of the
    # machine (other load, clocks) hit both sides of a ratio alike; the median ratio is the claim.
    epochs = [
        {"train_img_per_s": record.train_img_per_s, "raw_train_img_per_s": n / seconds}
        for record, seconds in zip(outcome.records[1:], raw_seconds[1:], strict=True)
    ]
    train_ips = statistics.median(e["train_img_per_s"] for e in epochs)
    raw_ips = statistics.median(e["raw_train_img_per_s"] for e in epochs)
    ratios = [e["train_img_per_s"] / e["raw_train_img_per_s"] for e in epochs]
    infer_epochs = [n / raw.infer_epoch() for _ in range(repeats + 1)][1:]  # the first pass traces: warm-up
    infer = statistics.median(infer_epochs)
    flops_per_image = spec.train_flops
    peak, peak_source = peak_flops(twin, device, precision)
    device_peak = raw.peak_memory_mb()
    host_peak = peak_rss_mb()
    # Time to the first step: from the call of the twin's `train` to the end of its first step
    # (building, tracing and compiling, data set-up): the first epoch's end, less its evaluation and
    # its other steps at the median step time.
    first = outcome.records[0]
    first_train_s = n / first.train_img_per_s
    first_step_s = (epoch_ends[0] - start) - (first.wall_s - first_train_s) - (steps - 1) * batch / train_ips
    return {
        "spec": spec.name,
        "backend": backend,
        "device": device,
        "precision": precision,
        "compile": compile,
        "batch": batch,
        "steps": steps,
        "repeats": repeats,
        "train_img_per_s": train_ips,
        "raw_train_img_per_s": raw_ips,
        "ratio_to_raw": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "step_ms": 1e3 * batch / train_ips,
        "raw_step_ms": 1e3 * batch / raw_ips,
        "infer_img_per_s": infer,
        "infer_epochs": infer_epochs,
        "peak_mem_mb": device_peak if device_peak is not None else host_peak,
        "peak_mem_kind": "device allocator" if device_peak is not None else "process RSS",
        "peak_host_mb": host_peak,
        "peak_host_kind": "this row" if host_reset else "process lifetime",
        "peak_device_mb": device_peak,
        "first_step_s": max(first_step_s, 0.0),
        "train_flops_per_image": flops_per_image,
        "mfu": train_ips * flops_per_image / peak,
        "peak_tflops": peak / 1e12,
        "peak_source": peak_source,
        "machine": platform.processor() or platform.machine(),
        "versions": library_versions(twin),
        "epochs": epochs,
    }
