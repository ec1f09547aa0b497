"""Weights & Biases: both twins' runs, read back from their offline files with `wandb leet`, carry the
same keys on one 1-based epoch axis and the same config; W&B's environment variables are honoured."""

import json
import os
import subprocess
import sys

import pytest

from study.core.errors import UserError
from study.tracking.wandb_run import DEFAULT_PROJECT, project, resolve_mode

EPOCHS = 2


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, timeout=600,
                          env=env)  # fmt: skip


def leet(run_dir, *flags):
    result = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", *flags, str(run_dir)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out


def read_back(folder):
    """The run's summary and config (`--summary --json`), and its history rows and metric definitions."""
    (run_dir,) = (folder / "wandb").glob("offline-run-*")
    state = json.loads(leet(run_dir, "--summary", "--json"))
    records = [json.loads(line) for line in leet(run_dir, "--json").splitlines()]
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    metrics = [r["metric"] for r in records if r["type"] == "metric"]
    return state, history, metrics


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("twins")
    runs = {}
    for backend in ("keras", "lightning"):
        args = ["train", "resnet-8", "--backend", backend, "--epochs", str(EPOCHS), "--out", str(out / backend)]
        result = cli(*args, "--wandb", "offline")
        assert result.returncode == 0, result.stderr
        runs[backend] = read_back(out / backend)
    return runs


def test_both_twins_log_the_same_keys_against_one_epoch_axis(runs):
    (keras_state, keras_history, keras_metrics), (torch_state, torch_history, torch_metrics) = runs.values()
    user_keys = lambda keys: {k for k in keys if not k.startswith("_")}  # noqa: E731 (W&B's own: _step, ...)
    assert user_keys(keras_state["summary"]) == user_keys(torch_state["summary"])
    assert [user_keys(row) for row in keras_history] == [user_keys(row) for row in torch_history]
    for history in (keras_history, torch_history):
        assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))  # 1-based, one row an epoch
        assert [row["_step"] for row in history] == list(range(1, EPOCHS + 1))
        assert all(k == "epoch" or k.startswith("epoch/") for k in user_keys(history[0]))
    assert keras_metrics == torch_metrics
    assert {
        "glob_name": "epoch/*",
        "options": {"defined": True, "step_sync": True},
        "step_metric": "epoch",
    } in keras_metrics
    assert set(flat(keras_state["config"])) == set(flat(torch_state["config"]))
    for state, backend in ((keras_state, "keras"), (torch_state, "lightning")):
        config = state["config"]
        assert (config["backend"], config["arch"], config["depth"], config["seed"]) == (backend, "resnet", 8, 0)
        assert {"resnet", "depth-8", "resnet-8", backend, "seed-0", "digits"} <= set(state["tags"])
        assert state["summary"]["epoch"] == EPOCHS and state["project"] == DEFAULT_PROJECT


@pytest.mark.quick
def test_wandb_environment_variables_are_honoured_when_no_flag_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(None) == "disabled" and resolve_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # W&B's older name for offline
    assert resolve_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(UserError, match="WANDB_MODE='sometimes' is not one of offline, online, disabled"):
        resolve_mode(None)
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode(None) == "offline" and project() == DEFAULT_PROJECT
    monkeypatch.setenv("WANDB_PROJECT", "elsewhere")
    assert project() == "elsewhere"


def test_a_run_goes_where_wandb_dir_and_project_say(tmp_path):
    env = {**os.environ, "WANDB_DIR": str(tmp_path / "logs"), "WANDB_PROJECT": "mine", "WANDB_MODE": "offline"}
    result = cli("train", "plain-8", "--backend", "lightning", "--dataset", "synthetic", "--epochs", "1",
                 "--out", str(tmp_path / "run"), env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "run" / "wandb").exists()
    (run_dir,) = (tmp_path / "logs" / "wandb").glob("offline-run-*")
    assert json.loads(leet(run_dir, "--summary", "--json"))["project"] == "mine"


@pytest.mark.parametrize("backend", ["keras", "lightning"])
def test_a_run_that_diverges_in_its_first_epoch_logs_no_model_and_finishes(tmp_path, backend):
    """A run that diverged before any epoch completed has no checkpoint: it is recorded as diverged,
    with no model artifact, instead of ending the study in a traceback (the relu-skip config's
    residual no-BN nets diverge so)."""
    out = tmp_path / "run"
    result = cli("train", "plain-8", "--backend", backend, "--epochs", "1", "--lr", "1e30", "--out", str(out),
                 "--wandb", "offline", "--log-model", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["diverged"] and summary["epochs_completed"] == 0 and summary["model_artifact"] is None
