"""Same weights in => same numbers out, and each numerical convention is load-bearing.

Every trap test breaks exactly one convention in one twin and shows that `agree` then fails; the
passing side of each claim is the spread of configurations below.
"""

import keras
import pytest

import keras_impl.layers
import keras_impl.models
import keras_impl.port
from study.core.presets import parse_spec
from study.measure.numerics import TwinMismatch, compare_twins

SPREAD = [
    ("resnet20", {}),
    ("plain20", {}),
    ("resnet-8", {"input_shape": (33, 45, 1)}),  # odd, non-square, one channel
    ("resnet-14", {"shortcut": "B", "input_shape": (20, 28, 3)}),
    ("resnet-8", {"activation": "tanh"}),
    ("plain-8", {"activation": "sigmoid", "classes": 3}),
    ("resnet-14", {"norm": "none", "input_shape": (17, 17, 3)}),
    ("resnet50", {"input_shape": (64, 64, 3)}),  # bottleneck, projection shortcuts, max-pool
    ("plain18", {"input_shape": (32, 48, 3), "activation": "tanh"}),  # -inf max-pool padding
    ("resnet50", {"input_shape": (33, 35, 3), "bottleneck_stride": "1x1", "shortcut": "A"}),
]


def _id(case):
    name, overrides = case
    return "-".join([name, *(f"{k}={v}" for k, v in overrides.items())]).replace(" ", "")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", SPREAD, ids=[_id(c) for c in SPREAD])
def test_twins_agree(case, dtype):
    name, overrides = case
    report = compare_twins(parse_spec(name, **overrides), dtype=dtype, batch=4)
    assert report.passed, report.to_dict()
    expected = {"logits_eval", "logits_train", "loss", "input_grad", "param_grads"}
    assert expected <= set(report.max_rel_error)
    assert ("bn_running_stats" in report.max_rel_error) == (overrides.get("norm") != "none")


def _float64_errors(name="resnet-8", **overrides):
    report = compare_twins(parse_spec(name, **overrides), dtype="float64", batch=4)
    return report, report.max_rel_error


@pytest.mark.quick
def test_trap_same_padding_at_stride_2(monkeypatch):
    """Keras 'same' pads (0, 1) at stride 2 on even inputs; torch pads (1, 1)."""
    original = keras_impl.models.apply_conv_bn

    def same_padding(x, layer, dtype):
        name = keras_impl.models.keras_name(f"{layer.name}.pad")
        if layer.stride == 2 and layer.padding:
            x = keras.layers.ZeroPadding2D(((0, 2), (0, 2)), name=name, dtype=dtype)(x)
        elif layer.padding:
            x = keras.layers.ZeroPadding2D(layer.padding, name=name, dtype=dtype)(x)
        return original(x, layer.__class__(**{**layer.__dict__, "padding": 0}), dtype)

    monkeypatch.setattr(keras_impl.models, "apply_conv_bn", same_padding)
    report, errors = _float64_errors()
    assert not report.passed and errors["logits_eval"] > 1e-3


@pytest.mark.quick
def test_trap_bn_momentum_not_converted(monkeypatch):
    """Keras momentum m is torch momentum 1 - m: passing torch's 0.1 straight through is wrong."""
    monkeypatch.setattr(keras_impl.models, "BN_MOMENTUM_TORCH", 0.9)  # Keras then gets 0.1
    report, errors = _float64_errors()
    assert not report.passed and errors["bn_running_stats"] > 1e-2
    assert errors["logits_train"] < 1e-9  # batch statistics do not depend on momentum


@pytest.mark.quick
def test_trap_bn_epsilon_keras_default(monkeypatch):
    monkeypatch.setattr(keras_impl.models, "BN_EPSILON", 1e-3)  # Keras' default; torch uses 1e-5
    report, errors = _float64_errors()
    assert not report.passed and errors["logits_eval"] > 1e-9


@pytest.mark.quick
def test_trap_bn_biased_moving_variance(monkeypatch):
    """Keras' own BN tracks the biased batch variance; torch tracks the unbiased one."""
    monkeypatch.setattr(keras_impl.models, "BatchNormalization", keras.layers.BatchNormalization)
    monkeypatch.setattr(keras_impl.port, "BatchNormalization", keras.layers.BatchNormalization)
    report, errors = _float64_errors()
    assert not report.passed and errors["bn_running_stats"] > 1e-9
    assert errors["logits_train"] < 1e-9 and errors["param_grads"] < 1e-9


@pytest.mark.quick
def test_trap_kernel_layout(monkeypatch):
    """torch OIHW -> Keras HWIO is transpose (2, 3, 1, 0); (3, 2, 1, 0) swaps the kernel's H and W."""
    original = keras_impl.port._layer_entries

    def transposed_hw(layer):
        for variable, key, to_torch, to_keras in original(layer):
            if to_keras == (2, 3, 1, 0):
                to_torch, to_keras = (3, 2, 0, 1), (3, 2, 1, 0)
            yield variable, key, to_torch, to_keras

    monkeypatch.setattr(keras_impl.port, "_layer_entries", transposed_hw)
    report, errors = _float64_errors()
    assert not report.passed and errors["logits_eval"] > 1e-2


@pytest.mark.quick
def test_trap_conv_bias(monkeypatch):
    """Keras' Conv2D has a bias by default; the twins' convs have none (BN follows)."""
    conv2d = keras.layers.Conv2D

    def with_bias(*args, **kwargs):
        return conv2d(*args, **{**kwargs, "use_bias": True, "bias_initializer": "random_normal"})

    monkeypatch.setattr(keras_impl.models.layers, "Conv2D", with_bias)
    with pytest.raises(TwinMismatch, match="parameter counts differ"):
        compare_twins(parse_spec("resnet-8"), dtype="float64")


@pytest.mark.quick
def test_trap_option_a_zero_channels_first(monkeypatch):
    """Option A appends the zero channels after the existing ones (convention 9); before is another network."""

    def zeros_first(self, x):
        x = x[:, :: self.stride, :: self.stride, :]
        return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [self.extra_channels, 0]])

    monkeypatch.setattr(keras_impl.layers.PadShortcut, "call", zeros_first)
    report, errors = _float64_errors(shortcut="A")
    assert not report.passed and errors["logits_eval"] > 1e-3


@pytest.mark.quick
def test_float32_kink_allowance_does_not_hide_a_real_error(monkeypatch):
    """The float32 ReLU-kink noise floor is ~1e-3; a convention error is far above it."""
    monkeypatch.setattr(keras_impl.models, "BN_EPSILON", 1e-3)
    report = compare_twins(parse_spec("resnet20"), dtype="float32", batch=4)
    assert not report.passed
