"""scripts/gpu-check.sh rehearsed on the CPU (`--device cpu --quick`): every command and flag the GPU
call runs, at tiny sizes, on an image like the GPU one (TensorFlow hidden, W&B off), so that the first
GPU call does not fail on a typo. Its comparison also shows `compare`'s agreement rows equal `agree`'s."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check.sh"
BACKENDS = ("lightning", "keras-jax", "keras-torch")


def check(out: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**env, "OUT": str(out), "PYTHON": sys.executable}
    env.pop("WANDB_SERVICE", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=900)


def test_the_gpu_check_passes_its_cpu_rehearsal(tmp_path, without_tensorflow):
    """One test (the rehearsal runs once): every step passes and leaves its results in $OUT."""
    out = tmp_path / "out"
    result = check(out, {**without_tensorflow, "TMPDIR": str(tmp_path)}, "--device", "cpu", "--quick")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "compare.md", "gpu-check.tar.gz", "summary.md"]
    summary = (out / "summary.md").read_text()
    assert "0 step(s) failed" in summary
    for step in ("environment", "compare", "study", "devices"):
        assert f"| {step} | 0 |" in summary, step
    assert "- degradation: " in summary and "- agreement: " in summary  # the study slice's verdicts
    with tarfile.open(out / "gpu-check.tar.gz") as archive:
        names = set(archive.getnames())
        assert {"./study/verdict.json", "./devices/summary.json", "./compare/compare.log", "./steps.tsv"} <= names
        study = json.load(archive.extractfile("./study/study.json"))
        verdict = json.load(archive.extractfile("./study/verdict.json"))
        runs = [json.load(archive.extractfile(n)) for n in names if n.startswith("./study/runs/") and
                n.endswith("/summary.json")]  # fmt: skip
    # --runs-per-gpu 2 on the one declared GPU: every worker (two per group) on it.
    assert runs and {run["placement"]["cuda_visible_devices"] for run in runs} == {"0"}
    assert "- placement: " in summary and "CUDA_VISIBLE_DEVICES=0" in summary
    # The study slice ran Keras on JAX beside Lightning without TensorFlow: replay, runs, probes, analysis.
    assert sorted(study["config"]["backends"]) == ["keras-jax", "lightning"], study["config"]
    assert verdict["agreement"]["exactness"]["status"] == "passed"

    # The comparison: three backends, eager and compiled, bf16 really in bf16, agreement with Lightning.
    data = json.loads((out / "compare.json").read_text())
    assert not data["failures"] and not data["missing"]
    rows = {(r["backend"], r["precision"], r["compile"]) for r in data["speed"]}
    assert rows == {(b, "bf16", False) for b in BACKENDS} | {("lightning", "bf16", True)}
    assert {(r["backend"], r["dtype"]) for r in data["agreement"] if r["passed"]} == {
        (b, d) for b in ("keras-jax", "keras-torch") for d in ("float64", "float32")
    }
    assert {row["backend"] for row in data["drift"]} == set(BACKENDS)
    for row in data["drift"]:  # bf16 moved the weights far more than float32's own floor
        drift, floor = row["bf16_drift"]["train_final_weights"], row["float32_floor"]["train_final_weights"]
        assert drift > 100 * floor, row

    # Its agreement numbers are `agree`'s for the same settings, bit for bit (CPU, float64 and float32).
    for row in (r for r in data["agreement"] if r["backend"] == "keras-torch"):
        args = ["agree", "resnet8", "--dtype", row["dtype"], "--keras-backend", "torch", "--batch", "8", "--seed", "0",
                "--train-steps", str(row["train_steps"]), "--json"]  # fmt: skip
        agree = subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600)
        assert agree.returncode == 0, agree.stderr[-2000:]
        assert json.loads(agree.stdout)["max_rel_error"] == row["max_rel_error"]


def test_a_failing_step_fails_the_check_and_is_named(tmp_path):
    result = check(tmp_path / "out", dict(os.environ), "--device", "nowhere", "--quick")
    assert result.returncode == 1
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| compare | 2 |" in summary and "| study | 2 |" in summary and "3 step(s) failed" in summary
