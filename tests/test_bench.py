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


@pytest.mark.quick
def test_cpu_peak_is_stated_with_its_derivation():
    flops, source = cpu_peak_flops()
    assert flops > 1e9 and "cores" in source and "FLOP/cycle" in source


def test_bench_study_times_the_phases_of_a_fresh_study(tmp_path):
    """`bench --study`'s measurement on a small study: every phase named with its tasks and seconds."""
    from study.experiment.timings import bench_study

    grid = ("--backends", "lightning", "--archs", "resnet", "--depths", "8", "--seeds", "0,1", "--epochs", "1",
            "--warmup-epochs", "0", "--wandb", "disabled")  # fmt: skip
    result = bench_study(tmp_path / "study", "default", grid)
    phases = {row["phase"]: row for row in result["phases"]}
    assert set(phases) == {"train lightning", "probe lightning runs", "gradient flow", "analysis and report",
                           "W&B analysis run"}  # fmt: skip
    assert phases["gradient flow"]["tasks"] == 1  # a worker's task, beside the first runs
    assert phases["train lightning"]["tasks"] == 2 and phases["probe lightning runs"]["tasks"] == 2
    assert all(row["wall_s"] >= 0 and row["cpu_s"] >= 0 for row in phases.values())
    assert result["cpu_s"] > phases["train lightning"]["cpu_s"] > 0
    assert result["wall_s"] > phases["gradient flow"]["wall_s"] + phases["analysis and report"]["wall_s"]
    assert set(result["verdicts"]) == {"degradation", "agreement"}


@pytest.mark.quick
@pytest.mark.parametrize(
    "args",
    [["bench"], ["bench", "resnet8"], ["bench", "--study", "resnet8"], ["bench", "--study", "--backend", "keras"]],
)
def test_bench_needs_a_spec_and_backend_or_the_study_alone(args, capsys):
    from study.cli import main

    assert main(args) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
