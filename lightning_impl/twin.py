"""The Lightning twin as the study sees it: this module implements `study.core.twin.Twin`."""

from __future__ import annotations

import torch

from lightning_impl.bench import RawLoop as raw_loop
from lightning_impl.models import build, count_macs, count_trainable_params
from lightning_impl.port import checkpoint_state, load_torch_state, resume_problem, to_torch_state
from lightning_impl.probe import block_gradients, forward, forward_backward
from lightning_impl.training import train

NAME = "lightning"
PACKAGES = ("torch", "pytorch-lightning", "torchmetrics")


def gpu_count() -> int:
    return torch.cuda.device_count()


def gpu_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""


def use_cpu_only() -> None:
    """Nothing to do: the Trainer's accelerator and the bench loop's device choose where torch runs."""


def full_precision_matmuls() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False  # on by default for convolutions


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


__all__ = [
    "block_gradients",
    "checkpoint_state",
    "NAME",
    "PACKAGES",
    "build",
    "count_macs",
    "count_trainable_params",
    "forward",
    "forward_backward",
    "full_precision_matmuls",
    "gpu_count",
    "gpu_name",
    "load_torch_state",
    "raw_loop",
    "resume_problem",
    "set_threads",
    "to_torch_state",
    "train",
    "use_cpu_only",
]
