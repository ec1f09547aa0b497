"""Weights of the torch twin as a torch state dict of NumPy arrays: the port's interchange format.

The mirror of `keras_impl.port` (same function names), so code that moves weights between the twins
treats them alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from study.core.errors import CheckpointError

CHECKPOINT = "model.ckpt"  # the run's checkpoint, saved every epoch: the resume point and the result


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


def load_checkpoint(path) -> dict:
    """A Lightning checkpoint as plain tensors and containers (`weights_only`: nothing in it can run,
    whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says); `CheckpointError` naming the file otherwise."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a crafted or truncated file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def resume_problem(out_dir) -> tuple[Path, str] | None:
    """The run's checkpoint (its resume point) if it cannot be loaded safely, and why."""
    path = Path(out_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        return path, str(error).split(": ", 1)[1]
    missing = [k for k in ("epoch", "global_step", "optimizer_states", "lr_schedulers") if k not in checkpoint]
    return (path, f"not a Lightning training checkpoint (no {', '.join(missing)})") if missing else None


def checkpoint_state(path) -> dict[str, np.ndarray]:
    """The trained backbone's state dict from a run's Lightning checkpoint (loaded with weights_only)."""
    checkpoint = load_checkpoint(path)
    prefix = "backbone."
    return {
        key.removeprefix(prefix): value.numpy().copy()
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix) and not key.endswith("num_batches_tracked")
    }
