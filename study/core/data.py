"""The framework-neutral source of training data and of per-epoch batch order.

NumPy, the standard library and (lazily, for ``digits``) scikit-learn only: both twins consume these arrays and
batches, so one seed gives bit-identical batches in Keras and in PyTorch.

Arrays are NHWC float32 images normalized per channel with the TRAIN set's mean and standard deviation (the test set
uses the same statistics), and int64 class indices. Randomness is keyed, never stateful: the order of epoch ``e`` under
seed ``s`` comes from ``default_rng([s, e])`` and its augmentation from ``default_rng([s, e, 1])``, so any epoch can be
reproduced on its own.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.core.errors import UserError

DATASETS = ("digits", "cifar10", "synthetic")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR10_SUBDIR = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"
CIFAR10_CLASSES = 10
CIFAR10_SIZE = 32  # images are CIFAR10_SIZE x CIFAR10_SIZE x 3
CIFAR10_PIXELS = 3 * CIFAR10_SIZE * CIFAR10_SIZE

SYNTHETIC_SHAPE = (8, 8, 1)
SYNTHETIC_CLASSES = 10
# Prototypes are N(0, 1) per pixel. At std 2.0 with the default (512, 256) split the Bayes (nearest-prototype)
# test accuracy is ~98% and logistic regression reaches ~94%: learnable, but not in one step.
SYNTHETIC_NOISE_STD = 2.0

DIGITS_CLASSES = 10
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0

CLASSES = {"digits": DIGITS_CLASSES, "cifar10": CIFAR10_CLASSES, "synthetic": SYNTHETIC_CLASSES}


class DataError(UserError):
    """Bad or missing data; the message is one line for the user naming the file (and, for CIFAR-10, its source)."""


@dataclass(frozen=True, eq=False)  # eq=False: field-wise == on arrays is ambiguous; instances compare by identity
class Dataset:
    """A normalized image-classification data set.

    ``x_train``/``x_test``: float32 (N, H, W, C), per-channel (x - mean) / std with the train set's statistics.
    ``y_train``/``y_test``: int64 (N,) class indices in [0, classes).
    ``augment``: whether the standard augmentation (pad 4, random HxW crop, horizontal flip) applies; cifar10 only.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    augment: bool

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)


def load_dataset(
    name: str, data_dir: str | Path | None = None, seed: int = 0, synthetic_size: tuple[int, int] = (512, 256)
) -> Dataset:
    """Load data set ``name`` (one of DATASETS).

    ``data_dir`` is required for cifar10 only. ``seed`` affects synthetic only (the digits split is fixed).
    ``synthetic_size`` is (n_train, n_test) examples for synthetic.
    """
    if name == "digits":
        x_train, y_train, x_test, y_test, classes = _load_digits()
    elif name == "cifar10":
        if data_dir is None:
            raise DataError(
                f"cifar10 requires --data-dir: a folder holding the 'CIFAR-10 python version' from {CIFAR10_URL}"
            )
        x_train, y_train, x_test, y_test, classes = _load_cifar10(Path(data_dir))
    elif name == "synthetic":
        x_train, y_train, x_test, y_test, classes = _make_synthetic(seed, *synthetic_size)
    else:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    x_train, x_test = _normalize(x_train, x_test)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train.astype(np.int64),
        x_test=x_test,
        y_test=y_test.astype(np.int64),
        classes=classes,
        augment=name == "cifar10",
    )


def _normalize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets as float32 (x - mean) / std, with per-channel statistics of ``x_train`` (float64 accumulation)."""
    axes = tuple(range(x_train.ndim - 1))
    mean = x_train.mean(axis=axes, dtype=np.float64)
    std = np.array([x_train[..., c].std(dtype=np.float64) for c in range(x_train.shape[-1])])
    std[std == 0] = 1.0  # a constant channel carries no information; leave it centred rather than divide by zero
    out = []
    for x in (x_train, x_test):
        x = x.astype(np.float32)  # a copy: the in-place ops below never touch the caller's array
        x -= mean.astype(np.float32)
        x /= std.astype(np.float32)
        out.append(x)
    return out[0], out[1]


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """scikit-learn's bundled 8x8 digits (values 0..16), with a fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 8, 8, 1)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=DIGITS_SPLIT_SEED
    )
    return x_train, y_train, x_test, y_test, DIGITS_CLASSES


def _make_synthetic(seed: int, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Class-balanced noisy copies of SYNTHETIC_CLASSES fixed random prototypes, all from ``default_rng(seed)``."""
    if n_train < 1 or n_test < 1:
        raise DataError(f"synthetic data set needs at least one train and one test example; got {(n_train, n_test)}")
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(SYNTHETIC_CLASSES, *SYNTHETIC_SHAPE))
    sets = []
    for n in (n_train, n_test):
        y = rng.permutation(np.arange(n) % SYNTHETIC_CLASSES)
        x = prototypes[y] + SYNTHETIC_NOISE_STD * rng.normal(size=(n, *SYNTHETIC_SHAPE))
        sets += [x, y]
    return *sets, SYNTHETIC_CLASSES


def _cifar10_root(data_dir: Path) -> Path:
    """``data_dir`` itself if it holds the files, else its ``cifar-10-batches-py`` subfolder if there is one."""
    nested = data_dir / CIFAR10_SUBDIR
    if not (data_dir / CIFAR10_META_FILE).exists() and nested.is_dir():
        return nested
    return data_dir


# The only globals the official files (and the test suite's `tests/cifar_files.py`) reference: NumPy's array
# reconstruction, and `_codecs.encode`, with which protocol 2 stores byte strings.
_CIFAR10_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ForbiddenObject(pickle.UnpicklingError):
    pass


class _CifarUnpickler(pickle.Unpickler):
    """Plain data only: a pickle that names any other class or function (a crafted file's way to run
    code while it is read) is refused before that object is looked up, let alone called."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR10_GLOBALS:
            raise _ForbiddenObject(f"{module}.{name}")
        return super().find_class(module, name)


def _read_cifar10_pickle(path: Path) -> dict:
    """The dict stored in one CIFAR-10 file, read with `_CifarUnpickler`: the file is untrusted input."""
    if not path.is_file():
        raise DataError(
            f"missing CIFAR-10 file {path}; download the 'CIFAR-10 python version' from {CIFAR10_URL} "
            f"and extract it into {path.parent}"
        )
    try:
        with path.open("rb") as f:
            content = _CifarUnpickler(f, encoding="bytes").load()  # the official files were written by Python 2
    except _ForbiddenObject as error:
        raise DataError(
            f"CIFAR-10 file {path} refers to {error}, which no CIFAR-10 file contains; refusing to load it "
            "(nothing in it was run); re-download it"
        ) from None
    except Exception as error:  # a corrupt pickle can raise almost anything
        detail = " ".join(f"{type(error).__name__}: {error}".split())
        raise DataError(f"cannot read CIFAR-10 file {path} ({detail}); re-download it from {CIFAR10_URL}") from None
    if not isinstance(content, dict):
        raise DataError(f"CIFAR-10 file {path} holds a {type(content).__name__}, not a dict; re-download it")
    return content


def _require_key(content: dict, key: bytes, path: Path) -> object:
    if key not in content:
        raise DataError(f"CIFAR-10 file {path} has no {key!r} entry; re-download it from {CIFAR10_URL}")
    return content[key]


def _read_cifar10_batch(path: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 (N, 32, 32, 3) and labels as int64 (N,) from one batch file."""
    content = _read_cifar10_pickle(path)
    data = _require_key(content, b"data", path)
    labels = _require_key(content, b"labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR10_PIXELS:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"CIFAR-10 file {path}: b'data' must be uint8 of shape (N, {CIFAR10_PIXELS}); got {what}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"CIFAR-10 file {path}: {labels.size} labels for {len(data)} images")
    if len(labels) and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"CIFAR-10 file {path}: labels must be integers in 0..{classes - 1}")
    # Each row is channel-major: the red plane (row-major 32x32), then green, then blue.
    images = data.reshape(-1, 3, CIFAR10_SIZE, CIFAR10_SIZE).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def _load_cifar10(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    root = _cifar10_root(data_dir)
    meta_path = root / CIFAR10_META_FILE
    label_names = _require_key(_read_cifar10_pickle(meta_path), b"label_names", meta_path)
    if not isinstance(label_names, list | tuple) or len(label_names) != CIFAR10_CLASSES:
        count = len(label_names) if isinstance(label_names, list | tuple) else type(label_names).__name__
        raise DataError(f"CIFAR-10 file {meta_path}: expected {CIFAR10_CLASSES} label names; got {count}")
    classes = len(label_names)
    train = [_read_cifar10_batch(root / name, classes) for name in CIFAR10_TRAIN_FILES]
    x_test, y_test = _read_cifar10_batch(root / CIFAR10_TEST_FILE, classes)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test, classes


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the ``n`` train examples: an int64 permutation of range(n)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch, ceil(n / batch_size): the last, partial batch is kept."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    return -(-n // batch_size)


def augment_params(n: int, seed: int, epoch: int, pad: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop offsets and flips for the ``n`` positions of epoch ``epoch``, from ``default_rng([seed, epoch, 1])``.

    Returns (dy, dx, flip): int64 (n,) offsets in [0, 2 * pad] pixels into the padded image, and bool (n,) horizontal
    flips. Entry i applies to the example at position i of the epoch, whichever example that is.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    flip = rng.random(n) < 0.5
    return dy, dx, flip


def augment(x: np.ndarray, dy: np.ndarray, dx: np.ndarray, flip: np.ndarray, pad: int = 4) -> np.ndarray:
    """Pad-crop-flip a batch: x (N, H, W, C) -> (N, H, W, C), same dtype.

    Each image is zero-padded by ``pad`` pixels on every side of H and W, cropped back to H x W with its top-left
    corner at (dy[i], dx[i]) of the padded image (so (pad, pad) is the identity), then mirrored along W where flip[i].
    """
    n, h, w, _ = x.shape
    # Padding happens after normalization, so the border is 0.0 in normalized units (the train mean), not black.
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = np.asarray(dy)[:, None] + np.arange(h)
    cols = np.asarray(dx)[:, None] + np.arange(w)
    cols = np.where(np.asarray(flip)[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


_augment = augment  # epoch_batches' `augment` argument shadows the function


def epoch_batches(
    dataset: Dataset, batch_size: int, seed: int, epoch: int, augment: bool | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The train batches of epoch ``epoch``: (x float32 (B, H, W, C), y int64 (B,)), B = batch_size except the last.

    Examples come in ``epoch_order(n, seed, epoch)``. ``augment`` None means ``dataset.augment``; when augmenting, the
    example at epoch position i gets entry i of ``augment_params(n, seed, epoch)``.
    """
    n = len(dataset.x_train)
    steps = steps_per_epoch(n, batch_size)
    order = epoch_order(n, seed, epoch)
    if augment is None:
        augment = dataset.augment
    if augment:
        dy, dx, flip = augment_params(n, seed, epoch)
    for step in range(steps):
        positions = slice(step * batch_size, (step + 1) * batch_size)
        index = order[positions]
        x = dataset.x_train[index]
        if augment:
            x = _augment(x, dy[positions], dx[positions], flip[positions])
        yield x, dataset.y_train[index]
