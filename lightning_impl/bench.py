"""The raw PyTorch baseline for `resnet-study bench`: the same network, a hand-written loop.

zero_grad / forward / backward / step over batches already in memory (on the device), nothing else:
what the Lightning twin's training path is measured against.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from lightning_impl.data import to_nchw
from lightning_impl.models import build
from lightning_impl.training import use_channels_last
from study.core.recipe import TrainSpec
from study.core.spec import NetworkSpec


class RawLoop:
    """One model and its data on `device`; each call times one pass over the data (seconds)."""

    def __init__(
        self,
        spec: NetworkSpec,
        train_spec: TrainSpec,
        x: np.ndarray,
        y: np.ndarray,
        device: str,
        precision: str,
        compile: bool = False,
    ):
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        if self.device.type == "cuda":  # the peak of this measurement (the twin's run included), not of the process
            torch.cuda.reset_peak_memory_stats()
        self.model = build(spec).to(self.device)
        self.channels_last = use_channels_last(precision)  # as the twin does
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if compile else self.model
        self.autocast = precision == "bf16"
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=train_spec.lr,
            momentum=train_spec.momentum,
            weight_decay=train_spec.weight_decay,
        )
        images = to_nchw(x, self.device)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.from_numpy(y).to(self.device)
        b = train_spec.batch_size
        self.batches = [(images[i : i + b], labels[i : i + b]) for i in range(0, len(labels), b)]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def train_epoch(self) -> float:
        self.model.train()
        self._sync()
        start = time.perf_counter()
        for x, y in self.batches:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
                loss = F.cross_entropy(self.forward(x), y)
            loss.backward()
            self.optimizer.step()
        self._sync()
        return time.perf_counter() - start

    def infer_epoch(self) -> float:
        self.model.eval()
        self._sync()
        start = time.perf_counter()
        with torch.no_grad(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
            for x, _ in self.batches:
                self.forward(x)
        self._sync()
        return time.perf_counter() - start

    def peak_memory_mb(self) -> float | None:
        """Peak device memory of the allocator (GPU only; None on CPU, where the process RSS counts)."""
        return torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else None
