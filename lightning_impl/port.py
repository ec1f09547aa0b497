"""Weights of the torch twin as a torch state dict of NumPy arrays: the port's interchange format.

The mirror of `keras_impl.port` (same function names), so code that moves weights between the twins
treats them alike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def to_torch_state(model: nn.Module) -> dict[str, np.ndarray]:
    """Parameters and BN statistics as NumPy arrays (``num_batches_tracked`` left out)."""
    return {
        key: value.detach().cpu().numpy().copy()
        for key, value in model.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }


def load_torch_state(model: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Load NumPy arrays into the model (cast to its dtype); keys must match exactly."""
    own = {key for key in model.state_dict() if not key.endswith("num_batches_tracked")}
    given = {key for key in state if not key.endswith("num_batches_tracked")}
    if own != given:
        missing, unexpected = sorted(own - given), sorted(given - own)
        raise ValueError(f"state dict does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    tensors = {key: torch.from_numpy(np.ascontiguousarray(state[key])) for key in given}
    model.load_state_dict(tensors, strict=False)


def checkpoint_state(path) -> dict[str, np.ndarray]:
    """The trained backbone's state dict from a run's Lightning checkpoint (loaded with weights_only)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "backbone."
    return {
        key.removeprefix(prefix): value.numpy().copy()
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix) and not key.endswith("num_batches_tracked")
    }
