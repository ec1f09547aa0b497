"""Keras twin training: the callbacks and `train` (`model.fit`), implementing `study.core.spec.TrainSpec`
on every Keras backend (TensorFlow, JAX, PyTorch).

Mirrors `lightning_impl/training.py`. The backbone from `keras_impl.models.build` is compiled with
Keras' own loss and metrics (cross-entropy on logits, accuracy; Keras weights each batch's loss by its
size) and `keras_impl.optim.TorchSGD`, which also keeps the per-layer gradient norms; `fit` runs Keras'
standard train and test steps, so the same code trains on every backend. The input pipeline is in
`keras_impl.data`; what differs between the backends (distribution, determinism) is here.
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
from keras import ops

from keras_impl.data import train_batches
from keras_impl.layers import FLOAT64_DEMOTED, reduce_mean
from keras_impl.models import keras_name
from keras_impl.optim import make_optimizer
from keras_impl.port import CHECKPOINT, RESUME_POINT, load_torch_state, save_checkpoint
from study.core import data as datasets
from study.core.errors import UserError
from study.core.init import initial_state
from study.core.recipe import TrainSpec
from study.core.records import FLOAT64, EpochRecord, RunContext, TrainOutcome, weighted_layer_names
from study.core.spec import NetworkSpec

DTYPE_POLICY = {"32": "float32", "bf16": "mixed_bfloat16", FLOAT64: "float64"}  # run.precision -> Keras'


@keras.saving.register_keras_serializable(package="resnet_study")
class CrossEntropy(keras.losses.Loss):
    """Keras' sparse categorical cross-entropy on logits, its batch mean taken by `reduce_mean`.

    Keras' own loss divides the batch's sum with `ops.divide_no_nan`, which computes float64 in float32
    on torch (`keras_impl.layers.FLOAT64_DEMOTED`): `cross_entropy` uses this one there.
    """

    def __init__(self, name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction="none", dtype=dtype)

    def call(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return reduce_mean(super().__call__(y_true, y_pred, sample_weight))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def cross_entropy(dtype: str) -> keras.losses.Loss:
    """The training loss, the batch's mean cross-entropy on logits, computed in `dtype`."""
    if FLOAT64_DEMOTED and dtype == "float64":
        return CrossEntropy(dtype=dtype)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)


@keras.saving.register_keras_serializable(package="resnet_study")
class StepLoss(keras.metrics.Metric):
    """The last batch's mean cross-entropy (`RunContext.trace_steps`: every step's loss, for the
    agreement checks); Keras' own loss in the logs is the epoch's running mean."""

    def __init__(self, name="step_loss", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.value = self.add_variable((), initializer="zeros", name="value")

    def update_state(self, y_true, y_pred, sample_weight=None):
        losses = keras.losses.sparse_categorical_crossentropy(y_true, ops.cast(y_pred, self.dtype), from_logits=True)
        self.value.assign(reduce_mean(losses))

    def result(self):
        return ops.convert_to_tensor(self.value)  # a tensor, not the variable: JAX traces it

    def reset_state(self):
        self.value.assign(ops.zeros((), self.dtype))


class EpochRecorder(keras.callbacks.Callback):
    """Turns Keras logs into `EpochRecord`s, saves the resume point (`save_resume_point`), publishes
    the record (`RunContext.publish`), measures time and throughput, and stops training when the
    epoch's loss is NaN/inf (as `keras.callbacks.TerminateOnNaN` does per step, but recording that the
    run diverged). No per-step hook: that would sync every step."""

    def __init__(self, run: RunContext, layer_names: list[str], records: list[EpochRecord] | None = None):
        super().__init__()
        self.run, self.layer_names = run, layer_names
        self.records: list[EpochRecord] = list(records or [])
        self.diverged = False

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_test_begin(self, logs=None):  # fit's validation starts: the epoch's training is done
        # Reading the metrics waits for the epoch's last step, which JAX may still be computing (it
        # dispatches asynchronously): only then is the training time known.
        self.train_means = running_means(self.model)
        self.train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if not np.isfinite(logs["loss"]):
            self.diverged = self.model.stop_training = True
            return
        grad_norms = [ops.convert_to_numpy(norm) for norm in self.model.optimizer.grad_norms]
        train, test = self.train_means, running_means(self.model)  # the metrics now hold the test pass
        record = self.run.record(
            epoch=epoch,
            train_loss=train["loss"],
            train_error=1.0 - train["accuracy"],
            test_loss=test["loss"],
            test_error=1.0 - test["accuracy"],
            wall_s=time.perf_counter() - self.start,
            train_s=self.train_end - self.start,
            grad_norms=dict(zip(self.layer_names, map(float, grad_norms), strict=True)),
        )
        self.records.append(record)
        save_resume_point(self.model, self.records, self.run.out_dir / RESUME_POINT)
        self.run.publish(record)


def running_means(model: keras.Model) -> dict[str, float]:
    """Each mean metric of the compiled model (the loss, the accuracy) as its total over its count,
    divided in NumPy in the metric's dtype.

    The same number as the metric's `result()`, which divides with `ops.divide_no_nan`: that computes
    float64 in float32 on Keras' torch backend (`keras_impl.layers.FLOAT64_DEMOTED`), NumPy does not.
    """
    means = {}

    def visit(metrics):
        for metric in metrics:
            if isinstance(metric, keras.metrics.Mean):
                total, count = ops.convert_to_numpy(metric.total), ops.convert_to_numpy(metric.count)
                means[metric.name] = float(total / count)
            else:  # Keras' container of the compiled metrics
                visit(getattr(metric, "metrics", []))

    visit(model.metrics)
    return means


def save_resume_point(model: keras.Model, records: list[EpochRecord], path: Path) -> None:
    """Every variable of the training model and its optimizer (the step count, so the LR schedule, and
    the momentum buffers) with the records so far, in one file, renamed into place.

    A NumPy archive rather than Keras' `save_weights`: the same content, but 0.04 s instead of 0.27 s
    for plain-56 (measured), and it is written after every epoch.
    """
    arrays = {f"model/{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays |= {f"optimizer/{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
    arrays["records"] = np.array(json.dumps([dataclasses.asdict(record) for record in records]))
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, path)
    except BaseException:  # a full disk: nothing half-written stays behind
        temporary.unlink(missing_ok=True)
        raise


def load_resume_point(model: keras.Model, path: Path) -> list[EpochRecord]:
    """Assign a resume point's variables to the (same) training model; returns its records."""
    with np.load(path, allow_pickle=False) as archive:
        for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
            for i, variable in enumerate(variables):
                variable.assign(archive[f"{prefix}/{i}"])
        return [EpochRecord(**record) for record in json.loads(str(archive["records"]))]


class StepTracer(keras.callbacks.Callback):
    """Every step's loss (`RunContext.trace_steps`, for `study.measure.numerics`); syncs each step."""

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["step_loss"]))


def distribution(run: RunContext):
    """The context to build and compile in: one device, or data parallel over `run.devices`.

    TensorFlow: a MirroredStrategy over GPUs or logical CPU devices; each replica normalizes with its
    own share of the batch (as torch DDP on CPU). JAX: `keras.distribution.DataParallel`, one program
    over the devices' shards (BN statistics over the global batch). PyTorch: one device only.
    """
    if run.devices <= 1:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return mirrored_strategy(run).scope()
    if backend == "jax":
        devices = keras.distribution.list_devices("gpu" if run.device == "gpu" else "cpu")
        if len(devices) < run.devices:
            raise UserError(f"--devices {run.devices}: JAX sees {len(devices)} {run.device.upper()} device(s)")
        return keras.distribution.DataParallel(devices=devices[: run.devices]).scope()
    raise UserError(
        f"--devices {run.devices}: Keras on {backend} trains on one device; use keras, keras-jax or lightning"
    )


def mirrored_strategy(run: RunContext):
    """A MirroredStrategy over `run.devices` GPUs or logical CPU devices (TensorFlow). Each replica
    takes its share of every global batch (Keras splits the batches) and normalizes with its own batch
    statistics (BN is not synchronized, as in Keras' default and torch DDP on CPU)."""
    import tensorflow as tf

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
    spec: NetworkSpec, train_spec: TrainSpec, steps_per_epoch: int, backbone: keras.Model, dtype: str, run: RunContext
) -> keras.Model:
    """`backbone` compiled with the recipe: cross-entropy on logits, accuracy, torch's SGD."""
    variable_dtype = keras.DTypePolicy(dtype).variable_dtype
    metric_dtype = "float64" if variable_dtype == "float64" else "float32"  # float64 runs: float64 means too
    track = tuple(f"{keras_name(name)}/kernel" for name in weighted_layer_names(spec))
    optimizer = make_optimizer(train_spec, steps_per_epoch, variable_dtype, track)
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy", dtype=metric_dtype)]
    with floatx(metric_dtype):  # Keras creates its loss tracker (a Mean) at compile time, in floatx
        backbone.compile(
            optimizer=optimizer,
            loss=cross_entropy(metric_dtype),
            metrics=[*metrics, StepLoss(dtype=metric_dtype)] if run.trace_steps else metrics,
            # XLA on TensorFlow only on GPUs: on CPUs it loses oneDNN's convolutions (measured: 40 % slower
            # for resnet20); JAX always compiles; Keras' torch backend runs eagerly.
            jit_compile=run.device == "gpu" if keras.backend.backend() == "tensorflow" else "auto",
        )
    # Create the optimizer's variables now: created inside the first traced step, they make
    # tf.function trace that step twice (seconds for a deep net).
    optimizer.build(backbone.trainable_variables)
    return backbone


@contextlib.contextmanager
def floatx(dtype: str):
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


# Tracing the train and test steps of a deep net costs seconds (plain-56 on one CPU thread: ~5 s, five
# times one epoch on digits), and a study worker trains the same network seed after seed. Such a
# process keeps the compiled model of the last few networks and starts each new run by assigning the
# new initial weights and zeroing the optimizer's state: the same traced graph computes the same
# numbers as a fresh model (tests/test_training.py).
_COMPILED: dict[tuple, keras.Model] = {}
_COMPILED_KEEP = 8


def compiled_training_model(
    spec: NetworkSpec, train_spec: TrainSpec, steps_per_epoch: int, dtype: str, run: RunContext
) -> keras.Model:
    """A compiled model of `spec` holding the seed's initial weights and a fresh optimizer state,
    reused from an earlier run of this process where the network and recipe (all but the seed) match."""
    import keras_impl.models as models

    key = (spec, dataclasses.replace(train_spec, seed=0), steps_per_epoch, dtype, run.device, run.trace_steps)
    model = _COMPILED.pop(key, None)
    if model is None:
        model = make_training_model(spec, train_spec, steps_per_epoch, models.build(spec, dtype), dtype, run)
    else:
        for variable in model.optimizer.variables:  # the step count, the momentum buffers, the norms
            variable.assign(ops.zeros(variable.shape, variable.dtype))
    load_torch_state(model, initial_state(spec, train_spec.seed))  # the same start as the torch twin
    _COMPILED[key] = model
    while len(_COMPILED) > _COMPILED_KEEP:
        _COMPILED.pop(next(iter(_COMPILED)))
    return model


def deterministic() -> None:
    """The same numbers for the same seed and thread count (JAX and Keras' torch backend are on CPUs)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def train(
    spec: NetworkSpec,
    dataset: datasets.Dataset,
    run: RunContext,
    backbone: keras.Model | None = None,
    verbose: int = 1,
) -> TrainOutcome:
    """Train `spec` (or the given backbone, e.g. with ported weights) on `dataset` with `run.train_spec`."""
    import keras_impl.models as models

    train_spec, steps = run.train_spec, run.steps_per_epoch
    dtype = DTYPE_POLICY[run.precision]
    # No keras.utils.set_random_seed: nothing here draws random numbers (the weights come from
    # study.core.init, the batches from study.core.data), and reseeding clears TensorFlow's function
    # caches, which makes every run build its graphs again.
    deterministic()
    if backbone is None and run.devices <= 1:
        model = compiled_training_model(spec, train_spec, steps, dtype, run)
    else:
        with distribution(run):
            if backbone is None:
                backbone = models.build(spec, dtype)
                load_torch_state(backbone, initial_state(spec, train_spec.seed))  # the same start as the torch twin
            model = make_training_model(spec, train_spec, steps, backbone, dtype, run)
    resume_point = run.out_dir / RESUME_POINT
    records = load_resume_point(model, resume_point) if run.resume and resume_point.exists() else []
    recorder, tracer = EpochRecorder(run, weighted_layer_names(spec), records), StepTracer()
    callbacks = [recorder, tracer] if run.trace_steps else [recorder]
    input_dtype = keras.DTypePolicy(dtype).variable_dtype
    model.fit(
        train_batches(dataset, train_spec, input_dtype, first_epoch=len(records)),
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
    partial = checkpoint.with_name(f".partial-{checkpoint.name}")  # Keras wants the .keras suffix
    try:
        save_checkpoint(model, partial)  # the whole training state, optimizer included, as Lightning's checkpoint
        os.replace(partial, checkpoint)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    # The resume point stays until the run's summary is written: a run killed before then resumes
    # from it (with every epoch done, it only saves the checkpoint again) instead of from epoch 0.
    return TrainOutcome(
        recorder.records, recorder.diverged, checkpoint, tracer.losses, len(records), transient=(resume_point,)
    )
