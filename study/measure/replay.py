"""A twin's real training code run from given weights, step by step, and how far two such runs differ.

`agree --train-steps` (`study.measure.numerics`) and the float64 replay of the recipe
(`study.measure.exactness`) both train a twin from one torch-layout state dict with
`train_from` and compare what came out with `relative_error`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.core.data import Dataset
from study.core.recipe import TrainSpec
from study.core.records import FLOAT64, EpochRecord, RunContext
from study.core.spec import NetworkSpec
from study.core.twin import Twin


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """||actual - reference||_2 / ||reference||_2 (0 when both are zero)."""
    diff = float(np.linalg.norm(np.asarray(actual, np.float64) - np.asarray(reference, np.float64)))
    scale = float(np.linalg.norm(np.asarray(reference, np.float64)))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def flat(arrays: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
    """The arrays named by `keys`, raveled into one vector (one relative error per quantity)."""
    return np.concatenate([np.ravel(arrays[key]) for key in keys]) if keys else np.zeros(0)


@dataclass
class Trajectory:
    """What a twin's real training code did, step by step, from given initial weights."""

    step_losses: np.ndarray  # every step's train-mode loss
    records: list[EpochRecord]  # one per epoch
    state: dict[str, np.ndarray]  # the final weights and BN statistics, torch layout


def train_from(
    twin: Twin,
    spec: NetworkSpec,
    train_spec: TrainSpec,
    dataset: Dataset,
    initial: dict,
    precision: str,
    device: str = "cpu",
) -> Trajectory:
    """Train `twin` (its `train`: Keras `fit`, Lightning `Trainer`) from the `initial` state dict."""
    model = twin.build(spec, "float64" if precision == FLOAT64 else "float32", device=device)
    twin.load_torch_state(model, initial)
    with tempfile.TemporaryDirectory() as out:
        run = RunContext(Path(out), train_spec, len(dataset.y_train), precision, device, trace_steps=True)
        outcome = twin.train(spec, dataset, run, backbone=model, verbose=0)
    return Trajectory(np.array(outcome.batch_losses), outcome.records, twin.to_torch_state(model))


def train_own(
    twin: Twin, spec: NetworkSpec, train_spec: TrainSpec, dataset: Dataset, precision: str, device: str = "cpu"
) -> Trajectory:
    """Train `twin` from the recipe's own start (`study.core.init.initial_state` of the recipe's seed),
    the network built by the twin in `precision` (bf16 mixed precision included: the Keras twin's dtype
    policy applies only to a network it builds itself)."""
    with tempfile.TemporaryDirectory() as out:
        run = RunContext(Path(out), train_spec, len(dataset.y_train), precision, device, trace_steps=True)
        outcome = twin.train(spec, dataset, run, verbose=0)
        state = twin.checkpoint_state(outcome.checkpoint)
    return Trajectory(np.array(outcome.batch_losses), outcome.records, state)
