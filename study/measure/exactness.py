"""Exactness: the study's own recipe, replayed by every twin in float64 from the same weights.

The outcome test in `study.verdicts.degradation` compares float32 results that chaotic training has long
decorrelated; it can only see differences of a few points. This check sees any difference at all.
For each network of the study (its archs at `StudyConfig.exactness_depths`), every twin trains with
its real training code (Keras `fit`, Lightning `Trainer`), in float64, from the same initial weights
(`study.core.init`) on the same batches, a short schedule that still has every feature of the
study's recipe (`replay_recipe`):

- 4 epochs of 2.5 batches of the study's data set and batch size (the last batch partial), the
  study's test images (at most 2 batches) evaluated in eval mode after every epoch;
- warm-up for the first epoch, then the study's LR and milestones (so 50 % and 75 % fall on the
  starts of epochs 3 and 4): both LR drops and the momentum carried across them;
- augmentation on (pad-crop-flip), whether or not the study's data set augments, so the pipeline
  every config uses is covered;
- momentum, weight decay and BN (train-mode statistics, running averages, eval mode) as in the study.

Compared, pair by pair, as normwise relative errors ||a - b|| / ||b||: every step's loss, every
epoch's train loss and error, test loss and error, LR and per-layer gradient norms, and the final
weights and BN statistics. Two twins that implement the same recipe agree to ~1e-14; one recipe
difference in one twin (a BN momentum, an LR drop an epoch late, a warm-up one epoch longer, a crop
or flip of its own) moves some quantity by 1e-4 or more. The tolerance, 1e-8, sits between.

That holds only where the network itself does not amplify rounding: a deep *plain* net is chaotic even
in float64 (plain-56 on digits: a 1e-13 change of its initial weights moves its loss by 3e-3 after
three steps and its test loss by 0.3 after four epochs), and there correct twins differ as much as
a wrong one would. So each network is also replayed by one twin from its initial weights perturbed
by `EXACTNESS_PERTURBATION` (1e-13, relative, seeded), and compared with that twin's own replay: the
network's *rounding sensitivity*. A network is judged only where the sensitivity stays within
`EXACTNESS_ROUNDING_LIMIT` (a tenth of the tolerance; measured on digits: plain-8/20 and resnet-8/20
~1e-13, resnet-32 6e-12, resnet-56 2e-10, plain-32 6e-6, plain-56 0.3); the others are reported, not
judged, and their study cells are compared in distribution (`study.verdicts.outcomes`). The replay's
networks are the study's shallowest, at most depth 20, unless the config names its depths
(`StudyConfig.exactness_depths`; the default study replays every depth it trains, so the agreement
knows which of its cells are chaotic).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np

from study.configs import GridPoint, StudyConfig
from study.core.data import Dataset
from study.core.init import initial_state
from study.core.recipe import TrainSpec
from study.core.records import FLOAT64
from study.core.spec import NetworkSpec
from study.core.twin import load
from study.files import (
    EXACTNESS,
    EXACTNESS_EPOCH_QUANTITIES,
    EXACTNESS_PERTURBATION,
    EXACTNESS_ROUNDING_LIMIT,
    EXACTNESS_SCHEMA,
    EXACTNESS_TOLERANCE,
)
from study.measure.replay import Trajectory, flat, relative_error, train_from
from study.schemas.exactness import Exactness
from study.verdicts.inputs import load_exactness

EPOCHS, WARMUP_EPOCHS = 4, 1
TRAIN_BATCHES, TEST_BATCHES = 2.5, 2
DEEPEST_DEFAULT = 20  # the replay's default depth: the study's shallowest, at most this (module docstring)


def replay_recipe(train_spec: TrainSpec) -> TrainSpec:
    """The study's recipe on the replay's short schedule (see the module docstring)."""
    return dataclasses.replace(train_spec, epochs=EPOCHS, warmup_epochs=WARMUP_EPOCHS, augment=True)


def replay_data(dataset: Dataset, batch_size: int) -> Dataset:
    """The first 2.5 batches of the train set and the first 2 batches' worth of the test set."""
    n_train = min(len(dataset.y_train), int(TRAIN_BATCHES * batch_size))
    n_test = min(len(dataset.y_test), TEST_BATCHES * batch_size)
    return Dataset(
        f"{dataset.name}[:{n_train}]",
        dataset.x_train[:n_train],
        dataset.y_train[:n_train],
        dataset.x_test[:n_test],
        dataset.y_test[:n_test],
        dataset.classes,
        augment=True,
    )


def trajectory_errors(a: Trajectory, b: Trajectory) -> dict[str, float]:
    """One relative error per quantity of `EXACTNESS_QUANTITIES` (inf where the twins ran different lengths)."""

    def error(x, y) -> float:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        return relative_error(x, y) if x.shape == y.shape else math.inf

    def column(records, key):
        return [getattr(r, key) for r in records]

    layers = sorted(b.records[0].grad_norms) if b.records else []
    stats = sorted(k for k in b.state if k.endswith(("running_mean", "running_var")))
    weights = sorted(k for k in b.state if k not in stats)
    same_keys = sorted(a.state) == sorted(b.state)
    errors = {"step_losses": error(a.step_losses, b.step_losses)}
    errors |= {key: error(column(a.records, key), column(b.records, key)) for key in EXACTNESS_EPOCH_QUANTITIES}
    errors["grad_norms"] = error(
        [[r.grad_norms.get(layer, math.nan) for layer in layers] for r in a.records],
        [[r.grad_norms[layer] for layer in layers] for r in b.records],
    )
    for name, keys in (("final_weights", weights), ("final_bn_stats", stats)):
        errors[name] = error(flat(a.state, keys), flat(b.state, keys)) if same_keys else math.inf
    return {k: (v if math.isfinite(v) else math.inf) for k, v in errors.items()}


def replay_networks(config: StudyConfig, dataset: Dataset, backends: tuple[str, ...]) -> dict:
    """Replay the study's recipe on each of its networks with each of `backends` (twins one process can
    hold together: `study.core.twin.load`); the part of the evidence `compare_replays` joins.

    Returns {"recipe", "n_train", "n_test", "dataset", "networks": [{"spec", "arch", "depth",
    "runs": {backend: Trajectory}, "rounding": Trajectory | None}]} (the rounding replay by
    `rounding_twin`, where it is one of `backends`); picklable, so a study worker can hand it back.
    """
    recipe, data = _replay_setup(config, dataset)
    replayed = []
    for spec in networks(config, dataset):
        initial = initial_state(spec, recipe.seed)
        runs, rounding = {}, None
        for backend in backends:
            twin = load(backend)
            twin.full_precision_matmuls()  # docs/design.md, convention 6
            runs[backend] = train_from(twin, spec, recipe, data, initial, FLOAT64)
            if backend == rounding_twin(config):  # the network's rounding sensitivity
                rounding = train_from(twin, spec, recipe, data, perturbed(initial, recipe.seed), FLOAT64)
        replayed.append({"spec": spec.name, "arch": spec.arch, "depth": spec.depth, "runs": runs,
                         "rounding": rounding})  # fmt: skip
    return {
        "recipe": recipe.to_dict(),
        "n_train": len(data.y_train),
        "n_test": len(data.y_test),
        "dataset": dataset.name,
        "networks": replayed,
    }


def rounding_twin(config: StudyConfig) -> str:
    """The twin whose replay from perturbed weights measures each network's rounding sensitivity (a
    property of the network, so any twin measures it): the evaluator twin where the study trains it —
    Lightning, whose float64 replay of a depth-32 net takes a quarter of Keras's (5 s against 21 s of
    CPU on the 2-core development machine: Keras traces every network anew) — else the first."""
    return config.probe_backend if config.probe_backend in config.backends else config.backends[0]


def perturbed(initial: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """`initial` with every value multiplied by 1 + `EXACTNESS_PERTURBATION` * N(0, 1), seeded."""
    rng = np.random.default_rng([seed, 0x0DD5])
    return {k: v * (1.0 + EXACTNESS_PERTURBATION * rng.standard_normal(np.shape(v))) for k, v in initial.items()}


def _replay_setup(config: StudyConfig, dataset: Dataset) -> tuple[TrainSpec, Dataset]:
    train_spec = GridPoint(config, config.backends[0], config.archs[0], config.depths[0], config.seeds[0]).train_spec()
    recipe = replay_recipe(train_spec)
    return recipe, replay_data(dataset, recipe.batch_size)


def compare_replays(config: StudyConfig, parts: list[dict]) -> dict:
    """The exactness evidence (`exactness.json`'s content, schema in docs/design.md) from the replays
    of all the study's backends (`replay_networks` parts, in any grouping): every pair, per network, and
    each network's rounding sensitivity; `passed` and `worst` judge the networks within the rounding limit."""
    first = parts[0]
    results = []
    for i, network in enumerate(first["networks"]):
        runs = {backend: run for part in parts for backend, run in part["networks"][i]["runs"].items()}
        backends = [backend for backend in config.backends if backend in runs]
        pairs = []
        for a, b in itertools.combinations(backends, 2):
            errors = trajectory_errors(runs[a], runs[b])
            worst = max(errors, key=errors.get)
            passed = all(e <= EXACTNESS_TOLERANCE for e in errors.values())
            pairs.append({"backends": [a, b], "errors": errors, "worst": worst, "passed": passed})
        steps = {backend: len(runs[backend].step_losses) for backend in backends}
        rounding = next(part["networks"][i]["rounding"] for part in parts if part["networks"][i]["rounding"])
        errors = trajectory_errors(rounding, runs[rounding_twin(config)])
        sensitivity = {"backend": rounding_twin(config), "perturbation": EXACTNESS_PERTURBATION, "errors": errors,
                       "worst": max(errors, key=errors.get),
                       "replayable": all(e <= EXACTNESS_ROUNDING_LIMIT for e in errors.values())}  # fmt: skip
        results.append({k: network[k] for k in ("spec", "arch", "depth")}
                       | {"steps": steps, "rounding": sensitivity, "pairs": pairs})  # fmt: skip
    judged = [network for network in results if network["rounding"]["replayable"]]
    worst = max(
        ((pair["errors"][pair["worst"]], pair["worst"], network["spec"], pair["backends"]) for network in judged
         for pair in network["pairs"]),
        default=None,
    )  # fmt: skip
    pairs = [pair for network in judged for pair in network["pairs"]]
    return {
        "schema": EXACTNESS_SCHEMA,
        "dtype": "float64",
        "tolerance": EXACTNESS_TOLERANCE,
        "rounding_limit": EXACTNESS_ROUNDING_LIMIT,
        "passed": bool(pairs) and all(pair["passed"] for pair in pairs),
        "worst": None
        if worst is None
        else {"error": worst[0], "quantity": worst[1], "spec": worst[2], "backends": worst[3]},  # fmt: skip
        **{k: first[k] for k in ("recipe", "n_train", "n_test", "dataset")},
        "backends": list(config.backends),
        "networks": results,
    }


def replayed_depths(config: StudyConfig) -> tuple[int, ...]:
    """The depths the replay covers: those of `exactness_depths` the study trains (a grid narrowed by
    `--depths` replays only its own), by default the study's shallowest, at most `DEEPEST_DEFAULT`."""
    named = tuple(d for d in config.exactness_depths if d in config.depths)
    return named or (min(*config.depths, DEEPEST_DEFAULT),)


def networks(config: StudyConfig, dataset: Dataset) -> list[NetworkSpec]:
    """The study's networks the replay covers: every arch at every `exactness_depths` depth (by default
    the study's shallowest, at most `DEEPEST_DEFAULT`)."""
    depths = replayed_depths(config)
    return [
        GridPoint(config, config.backends[0], arch, depth, config.seeds[0])
        .network_spec()
        .with_overrides(input_shape=dataset.input_shape, classes=dataset.classes)
        for depth in depths
        for arch in config.archs
    ]


def replay_study(config: StudyConfig, dataset: Dataset) -> dict:
    """The exactness evidence of a study whose backends one process can hold (at most one Keras
    backend); the study runner replays each group of backends in a process of its own."""
    return compare_replays(config, [replay_networks(config, dataset, config.backends)])


def run_replay(config: StudyConfig, out: Path, dataset: Dataset) -> dict:
    """Replay the study's recipe unless `out` already holds the evidence; write it atomically."""
    path = Path(out) / EXACTNESS
    if path.exists():
        return load_exactness(path)
    return write_exactness(out, replay_study(config, dataset))


def write_exactness(out: Path, evidence: dict) -> dict:
    Exactness.model_validate(_finite(evidence)).write(Path(out) / EXACTNESS)
    return evidence


def _finite(value):
    """inf (twins that ran different lengths) as the string "inf": JSON has no infinity."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "inf"
    return value
