"""The Keras twin's optimizer and LR schedule: torch's SGD and `TrainSpec`'s per-step schedule.

Mirrors `lightning_impl/optim.py`, which uses torch's own `SGD` and a `LambdaLR` over `TrainSpec.lr_at`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_impl.layers import l2_norm
from study.core.recipe import TrainSpec


@keras.saving.register_keras_serializable(package="resnet_study")
class TorchSGD(keras.optimizers.Optimizer):
    """torch.optim.SGD (dampening 0, no Nesterov) in Keras.

    Keras' SGD keeps m = mu * m - lr * g and adds m; torch keeps v = mu * v + g and subtracts lr * v.
    They agree at constant LR and differ right after an LR drop (docs/design.md, convention 5).
    Weight decay is torch's coupled form, g += weight_decay * w, on every trainable variable (Keras'
    own `weight_decay` argument is decoupled: convention 4).

    It also keeps, in `grad_norms`, the L2 norm of the loss gradient of the variables named in
    `track` (paths such as ``layer1.0.conv1/kernel``) at the last step of every epoch of
    `steps_per_epoch` steps: Keras' `fit` hands the gradients to the optimizer alone, on every
    backend, so this is where a backend-neutral twin can see them (the torch twin reads them in
    `on_before_optimizer_step`).
    """

    def __init__(
        self,
        learning_rate,
        momentum: float = 0.9,
        coupled_weight_decay: float = 0.0,
        track: tuple[str, ...] = (),
        steps_per_epoch: int = 1,
        name="torch_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum, self.coupled_weight_decay = momentum, coupled_weight_decay
        self.track, self.steps_per_epoch = tuple(track), steps_per_epoch

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = [self.add_variable_from_reference(v, "velocity") for v in variables]
        paths = [v.path for v in variables]
        self._tracked = {paths.index(path): slot for slot, path in enumerate(self.track)}  # variable index -> slot
        self.grad_norms = [
            self.add_variable(
                (), initializer="zeros", dtype=variables[paths.index(path)].dtype, name=f"grad_norm_{slot}"
            )
            for slot, path in enumerate(self.track)
        ]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if index in self._tracked:  # the gradient of the loss, before weight decay joins it
            norm = self.grad_norms[self._tracked[index]]
            last_step = ops.equal((self.iterations + 1) % self.steps_per_epoch, 0)
            self.assign(norm, ops.where(last_step, l2_norm(gradient), ops.convert_to_tensor(norm)))
        # The constants as tensors of the variable's dtype: Keras 3.15 on torch rounds a Python float
        # operand to float32 first (keras_impl.layers.FLOAT64_DEMOTED), which float64 would notice.
        weight_decay = ops.convert_to_tensor(self.coupled_weight_decay, variable.dtype)
        momentum = ops.convert_to_tensor(self.momentum, variable.dtype)
        gradient = ops.add(gradient, ops.multiply(variable, weight_decay))
        velocity = self.velocities[index]
        self.assign(velocity, ops.add(ops.multiply(velocity, momentum), gradient))
        self.assign_sub(variable, ops.multiply(lr, velocity))

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "coupled_weight_decay": self.coupled_weight_decay,
            "track": list(self.track),
            "steps_per_epoch": self.steps_per_epoch,
        }


@keras.saving.register_keras_serializable(package="resnet_study")
class PiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
    """lr = values[i] for boundaries[i-1] <= step < boundaries[i] (`TrainSpec.lr_schedule`, docs/design.md,
    convention 11).

    `dtype` matters: 0.1 as float32 is not 0.1 as float64, and float64 agreement is checked at 1e-8.
    """

    def __init__(self, boundaries, values, dtype="float32"):
        self.boundaries, self.values, self.dtype = list(boundaries), list(values), dtype

    def __call__(self, step):
        index = ops.sum(
            ops.cast(
                ops.greater_equal(ops.cast(step, "int64"), ops.array(self.boundaries or [2**62], "int64")), "int32"
            )
        )
        return ops.take(ops.array(self.values, self.dtype), index)

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "dtype": self.dtype}


def make_optimizer(train_spec: TrainSpec, steps_per_epoch: int, dtype: str, track: tuple[str, ...] = ()) -> TorchSGD:
    """torch's SGD with the recipe's momentum, coupled weight decay and per-step LR schedule, keeping
    the gradient norms of the `track` variables at each epoch's last step.

    `dtype` is the variables' dtype: the schedule's values are cast to it (see `PiecewiseConstant`).
    """
    boundaries, values = train_spec.lr_schedule(steps_per_epoch)
    schedule = PiecewiseConstant(boundaries, values, dtype)
    return TorchSGD(schedule, train_spec.momentum, train_spec.weight_decay, track, steps_per_epoch)
