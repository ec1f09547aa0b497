"""The Keras layers the twin needs beyond Keras' own, each matching a torch semantic exactly, and the
float64-safe reductions they use.

Only `keras.ops` is used, so the model runs on Keras' TensorFlow, JAX and torch backends. Every layer
is registered for `.keras` serialization.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "resnet_study"


# Keras 3.15's type promotion maps float64 to float32 on JAX and torch (keras-team/keras#23223,
# #23704): ops built on it (mean, var, norm; on torch also matmul, maximum, divide_no_nan) compute
# float64 input in float32. The twin's float64 is the precise check of convention 12, so the few
# places it meets such an op take another path where this is True.
FLOAT64_DEMOTED = keras.backend.result_type("float64", "float64") != "float64"


def at_least_float32(dtype) -> str:
    """The dtype statistics are computed in: float64 stays float64, anything narrower becomes float32.

    Not `keras.backend.result_type(dtype, "float32")`: on JAX and torch that is float32 for float64
    (`FLOAT64_DEMOTED`), which would quietly make the float64 twin a float32 one.
    """
    return "float64" if keras.backend.standardize_dtype(dtype) == "float64" else "float32"


def l2_norm(x):
    """||x||_2 over all entries, float64 kept (Keras 3.15's `ops.norm` demotes it: `FLOAT64_DEMOTED`)."""
    return ops.sqrt(ops.sum(ops.square(x)))


def reduce_mean(x, axis=None, keepdims=False):
    """`ops.mean` over `axis`, computed in float64 for float64 input on every backend.

    Keras 3.15's `ops.mean` accumulates float64 in float32 on JAX and torch (`FLOAT64_DEMOTED`): a
    sum keeps the input's precision. Everything else goes to `ops.mean` unchanged.
    """
    if not (FLOAT64_DEMOTED and keras.backend.standardize_dtype(x.dtype) == "float64"):
        return ops.mean(x, axis=axis, keepdims=keepdims)
    total = ops.sum(x, axis=axis, keepdims=keepdims)
    return total / (ops.cast(ops.size(x), x.dtype) / ops.cast(ops.size(total), x.dtype))


@keras.saving.register_keras_serializable(package=PACKAGE)
def tanh(x):
    """`keras.activations.tanh`, float64 kept: on JAX, Keras 3.15's `ops.tanh` casts float64 input to
    float32 (`FLOAT64_DEMOTED`), so there the backend's own tanh is called, as Keras' TensorFlow and
    torch backends do."""
    if FLOAT64_DEMOTED and keras.backend.backend() == "jax" and keras.backend.standardize_dtype(x.dtype) == "float64":
        from jax import numpy as jnp

        return jnp.tanh(x)
    return ops.tanh(x)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras BN whose moving variance tracks the *unbiased* batch variance, as torch's does.

    Keras' own layer stores the biased variance (divide by n) in `moving_variance`; torch stores the
    unbiased one (divide by n - 1) while normalizing with the biased one in both. We follow torch
    (docs/design.md, convention 2), so eval-mode outputs after training agree between the twins. Momentum is
    Keras' (moving = momentum * moving + (1 - momentum) * batch), i.e. 1 - torch's momentum.
    """

    def call(self, inputs, training=None, mask=None):
        if mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, at_least_float32(inputs.dtype))  # BN in >= fp32, float64 kept (Keras' own casts it)
        gamma, beta = ops.cast(self.gamma, x.dtype), ops.cast(self.beta, x.dtype)
        if not (training and self.trainable):
            mean, variance = ops.cast(self.moving_mean, x.dtype), ops.cast(self.moving_variance, x.dtype)
            outputs = ops.batch_normalization(x, mean, variance, self.axis, beta, gamma, self.epsilon)
            return ops.cast(outputs, self.compute_dtype)
        outputs, mean, variance = _batch_norm_train(x, gamma, beta, self._reduction_axes, self.epsilon)
        count = ops.cast(ops.size(x), x.dtype) / ops.cast(ops.size(mean), x.dtype)
        unbiased = variance * count / (count - 1.0)
        momentum = self.momentum
        self.moving_mean.assign(ops.cast(self.moving_mean, x.dtype) * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(ops.cast(self.moving_variance, x.dtype) * momentum + unbiased * (1.0 - momentum))
        return ops.cast(outputs, self.compute_dtype)


def _batch_norm_train(x, gamma, beta, axes, epsilon):
    """Train-mode BN over `axes` with the analytic backward pass torch (and cuDNN) use.

    Autodiff through mean and variance sums three large, nearly cancelling terms; in float32 that
    loses about three digits of the input gradient whenever the upstream gradient is nearly constant
    per channel (as it is next to global average pooling). The closed form below does not.
    Returns (normalized output, batch mean, biased batch variance).
    """

    def statistics(x):
        mean = reduce_mean(x, axes)
        centered = x - mean
        variance = reduce_mean(ops.square(centered), axes)
        return mean, centered, variance, ops.rsqrt(variance + epsilon)

    # Everything the backward pass needs is computed inside the custom-gradient function from its
    # own inputs: JAX rejects a custom gradient that closes over traced values (graph-mode
    # TensorFlow merges the repeated statistics below into one computation).
    @ops.custom_gradient
    def normalize(x, gamma, beta):
        _, centered, _, inv_std = statistics(x)
        x_hat = centered * inv_std

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            mean_g = reduce_mean(upstream, axes)
            mean_g_xhat = reduce_mean(upstream * x_hat, axes)
            grad_x = (upstream - mean_g - x_hat * mean_g_xhat) * (gamma * inv_std)
            count = ops.cast(ops.size(x), x.dtype) / ops.cast(ops.size(mean_g), x.dtype)
            return grad_x, mean_g_xhat * count, mean_g * count

        return x_hat * gamma + beta, grad

    mean, _, variance, _ = statistics(x)
    return normalize(x, gamma, beta), ops.stop_gradient(mean), ops.stop_gradient(variance)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PadShortcut(keras.layers.Layer):
    """Option A shortcut (NHWC): subsample by the stride, append zero channels after the existing ones
    (docs/design.md, convention 9)."""

    def __init__(self, stride: int, extra_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.stride, self.extra_channels = stride, extra_channels

    def call(self, x):
        x = x[:, :: self.stride, :: self.stride, :]
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.extra_channels]])

    def compute_output_shape(self, input_shape):
        batch, h, w, c = input_shape
        s = self.stride
        ceil = lambda v: None if v is None else -(-v // s)  # noqa: E731
        return (batch, ceil(h), ceil(w), c + self.extra_channels)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "extra_channels": self.extra_channels}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaxPoolPadding2D(keras.layers.Layer):
    """Symmetric padding with -inf before a 'valid' max-pool: torch's MaxPool2d(padding=p) semantics.

    Zero padding would be wrong whenever activations can be negative (tanh), and Keras' 'same'
    pooling pads (0, 1) at stride 2 on even inputs where torch pads (1, 1).
    """

    def __init__(self, padding: int, **kwargs):
        super().__init__(**kwargs)
        self.padding = padding

    def call(self, x):
        p = self.padding
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=float("-inf"))

    def compute_output_shape(self, input_shape):
        batch, h, w, c = input_shape
        grow = lambda v: None if v is None else v + 2 * self.padding  # noqa: E731
        return (batch, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GlobalAveragePooling2D(keras.layers.GlobalAveragePooling2D):
    """Keras' layer, its float64 mean computed in float64 on every backend (see `reduce_mean`)."""

    def call(self, inputs):
        axes = [1, 2] if self.data_format == "channels_last" else [2, 3]
        return reduce_mean(inputs, axes, keepdims=self.keepdims)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Dense(keras.layers.Dense):
    """Keras' layer, its float64 product computed in float64 on every backend.

    Keras 3.15's `ops.matmul` on torch computes float64 operands in float32 (`FLOAT64_DEMOTED`);
    `ops.einsum` keeps their precision. Everything else takes Keras' own path unchanged.
    """

    def call(self, inputs, training=None):
        if not (FLOAT64_DEMOTED and keras.backend.standardize_dtype(inputs.dtype) == "float64"):
            return super().call(inputs, training=training)
        outputs = ops.einsum("...i,io->...o", inputs, self.kernel)
        outputs = outputs + self.bias if self.use_bias else outputs
        return self.activation(outputs) if self.activation is not None else outputs
