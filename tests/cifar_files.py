"""Tiny CIFAR-10 data sets in the official python-version format, for the tests (never downloaded)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from study.core.data import (
    CIFAR10_CLASSES,
    CIFAR10_META_FILE,
    CIFAR10_PIXELS,
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
)

CIFAR10_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_cifar10_files(directory: str | Path, n_train_per_batch: int, n_test: int, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 in the official python-version format (random images and labels) into ``directory``.

    Files: data_batch_1..5 (``n_train_per_batch`` images each), test_batch (``n_test``), batches.meta; pickle
    protocol 2 with bytes keys, as the official files. Returns ``directory``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = [(name, f"training batch {i} of 5", n_train_per_batch) for i, name in enumerate(CIFAR10_TRAIN_FILES, 1)]
    for name, label, n in [*batches, (CIFAR10_TEST_FILE, "testing batch 1 of 1", n_test)]:
        content = {
            b"batch_label": label.encode(),
            b"labels": rng.integers(0, CIFAR10_CLASSES, n).tolist(),
            b"data": rng.integers(0, 256, (n, CIFAR10_PIXELS), dtype=np.uint8),
            b"filenames": [f"{name}_{j:05d}.png".encode() for j in range(n)],
        }
        _dump(content, directory / name)
    meta = {
        b"label_names": [label.encode() for label in CIFAR10_LABEL_NAMES],
        b"num_cases_per_batch": n_train_per_batch,
        b"num_vis": CIFAR10_PIXELS,
    }
    _dump(meta, directory / CIFAR10_META_FILE)
    return directory


def _dump(content: dict, path: Path) -> None:
    with path.open("wb") as f:
        pickle.dump(content, f, protocol=2)
