"""The float64 replay of the study's recipe: exact for correct twins, and any single recipe difference
injected into one twin fails it and turns the study's agreement verdict into "disagree"."""

import dataclasses
import json

import pytest
import torch
from tables import table

import keras_impl.models
import keras_impl.training
import lightning_impl.data
import lightning_impl.models
import lightning_impl.training
from study.configs import CONFIGS, StudyConfig
from study.core.data import load_dataset
from study.core.recipe import TrainSpec
from study.files import EXACTNESS
from study.files import EXACTNESS_QUANTITIES as QUANTITIES
from study.measure.exactness import networks, replay_study, replayed_depths, run_replay
from study.verdicts.agreement import agreement
from study.verdicts.inputs import ExactnessError, load_exactness

CONFIG = StudyConfig("tiny", "synthetic", ("keras", "lightning"), ("plain", "resnet"), (8,), (0, 1),
                     TrainSpec(epochs=2, warmup_epochs=1))  # fmt: skip
DATA = load_dataset("synthetic")


def replay(archs=("resnet",)):
    return replay_study(dataclasses.replace(CONFIG, archs=archs), DATA)


def test_correct_twins_replay_the_recipe_exactly():
    evidence = replay(("plain", "resnet"))
    assert evidence["passed"] and evidence["worst"]["error"] < 1e-12
    assert [n["spec"] for n in evidence["networks"]] == ["plain-8", "resnet-8"]
    network = evidence["networks"][1]
    assert network["steps"] == {"keras": 12, "lightning": 12}  # 4 epochs of 2 full batches and a half one
    assert set(network["pairs"][0]["errors"]) == set(QUANTITIES)
    assert evidence["recipe"]["epochs"] == 4 and evidence["recipe"]["warmup_epochs"] == 1
    assert evidence["recipe"]["augment"] is True and evidence["n_train"] == 320
    for network in evidence["networks"]:  # a shallow net does not amplify rounding: judged
        rounding = network["rounding"]
        assert rounding["backend"] == "lightning" and rounding["replayable"], rounding  # the evaluator twin
        assert 0 < max(rounding["errors"].values()) < 1e-11, rounding  # moved by the perturbation, not beyond


@pytest.mark.quick
def test_the_replay_defaults_to_the_shallowest_depth_at_most_20():
    """The recipe is the same at every depth; a deep plain net cannot be replayed exactly."""
    depths = {(8, 56): [8], (56,): [20], (56, 110): [20], (32,): [20]}
    for study_depths, replayed in depths.items():
        config = dataclasses.replace(CONFIG, depths=study_depths)
        assert sorted({spec.depth for spec in networks(config, DATA)}) == replayed
    config = dataclasses.replace(CONFIG, depths=(56,), exactness_depths=(56,))
    assert {spec.depth for spec in networks(config, DATA)} == {56}  # a config can still ask for it
    # the default study replays both its depths: its agreement knows which of its cells are chaotic
    assert replayed_depths(CONFIGS["default"]) == tuple(CONFIGS["default"].depths) == (8, 32)
    assert replayed_depths(CONFIGS["default"].with_overrides(depths=(8,))) == (8,)  # `--depths 8`: its own only


def test_correct_twins_on_a_chaotic_net_are_not_judged_by_the_replay():
    """plain-32 at batch 16 amplifies float64 rounding beyond the tolerance, like plain-56 on digits:
    correct twins differ beyond it there, so the replay must not call it a disagreement."""
    config = dataclasses.replace(CONFIG, archs=("plain",), depths=(32,), exactness_depths=(32,),
                                 recipe=dataclasses.replace(CONFIG.recipe, batch_size=16))  # fmt: skip
    evidence = replay_study(config, DATA)
    (network,) = evidence["networks"]
    assert not network["rounding"]["replayable"] and max(network["rounding"]["errors"].values()) > 1e-6
    assert not network["pairs"][0]["passed"]  # what the replay used to call a disagreement
    assert not evidence["passed"] and evidence["worst"] is None
    result = agreement(table(twin_noise=0.0), exactness=evidence)
    assert result["verdict"] == "inconclusive" and result["exactness"]["status"] == "ill_conditioned"


def keras_lr_drops_one_epoch_late(monkeypatch):
    original = keras_impl.training.make_optimizer

    def late(train_spec, steps_per_epoch, dtype, track=()):
        optimizer = original(train_spec, steps_per_epoch, dtype, track)
        schedule = optimizer._learning_rate
        warmup = bool(train_spec.warmup_epochs)
        schedule.boundaries = schedule.boundaries[:warmup] + [b + steps_per_epoch for b in schedule.boundaries[warmup:]]
        return optimizer

    monkeypatch.setattr(keras_impl.training, "make_optimizer", late)


def lightning_warmup_one_epoch_longer(monkeypatch):
    original = lightning_impl.training.make_optimizer

    def longer(parameters, train_spec, steps_per_epoch):
        return original(parameters, dataclasses.replace(train_spec, warmup_epochs=train_spec.warmup_epochs + 1),
                        steps_per_epoch)  # fmt: skip

    monkeypatch.setattr(lightning_impl.training, "make_optimizer", longer)


def keras_bn_momentum(monkeypatch):
    monkeypatch.setattr(keras_impl.models, "BN_MOMENTUM_TORCH", 0.2)  # Keras then keeps 0.8 of the average


def lightning_never_flips(monkeypatch):
    original = lightning_impl.data.augment
    monkeypatch.setattr(lightning_impl.data, "augment", lambda x, dy, dx, flip: original(x, dy, dx, flip & False))


def lightning_tests_with_batch_statistics(monkeypatch):
    original = lightning_impl.training.ClassifierModule.validation_step

    def train_mode_bn(self, batch, batch_idx):
        self.backbone.train()
        with torch.no_grad():
            return original(self, batch, batch_idx)

    monkeypatch.setattr(lightning_impl.training.ClassifierModule, "validation_step", train_mode_bn)


def keras_weight_decay_doubled(monkeypatch):
    original = keras_impl.training.make_optimizer

    def doubled(train_spec, steps_per_epoch, dtype, track=()):
        return original(dataclasses.replace(train_spec, weight_decay=2 * train_spec.weight_decay), steps_per_epoch,
                        dtype, track)  # fmt: skip

    monkeypatch.setattr(keras_impl.training, "make_optimizer", doubled)


def lightning_bn_epsilon(monkeypatch):
    monkeypatch.setattr(lightning_impl.models, "BN_EPSILON", 1e-3)  # Keras's own default, not torch's 1e-5


FAULTS = {
    "keras weight decay doubled": (keras_weight_decay_doubled, "final_weights"),
    "lightning BN epsilon 1e-3": (lightning_bn_epsilon, "step_losses"),
    "keras LR drops one epoch late": (keras_lr_drops_one_epoch_late, "step_losses"),
    "lightning warm-up one epoch longer": (lightning_warmup_one_epoch_longer, "step_losses"),
    "keras BN momentum 0.2": (keras_bn_momentum, "final_bn_stats"),
    "lightning augmentation without flips": (lightning_never_flips, "step_losses"),
    "lightning test set through train-mode BN": (lightning_tests_with_batch_statistics, "test_loss"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_one_recipe_difference_in_one_twin_fails_the_replay_and_the_verdict(monkeypatch, fault):
    inject, moved = FAULTS[fault]
    inject(monkeypatch)
    evidence = replay()
    errors = evidence["networks"][0]["pairs"][0]["errors"]
    assert not evidence["passed"] and errors[moved] > 1e-6, errors
    outcomes = table(twin_noise=0.0)  # outcomes that agree perfectly cannot rescue it
    result = agreement(outcomes, exactness=evidence)
    assert result["verdict"] == "disagree" and "float64 replay of the recipe differs" in result["reason"]


def test_the_evidence_is_written_once_and_read_back(tmp_path):
    evidence = run_replay(dataclasses.replace(CONFIG, archs=("resnet",)), tmp_path, DATA)
    assert load_exactness(tmp_path / EXACTNESS) == json.loads(json.dumps(evidence))
    assert run_replay(CONFIG, tmp_path, DATA) == load_exactness(tmp_path / EXACTNESS)  # kept, not replayed


@pytest.mark.quick
@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"schema": 3}', "schema is 3: Input should be less than or equal to 2"),
        (
            '{"schema": true, "passed": true, "tolerance": 1e-8, "networks": [{"spec": "x", "pairs": []}]}',
            "schema is True: Input should be a valid integer",
        ),
        (
            '{"schema": 2, "passed": true, "tolerance": 1e-8, "networks": [{"spec": "x", "pairs": []}]}',
            "schema 2 needs rounding_limit",
        ),
        ('{"schema": 1, "passed": "yes", "tolerance": 1e-8, "networks": []}', "passed is 'yes'"),
        ('{"schema": 1, "passed": true, "tolerance": 1e-8, "networks": []}', "networks is \\[\\]: List should have"),
        ('{"schema": 1, "passed": true, "tolerance": -1e-8, "networks": []}', "tolerance is -1e-08"),
    ],
)
def test_malformed_evidence_is_one_line(tmp_path, content, message):
    (tmp_path / EXACTNESS).write_text(content)
    with pytest.raises(ExactnessError, match=message):
        load_exactness(tmp_path / EXACTNESS)


def test_evidence_whose_verdict_contradicts_its_numbers_is_refused(tmp_path):
    evidence = replay()
    evidence["networks"][0]["pairs"][0]["errors"]["step_losses"] = 0.5  # "passed" no longer true
    (tmp_path / EXACTNESS).write_text(json.dumps(evidence))
    with pytest.raises(ExactnessError, match="'passed' contradicts the errors"):
        load_exactness(tmp_path / EXACTNESS)


def test_evidence_whose_rounding_contradicts_its_numbers_is_refused(tmp_path):
    evidence = json.loads(json.dumps(replay()))
    (tmp_path / EXACTNESS).write_text(json.dumps(evidence))
    assert load_exactness(tmp_path / EXACTNESS) == evidence
    rounding = evidence["networks"][0]["rounding"]
    for change, message in [
        ({"step_losses": 0.5}, "'replayable' contradicts the errors"),  # a chaotic net said to be judged
        ({"grad_norms": "big"}, "networks.0.rounding.errors.grad_norms is 'big'"),
        ({"grad_norms": -1.0}, "networks.0.rounding.errors.grad_norms is -1.0"),
    ]:
        (tmp_path / EXACTNESS).write_text(json.dumps(evidence | {"networks": [
            evidence["networks"][0] | {"rounding": rounding | {"errors": rounding["errors"] | change}}]}))  # fmt: skip
        with pytest.raises(ExactnessError, match=message):
            load_exactness(tmp_path / EXACTNESS)
    del evidence["networks"][0]["rounding"]
    (tmp_path / EXACTNESS).write_text(json.dumps(evidence))
    with pytest.raises(ExactnessError, match="needs its 'rounding' sensitivity"):
        load_exactness(tmp_path / EXACTNESS)
