"""Lazy access to the two twins, so commands that need neither never import TensorFlow or torch."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

BACKENDS = ("keras", "lightning")
_PACKAGES = {"keras": "keras_impl", "lightning": "lightning_impl"}


def load(backend: str) -> SimpleNamespace:
    """The twin's modules: ``models`` (build, count_macs), ``port`` and ``probe``."""
    package = _PACKAGES[backend]
    return SimpleNamespace(
        name=backend, **{m: importlib.import_module(f"{package}.{m}") for m in ("models", "port", "probe")}
    )


def package(backend: str) -> str:
    if backend not in _PACKAGES:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return _PACKAGES[backend]


def load_training(backend: str):
    """The twin's training module (`train(spec, train_spec, dataset, run) -> records, diverged, ckpt`)."""
    if backend not in _PACKAGES:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return importlib.import_module(f"{_PACKAGES[backend]}.training")
