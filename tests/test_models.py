"""Both twins build every preset as the spec says: counts, shapes, names, initialization, port."""

import numpy as np
import pytest
import torch

from study.core.presets import parse_spec
from study.core.twin import load

KERAS, TORCH = load("keras"), load("lightning")
TWINS = [KERAS, TORCH]
BUILT_PRESETS = [
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "plain20", "plain32", "plain44", "plain56", "plain110",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "plain18", "plain50",
]  # fmt: skip


@pytest.mark.parametrize("name", BUILT_PRESETS)
@pytest.mark.parametrize("twin", TWINS, ids=lambda t: t.NAME)
def test_built_parameter_count_is_the_analytic_one(twin, name):
    # Parameter counts do not depend on the input size; a small input keeps the build cheap.
    spec = parse_spec(name, input_shape=(32, 32, 3))
    assert twin.count_trainable_params(twin.build(spec)) == spec.trainable_params


@pytest.mark.quick
@pytest.mark.parametrize(
    "name, overrides",
    [
        ("resnet20", {}),
        ("resnet56", {}),
        ("plain56", {}),
        ("resnet20", {"shortcut": "B"}),
        ("resnet-8", {"input_shape": (33, 45, 1), "classes": 3}),
        ("resnet50", {}),
        ("resnet50", {"bottleneck_stride": "1x1", "input_shape": (64, 96, 3)}),
    ],
)
@pytest.mark.parametrize("twin", TWINS, ids=lambda t: t.NAME)
def test_counted_macs_are_the_analytic_ones(twin, name, overrides):
    spec = parse_spec(name, **overrides)
    assert twin.count_macs(twin.build(spec), spec.input_shape) == spec.macs


@pytest.mark.quick
@pytest.mark.parametrize("twin", TWINS, ids=lambda t: t.NAME)
@pytest.mark.parametrize("name", ["resnet-8", "plain-8", "resnet18"])
def test_logits_shape_and_finite(twin, name):
    spec = parse_spec(name, input_shape=(32, 40, 3), classes=7)
    model = twin.build(spec)
    x = np.random.default_rng(0).standard_normal((2, 32, 40, 3)).astype("float32")
    logits = twin.forward(model, x, training=False)
    assert logits.shape == (2, 7) and np.isfinite(logits).all()


@pytest.mark.parametrize("twin", TWINS, ids=lambda t: t.NAME)
def test_every_parameter_gets_a_gradient(twin):
    spec = parse_spec("resnet18", input_shape=(32, 32, 3), classes=5)
    model = twin.build(spec)
    x = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype("float32")
    probe = twin.forward_backward(model, x, np.arange(4) % 5)
    assert set(probe.param_grads) == {name for name, _ in TORCH.build(spec).named_parameters()}
    assert all(np.abs(g).sum() > 0 for g in probe.param_grads.values())


@pytest.mark.quick
def test_layer_names_are_torch_state_dict_keys():
    spec = parse_spec("resnet20", shortcut="B")
    torch_keys = set(TORCH.to_torch_state(TORCH.build(spec)))
    keras_keys = set(KERAS.to_torch_state(KERAS.build(spec)))
    assert keras_keys == torch_keys
    assert {
        "conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var",
        "fc.bias",
    } <= torch_keys


@pytest.mark.quick
@pytest.mark.parametrize("twin", TWINS, ids=lambda t: t.NAME)
def test_he_normal_fan_out_initialization(twin):
    spec = parse_spec("resnet56")
    state = twin.to_torch_state(twin.build(spec))
    kernel = state["layer3.0.conv2.weight"]  # 64 x 64 x 3 x 3: fan_out = 576
    assert kernel.std() == pytest.approx(np.sqrt(2 / 576), rel=0.03)
    assert state["layer3.0.bn2.weight"].tolist() == [1.0] * 64 and not state["layer3.0.bn2.bias"].any()
    assert np.abs(state["fc.weight"]).max() <= 1 / np.sqrt(64)


@pytest.mark.quick
def test_port_round_trips_bitwise_both_ways():
    spec = parse_spec("resnet-14", shortcut="B", input_shape=(16, 16, 3))
    torch.manual_seed(0)
    original = TORCH.to_torch_state(TORCH.build(spec))
    original = {k: v + np.float32(0.1) * (k.endswith(("running_mean", "running_var"))) for k, v in original.items()}
    keras_model = KERAS.build(spec)
    KERAS.load_torch_state(keras_model, original)
    back = TORCH.build(spec)
    TORCH.load_torch_state(back, KERAS.to_torch_state(keras_model))
    for key, value in TORCH.to_torch_state(back).items():
        assert value.dtype == original[key].dtype and np.array_equal(value, original[key]), key

    keras_weights = [np.array(w) for w in keras_model.get_weights()]
    again = KERAS.build(spec)
    KERAS.load_torch_state(again, TORCH.to_torch_state(back))
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), keras_weights, strict=True))


@pytest.mark.quick
@pytest.mark.parametrize("twin", TWINS, ids=lambda t: t.NAME)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_network_built_uninitialized_computes_as_an_initialized_one_once_loaded(twin, dtype):
    """`build(initialize=False)` (the lesion study's) then a whole state: the same logits, eval and
    train mode, as a normally built network with that state; and the state is really all loaded (a
    key left out of the port fails loudly, not silently on uninitialized memory)."""
    spec = parse_spec("resnet-8", shortcut="B", input_shape=(8, 8, 3))
    state = {k: v * 0.5 + 0.01 for k, v in twin.to_torch_state(twin.build(spec, dtype, seed=1)).items()}
    images = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype(dtype)
    fresh, built = twin.build(spec, dtype, seed=2), twin.build(spec, dtype, initialize=False)
    for model in (fresh, built):
        twin.load_torch_state(model, state)
    for training in (False, True):
        assert np.array_equal(twin.forward(built, images, training), twin.forward(fresh, images, training))
    assert twin.to_torch_state(built).keys() == state.keys()
    with pytest.raises(ValueError, match="does not match"):
        twin.load_torch_state(twin.build(spec, dtype, initialize=False), dict(list(state.items())[1:]))


@pytest.mark.quick
def test_port_rejects_a_state_dict_of_another_network():
    state = TORCH.to_torch_state(TORCH.build(parse_spec("resnet20")))
    with pytest.raises(ValueError, match="does not match"):
        KERAS.load_torch_state(KERAS.build(parse_spec("resnet20", shortcut="B")), state)
    with pytest.raises(ValueError, match="does not match"):
        TORCH.load_torch_state(TORCH.build(parse_spec("resnet32")), state)


@pytest.mark.quick
@pytest.mark.parametrize("twin", TWINS, ids=lambda t: t.NAME)
@pytest.mark.parametrize("arch", ["resnet", "plain"])
def test_only_residual_nets_carry_signal_past_a_dead_block(twin, arch):
    """Zero the convolutions of one block: a plain net's input gradient must then vanish exactly
    (everything flows through that block's convolutions); a residual net's must not (the skip)."""
    spec = parse_spec(f"{arch}-14", input_shape=(16, 16, 3), norm="none")
    torch.manual_seed(0)
    state = TORCH.to_torch_state(TORCH.build(spec))
    for key in state:
        if key.startswith("layer2.1.conv"):
            state[key] = np.zeros_like(state[key])
    model = twin.build(spec)
    twin.load_torch_state(model, state)
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 3)).astype("float32")
    grad = twin.forward_backward(model, x, np.array([0, 1])).input_grad
    assert (np.abs(grad).max() == 0.0) == (arch == "plain")
