"""The Keras twin as the study sees it: this module implements `study.core.twin.Twin`, on whichever
Keras backend this process runs (`study.core.twin.load` chose it before Keras was imported).

The model, port, probe and training code is backend-neutral; what each backend does differently at
runtime (devices, threads, reduced-precision math) is here.
"""

from __future__ import annotations

import keras

from keras_impl.bench import RawLoop as raw_loop
from keras_impl.models import build, count_macs, count_trainable_params
from keras_impl.port import checkpoint_state, load_torch_state, resume_problem, to_torch_state
from keras_impl.probe import block_gradients, forward, forward_backward
from keras_impl.training import train

BACKEND = keras.backend.backend()  # "tensorflow" | "jax" | "torch"
NAME = {"tensorflow": "keras", "jax": "keras-jax", "torch": "keras-torch"}[BACKEND]
PACKAGES = {"tensorflow": ("tensorflow", "keras"), "jax": ("jax", "jaxlib", "keras"), "torch": ("torch", "keras")}[
    BACKEND
]

if BACKEND == "jax":
    import jax

    # float64 arrays stay float64 (JAX makes them float32 unless told): the agreement checks need it.
    jax.config.update("jax_enable_x64", True)


def _jax_gpus() -> list:
    return [device for device in jax.devices() if device.platform == "gpu"]


def gpu_count() -> int:
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if BACKEND == "jax":
        return len(_jax_gpus())
    import torch

    return torch.cuda.device_count()


def gpu_name() -> str:
    if not gpu_count():
        return ""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get(
            "device_name", ""
        )
    if BACKEND == "jax":
        return _jax_gpus()[0].device_kind
    import torch

    return torch.cuda.get_device_name(0)


def use_cpu_only() -> None:
    """Keep the backend off the GPUs, where it would place work by itself."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    elif BACKEND == "jax":
        jax.config.update("jax_default_device", jax.devices("cpu")[0])
    else:
        import torch

        torch.set_default_device("cpu")


def full_precision_matmuls() -> None:
    """No TF32 (docs/design.md, convention 6): TensorFlow enables it by default, torch for convolutions."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif BACKEND == "jax":
        jax.config.update("jax_default_matmul_precision", "highest")
    else:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def set_threads(threads: int) -> None:
    """CPU threads (JAX's are fixed when it starts: the study's workers set XLA_FLAGS before that)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif BACKEND == "torch":
        import torch

        torch.set_num_threads(threads)


__all__ = [
    "NAME",
    "PACKAGES",
    "block_gradients",
    "build",
    "checkpoint_state",
    "count_macs",
    "count_trainable_params",
    "forward",
    "forward_backward",
    "full_precision_matmuls",
    "gpu_count",
    "gpu_name",
    "load_torch_state",
    "raw_loop",
    "resume_problem",
    "set_threads",
    "to_torch_state",
    "train",
    "use_cpu_only",
]
