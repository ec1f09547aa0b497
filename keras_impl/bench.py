"""The raw Keras baseline for `resnet-study bench`: the same network, a minimal `compile` + `fit`.

Keras' own SGD and loss on arrays in memory, nothing else: what the Keras twin's training path
(TorchSGD, the shared data order, callbacks) is measured against.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from keras_impl.models import build
from study.core.spec import NetworkSpec, TrainSpec


class EpochTimer(keras.callbacks.Callback):
    """Seconds from the start to the end of the epoch's training, as the twin's `EpochRecorder` times
    it: `fit`'s own set-up and tear-down (seconds, now and then, after its last step) stay outside."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


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
        self.model = build(spec, "mixed_bfloat16" if precision == "bf16" else "float32")
        self.model.compile(
            optimizer=keras.optimizers.SGD(train_spec.lr, momentum=train_spec.momentum),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        self.batch_size = train_spec.batch_size
        self.data = tf.data.Dataset.from_tensor_slices((x, y)).batch(self.batch_size).cache().prefetch(tf.data.AUTOTUNE)
        self.x = x

    def train_epoch(self) -> float:
        timer = EpochTimer()
        self.model.fit(self.data, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
        return timer.seconds

    def infer_epoch(self) -> float:
        start = time.perf_counter()
        self.model.predict(self.data, verbose=0)
        return time.perf_counter() - start

    def peak_memory_mb(self) -> float | None:
        """Peak GPU memory (None on CPU, where the process RSS counts)."""
        if not tf.config.list_logical_devices("GPU"):
            return None
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
