"""The Lightning twin's optimizer and LR schedule: torch's SGD and `TrainSpec`'s per-step schedule.

Mirrors `keras_impl/optim.py`, which reproduces torch's SGD in Keras (`TorchSGD`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from study.core.recipe import TrainSpec


def make_optimizer(parameters: Iterable[torch.nn.Parameter], train_spec: TrainSpec, steps_per_epoch: int) -> dict:
    """torch's SGD (its momentum form and coupled weight decay on every parameter: docs/design.md,
    conventions 4 and 5) and the per-step LR schedule (`TrainSpec.lr_at`, convention 11), as
    `LightningModule.configure_optimizers` returns them."""
    optimizer = torch.optim.SGD(parameters, lr=1.0, momentum=train_spec.momentum, weight_decay=train_spec.weight_decay)
    # base lr 1.0 times the schedule's value: the LR is exactly the schedule's number.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: train_spec.lr_at(step, steps_per_epoch))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
