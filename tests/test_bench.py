"""`bench` runs both twins against their raw loops and reports consistent fields (not speed)."""

import json
import statistics
import subprocess
import sys

import pytest

from study.core.presets import parse_spec
from study.measure.bench import cpu_peak_flops


@pytest.mark.parametrize("backend", ["keras", "lightning"])
def test_bench_reports_consistent_fields(backend):
    args = ["bench", "resnet-8", "--input", "16,16,3", "--backend", backend, "--batch", "32", "--steps", "3",
            "--repeats", "2", "--device", "cpu", "--json"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    bench = json.loads(result.stdout)
    for key in ("train_img_per_s", "raw_train_img_per_s", "infer_img_per_s", "peak_mem_mb", "mfu", "peak_tflops"):
        assert bench[key] > 0, key
    epochs = bench["epochs"]
    assert len(epochs) == 2  # the warm-up epoch is dropped
    ratios = sorted(e["train_img_per_s"] / e["raw_train_img_per_s"] for e in epochs)
    assert bench["ratio_to_raw"] == pytest.approx(statistics.median(ratios))
    assert bench["ratio_range"] == pytest.approx([ratios[0], ratios[-1]])
    assert bench["train_img_per_s"] == pytest.approx(statistics.median(e["train_img_per_s"] for e in epochs))
    assert bench["step_ms"] == pytest.approx(1e3 * 32 / bench["train_img_per_s"])
    macs = parse_spec("resnet-8", input_shape=(16, 16, 3)).macs
    assert bench["train_flops_per_image"] == 6 * macs
    assert bench["mfu"] == pytest.approx(bench["train_img_per_s"] * 6 * macs / (bench["peak_tflops"] * 1e12))
    assert bench["peak_mem_kind"] == "process RSS"
    assert bench["peak_host_kind"] == "this row" and bench["peak_device_mb"] is None
    assert len(bench["infer_epochs"]) == 2 and bench["infer_img_per_s"] == statistics.median(bench["infer_epochs"])
    assert 0 <= bench["first_step_s"] < 120


def test_cpu_peak_is_stated_with_its_derivation():
    flops, source = cpu_peak_flops()
    assert flops > 1e9 and "cores" in source and "FLOP/cycle" in source
