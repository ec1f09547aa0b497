"""One forward (and backward) pass of the Keras twin, returned as NumPy in the torch twin's layout.

The mirror of `lightning_impl.probe`: `study.measure.numerics` compares the two, `study.measure.gradflow` and
`study.verdicts.norm_preservation` read gradient norms from either. Inputs are NHWC float arrays, labels int class
indices. Keras 3 has no backend-neutral gradient, so each backend's autodiff is called here:
TensorFlow's tape, `jax.vjp`, torch's autograd — on the same Keras model and loss.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from keras_impl.layers import at_least_float32, reduce_mean
from keras_impl.models import torch_name
from keras_impl.port import to_torch_layout
from study.core.probe import Probe

BLOCK_OUTPUT = re.compile(r"layer\d+_\d+_act")  # a whole block's last layer (`keras_impl.models.apply_block`)


def forward(model: keras.Model, x: np.ndarray, training: bool) -> np.ndarray:
    """Logits; ``training=True`` uses (and updates) batch statistics in BN."""
    return ops.convert_to_numpy(model(x, training=training))


def _loss(labels: np.ndarray, logits):
    """Mean cross-entropy on logits, in the logits' precision (float32 at least)."""
    dtype = at_least_float32(logits.dtype)
    return reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, ops.cast(logits, dtype), from_logits=True))


def vjp_chain(parts: list[Callable], x, labels: np.ndarray) -> tuple[list, object, object]:
    """Run `parts` one after the other on `x` and backpropagate the mean loss of the last one's output
    (the logits): returns the gradient at every part's input and output (``grads[0]`` at `x`,
    ``grads[i]`` at part i's output), the logits and the loss, with this backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = [x]
            for part in parts:
                outputs.append(part(outputs[-1]))
            loss = _loss(labels, outputs[-1])
        return tape.gradient(loss, outputs[:-1]), outputs[-1], loss
    if backend == "jax":
        import jax

        outputs, vjps = [x], []
        for part in parts:
            output, vjp = jax.vjp(part, outputs[-1])
            outputs.append(output)
            vjps.append(vjp)
        loss, loss_vjp = jax.vjp(lambda logits: _loss(labels, logits), outputs[-1])
        grad, grads = loss_vjp(ops.ones_like(loss))[0], []
        for vjp in reversed(vjps):
            grad = vjp(grad)[0]
            grads.append(grad)
        return list(reversed(grads)), outputs[-1], loss

    outputs = [x.requires_grad_(True)]
    for part in parts:
        outputs.append(part(outputs[-1]))
        outputs[-1].retain_grad()
    loss = _loss(labels, outputs[-1])
    loss.backward()
    return [output.grad for output in outputs[:-1]], outputs[-1], loss


def forward_backward(model: keras.Model, x: np.ndarray, labels: np.ndarray) -> Probe:
    """A train-mode forward pass (BN statistics update once) and the gradients of the mean loss."""
    x = ops.convert_to_tensor(x, dtype=model.inputs[0].dtype)
    variables = model.trainable_variables
    if keras.backend.backend() == "jax":
        import jax

        frozen = [v.value for v in model.non_trainable_variables]

        def loss_of(x, values):
            logits, updated = model.stateless_call(values, frozen, x, training=True)
            return _loss(labels, logits), (logits, updated)

        (loss, (logits, updated)), (input_grad, grads) = jax.value_and_grad(loss_of, (0, 1), has_aux=True)(
            x, [v.value for v in variables]
        )
        for variable, value in zip(model.non_trainable_variables, updated, strict=True):
            variable.assign(value)  # the pass's BN statistics, as on the other backends
    else:
        (input_grad, *grads), logits, loss = _input_and_weight_gradients(model, x, labels)
    by_path = {v.path: ops.convert_to_numpy(g) for v, g in zip(variables, grads, strict=True)}
    return Probe(
        ops.convert_to_numpy(logits),
        float(ops.convert_to_numpy(loss)),
        ops.convert_to_numpy(input_grad),
        to_torch_layout(model, by_path),
    )


def _input_and_weight_gradients(model: keras.Model, x, labels: np.ndarray):
    """TensorFlow and torch: the gradients at the input and at every trainable variable, the logits and
    the loss of one train-mode pass (which updates the BN statistics, as a training step does)."""
    variables = model.trainable_variables
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=True)
            loss = _loss(labels, logits)
        return tape.gradient(loss, [x, *variables]), logits, loss
    x = x.requires_grad_(True)
    for variable in variables:
        variable.value.grad = None
    logits = model(x, training=True)
    loss = _loss(labels, logits)
    loss.backward()
    return [x.grad, *(variable.value.grad for variable in variables)], logits, loss


def block_gradients(model: keras.Model, x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """L2 norms of d(mean loss)/d(the stem's output) ("stem") and d(mean loss)/d(each block's output)
    (by block name), from one train-mode pass: a block's input is the previous entry's output.
    For whole networks (no deleted blocks)."""
    blocks = [layer.name.removesuffix("_act") for layer in model.layers if BLOCK_OUTPUT.fullmatch(layer.name)]
    stem = "maxpool" if any(layer.name == "maxpool" for layer in model.layers) else "act"
    tensors = [model.get_layer(name).output for name in (stem, *(f"{block}_act" for block in blocks))]
    # The model cut at each block's output: part i maps the previous cut to the next (Keras builds
    # models between intermediate tensors of a functional graph, sharing its layers and weights).
    ends = [model.inputs[0], *tensors, model.outputs[0]]
    parts = [keras.Model(start, end) for start, end in zip(ends[:-1], ends[1:], strict=True)]
    with keras.StatelessScope():  # the pass's BN statistics are not kept
        grads, _, _ = vjp_chain(
            [lambda h, part=part: part(h, training=True) for part in parts],
            ops.convert_to_tensor(x, dtype=model.inputs[0].dtype),
            labels,
        )
    norms = [float(np.linalg.norm(ops.convert_to_numpy(g))) for g in grads[1:]]
    return dict(zip(["stem", *map(torch_name, blocks)], norms, strict=True))
