"""Every Keras backend is a twin of Lightning: `agree` in float64 and float32, one pass and training
steps, for Keras on TensorFlow, JAX and PyTorch (docs/design.md, "Backends").

Keras picks its backend once per process and this one runs TensorFlow, so each backend is checked in
a process of its own (tests/keras_backend_agree.py). TensorFlow is covered in-process by test_agree.py.
"""

import csv
import itertools
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
KERAS = ("jax", "torch")


def agree(backend: str, cases: str = "spread", fault: str | None = None) -> list[dict]:
    command = [sys.executable, str(HERE / "keras_backend_agree.py"), backend, "--cases", cases]
    done = subprocess.run(
        [*command, *(["--fault", fault] if fault else [])], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])["results"]


spread = cache(agree)


def describe(result: dict) -> str:
    return f"{result['case']} {result['dtype']} steps={result['train_steps']}: {result['max_rel_error']}"


@pytest.mark.parametrize("backend", KERAS)
def test_each_keras_backend_agrees_with_lightning(backend):
    results = spread(backend)
    assert {r["dtype"] for r in results} == {"float64", "float32"}
    assert {r["train_steps"] for r in results} == {0, 10}
    failed = [describe(r) for r in results if not r["passed"]]
    assert not failed, failed
    # float64 is the precise claim: every quantity, including the trajectory, to ~1e-12
    float64 = [r for r in results if r["dtype"] == "float64"]
    assert max(max(r["max_rel_error"].values()) for r in float64) < 1e-11
    trained = next(r for r in float64 if r["train_steps"])
    assert {"train_loss_trajectory", "train_final_weights"} <= set(trained["max_rel_error"])


@pytest.mark.slow
@pytest.mark.parametrize("backend", KERAS)
def test_each_keras_backend_agrees_on_the_full_spread(backend):
    failed = [describe(r) for r in agree(backend, "full") if not r["passed"]]
    assert not failed, failed


@pytest.mark.parametrize("backend", KERAS)
def test_keras_own_pooling_computes_float64_in_float32_on_jax_and_torch(backend):
    """The fault the float64-safe layers exist for (docs/design.md, convention 12): with Keras 3.15's own
    GlobalAveragePooling2D the twin on JAX or torch averages float64 in float32, and agree sees it."""
    (result,) = agree(backend, "quick", fault="keras_gap_pooling")
    assert not result["passed"]
    assert 1e-11 < result["max_rel_error"]["logits_eval"] < 1e-4  # float32 rounding, not a wrong formula


def test_a_convention_broken_on_jax_fails_agree():
    (result,) = agree("jax", "quick", fault="bn_momentum_not_converted")
    assert not result["passed"] and result["max_rel_error"]["bn_running_stats"] > 1e-2


def cli(*args):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("backend", ["keras-jax", "keras-torch"])
def test_train_runs_on_each_keras_backend(tmp_path, backend):
    out = tmp_path / backend
    result = cli(
        "train", "resnet-8", "--backend", backend, "--epochs", "2", "--wandb", "disabled", "--json", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["backend"] == backend and summary["epochs_completed"] == 2 and not summary["diverged"]
    assert summary["final_train_error"] < 0.5  # digits, two epochs: it learns
    framework = json.loads((out / "summary.json").read_text())["config"]["versions"]["framework"]
    assert framework.startswith({"keras-jax": "jax", "keras-torch": "torch"}[backend]) and "keras 3" in framework


def test_a_study_of_all_four_backends_checks_every_pair(tmp_path):
    """Each Keras backend trains and replays in a process of its own; exactness and the outcome tests
    cover every pair with the same machinery as for two; W&B groups the runs by backend (job type)."""
    from study.core.twin import BACKENDS

    out = tmp_path / "study"
    grid = [
        "--dataset",
        "synthetic",
        "--archs",
        "resnet",
        "--depths",
        "8",
        "--seeds",
        "0,1",
        "--epochs",
        "1",
        "--warmup-epochs",
        "1",
    ]
    result = cli(
        "run", "--backends", ",".join(BACKENDS), *grid, "--wandb", "offline", "--no-log-model", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pairs = set(itertools.combinations(BACKENDS, 2))
    exactness = json.loads((out / "exactness.json").read_text())
    assert exactness["passed"] and exactness["worst"]["error"] < 1e-12
    assert {tuple(p["backends"]) for network in exactness["networks"] for p in network["pairs"]} == pairs
    agreement = json.loads((out / "verdict.json").read_text())["agreement"]
    assert {tuple(p) for p in agreement["pairs"]} == {tuple(c["backends"]) for c in agreement["cells"]} == pairs
    report = (out / "report.md").read_text()
    assert all(f"resnet-8 ({a} − {b})" in report for a, b in pairs)  # each row names its pair
    for run_dir in (out / "runs").glob("*/wandb/offline-run-*"):
        backend = json.loads((run_dir.parents[1] / "summary.json").read_text())["backend"]
        (run,) = [r["run"] for r in wandb_records(run_dir) if r["type"] == "run"]
        assert run["job_type"] == backend and backend in run["tags"]


def wandb_records(run_dir):
    inspect = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)]
    lines = subprocess.run(inspect, capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    return [json.loads(line) for line in lines]


def test_the_paper_config_runs_end_to_end_on_official_format_files(tmp_path):
    """The path a GPU user takes: CIFAR-10 from the official python-version batch files, the paper's
    recipe (batch 128, 32x32x3 inputs, warm-up), both twins, every analysis; here depth 8, one epoch."""
    from cifar_files import write_cifar10_files

    data_dir = write_cifar10_files(tmp_path / "cifar-10-batches-py", n_train_per_batch=30, n_test=20)
    out = tmp_path / "paper"
    result = cli("run", "--config", "paper", "--data-dir", str(data_dir), "--depths", "8", "--epochs", "1",
                 "--seeds", "0", "--wandb", "disabled", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    study = json.loads((out / "study.json").read_text())
    assert study["config"]["name"] == "paper" and study["config"]["dataset"] == "cifar10"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {(r["backend"], r["arch"]) for r in rows} == {
        (b, a) for b in ("keras", "lightning") for a in ("plain", "resnet")
    }
    summary = json.loads(next((out / "runs").glob("keras-resnet8-*/summary.json")).read_text())
    assert summary["config"]["spec"]["input_shape"] == [32, 32, 3] and summary["config"]["steps_per_epoch"] == 2
    assert json.loads((out / "exactness.json").read_text())["passed"]
    verdict = json.loads((out / "verdict.json").read_text())
    assert {"degradation", "agreement", "lesion", "norm_preservation", "relu_vs_skip"} <= set(verdict)
    assert (out / "report.md").read_text().startswith("# ResNet depth study")
