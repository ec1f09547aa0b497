"""The Keras twin's optimizer and LR schedule: torch's SGD and `TrainSpec`'s per-step schedule.

Mirrors `lightning_impl/optim.py`, which uses torch's own `SGD` and a `LambdaLR` over `TrainSpec.lr_at`.
"""

from __future__ import annotations

import keras
from keras import ops

from study.core.spec import TrainSpec


@keras.saving.register_keras_serializable(package="resnet_study")
class TorchSGD(keras.optimizers.Optimizer):
    """torch.optim.SGD (dampening 0, no Nesterov) in Keras.

    Keras' SGD keeps m = mu * m - lr * g and adds m; torch keeps v = mu * v + g and subtracts lr * v.
    They agree at constant LR and differ right after an LR drop (docs/design.md, convention 5).
    Weight decay is torch's coupled form, g += weight_decay * w, on every trainable variable (Keras'
    own `weight_decay` argument is decoupled: convention 4).
    """

    def __init__(
        self, learning_rate, momentum: float = 0.9, coupled_weight_decay: float = 0.0, name="torch_sgd", **kwargs
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum, self.coupled_weight_decay = momentum, coupled_weight_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = [self.add_variable_from_reference(v, "velocity") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.add(ops.cast(gradient, variable.dtype), ops.multiply(variable, self.coupled_weight_decay))
        velocity = self.velocities[self._get_variable_index(variable)]
        self.assign(velocity, ops.add(ops.multiply(velocity, self.momentum), gradient))
        self.assign_sub(variable, ops.multiply(lr, velocity))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "coupled_weight_decay": self.coupled_weight_decay}


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


def make_optimizer(train_spec: TrainSpec, steps_per_epoch: int, dtype: str) -> TorchSGD:
    """torch's SGD with the recipe's momentum, coupled weight decay and per-step LR schedule.

    `dtype` is the variables' dtype: the schedule's values are cast to it (see `PiecewiseConstant`).
    """
    boundaries, values = train_spec.lr_schedule(steps_per_epoch)
    return TorchSGD(PiecewiseConstant(boundaries, values, dtype), train_spec.momentum, train_spec.weight_decay)
