"""Gradient flow at initialization: is it the ReLU or the skip?

For plain and residual nets x activation (relu/tanh/sigmoid) x normalization (batch/none) x depth,
measure the L2 norm of the loss gradient of every weighted layer's kernel at initialization (the
study's initial weights, `study.core.init`) on one batch of real data, and fit the per-layer decay rate:
the slope of log10(gradient norm) against the layer's distance from the output. A slope of -0.1
means the gradient shrinks tenfold every 10 layers on its way to the input — the vanishing-gradient
story; residual nets should show a slope near 0 whatever the activation.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
from scipy import stats

from study.core import data as datasets
from study.core.init import initial_state
from study.core.records import weighted_layer_names
from study.core.spec import ACTIVATIONS, ARCHS, NORMS, NetworkSpec
from study.core.twin import load
from study.files import GRADFLOW, GRADFLOW_FIT, write_csv


def measure(
    depths: tuple[int, ...],
    dataset: datasets.Dataset,
    backend: str = "lightning",
    activations=ACTIVATIONS,
    norms=NORMS,
    seeds=(0,),
    batch: int = 128,
) -> tuple[list[dict], list[dict]]:
    """(per-layer rows, per-network fit rows). Layer index 0 is the first conv (next to the input)."""
    twin = load(backend)
    x, y = dataset.x_train[:batch], dataset.y_train[:batch]
    rows, fits = [], []
    for arch, activation, norm, depth, seed in itertools.product(ARCHS, activations, norms, depths, seeds):
        spec = NetworkSpec(
            "cifar", depth, residual=arch == "resnet", activation=activation, norm=norm,
            input_shape=dataset.input_shape, classes=dataset.classes,
        )  # fmt: skip
        model = twin.build(spec)
        twin.load_torch_state(model, initial_state(spec, seed))
        grads = twin.forward_backward(model, x, y).param_grads
        names = weighted_layer_names(spec)
        grad_norms = [float(np.linalg.norm(grads[f"{name}.weight"])) for name in names]
        ident = {"backend": backend, "arch": arch, "activation": activation, "norm": norm, "depth": depth, "seed": seed}
        rows += [
            ident | {"layer_index": i, "layer": n, "grad_norm": g}
            for i, (n, g) in enumerate(zip(names, grad_norms, strict=True))
        ]
        fits.append(ident | fit_decay(grad_norms[:-1]))  # the classifier's gradient is not part of the chain
    return rows, fits


def fit_decay(norms: list[float]) -> dict:
    """Least-squares slope of log10(norm) per layer of distance from the output (scipy linregress).

    Returns slope (log10 units per layer; negative = vanishing towards the input), its standard
    error, r^2, and the ratio of the first layer's norm to the last one's.
    """
    norms = np.asarray(norms, float)
    if len(norms) < 3 or not np.all(norms > 0):
        return {"decay_per_layer": None, "stderr": None, "r2": None, "first_to_last": None}
    distance = np.arange(len(norms))[::-1]  # 0 at the last conv, growing towards the input
    fit = stats.linregress(distance, np.log10(norms))
    return {
        "decay_per_layer": float(fit.slope),
        "stderr": float(fit.stderr),
        "r2": float(fit.rvalue**2) if math.isfinite(fit.rvalue) else None,
        "first_to_last": float(norms[0] / norms[-1]),
    }


def write_gradflow(out: Path, rows: list[dict], fits: list[dict]) -> None:
    write_csv(Path(out) / GRADFLOW, rows)
    write_csv(Path(out) / GRADFLOW_FIT, fits)
