"""The Keras twin's input pipeline: `study.core.data`'s batches, for `fit` on any Keras backend.

Mirrors `lightning_impl/data.py`: both serve exactly `study.core.data.epoch_batches` (docs/design.md,
convention 8). Every backend takes a Python generator; TensorFlow keeps its faster path, a `tf.data`
pipeline that prepares the next batches while a step runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np

from study.core import data as datasets
from study.core.recipe import TrainSpec


def one_epoch(
    dataset: datasets.Dataset, train_spec: TrainSpec, dtype: str, epoch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for x, y in datasets.epoch_batches(dataset, train_spec.batch_size, train_spec.seed, epoch, train_spec.augment):
        yield x.astype(dtype), y


def epoch_batches(
    dataset: datasets.Dataset, train_spec: TrainSpec, dtype: str, first_epoch: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of epochs `first_epoch`.. (a resumed run starts at its first unfinished epoch)."""
    for epoch in range(first_epoch, train_spec.epochs):
        yield from one_epoch(dataset, train_spec, dtype, epoch)


def train_batches(dataset: datasets.Dataset, train_spec: TrainSpec, dtype: str, first_epoch: int = 0):
    """What `fit` trains on: `epoch_batches`, as a `tf.data.Dataset` with prefetching on TensorFlow."""
    if keras.backend.backend() != "tensorflow":
        return epoch_batches(dataset, train_spec, dtype, first_epoch)
    return train_dataset(dataset, train_spec, dtype, first_epoch)


def train_dataset(dataset: datasets.Dataset, train_spec: TrainSpec, dtype: str, first_epoch: int = 0):
    """`epoch_batches` as a prefetching `tf.data.Dataset` (TensorFlow only)."""
    import tensorflow as tf

    h, w, c = dataset.input_shape
    signature = (tf.TensorSpec((None, h, w, c), dtype), tf.TensorSpec((None,), tf.int64))

    def batches_of(epoch):
        yield from one_epoch(dataset, train_spec, dtype, int(epoch))

    epochs = tf.data.Dataset.range(first_epoch, train_spec.epochs)
    batches = epochs.flat_map(
        lambda e: tf.data.Dataset.from_generator(batches_of, output_signature=signature, args=(e,))
    )
    # A fixed prefetch, and tf.data's autotuning off: deleting an autotuned iterator waits for its
    # model thread, which sleeps between optimizations for up to a minute; in the study's workers
    # `fit` sat idle 1-40 s after its last epoch for it (native stacks of a worker during the wait:
    # ~RootDataset::Iterator -> UnboundedThreadPool thread wrapper). Two batches keep a step fed.
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(2).with_options(options)
