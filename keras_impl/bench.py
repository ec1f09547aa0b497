"""The raw Keras baseline for `resnet-study bench`: the same network, a minimal `compile` + `fit`.

Keras' own SGD and loss on arrays in memory, nothing else: what the Keras twin's training path
(TorchSGD, the shared data order, callbacks) is measured against, on the same Keras backend.
TensorFlow reads the arrays through a cached `tf.data` pipeline, as its users do.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from keras_impl.models import build
from study.core.recipe import TrainSpec
from study.core.spec import NetworkSpec


class EpochTimer(keras.callbacks.Callback):
    """Seconds from the start to the end of the epoch's training, as the twin's `EpochRecorder` times
    it: `fit`'s own set-up and tear-down (seconds, now and then, after its last step) stay outside."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        float(logs["loss"])  # waits for the last step: JAX dispatches asynchronously
        self.seconds = time.perf_counter() - self.start


def reset_peak_memory() -> None:
    """Start the GPU allocator's peak afresh where the backend can (TensorFlow, torch; not JAX)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()


class RawLoop:
    """One model and its data; each call times one pass over the data (seconds)."""

    def __init__(
        self,
        spec: NetworkSpec,
        train_spec: TrainSpec,
        x: np.ndarray,
        y: np.ndarray,
        device: str,
        precision: str,
        compile: bool = False,
    ):
        """Keras' defaults throughout (its `jit_compile="auto"` included); `compile` is the torch twin's option."""
        reset_peak_memory()
        self.model = build(spec, "mixed_bfloat16" if precision == "bf16" else "float32")
        self.model.compile(
            optimizer=keras.optimizers.SGD(train_spec.lr, momentum=train_spec.momentum),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        self.batch_size = train_spec.batch_size
        self.x, self.y = x, y
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            self.data = tf.data.Dataset.from_tensor_slices((x, y)).batch(self.batch_size).cache()
            self.data = self.data.prefetch(tf.data.AUTOTUNE)

    def _inputs(self) -> dict:
        if keras.backend.backend() == "tensorflow":
            return {"x": self.data}
        return {"x": self.x, "y": self.y, "batch_size": self.batch_size}

    def train_epoch(self) -> float:
        timer = EpochTimer()
        self.model.fit(**self._inputs(), epochs=1, verbose=0, shuffle=False, callbacks=[timer])
        return timer.seconds

    def infer_epoch(self) -> float:
        inputs = self._inputs()
        inputs.pop("y", None)
        start = time.perf_counter()
        self.model.predict(**inputs, verbose=0)
        return time.perf_counter() - start

    def peak_memory_mb(self) -> float | None:
        """Peak GPU memory since this loop was made (None on CPU, where the process RSS counts; on JAX,
        which cannot reset its peak, since the process started)."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_logical_devices("GPU")
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpus else None
        if backend == "torch":
            import torch

            return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        import jax

        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        stats = gpus[0].memory_stats() if gpus else None
        return stats["peak_bytes_in_use"] / 2**20 if stats else None
