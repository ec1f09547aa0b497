"""One forward (and backward) pass of the torch twin, returned as NumPy in the torch layout.

The mirror of `keras_impl.probe`: it takes and returns NHWC arrays like the Keras twin, so callers
compare the two without knowing either framework.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_impl.data import to_nchw
from study.core.probe import Probe


def _to_nchw(model: nn.Module, x: np.ndarray) -> torch.Tensor:
    param = next(model.parameters())
    return to_nchw(x, param.device, param.dtype)


def forward(model: nn.Module, x: np.ndarray, training: bool) -> np.ndarray:
    """Logits; ``training=True`` uses (and updates) batch statistics in BN."""
    model.train(training)
    with torch.no_grad():
        return model(_to_nchw(model, x)).cpu().numpy()


def forward_backward(model: nn.Module, x: np.ndarray, labels: np.ndarray) -> Probe:
    """A train-mode forward pass (BN statistics update once) and the gradients of the mean loss."""
    model.train()
    model.zero_grad(set_to_none=True)
    inputs = _to_nchw(model, x).requires_grad_(True)
    logits = model(inputs)
    loss = F.cross_entropy(logits, torch.from_numpy(labels).long().to(logits.device))
    loss.backward()
    grads = {name: p.grad.detach().cpu().numpy().copy() for name, p in model.named_parameters()}
    input_grad = inputs.grad.detach().cpu().numpy().transpose(0, 2, 3, 1)
    return Probe(logits.detach().cpu().numpy(), float(loss.detach()), np.ascontiguousarray(input_grad), grads)


def block_gradients(model: nn.Module, x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """L2 norms of d(mean loss)/d(the stem's output) ("stem") and d(mean loss)/d(each block's output)
    (by block name), from one train-mode pass: a block's input is the previous entry's output.
    For whole networks (no deleted blocks)."""
    model.train()
    model.zero_grad(set_to_none=True)
    outputs: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, inputs, output):
            output.retain_grad()
            outputs[name] = output

        return hook

    modules = {"stem": model.maxpool} | {
        f"layer{stage}.{index}": block
        for stage in range(1, model.num_stages + 1)
        for index, block in enumerate(getattr(model, f"layer{stage}"))
    }
    handles = [module.register_forward_hook(keep(name)) for name, module in modules.items()]
    try:
        logits = model(_to_nchw(model, x))
        F.cross_entropy(logits, torch.from_numpy(labels).long().to(logits.device)).backward()
    finally:
        for handle in handles:
            handle.remove()
    return {name: float(outputs[name].grad.norm()) for name in modules}
