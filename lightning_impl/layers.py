"""The layer the torch twin needs beyond torch's own; `keras_impl/layers.py` holds the Keras twin's three.

torch's `BatchNorm2d` and `MaxPool2d(padding=p)` already have the semantics the Keras twin
reproduces in its layers; the option A shortcut is the one layer neither framework has.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by the stride, append zero channels after the existing ones
    (docs/design.md, convention 9)."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride, self.extra_channels = stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
