"""Initial weights generated once, in NumPy, from the spec and a seed: both twins start from them.

docs/design.md, convention 10: generate weights once and port them, rather than trusting two RNGs to agree. The same
seed therefore gives the Keras and the Lightning twin the same initial network (and
`study.core.data.epoch_batches` the same batches), so a study can compare the twins run by run.

The distributions are the twins' own `build` initializers: He normal with fan_out for convolutions
(std sqrt(2 / (k*k*out_channels)), as torchvision), BN gamma 1 and beta 0 with running mean 0 and
variance 1, classifier weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
"""

from __future__ import annotations

import math

import numpy as np

from study.core.spec import NetworkSpec


def state_keys(spec: NetworkSpec) -> list[str]:
    """The keys of `spec`'s torch-layout state dict, in `initial_state`'s order."""
    keys = []
    for layer in spec.layers():
        keys.append(f"{layer.name}.weight")
        if layer.batch_norm:
            keys += [f"{layer.bn_name}.{name}" for name in ("weight", "bias", "running_mean", "running_var")]
    return [*keys, "fc.weight", "fc.bias"]


def restrict_state(state: dict[str, np.ndarray], spec: NetworkSpec) -> dict[str, np.ndarray]:
    """The entries of a (trained) state dict that `spec` has: a lesioned network's weights from the whole one's."""
    return {key: state[key] for key in state_keys(spec)}


def initial_state(spec: NetworkSpec, seed: int) -> dict[str, np.ndarray]:
    """A torch-layout state dict (conv kernels OIHW, float64) for `spec`, determined by `seed`."""
    rng = np.random.default_rng([seed, 0x1A17])
    state: dict[str, np.ndarray] = {}
    for layer in spec.layers():
        std = math.sqrt(2.0 / (layer.kernel * layer.kernel * layer.out_channels))
        shape = (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
        state[f"{layer.name}.weight"] = rng.normal(0.0, std, size=shape)
        if layer.batch_norm:
            c = layer.out_channels
            state |= {
                f"{layer.bn_name}.weight": np.ones(c),
                f"{layer.bn_name}.bias": np.zeros(c),
                f"{layer.bn_name}.running_mean": np.zeros(c),
                f"{layer.bn_name}.running_var": np.ones(c),
            }
    bound = 1.0 / math.sqrt(spec.feature_channels)
    state["fc.weight"] = rng.uniform(-bound, bound, size=(spec.classes, spec.feature_channels))
    state["fc.bias"] = rng.uniform(-bound, bound, size=spec.classes)
    return state
