"""What each twin's `probe.forward_backward` returns: one pass, as NumPy, in torch layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Probe:
    logits: np.ndarray  # (batch, classes)
    loss: float  # mean cross-entropy on logits
    input_grad: np.ndarray  # d loss / d input, NHWC like the input
    param_grads: dict[str, np.ndarray]  # torch state-dict key -> gradient in torch layout (OIHW)
