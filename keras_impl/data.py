"""The Keras twin's input pipeline: `study.core.data`'s batches as a `tf.data.Dataset`.

Mirrors `lightning_impl/data.py`: both serve exactly `study.core.data.epoch_batches` (docs/design.md,
convention 8).
"""

from __future__ import annotations

import tensorflow as tf

from study.core import data as datasets
from study.core.spec import TrainSpec


def train_dataset(
    dataset: datasets.Dataset, train_spec: TrainSpec, dtype: str, first_epoch: int = 0
) -> tf.data.Dataset:
    """The batches of epochs `first_epoch`.. in `study.core.data.epoch_batches` order: the same batches
    as the torch twin (a resumed run starts at its first unfinished epoch)."""
    h, w, c = dataset.input_shape
    signature = (tf.TensorSpec((None, h, w, c), dtype), tf.TensorSpec((None,), tf.int64))

    def one_epoch(epoch):
        for x, y in datasets.epoch_batches(
            dataset, train_spec.batch_size, train_spec.seed, int(epoch), train_spec.augment
        ):
            yield x.astype(dtype), y

    epochs = tf.data.Dataset.range(first_epoch, train_spec.epochs)
    batches = epochs.flat_map(
        lambda e: tf.data.Dataset.from_generator(one_epoch, output_signature=signature, args=(e,))
    )
    return batches.prefetch(tf.data.AUTOTUNE)
