"""Data parallelism on CPU: two devices give one device's result on the same global batch.

Lightning: two spawned processes with gloo (DDP). Keras on TensorFlow: MirroredStrategy over two
logical CPU devices; Keras on JAX: `keras.distribution.DataParallel` over two XLA CPU devices. No BN
(`--norm none`): on CPU each device normalizes with its own share of the batch (torch
has no CPU SyncBatchNorm), so only the gradient averaging is compared — and it must be exact: a
replica loss not scaled by the number of replicas, or a rank seeing the whole batch, doubles the
step and fails this test.
"""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest


def train(tmp_path, backend, devices):
    out = tmp_path / f"devices-{devices}"
    args = ["train", "resnet-8", "--norm", "none", "--backend", backend, "--dataset", "synthetic", "--epochs", "2"]
    args += ["--wandb", "disabled", "--device", "cpu", "--devices", str(devices), "--out", str(out), "--json"]
    result = subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    return json.loads(result.stdout), rows


@pytest.mark.parametrize("backend", ["keras", "keras-jax", "lightning"])
def test_two_cpu_devices_match_one_device(tmp_path, backend):
    one, one_rows = train(tmp_path, backend, 1)
    two, two_rows = train(tmp_path, backend, 2)
    assert len(one_rows) == len(two_rows) == 2
    for column in ("train_loss", "test_loss", "grad_norm/fc"):
        a = np.array([float(r[column]) for r in one_rows])
        b = np.array([float(r[column]) for r in two_rows])
        assert np.allclose(a, b, rtol=2e-4, atol=0), (column, a, b)
    assert one["final_test_error"] == pytest.approx(two["final_test_error"], abs=1 / 256 + 1e-9)


@pytest.mark.quick
def test_keras_on_torch_says_it_trains_on_one_device(tmp_path):
    args = ["train", "resnet-8", "--backend", "keras-torch", "--dataset", "synthetic", "--epochs", "1"]
    args += ["--devices", "2", "--wandb", "disabled", "--device", "cpu", "--out", str(tmp_path / "out")]
    result = subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--devices 2: Keras on torch trains on one device" in result.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written
