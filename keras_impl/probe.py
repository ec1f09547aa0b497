"""One forward (and backward) pass of the Keras twin, returned as NumPy in the torch twin's layout.

The mirror of `lightning_impl.probe`: `study.agree` compares the two, `study.gradflow` reads
per-layer gradient norms from either. Inputs are NHWC float arrays, labels int class indices.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import tensorflow as tf

from keras_impl.port import to_torch_layout
from study.core.probe import Probe

BLOCK_OUTPUT = re.compile(r"layer\d+\.\d+\.act")  # a whole block's last layer (`keras_impl.models.apply_block`)


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


def block_gradients(model: keras.Model, x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """L2 norms of d(mean loss)/d(the stem's output) ("stem") and d(mean loss)/d(each block's output)
    (by block name), from one train-mode pass: a block's input is the previous entry's output.
    For whole networks (no deleted blocks)."""
    blocks = [layer.name.removesuffix(".act") for layer in model.layers if BLOCK_OUTPUT.fullmatch(layer.name)]
    stem = "maxpool" if any(layer.name == "maxpool" for layer in model.layers) else "act"
    names = [stem, *(f"{block}.act" for block in blocks)]
    taps = keras.Model(model.inputs, [*(model.get_layer(name).output for name in names), model.outputs[0]])
    x = tf.convert_to_tensor(x, dtype=model.inputs[0].dtype)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=x.dtype)
    with tf.GradientTape() as tape:
        *outputs, logits = taps(x, training=True)
        loss = loss_fn(labels, logits)
    grads = tape.gradient(loss, outputs)
    return {name: float(tf.norm(g)) for name, g in zip(["stem", *blocks], grads, strict=True)}
