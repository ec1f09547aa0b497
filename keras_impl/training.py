"""Keras twin training: the wrapper model, the callbacks and `train` (`model.fit`), implementing
`study.core.spec.TrainSpec`.

Mirrors `lightning_impl/training.py`: the backbone from `keras_impl.models.build` is wrapped by a thin
`ClassifierModel` (loss, metrics, per-layer gradient norms), as the LightningModule wraps the torch
backbone. The optimizer and LR schedule are in `keras_impl.optim`, the input pipeline in
`keras_impl.data`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_impl.data import train_dataset
from keras_impl.optim import make_optimizer
from keras_impl.port import load_torch_state
from study.core import data as datasets
from study.core.errors import UserError
from study.core.init import initial_state
from study.core.records import FLOAT64, EpochRecord, RunContext, TrainOutcome, weighted_layer_names
from study.core.spec import NetworkSpec, TrainSpec

CHECKPOINT = "model.keras"  # the trained model with its optimizer state, written when training ends
RESUME_POINT = "resume.npz"  # the training state after the last completed epoch, while a run trains
DTYPE_POLICY = {"32": "float32", "bf16": "mixed_bfloat16", FLOAT64: "float64"}  # run.precision -> Keras'


@keras.saving.register_keras_serializable(package="resnet_study")
class ClassifierModel(keras.Model):
    """Backbone + mean cross-entropy on logits, train/test error, per-layer gradient norms.

    At the last step of every epoch `grad_norms` takes the L2 norm of the loss gradient of each
    weighted layer's kernel (`study.tracking.weighted_layer_names` order), as the torch twin's
    `on_before_optimizer_step` does; other steps skip that work (`tf.cond`).
    """

    def __init__(self, backbone: keras.Model, layer_names: list[str], steps_per_epoch: int, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.layer_names, self.steps_per_epoch = layer_names, steps_per_epoch
        # Metrics and norms in float32, or float64 for a float64 backbone (the agreement checks).
        self.metric_dtype = keras.backend.result_type(backbone.inputs[0].dtype, "float32")
        self.grad_norms = self.add_weight(
            shape=(len(layer_names),),
            initializer="zeros",
            trainable=False,
            name="grad_norms",
            dtype=self.metric_dtype,
            aggregation="only_first_replica",  # replicas hold the same (all-reduced) values
        )
        self.loss_mean = keras.metrics.Mean(name="loss", dtype=self.metric_dtype)
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype=self.metric_dtype)

    def call(self, x, training=False):
        return self.backbone(x, training=training)

    def get_config(self):
        """The backbone, layer names and steps: with the compile config, `model.keras` rebuilds the
        whole training state (`keras.saving.load_model`), optimizer included."""
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "layer_names": self.layer_names,
            "steps_per_epoch": self.steps_per_epoch,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        backbone = keras.saving.deserialize_keras_object(config.pop("backbone"))
        return cls(backbone, **config)

    @property
    def metrics(self):
        return [self.loss_mean, self.accuracy]

    def _loss(self, y, logits):
        logits = ops.cast(logits, keras.backend.result_type(logits.dtype, "float32"))
        return logits, ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))

    def train_step(self, batch):
        x, y = batch
        variables = self.backbone.trainable_variables
        # Under MirroredStrategy each replica sees its share of the global batch and the replicas'
        # gradients are summed: scale each replica's mean loss so the sum is the global mean's gradient.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits, loss = self._loss(y, self(x, training=True))
            scaled = loss / replicas if replicas > 1 else loss
        grads = tape.gradient(scaled, variables)
        last_step = ops.equal((self.optimizer.iterations + 1) % self.steps_per_epoch, 0)
        by_ref = {id(v): g for v, g in zip(variables, grads, strict=True)}
        # Looked up here, not kept as an attribute: Keras tracks attributes' variables, and a list of
        # kernels would come first in `trainable_variables`, an order the saved optimizer state must match.
        kernel_grads = [by_ref[id(self.backbone.get_layer(name).kernel)] for name in self.layer_names]
        if replicas == 1:
            tf.cond(last_step, lambda: self._record_grad_norms(kernel_grads), tf.no_op)
        else:  # the global batch's gradient, as the torch twin's after DDP's all-reduce; a cross-replica
            # assignment may not sit inside tf.cond, so select instead (norms then cost every step)
            kernel_grads = tf.distribute.get_replica_context().all_reduce("sum", kernel_grads)
            self.grad_norms.assign(ops.where(last_step, self._norms(kernel_grads), self.grad_norms))
        self.optimizer.apply(grads, variables)
        return self._update_metrics(x, y, logits, loss) | {"batch_loss": loss}

    def _norms(self, grads):
        return ops.stack([ops.cast(ops.norm(ops.reshape(g, [-1])), self.metric_dtype) for g in grads])

    def _record_grad_norms(self, grads):
        self.grad_norms.assign(self._norms(grads))
        return tf.no_op()

    def test_step(self, batch):
        x, y = batch
        logits, loss = self._loss(y, self(x, training=False))
        return self._update_metrics(x, y, logits, loss)

    def _update_metrics(self, x, y, logits, loss):
        self.loss_mean.update_state(loss, sample_weight=ops.cast(ops.shape(x)[0], loss.dtype))
        self.accuracy.update_state(y, logits)
        return {"loss": self.loss_mean.result(), "accuracy": self.accuracy.result()}


class EpochRecorder(keras.callbacks.Callback):
    """Turns Keras logs into `EpochRecord`s, saves the resume point (`save_resume_point`), publishes
    the record (`RunContext.publish`), measures time and throughput, and stops training when the
    epoch's loss is NaN/inf (as `keras.callbacks.TerminateOnNaN` does per step, but recording that the
    run diverged). No per-step hook: that would sync every step."""

    def __init__(self, run: RunContext, records: list[EpochRecord] | None = None):
        super().__init__()
        self.run = run
        self.records: list[EpochRecord] = list(records or [])
        self.diverged = False

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_test_begin(self, logs=None):  # fit's validation starts: the epoch's training is done
        self.train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if not np.isfinite(logs["loss"]):
            self.diverged = self.model.stop_training = True
            return
        grad_norms = keras.ops.convert_to_numpy(self.model.grad_norms)
        record = self.run.record(
            epoch=epoch,
            train_loss=float(logs["loss"]),
            train_error=1.0 - float(logs["accuracy"]),
            test_loss=float(logs["val_loss"]),
            test_error=1.0 - float(logs["val_accuracy"]),
            wall_s=time.perf_counter() - self.start,
            train_s=self.train_end - self.start,
            grad_norms=dict(zip(self.model.layer_names, map(float, grad_norms), strict=True)),
        )
        self.records.append(record)
        save_resume_point(self.model, self.records, self.run.out_dir / RESUME_POINT)
        self.run.publish(record)


def save_resume_point(model: ClassifierModel, records: list[EpochRecord], path: Path) -> None:
    """Every variable of the training model and its optimizer (the step count, so the LR schedule, and
    the momentum buffers) with the records so far, in one file, renamed into place.

    A NumPy archive rather than Keras' `save_weights`: the same content, but 0.04 s instead of 0.27 s
    for plain-56 (measured), and it is written after every epoch.
    """
    arrays = {f"model/{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays |= {f"optimizer/{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
    arrays["records"] = np.array(json.dumps([dataclasses.asdict(record) for record in records]))
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, path)


def load_resume_point(model: ClassifierModel, path: Path) -> list[EpochRecord]:
    """Assign a resume point's variables to the (same) training model; returns its records."""
    with np.load(path) as archive:
        for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
            for i, variable in enumerate(variables):
                variable.assign(archive[f"{prefix}/{i}"])
        return [EpochRecord(**record) for record in json.loads(str(archive["records"]))]


class StepTracer(keras.callbacks.Callback):
    """Every step's loss (`RunContext.trace_steps`, for `study.agree`); syncs each step."""

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["batch_loss"]))


def distribution_strategy(run: RunContext) -> tf.distribute.Strategy | None:
    """None for one device; else a MirroredStrategy over `run.devices` GPUs or logical CPU devices.

    Each replica takes its share of every global batch (Keras splits the batches) and normalizes with
    its own batch statistics (BN is not synchronized, as in Keras' default and torch DDP on CPU).
    """
    if run.devices <= 1:
        return None
    if run.device == "gpu":
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) < run.devices:
            raise UserError(f"--devices {run.devices}: TensorFlow sees {len(gpus)} GPU(s)")
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus[: run.devices]])
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * run.devices)
    except RuntimeError:  # devices already initialized in this process: usable only if they match
        if len(tf.config.list_logical_devices("CPU")) != run.devices:
            raise UserError("--devices: TensorFlow's CPU devices are already set up in this process") from None
    return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")])


def make_training_model(
    spec: NetworkSpec, train_spec: TrainSpec, steps_per_epoch: int, backbone: keras.Model, dtype: str, xla: bool = False
) -> ClassifierModel:
    model = ClassifierModel(backbone, weighted_layer_names(spec), steps_per_epoch)
    optimizer = make_optimizer(train_spec, steps_per_epoch, keras.DTypePolicy(dtype).variable_dtype)
    model.compile(optimizer=optimizer, jit_compile=xla)
    # Create the optimizer's variables now: created inside the first traced step, they make
    # tf.function trace that step twice (seconds for a deep net).
    optimizer.build(backbone.trainable_variables)
    return model


# Tracing the train and test steps of a deep net costs seconds (plain-56 on one CPU thread: ~5 s, five
# times one epoch on digits), and a study worker trains the same network seed after seed. Such a
# process keeps the compiled model of the last few networks and starts each new run by assigning the
# new initial weights and zeroing the optimizer's state: the same traced graph computes the same
# numbers as a fresh model (tests/test_training.py).
_COMPILED: dict[tuple, ClassifierModel] = {}
_COMPILED_KEEP = 8


def compiled_training_model(
    spec: NetworkSpec, train_spec: TrainSpec, steps_per_epoch: int, dtype: str, xla: bool
) -> ClassifierModel:
    """A compiled training model of `spec` holding the seed's initial weights and a fresh optimizer state,
    reused from an earlier run of this process where the network and recipe (all but the seed) match."""
    import keras_impl.models as models

    key = (spec, dataclasses.replace(train_spec, seed=0), steps_per_epoch, dtype, xla)
    model = _COMPILED.pop(key, None)
    if model is None:
        model = make_training_model(spec, train_spec, steps_per_epoch, models.build(spec, dtype), dtype, xla)
    else:
        for variable in model.optimizer.variables:  # the step count and the momentum buffers
            variable.assign(ops.zeros(variable.shape, variable.dtype))
    load_torch_state(model.backbone, initial_state(spec, train_spec.seed))  # the same start as the torch twin
    _COMPILED[key] = model
    while len(_COMPILED) > _COMPILED_KEEP:
        _COMPILED.pop(next(iter(_COMPILED)))
    return model


def train(
    spec: NetworkSpec,
    train_spec: TrainSpec,
    dataset: datasets.Dataset,
    run: RunContext,
    backbone: keras.Model | None = None,
    verbose: int = 1,
) -> TrainOutcome:
    """Train `spec` (or the given backbone, e.g. with ported weights) on `dataset`."""
    import keras_impl.models as models

    dtype = DTYPE_POLICY[run.precision]
    strategy = distribution_strategy(run)
    # No keras.utils.set_random_seed: nothing here draws random numbers (the weights come from
    # study.core.init, the batches from study.core.data), and reseeding clears TensorFlow's function
    # caches, which makes every run build its graphs again.
    tf.config.experimental.enable_op_determinism()
    steps = datasets.steps_per_epoch(len(dataset.y_train), train_spec.batch_size)
    xla = run.device == "gpu"  # on CPUs XLA loses oneDNN's convolutions (measured: 40 % slower for resnet20)
    if backbone is None and strategy is None:
        model = compiled_training_model(spec, train_spec, steps, dtype, xla)
        backbone = model.backbone
    else:
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            if backbone is None:
                backbone = models.build(spec, dtype)
                load_torch_state(backbone, initial_state(spec, train_spec.seed))  # the same start as the torch twin
            model = make_training_model(spec, train_spec, steps, backbone, dtype, xla)
    resume_point = run.out_dir / RESUME_POINT
    records = load_resume_point(model, resume_point) if run.resume and resume_point.exists() else []
    recorder, tracer = EpochRecorder(run, records), StepTracer()
    callbacks = [recorder, tracer] if run.trace_steps else [recorder]
    input_dtype = keras.DTypePolicy(dtype).variable_dtype
    model.fit(
        train_dataset(dataset, train_spec, input_dtype, first_epoch=len(records)),
        initial_epoch=len(records),  # the data order of epoch e is keyed by e: the same batches follow
        epochs=train_spec.epochs,
        steps_per_epoch=steps,
        validation_data=(dataset.x_test.astype(input_dtype), dataset.y_test),
        validation_batch_size=1000,
        callbacks=callbacks,
        shuffle=False,  # the order is study.core.data's, the same as the torch twin's
        verbose=verbose,
    )
    checkpoint = Path(run.out_dir) / CHECKPOINT
    model.save(checkpoint)  # the whole training state, optimizer included, as Lightning's checkpoint
    resume_point.unlink(missing_ok=True)  # the checkpoint now holds all of it
    return TrainOutcome(recorder.records, recorder.diverged, checkpoint, tracer.losses, len(records))
