"""Keras 3 twin: `build(spec)` returns a functional `keras.Model` for any `NetworkSpec`.

Reads as the same code as `lightning_impl/models.py`, one function per concept in the same order.
Layer names are the torch module paths that `study.core.spec.ConvLayer.name` gives, with '.' written
'_' (`keras_name`), so weights cross-load by name (`keras_impl.port`). Tensors are NHWC; the torch twin
is NCHW. Only public Keras 3 APIs are used, so the model runs on every Keras backend.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from keras_impl.layers import BatchNormalization, Dense, GlobalAveragePooling2D, MaxPoolPadding2D, PadShortcut, tanh
from study.core.spec import BN_EPSILON, BN_MOMENTUM_TORCH, BlockSpec, ConvLayer, NetworkSpec


def keras_name(torch_name: str) -> str:
    """The Keras layer name of a torch module path: '.' becomes '_' (docs/design.md, "Specification").

    Keras on the torch backend keeps variables in a ParameterDict, which forbids '.'; the torch
    twin's module names never contain '_', so `torch_name` inverts this exactly.
    """
    return torch_name.replace(".", "_")


def torch_name(keras_name: str) -> str:
    """The torch module path of a Keras layer name (the inverse of `keras_name`)."""
    return keras_name.replace("_", ".")


def make_activation(spec: NetworkSpec, name: str, dtype) -> layers.Layer:
    activation = tanh if spec.activation == "tanh" else spec.activation  # float64-safe (convention 12)
    return layers.Activation(activation, name=keras_name(name), dtype=dtype)


def apply_conv_bn(x, layer: ConvLayer, dtype):
    """Conv (no bias: docs/design.md, convention 7) and its BN, named as the torch twin's modules."""
    # Keras 'same' pads (0, 1) at stride 2 on even inputs, torch pads (1, 1): pad explicitly
    # with torch's symmetric padding and convolve 'valid' (docs/design.md, convention 1). At stride 1
    # 'same' is torch's symmetric padding: the framework pads inside its convolution, no padded copy
    # (TensorFlow: 15-25 % faster steps and tracing for plain-56, measured; torch: one copy less).
    same = layer.stride == 1 and layer.kernel % 2 == 1 and layer.padding == layer.kernel // 2
    if layer.padding and not same:
        x = layers.ZeroPadding2D(layer.padding, name=keras_name(f"{layer.name}.pad"), dtype=dtype)(x)
    x = layers.Conv2D(
        layer.out_channels,
        layer.kernel,
        strides=layer.stride,
        padding="same" if same else "valid",
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
        name=keras_name(layer.name),
        dtype=dtype,
    )(x)
    if not layer.batch_norm:
        return x
    return BatchNormalization(
        momentum=1.0 - BN_MOMENTUM_TORCH, epsilon=BN_EPSILON, name=keras_name(layer.bn_name), dtype=dtype
    )(x)


def apply_shortcut(x, spec: NetworkSpec, block: BlockSpec, dtype):
    """None for a plain block (no addition at all), else the tensor added to the block's output."""
    if block.shortcut is None:
        return None
    if block.shortcut == "identity":
        return x
    if block.shortcut == "pad":
        extra = block.out_channels - block.in_channels
        return PadShortcut(block.stride, extra, name=keras_name(f"{block.name}.downsample"), dtype=dtype)(x)
    return apply_conv_bn(x, spec.block_layers(block)[-1], dtype)


def apply_block(x, spec: NetworkSpec, block: BlockSpec, dtype):
    """Basic (conv3x3-BN-act-conv3x3-BN) or bottleneck (1x1-3x3-1x1) block, (+ shortcut), act;
    a deleted block (`NetworkSpec.lesion`), its skip map alone."""
    if block.lesioned:
        return apply_shortcut(x, spec, block, dtype)
    main = [layer for layer in spec.block_layers(block) if layer.main_path]
    out = x
    for i, layer in enumerate(main, start=1):
        out = apply_conv_bn(out, layer, dtype)
        if i < len(main):
            out = make_activation(spec, f"{block.name}.act{i}", dtype)(out)
    shortcut = apply_shortcut(x, spec, block, dtype)
    if shortcut is not None:
        out = layers.Add(name=keras_name(f"{block.name}.add"), dtype=dtype)([out, shortcut])
    return make_activation(spec, f"{block.name}.act", dtype)(out)


def build(
    spec: NetworkSpec, dtype: str = "float32", seed: int | None = None, device: str = "cpu", initialize: bool = True
) -> keras.Model:
    """The network of `spec`, freshly initialized by Keras' RNG (`keras.utils.set_random_seed(seed)` first if given;
    `initialize=False` is the Twin protocol's hint that a state is loaded next: Keras draws the weights anyway).

    `dtype` is a Keras dtype policy name: "float32", "float64" or "mixed_bfloat16".
    Input is NHWC `spec.input_shape`; output is logits (no softmax). `device` is where the process's
    Keras backend places it already (the GPU where one is visible, unless `twin.use_cpu_only` ran).
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=spec.input_shape, name="input", dtype=keras.DTypePolicy(dtype).variable_dtype)
    x = apply_conv_bn(inputs, spec.layers()[0], dtype)
    x = make_activation(spec, "act", dtype)(x)
    if spec.family == "imagenet":
        x = MaxPoolPadding2D(1, name="maxpool_pad", dtype=dtype)(x)
        x = layers.MaxPooling2D(3, 2, padding="valid", name="maxpool", dtype=dtype)(x)
    for block in spec.blocks():
        x = apply_block(x, spec, block, dtype)
    x = GlobalAveragePooling2D(name="avgpool", dtype=dtype)(x)
    bound = 1.0 / math.sqrt(spec.feature_channels)  # dense U(+-1/sqrt(fan_in)), as the torch twin
    outputs = Dense(
        spec.classes,
        kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
        name="fc",
        dtype=dtype,
    )(x)
    return keras.Model(inputs, outputs, name=spec.name.replace("-", "_"))


def count_trainable_params(model: keras.Model) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_variables)


def count_macs(model: keras.Model, input_shape: tuple[int, int, int]) -> int:
    """Forward MACs per example counted from the built model (conv and dense; dense bias = 1 MAC).

    `input_shape` is unused (the functional model knows its shapes); it mirrors the torch twin.
    """
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            macs += h * w * c_out * layer.input.shape[-1] * kh * kw
        elif isinstance(layer, layers.Dense):
            macs += (layer.input.shape[-1] + 1) * layer.units
    return macs
