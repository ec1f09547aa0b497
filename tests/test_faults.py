"""Faults injected on purpose: crafted and truncated checkpoints, runs killed at chosen moments.

Every rerun after a fault ends where an uninterrupted run ends (the same history, bit for bit), no
payload in a crafted file ever runs, and a bad file costs one line, never a traceback.
"""

import json
import os
import pickle
import subprocess
import sys

import pytest

TRAIN = ["--dataset", "synthetic", "--epochs", "2", "--warmup-epochs", "1", "--wandb", "disabled"]


def cli(*args, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "study", *args], capture_output=True, text=True, env=env, timeout=600)


class Payload:
    """Unpickling this runs `touch <marker>`: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_checkpoint(path, marker):
    """A torch checkpoint (torch.save's zip format) whose unpickling would run the payload."""
    import torch

    torch.save({"state_dict": {}, "epoch": 1, "payload": Payload(marker)}, path)


def train(backend, out, *extra, env=None):
    result = cli("train", "resnet-8", "--backend", backend, *TRAIN, "--out", str(out), "--json", *extra, env=env)
    assert result.returncode == 0, result.stderr
    return result


def said(result):
    """The lines the study itself wrote on stderr (a Keras run also has TensorFlow's start-up notes there)."""
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if "retraining the run" in line or "checkpoint" in line]


def history(out):
    """The run's numbers, epoch by epoch (history.csv without its timings)."""
    import csv

    with open(out / "history.csv") as handle:
        return [
            {k: v for k, v in row.items() if k not in ("wall_s", "train_img_per_s")} for row in csv.DictReader(handle)
        ]


KILL_AT_SUMMARY = """
import os, sys
import study.experiment.training_run as run
write = run.atomic_write_text
run.atomic_write_text = lambda path, text: os._exit(9) if path.name == "summary.json" else write(path, text)
from study.cli import main
sys.exit(main(sys.argv[1:]))
"""


def killed_before_summary(backend, out):
    """A run killed right after its last epoch's checkpoint, before summary.json (what it left behind)."""
    args = ["train", "resnet-8", "--backend", backend, *TRAIN, "--out", str(out), "--json"]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_SUMMARY, *args], capture_output=True, text=True, timeout=600)
    assert killed.returncode == 9 and not (out / "summary.json").exists(), killed.stderr
    return args


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted run of each twin: what every rerun after a fault must end as."""
    root = tmp_path_factory.mktemp("uninterrupted")
    return {backend: history(train(backend, root / backend) and root / backend) for backend in ("keras", "lightning")}


@pytest.mark.parametrize("force_unsafe", [True])
def test_a_crafted_lightning_checkpoint_never_runs_and_the_run_retrains(tmp_path, finished, force_unsafe):
    """Resuming a run loads its checkpoint with weights_only, whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
    says; the crafted file is set aside in one line and the run retrains to the uninterrupted result."""
    out, marker = tmp_path / "run", tmp_path / "marker"
    killed_before_summary("lightning", out)
    crafted_checkpoint(out / "model.ckpt", marker)
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if force_unsafe else None
    result = train("lightning", out, env=env)
    assert not marker.exists(), "the checkpoint's payload ran"
    (line,) = said(result)
    assert "model.ckpt: not a readable checkpoint (UnpicklingError); retraining the run from epoch 0" in line
    summary = json.loads(result.stdout)
    assert summary["restarted"] == line and summary["resumed_from_epoch"] == 0
    assert (out / "model.ckpt.corrupt").exists() and history(out) == finished["lightning"]


def test_the_probe_loads_a_crafted_checkpoint_safely_even_when_forced(tmp_path, monkeypatch):
    from lightning_impl.port import checkpoint_state
    from study.core.errors import CheckpointError

    marker = tmp_path / "marker"
    crafted_checkpoint(tmp_path / "model.ckpt", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="model.ckpt: not a readable checkpoint"):
        checkpoint_state(tmp_path / "model.ckpt")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError):
        checkpoint_state(tmp_path / "plain.pkl")  # a bare pickle, not torch's format
    assert not marker.exists()


@pytest.mark.parametrize("cut", [-1])
def test_a_truncated_keras_resume_point_retrains_the_run(tmp_path, finished, cut):
    out = tmp_path / "run"
    killed_before_summary("keras", out)
    resume = out / "resume.npz"
    data = resume.read_bytes()
    resume.write_bytes(data[: cut if cut >= 0 else len(data) // 2])
    result = train("keras", out)
    (line,) = said(result)
    assert "resume.npz: not a readable resume point (" in line and "retraining the run from epoch 0" in line
    assert json.loads(result.stdout)["resumed_from_epoch"] == 0 and history(out) == finished["keras"]


@pytest.mark.parametrize("backend", ["keras", "lightning"])
def test_a_run_killed_just_before_its_summary_resumes_instead_of_retraining(tmp_path, finished, backend):
    """Killed between saving its checkpoint and writing summary.json, a run restores every epoch on the
    rerun (the Keras twin kept its resume point for this) and ends as the uninterrupted run."""
    out = tmp_path / "run"
    result = cli(*killed_before_summary(backend, out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["resumed_from_epoch"] == 2 and summary["attempts"] == 2
    assert history(out) == finished[backend] and not (out / "resume.npz").exists()
