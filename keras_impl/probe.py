"""One forward (and backward) pass of the Keras twin, returned as NumPy in the torch twin's layout.

The mirror of `lightning_impl.probe`: `study.agree` compares the two, `study.gradflow` reads
per-layer gradient norms from either. Inputs are NHWC float arrays, labels int class indices.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_impl.port import to_torch_layout
from study.core.probe import Probe


def forward(model: keras.Model, x: np.ndarray, training: bool) -> np.ndarray:
    """Logits; ``training=True`` uses (and updates) batch statistics in BN."""
    return keras.ops.convert_to_numpy(model(x, training=training))


def forward_backward(model: keras.Model, x: np.ndarray, labels: np.ndarray) -> Probe:
    """A train-mode forward pass (BN statistics update once) and the gradients of the mean loss."""
    x = tf.convert_to_tensor(x, dtype=model.inputs[0].dtype)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=x.dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=True)
        loss = loss_fn(labels, logits)
    variables = model.trainable_variables
    grads = tape.gradient(loss, [x, *variables])
    by_path = {v.path: g.numpy() for v, g in zip(variables, grads[1:], strict=True)}
    return Probe(logits.numpy(), float(loss), grads[0].numpy(), to_torch_layout(model, by_path))
