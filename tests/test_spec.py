"""The specification alone: presets, validation, analytic complexity (regression-tested), the LR
schedule and the initial weights."""

import dataclasses
import re

import numpy as np
import pytest

from study.configs import CONFIGS
from study.core.errors import UserError
from study.core.init import initial_state
from study.core.presets import parse_spec, preset_names
from study.core.recipe import TrainSpec
from study.core.spec import NetworkSpec, SpecError

pytestmark = pytest.mark.quick  # every test here is in the edit loop's tier (README)

# He et al. 2015 Table 6 / torchvision: trainable parameters, exact.
PARAMS = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
    "plain20": 269_722,
    "plain32": 464_154,
    "plain44": 658_586,
    "plain56": 853_018,
    "plain110": 1_727_962,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


@pytest.mark.parametrize("name, params", PARAMS.items())
def test_analytic_parameter_counts(name, params):
    assert parse_spec(name).trainable_params == params


def test_analytic_macs():
    assert round(parse_spec("resnet20").macs / 1e6, 2) == 40.55
    assert round(parse_spec("resnet56").macs / 1e6, 2) == 125.49
    assert parse_spec("plain56").macs == parse_spec("resnet56").macs
    assert parse_spec("resnet50").macs == 4_089_185_256


def test_v1_strides_on_the_first_1x1_and_costs_more():
    v15, v1 = parse_spec("resnet50"), parse_spec("resnet50", bottleneck_stride="1x1")
    assert v1.trainable_params == v15.trainable_params
    assert v1.macs < v15.macs  # the 3x3 conv then runs at the lower resolution
    conv1 = next(layer for layer in v1.layers() if layer.name == "layer2.0.conv1")
    assert conv1.stride == 2 and conv1.kernel == 1


@pytest.mark.parametrize("name", ["resnet20", "plain56", "resnet-8", "resnet50", "plain18"])
def test_depth_is_weighted_layers_on_the_main_path(name):
    spec = parse_spec(name)
    assert spec.weighted_layers == spec.depth


def test_option_b_adds_projections_only_where_shape_changes():
    a, b = parse_spec("resnet20"), parse_spec("resnet20", shortcut="B")
    projections = [layer for layer in b.layers() if not layer.main_path]
    assert [layer.name for layer in projections] == ["layer2.0.downsample.0", "layer3.0.downsample.0"]
    assert b.trainable_params - a.trainable_params == sum(layer.params for layer in projections)


def test_plain_twin_has_the_same_main_path_and_no_shortcut():
    resnet, plain = parse_spec("resnet50"), parse_spec("plain50")
    assert [x for x in resnet.layers() if x.main_path] == [x for x in plain.layers() if x.main_path]
    assert all(block.shortcut is None for block in plain.blocks())
    assert all(block.shortcut in ("identity", "projection") for block in resnet.blocks())


def test_resnet_dash_depth_is_always_cifar():
    assert parse_spec("resnet-50").family == "cifar"
    assert parse_spec("resnet50").family == "imagenet"
    assert parse_spec("plain-8").trainable_params == parse_spec("resnet-8").trainable_params


def test_names_round_trip():
    for name in preset_names() + ["resnet-8", "plain-14"]:
        assert parse_spec(parse_spec(name).name) == parse_spec(name)


def test_to_dict_round_trips():
    spec = parse_spec("plain-14", activation="tanh", input_shape=(8, 8, 1), classes=3)
    assert NetworkSpec.from_dict(spec.to_dict()) == spec


def test_odd_inputs_follow_torch_output_sizes():
    spec = parse_spec("resnet-8", input_shape=(33, 45, 1))
    assert [block.out_hw for block in spec.blocks()] == [(33, 45), (17, 23), (9, 12)]


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("resnet-21", {}, "depth must be 6n+2"),
        ("resnet21", {}, "depth must be 6n+2"),
        ("plain-2", {}, "depth must be 6n+2"),
        ("resnet", {}, "unknown spec"),
        ("vgg16", {}, "unknown spec"),
        ("resnet20", {"activation": "gelu"}, "activation must be one of relu, tanh, sigmoid"),
        ("resnet20", {"shortcut": "C"}, "shortcut must be one of A, B"),
        ("resnet20", {"norm": "layer"}, "norm must be one of batch, none"),
        ("resnet20", {"classes": 1}, "classes must be an integer in 2..100000"),
        ("resnet20", {"input_shape": (3, 32, 3)}, "too small"),
        ("resnet50", {"input_shape": (31, 64, 3)}, "at least 32"),
        ("resnet20", {"input_shape": (32, 32, 0)}, "three positive integers"),
    ],
)
def test_invalid_specs_are_rejected_with_a_clear_message(name, overrides, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(name, **overrides)


def test_lr_at_follows_warmup_and_milestones_per_step():
    """Convention 11: warm-up steps, then lr, divided by 10 at round(m x total steps)."""
    recipe = TrainSpec(epochs=4, warmup_epochs=1, lr=0.1, warmup_lr=0.01, lr_milestones=(0.5, 0.75))
    steps = 3  # 12 steps: warm-up 0-2, drops at steps 6 and 9
    lrs = [recipe.lr_at(step, steps) for step in range(12)]
    assert lrs == pytest.approx([0.01] * 3 + [0.1] * 3 + [0.01] * 3 + [0.001] * 3)
    assert TrainSpec(epochs=10).lr_at(49, 10) == pytest.approx(0.1)  # step 50 of 100 is the first drop
    assert TrainSpec(epochs=10).lr_at(50, 10) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "epochs, warmup, expected",
    [
        (2, 2, [0.01] * 6),  # the warm-up covers both drops: warm-up LR throughout
        (2, 1, [0.01] * 3 + [0.01] * 1 + [0.001] * 2),  # ends at the first drop: the dropped LR next
        (4, 3, [0.01] * 9 + [0.001] * 3),  # ends between the drops: the value the schedule has there
    ],
)
def test_a_warm_up_past_an_lr_drop_overrides_it_and_the_schedule_stays_sorted(epochs, warmup, expected):
    """The warm-up LR holds until the warm-up ends, then the milestone schedule's own value at that
    step. (A warm-up reaching past the first drop gave unsorted boundaries, which the Keras twin and
    `lr_at` read differently: the twins trained with different LRs from the first drop on.)"""
    recipe = TrainSpec(epochs=epochs, warmup_epochs=warmup)
    steps = 3
    boundaries, _ = recipe.lr_schedule(steps)
    assert boundaries == sorted(boundaries)
    assert [recipe.lr_at(step, steps) for step in range(epochs * steps)] == pytest.approx(expected)


def test_initial_state_is_he_normal_fan_out_and_fits_both_twins_by_name():
    """Convention 10: one NumPy draw per (spec, seed), the distributions the twins' own builds use."""
    spec = parse_spec("resnet56")
    state = initial_state(spec, seed=3)
    assert state["layer3.0.conv2.weight"].shape == (64, 64, 3, 3)
    assert state["layer3.0.conv2.weight"].std() == pytest.approx(np.sqrt(2 / 576), rel=0.03)
    assert (state["layer3.0.bn2.weight"] == 1).all() and not state["layer3.0.bn2.bias"].any()
    assert (state["layer3.0.bn2.running_var"] == 1).all() and not state["layer3.0.bn2.running_mean"].any()
    assert np.abs(state["fc.weight"]).max() <= 1 / np.sqrt(64) and state["fc.weight"].std() > 0.5 / np.sqrt(3 * 64)
    again, other = initial_state(spec, seed=3), initial_state(spec, seed=4)
    assert all(np.array_equal(state[k], again[k]) for k in state)
    assert not np.array_equal(state["conv1.weight"], other["conv1.weight"])
    names = {layer.name for layer in spec.layers()}
    assert {key.rsplit(".", 1)[0] for key in state if key.endswith("weight") and "bn" not in key} == names | {"fc"}


def test_a_study_config_refuses_an_unknown_arch():
    """An arch other than plain or resnet was silently built as the plain net."""
    with pytest.raises(UserError, match="unknown arch 'residual'; choose from plain, resnet"):
        dataclasses.replace(CONFIGS["default"], archs=("plain", "residual"))
