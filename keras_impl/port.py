"""Lossless weight port between the Keras twin and torch state-dict layout, and its checkpoints.

The interchange format is a torch state dict as NumPy arrays (`dict[str, np.ndarray]`, keys like
``layer1.0.conv1.weight``, conv kernels OIHW), so this module needs no torch. A round trip
torch -> Keras -> torch is bitwise equal: only transposes and exact copies happen here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
from keras.src.utils import module_utils

from keras_impl.layers import BatchNormalization
from keras_impl.models import torch_name
from study.core.errors import CheckpointError

CHECKPOINT = "model.keras"  # the trained model, compiled, with its optimizer state: written when training ends
RESUME_POINT = "resume.npz"  # the training state after the last completed epoch, while a run trains

# Keras variable -> torch state-dict suffix, per layer type (docs/design.md, convention 3: kernel layouts).
_BN_VARIABLES = (
    ("gamma", "weight"),
    ("beta", "bias"),
    ("moving_mean", "running_mean"),
    ("moving_variance", "running_var"),
)


def _layer_entries(layer: keras.layers.Layer):
    module = torch_name(layer.name)
    if isinstance(layer, keras.layers.Conv2D) and not layer.use_bias:
        # Keras HWIO <-> torch OIHW.
        yield layer.kernel, f"{module}.weight", (3, 2, 0, 1), (2, 3, 1, 0)
    elif isinstance(layer, BatchNormalization):
        for attr, suffix in _BN_VARIABLES:
            yield getattr(layer, attr), f"{module}.{suffix}", None, None
    elif isinstance(layer, keras.layers.Dense):
        yield layer.kernel, f"{module}.weight", (1, 0), (1, 0)  # (in, out) <-> (out, in)
        yield layer.bias, f"{module}.bias", None, None


def _entries(model: keras.Model):
    """(keras variable, torch key, keras->torch transform, torch->keras transform) for every weight.

    Every variable of the model must be mapped: a conv with a bias, say, has no torch counterpart.
    """
    for layer in model.layers:
        entries = list(_layer_entries(layer))
        if len(entries) != len(layer.weights):
            raise TypeError(
                f"no torch mapping for the weights of Keras layer {layer.name!r} "
                f"({type(layer).__name__} with {[w.name for w in layer.weights]})"
            )
        yield from entries


def to_torch_layout(model: keras.Model, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-variable arrays (keyed by Keras variable path, e.g. gradients) re-keyed and laid out as torch's."""
    out = {}
    for variable, key, to_torch, _ in _entries(model):
        if variable.path in values:
            value = np.asarray(values[variable.path])
            out[key] = np.ascontiguousarray(value.transpose(to_torch) if to_torch else value)
    return out


def to_torch_state(model: keras.Model) -> dict[str, np.ndarray]:
    """The model's weights and BN statistics as a torch state dict of NumPy arrays."""
    return to_torch_layout(model, {v.path: keras.ops.convert_to_numpy(v) for v in model.weights})


def load_torch_state(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Assign a torch state dict (NumPy arrays) to the model; keys must match exactly.

    ``num_batches_tracked`` buffers are ignored: with a fixed BN momentum torch does not use them.
    """
    entries = list(_entries(model))
    wanted = {key for _, key, _, _ in entries}
    given = {key for key in state if not key.endswith("num_batches_tracked")}
    if wanted != given:
        missing, unexpected = sorted(wanted - given), sorted(given - wanted)
        raise ValueError(f"state dict does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for variable, key, _, to_keras in entries:
        value = np.asarray(state[key])
        value = value.transpose(to_keras) if to_keras else value
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{key}: shape {value.shape} does not fit Keras variable of shape {variable.shape}")
        variable.assign(value.astype(variable.dtype))


def save_checkpoint(model: keras.Model, path) -> None:
    """`model.save(path)`, without importing TensorFlow on the JAX and PyTorch backends.

    Keras 3.15.1's serializer asks `tf.available` for every object it writes, to test whether it is a
    `tf.TensorShape`, `tf.DType` or `tf.TypeSpec` (`keras/src/saving/serialization_lib.py`); `available`
    imports TensorFlow wherever it is installed, whatever the backend, and the process keeps it:
    +460 MB of host memory for a Keras-on-PyTorch run (730 MB peak). Where TensorFlow is not imported,
    no object can be of its types, so "not available" is the exact answer for this save; Keras' own
    answer (not yet asked) is restored after it. Only `keras.src`'s lazy module is touched, and only
    where it has the form this relies on; otherwise Keras saves as it does.
    """
    lazy = getattr(module_utils, "tensorflow", None)
    spared = (
        "tensorflow" not in sys.modules
        and isinstance(lazy, module_utils.LazyModule)
        and getattr(lazy, "_available", False) is None
    )
    if spared:
        lazy._available = False
    try:
        model.save(path)
    finally:
        if spared:
            lazy._available = None


def checkpoint_state(path) -> dict[str, np.ndarray]:
    """The trained network's state dict from a run's Keras checkpoint (`.keras`, saved compiled),
    loaded in Keras' safe mode (no lambda or other code deserialized); `CheckpointError` naming the
    file where it is unreadable."""
    import keras_impl.optim  # noqa: F401  (registers the optimizer for loading)

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # a truncated zip, a crafted config, missing weights: Keras raises many types
        raise CheckpointError(f"{path}: not a readable Keras checkpoint ({type(error).__name__})") from None
    return to_torch_state(model)


def resume_problem(out_dir) -> tuple[Path, str] | None:
    """The run's resume point (`RESUME_POINT`) if it cannot be loaded safely (a NumPy
    archive read without pickles: its arrays and its records' JSON), and why."""
    path = Path(out_dir) / RESUME_POINT
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            json.loads(str(archive["records"]))
            if not any(name.startswith("model/") for name in archive.files):
                return path, "not a resume point (no model variables)"
    except Exception as error:  # a truncated or crafted archive
        return path, f"not a readable resume point ({type(error).__name__})"
    return None
