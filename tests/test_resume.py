"""A run stopped at any moment and started again continues from its last completed epoch and ends
exactly where an uninterrupted run ends: records, final weights, and the W&B run's id."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import torch

import keras_impl.training  # noqa: F401  (registers the optimizer and metrics for keras.saving.load_model)
from study.core.data import load_dataset, steps_per_epoch
from study.core.presets import parse_spec
from study.core.recipe import TrainSpec
from study.core.records import RunContext
from study.core.twin import load

DATA = load_dataset("digits")
SPEC = parse_spec("resnet-8", input_shape=DATA.input_shape, classes=DATA.classes)
RECIPE = TrainSpec(epochs=5, warmup_epochs=1, seed=3)
TIMING = {"wall_s", "train_img_per_s"}


class Stop(Exception):
    """A crash at the end of an epoch, after the twin saved it."""


def final_weights(backend, checkpoint):
    if backend == "keras":
        model = keras.saving.load_model(checkpoint)
        return {v.path: keras.ops.convert_to_numpy(v) for v in [*model.variables, *model.optimizer.variables]}
    state = torch.load(checkpoint, weights_only=True)  # plain types: loads without running anything
    momentum = {f"momentum/{k}": v["momentum_buffer"] for k, v in state["optimizer_states"][0]["state"].items()}
    tensors = state["state_dict"] | momentum
    return {k: v.numpy() for k, v in tensors.items()}


def train(backend, out, stop_at=None, resume=False):
    def stop(record):
        if record.epoch == stop_at:
            raise Stop

    out.mkdir(exist_ok=True)
    run = RunContext(out, RECIPE, len(DATA.y_train), epoch_hook=stop, resume=resume)
    return load(backend).train(SPEC, DATA, run, verbose=0)


def outcome_key(outcome):
    return [{k: v for k, v in r.to_row().items() if k not in TIMING} for r in outcome.records]


@pytest.mark.parametrize("backend", ["keras", "lightning"])
def test_a_run_stopped_after_an_epoch_resumes_to_the_uninterrupted_result(tmp_path, backend):
    whole = train(backend, tmp_path / "whole")
    with pytest.raises(Stop):
        train(backend, tmp_path / "stopped", stop_at=2)
    resumed = train(backend, tmp_path / "stopped", resume=True)
    assert resumed.resumed_epochs == 2 and [r.epoch for r in resumed.records] == [1, 2, 3, 4, 5]
    assert outcome_key(resumed) == outcome_key(whole)
    a, b = final_weights(backend, whole.checkpoint), final_weights(backend, resumed.checkpoint)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # weights and momentum


def test_the_keras_checkpoint_holds_the_optimizer_state(tmp_path):
    outcome = train("keras", tmp_path)
    model = keras.saving.load_model(outcome.checkpoint)
    steps = steps_per_epoch(len(DATA.y_train), RECIPE.batch_size)
    assert int(model.optimizer.iterations.numpy()) == RECIPE.epochs * steps  # so the LR schedule's position
    velocities = [v for v in model.optimizer.variables if "velocity" in v.path]
    assert len(velocities) == len(model.trainable_variables)
    assert all(np.abs(keras.ops.convert_to_numpy(v)).sum() > 0 for v in velocities)
    # The resume point stays until the run's summary is written (run_training then deletes it): a run
    # killed in between resumes instead of retraining (tests/test_faults.py).
    assert outcome.transient == (tmp_path / "resume.npz",) and (tmp_path / "resume.npz").exists()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600)


def history(folder):
    with open(folder / "history.csv") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("backend, checkpoint", [("keras", "resume.npz"), ("lightning", "model.ckpt")])
def test_train_killed_and_started_again_with_the_same_command_resumes(tmp_path, backend, checkpoint):
    args = ["train", "resnet-8", "--backend", backend, "--epochs", "8", "--warmup-epochs", "1", "--seed", "2"]
    assert cli(*args, "--out", str(tmp_path / "whole"), "--wandb", "disabled").returncode == 0

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "study", *args, "--out", str(out), "--wandb", "offline"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / checkpoint).exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (out / checkpoint).exists() and not (out / "summary.json").exists(), "kill it while it trains"

    again = cli(*args, "--out", str(out), "--wandb", "offline", "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["attempts"] == 2 and summary["resumed_from_epoch"] >= 1
    assert history(out) == history(tmp_path / "whole")
    a = final_weights(backend, tmp_path / "whole" / ("model.keras" if backend == "keras" else "model.ckpt"))
    b = final_weights(backend, out / ("model.keras" if backend == "keras" else "model.ckpt"))
    assert all(np.array_equal(a[k], b[k]) for k in a)

    attempts = sorted((out / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and {p.name.rsplit("-", 1)[1] for p in attempts} == {summary["wandb_id"]}
    last = json.loads(cli_wandb("leet", "inspect", "--summary", "--json", str(attempts[-1])).stdout)
    assert last["run_id"] == summary["wandb_id"] and last["summary"]["epoch"] == 8


def cli_wandb(*args):
    return subprocess.run([sys.executable, "-m", "wandb", *args], capture_output=True, text=True, timeout=120)


def test_an_unfinished_run_of_another_configuration_is_never_resumed(tmp_path):
    spec = {"family": "cifar", "depth": 8, "residual": True, "shortcut": "A", "activation": "relu", "norm": "batch",
            "input_shape": [8, 8, 1], "classes": 10}  # fmt: skip
    identity = {
        "backend": "keras",
        "dataset": "digits",
        "spec": spec,
        "precision": "32",
        "devices": 1,
        "train_spec": {"epochs": 1, "batch_size": 128, "seed": 0},
    }  # a valid run.json, another run's
    (tmp_path / "run.json").write_text(json.dumps({"identity": identity, "wandb_id": "x", "attempts": 1}))
    before = (tmp_path / "run.json").read_text()
    result = cli("train", "resnet-8", "--backend", "lightning", "--epochs", "1", "--out", str(tmp_path))
    assert result.returncode == 2 and "holds an unfinished run of another configuration" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and (tmp_path / "run.json").read_text() == before
