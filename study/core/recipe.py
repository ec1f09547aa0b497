"""The training recipe both twins implement: `TrainSpec` and its per-step learning rate."""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass

from study.core.spec import SpecError

MAX_SEED = 2**32 - 1  # a seed seeds NumPy's generator: 0 .. 2**32 - 1
# The largest batch any command takes (the paper's 128 and 256; 8192 is the largest single batch of the
# large-batch ImageNet studies): larger ones are refused in one line before anything is allocated.
MAX_BATCH = 8192


@dataclass(frozen=True)
class TrainSpec:
    """The training recipe both twins implement identically (He et al. 2015, section 4.2).

    SGD with heavy-ball momentum in torch's form (v = momentum * v + g; w -= lr * v) and *coupled*
    weight decay (g = dL/dw + weight_decay * w, torch's SGD semantics) on every trainable parameter:
    conv kernels, BN gamma and beta, classifier kernel and bias. The learning rate is a per-step
    piecewise constant: `warmup_lr` for the first `warmup_epochs`, then `lr`, divided by 10 at each
    fraction of the total steps in `lr_milestones` (the paper's 32k and 48k of 64k iterations).
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of all training steps
    lr_drop: float = 0.1  # factor applied at each milestone
    warmup_epochs: float = 0.0  # the paper uses 0.01 for ResNet-110 until the error is below 80%
    warmup_lr: float = 0.01
    augment: bool | None = None  # None: the data set's standard augmentation (CIFAR: pad-4 crop + flip)
    seed: int = 0  # initialization, data order and augmentation

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_milestones", tuple(self.lr_milestones))
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise SpecError(f"epochs must be an integer >= 1; got {self.epochs}")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= MAX_BATCH:
            raise SpecError(f"batch size must be an integer in 1..{MAX_BATCH}; got {self.batch_size}")
        numbers = (self.lr, self.warmup_lr, self.weight_decay, self.momentum, self.lr_drop, self.warmup_epochs)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
            raise SpecError("lr, warmup_lr, weight_decay, momentum, lr_drop and warmup_epochs must be finite numbers")
        if self.lr <= 0 or self.warmup_lr <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise SpecError("lr and warmup_lr must be > 0, weight_decay >= 0 and 0 <= momentum < 1")
        if not 0 < self.lr_drop <= 1:
            raise SpecError(f"lr_drop must be in (0, 1]; got {self.lr_drop}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise SpecError(f"warm-up epochs must be in 0..epochs ({self.epochs}); got {self.warmup_epochs}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise SpecError(f"seed must be an integer in 0..{MAX_SEED}; got {self.seed}")
        if any(not 0 < m < 1 for m in self.lr_milestones) or list(self.lr_milestones) != sorted(self.lr_milestones):
            raise SpecError(f"lr milestones must be increasing fractions in (0, 1); got {self.lr_milestones}")

    def lr_schedule(self, steps_per_epoch: int) -> tuple[list[int], list[float]]:
        """(boundaries, values): lr = values[i] for boundaries[i-1] <= step < boundaries[i], step 0-based."""
        total = self.epochs * steps_per_epoch
        boundaries = [round(m * total) for m in self.lr_milestones]
        values = [self.lr * self.lr_drop**i for i in range(len(boundaries) + 1)]
        warmup = round(self.warmup_epochs * steps_per_epoch)
        if warmup > 0:  # the warm-up LR until it ends, then the schedule's own value from that step on
            passed = bisect.bisect_right(boundaries, warmup)  # the drops the warm-up covers
            boundaries, values = [warmup, *boundaries[passed:]], [self.warmup_lr, *values[passed:]]
        return boundaries, values

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of (0-based) `step`: the torch twin's LambdaLR and every record use it."""
        boundaries, values = self.lr_schedule(steps_per_epoch)
        return values[bisect.bisect_right(boundaries, step)]

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["lr_milestones"] = list(self.lr_milestones)
        return data
