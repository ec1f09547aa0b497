"""The Keras twin as the study sees it: this module implements `study.core.twin.Twin`."""

from __future__ import annotations

import tensorflow as tf

from keras_impl.bench import RawLoop as raw_loop
from keras_impl.models import build, count_macs, count_trainable_params
from keras_impl.port import checkpoint_state, load_torch_state, to_torch_state
from keras_impl.probe import block_gradients, forward, forward_backward
from keras_impl.training import train

NAME = "keras"
PACKAGES = ("tensorflow", "keras")


def gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def gpu_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "") if gpus else ""


def use_cpu_only() -> None:
    """TensorFlow places ops on a visible GPU by itself: hide them."""
    tf.config.set_visible_devices([], "GPU")


def full_precision_matmuls() -> None:
    tf.config.experimental.enable_tensor_float_32_execution(False)  # TensorFlow enables TF32 by default


def set_threads(threads: int) -> None:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


__all__ = [
    "block_gradients",
    "checkpoint_state",
    "NAME",
    "PACKAGES",
    "build",
    "count_macs",
    "count_trainable_params",
    "forward",
    "forward_backward",
    "full_precision_matmuls",
    "gpu_count",
    "gpu_name",
    "load_torch_state",
    "raw_loop",
    "set_threads",
    "to_torch_state",
    "train",
    "use_cpu_only",
]
