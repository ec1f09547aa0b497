"""study.core.data: data sets, normalization, the official CIFAR-10 format, keyed batch order and augmentation."""

import os
import pickle

import numpy as np
import pytest
from cifar_files import write_cifar10_files

from study.core.data import (
    CIFAR10_URL,
    DataError,
    Dataset,
    augment,
    augment_params,
    epoch_batches,
    epoch_order,
    load_dataset,
    steps_per_epoch,
)

pytestmark = pytest.mark.quick  # every test here is in the edit loop's tier (README)

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


def raise_one_line(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


def read(path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def write(path, content) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def raw_digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split(x.reshape(-1, 8, 8, 1), y, test_size=0.25, stratify=y, random_state=0)


# --- digits ---


def test_digits_shapes_and_split_fixed_regardless_of_seed():
    data = load_dataset("digits")
    assert (data.name, data.classes, data.augment, data.input_shape) == ("digits", 10, False, (8, 8, 1))
    assert data.x_train.shape == (1347, 8, 8, 1) and data.x_test.shape == (450, 8, 8, 1)
    assert (data.x_train.dtype, data.y_train.dtype, data.y_test.dtype) == (np.float32, np.int64, np.int64)
    assert data.y_train[:12].tolist() == [7, 3, 6, 6, 7, 6, 7, 9, 2, 9, 0, 9]
    assert data.y_test[:12].tolist() == [2, 0, 4, 9, 4, 1, 2, 4, 6, 7, 9, 1]
    other = load_dataset("digits", seed=7)
    assert np.array_equal(other.x_train, data.x_train) and np.array_equal(other.y_test, data.y_test)


def test_digits_split_is_stratified():
    data = load_dataset("digits")
    train, test = np.bincount(data.y_train, minlength=10), np.bincount(data.y_test, minlength=10)
    assert np.all(np.abs(test - 0.25 * (train + test)) <= 1)
    assert train.sum() + test.sum() == 1797


def test_digits_normalized_with_train_statistics():
    data = load_dataset("digits")
    assert abs(data.x_train.mean()) < 1e-5 and abs(data.x_train.std() - 1) < 1e-5
    raw_train, raw_test, y_train, y_test = raw_digits_split()
    mean, std = raw_train.mean(), raw_train.std()
    assert np.allclose(data.x_test * std + mean, raw_test, atol=1e-4)  # test set uses the TRAIN statistics
    assert np.allclose(data.x_train * std + mean, raw_train, atol=1e-4)
    assert np.array_equal(data.y_train, y_train) and np.array_equal(data.y_test, y_test)
    assert abs(data.x_test.mean()) > 1e-4  # not re-normalized with its own statistics


# --- cifar10 ---


def expected_nhwc(data: np.ndarray) -> np.ndarray:
    """Reference conversion, pixel by pixel: channel c, row r, column w sits at c*1024 + r*32 + w."""
    out = np.empty((len(data), 32, 32, 3), np.uint8)
    for c in range(3):
        for r in range(32):
            out[:, r, :, c] = data[:, c * 1024 + r * 32 : c * 1024 + r * 32 + 32]
    return out


def pattern_image() -> np.ndarray:
    """A (32, 32, 3) uint8 image with red = 4*row, green = 4*column + 1, blue = 255 - row - column."""
    r, w = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.stack([4 * r, 4 * w + 1, 255 - r - w], axis=-1).astype(np.uint8)


def test_cifar10_round_trip_pixel_layout(tmp_path):
    write_cifar10_files(tmp_path, n_train_per_batch=3, n_test=2, seed=5)
    batch = read(tmp_path / "data_batch_2")
    image = pattern_image()
    batch[b"data"][0] = image.transpose(2, 0, 1).reshape(-1)  # the official row: red plane, green plane, blue plane
    write(tmp_path / "data_batch_2", batch)

    data = load_dataset("cifar10", data_dir=tmp_path)
    assert (data.name, data.classes, data.augment, data.input_shape) == ("cifar10", 10, True, (32, 32, 3))
    assert data.x_train.shape == (15, 32, 32, 3) and data.x_test.shape == (2, 32, 32, 3)
    assert (data.x_train.dtype, data.y_train.dtype) == (np.float32, np.int64)

    files = [read(tmp_path / name) for name in TRAIN_FILES]
    raw_train = expected_nhwc(np.concatenate([f[b"data"] for f in files]))
    raw_test = expected_nhwc(read(tmp_path / "test_batch")[b"data"])
    assert data.y_train.tolist() == sum((f[b"labels"] for f in files), [])
    assert data.y_test.tolist() == read(tmp_path / "test_batch")[b"labels"]

    mean, std = raw_train.mean(axis=(0, 1, 2)), raw_train.std(axis=(0, 1, 2))
    assert np.allclose(data.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    assert np.allclose(data.x_train.std(axis=(0, 1, 2)), 1, atol=1e-5)
    restored_train = np.rint(data.x_train * std + mean)
    assert np.array_equal(restored_train, raw_train)
    assert np.array_equal(np.rint(data.x_test * std + mean), raw_test)
    assert np.array_equal(restored_train[3], image)  # first image of data_batch_2 follows 3 images of data_batch_1
    assert restored_train[3, 10, 20].tolist() == [40, 81, 225]


def test_cifar10_accepts_the_extracted_subfolder(tmp_path):
    flat = load_dataset("cifar10", data_dir=write_cifar10_files(tmp_path / "flat", 2, 2, seed=1))
    write_cifar10_files(tmp_path / "nested" / "cifar-10-batches-py", 2, 2, seed=1)
    nested = load_dataset("cifar10", data_dir=str(tmp_path / "nested"))
    assert np.array_equal(flat.x_train, nested.x_train) and np.array_equal(flat.y_test, nested.y_test)


def test_write_cifar10_files_matches_the_official_format(tmp_path):
    write_cifar10_files(tmp_path, 4, 3)
    batch = read(tmp_path / "data_batch_5")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (4, 3072)
    assert len(batch[b"labels"]) == 4 and all(isinstance(v, int) and 0 <= v <= 9 for v in batch[b"labels"])
    assert read(tmp_path / "test_batch")[b"data"].shape == (3, 3072)
    meta = read(tmp_path / "batches.meta")
    assert set(meta) == {b"label_names", b"num_cases_per_batch", b"num_vis"}
    assert meta[b"label_names"][0] == b"airplane" and len(meta[b"label_names"]) == 10
    assert (tmp_path / "data_batch_1").read_bytes()[:2] == b"\x80\x02"  # pickle protocol 2


def edit(key, change):
    """Corrupt one entry of a CIFAR-10 file: replace it with change(old value), or delete it when change is None."""

    def corrupt(path):
        content = read(path)
        if change is None:
            del content[key]
        else:
            content[key] = change(content[key])
        write(path, content)

    return corrupt


CORRUPTIONS = {  # case: (file, corruption applied to its path, text the message must contain besides the path)
    "missing": ("data_batch_3", lambda p: p.unlink(), "missing"),
    "truncated": ("test_batch", lambda p: p.write_bytes(p.read_bytes()[:500]), "read"),
    "garbage": ("batches.meta", lambda p: p.write_bytes(b"not a pickle\n"), "read"),
    "not a dict": ("data_batch_1", lambda p: write(p, [1, 2]), "dict"),
    "no data": ("data_batch_2", edit(b"data", None), "b'data'"),
    "no labels": ("test_batch", edit(b"labels", None), "b'labels'"),
    "no label names": ("batches.meta", edit(b"label_names", None), "b'label_names'"),
    "wrong width": ("data_batch_4", edit(b"data", lambda v: v[:, :3071]), "3071"),
    "wrong dtype": ("data_batch_1", edit(b"data", lambda v: v / 255), "float64"),
    "flat data": ("data_batch_1", edit(b"data", lambda v: v.ravel()), "(9216,)"),
    "label count": ("data_batch_5", edit(b"labels", lambda v: v[:-1]), "2 labels for 3 images"),
    "label 10": ("test_batch", edit(b"labels", lambda v: [10, *v[1:]]), "0..9"),
    "label -1": ("data_batch_2", edit(b"labels", lambda v: [-1, *v[1:]]), "0..9"),
    "label float": ("data_batch_2", edit(b"labels", lambda v: [float(label) for label in v]), "0..9"),
    "9 classes": ("batches.meta", edit(b"label_names", lambda v: v[:9]), "got 9"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_cifar10_bad_files_name_the_file(tmp_path, case):
    name, corrupt, problem = CORRUPTIONS[case]
    write_cifar10_files(tmp_path, 3, 3)
    load_dataset("cifar10", data_dir=tmp_path)  # intact before the corruption
    corrupt(tmp_path / name)
    message = raise_one_line(lambda: load_dataset("cifar10", data_dir=tmp_path))
    assert str(tmp_path / name) in message and problem in message


def test_cifar10_missing_files_say_where_to_get_the_data(tmp_path):
    message = raise_one_line(lambda: load_dataset("cifar10", data_dir=tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere" / "batches.meta") in message
    assert CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar.html"
    assert CIFAR10_URL in message and "CIFAR-10 python version" in message


def test_cifar10_without_data_dir():
    message = raise_one_line(lambda: load_dataset("cifar10"))
    assert "--data-dir" in message and CIFAR10_URL in message


def test_unknown_dataset():
    message = raise_one_line(lambda: load_dataset("mnist"))
    assert message == "unknown dataset 'mnist'; choose one of digits, cifar10, synthetic"


# --- synthetic ---


def test_synthetic_is_deterministic_per_seed_and_learnable():
    data = load_dataset("synthetic", seed=3, synthetic_size=(300, 200))
    again = load_dataset("synthetic", seed=3, synthetic_size=(300, 200))
    other = load_dataset("synthetic", seed=4, synthetic_size=(300, 200))
    assert np.array_equal(data.x_train, again.x_train) and np.array_equal(data.y_test, again.y_test)
    assert not np.allclose(data.x_train, other.x_train)
    assert data.x_train.shape == (300, 8, 8, 1) and data.x_test.shape == (200, 8, 8, 1)
    assert (data.classes, data.augment, data.x_train.dtype, data.y_train.dtype) == (10, False, np.float32, np.int64)
    assert np.bincount(data.y_train).tolist() == [30] * 10
    assert abs(data.x_train.mean()) < 1e-5 and abs(data.x_train.std() - 1) < 1e-5
    centroids = np.stack([data.x_train[data.y_train == k].mean(axis=0) for k in range(10)])
    distances = ((data.x_test[:, None] - centroids[None]) ** 2).sum(axis=(2, 3, 4))
    accuracy = (distances.argmin(axis=1) == data.y_test).mean()
    assert 0.8 < accuracy < 1.0  # learnable, not trivial


def test_default_synthetic_size():
    data = load_dataset("synthetic")
    assert (len(data.x_train), len(data.x_test)) == (512, 256)


# --- batch order ---


def test_epoch_order_is_a_keyed_permutation():
    order = epoch_order(1000, seed=1, epoch=2)
    assert np.array_equal(np.sort(order), np.arange(1000))
    assert np.array_equal(order, epoch_order(1000, seed=1, epoch=2))
    assert not np.array_equal(order, epoch_order(1000, seed=1, epoch=3))
    assert not np.array_equal(order, epoch_order(1000, seed=2, epoch=2))
    assert not np.array_equal(order, np.arange(1000))
    assert np.array_equal(order, np.random.default_rng([1, 2]).permutation(1000))


def test_steps_per_epoch_keeps_the_partial_batch():
    assert [steps_per_epoch(n, 4) for n in (1, 4, 5, 8, 10)] == [1, 1, 2, 2, 3]
    with pytest.raises(ValueError):
        steps_per_epoch(10, 0)


def test_augment_params_range_determinism_and_stream():
    dy, dx, flip = augment_params(2000, seed=0, epoch=1, pad=4)
    assert dy.shape == dx.shape == flip.shape == (2000,) and flip.dtype == bool
    assert set(dy.tolist()) == set(dx.tolist()) == set(range(9))
    assert 0.4 < flip.mean() < 0.6
    assert not np.array_equal(dy, dx)
    again = augment_params(2000, seed=0, epoch=1, pad=4)
    assert all(np.array_equal(a, b) for a, b in zip((dy, dx, flip), again, strict=True))
    assert not np.array_equal(dy, augment_params(2000, seed=0, epoch=2, pad=4)[0])
    assert np.array_equal(dy, np.random.default_rng([0, 1, 1]).integers(0, 9, 2000))
    assert set(augment_params(500, seed=0, epoch=1, pad=2)[0].tolist()) == set(range(5))


# --- augmentation ---


@pytest.fixture
def images():
    return np.random.default_rng(0).normal(size=(3, 6, 5, 2)).astype(np.float32) + 10  # no zeros, H != W


def test_augment_centre_crop_is_identity(images):
    out = augment(images, np.full(3, 2), np.full(3, 2), np.zeros(3, bool), pad=2)
    assert out.dtype == np.float32 and np.array_equal(out, images)


def test_augment_origin_offset_shifts_down_right_with_zeros(images):
    out = augment(images, np.zeros(3, int), np.zeros(3, int), np.zeros(3, bool), pad=2)
    assert out.shape == images.shape
    assert np.array_equal(out[:, 2:, 2:], images[:, :-2, :-2])
    assert np.all(out[:, :2] == 0) and np.all(out[:, :, :2] == 0)
    out = augment(images, np.full(3, 4), np.full(3, 4), np.zeros(3, bool), pad=2)
    assert np.array_equal(out[:, :-2, :-2], images[:, 2:, 2:])
    assert np.all(out[:, -2:] == 0) and np.all(out[:, :, -2:] == 0)


def test_augment_flip_reverses_width(images):
    out = augment(images, np.full(3, 2), np.full(3, 2), np.ones(3, bool), pad=2)
    assert np.array_equal(out, images[:, :, ::-1])


def test_augment_applies_each_example_its_own_parameters(images):
    dy, dx, flip = np.array([0, 3, 4]), np.array([4, 1, 2]), np.array([True, False, True])
    out = augment(images, dy, dx, flip, pad=2)
    for i in range(3):
        padded = np.pad(images[i], ((2, 2), (2, 2), (0, 0)))
        crop = padded[dy[i] : dy[i] + 6, dx[i] : dx[i] + 5]
        assert np.array_equal(out[i], crop[:, ::-1] if flip[i] else crop)


# --- epoch batches ---


def indexed_dataset(n: int, augment: bool) -> Dataset:
    """Example i is the image filled with i + 1 (plus a random texture for augmentation to act on), label i."""
    texture = np.random.default_rng(0).normal(size=(n, 6, 6, 1))
    x = (np.arange(1, n + 1)[:, None, None, None] + 0.01 * texture).astype(np.float32)
    y = np.arange(n, dtype=np.int64)
    return Dataset("indexed", x, y, x[:2], y[:2], classes=n, augment=augment)


def test_epoch_batches_cover_the_train_set_once_in_epoch_order():
    data = indexed_dataset(10, augment=False)
    batches = list(epoch_batches(data, batch_size=4, seed=3, epoch=5))
    assert [len(y) for _, y in batches] == [4, 4, 2] and len(batches) == steps_per_epoch(10, 4)
    assert all(x.dtype == np.float32 and x.shape[1:] == (6, 6, 1) and y.dtype == np.int64 for x, y in batches)
    y = np.concatenate([y for _, y in batches])
    x = np.concatenate([x for x, _ in batches])
    assert np.array_equal(y, epoch_order(10, seed=3, epoch=5)) and np.array_equal(np.sort(y), np.arange(10))
    assert np.array_equal(x, data.x_train[y])


def test_epoch_batches_are_deterministic_per_seed_and_epoch():
    data = indexed_dataset(10, augment=True)

    def run(seed, epoch):
        return np.concatenate([x for x, _ in epoch_batches(data, 3, seed, epoch)])

    assert np.array_equal(run(1, 0), run(1, 0))
    assert not np.array_equal(run(1, 0), run(1, 1)) and not np.array_equal(run(1, 0), run(2, 0))


def test_epoch_batches_augment_by_epoch_position():
    data = indexed_dataset(10, augment=True)
    order = epoch_order(10, seed=4, epoch=2)
    expected = augment(data.x_train[order], *augment_params(10, seed=4, epoch=2))
    x = np.concatenate([x for x, _ in epoch_batches(data, 4, seed=4, epoch=2)])
    assert np.array_equal(x, expected) and not np.array_equal(x, data.x_train[order])
    plain = np.concatenate([x for x, _ in epoch_batches(data, 4, seed=4, epoch=2, augment=False)])
    assert np.array_equal(plain, data.x_train[order])
    forced = np.concatenate([x for x, _ in epoch_batches(indexed_dataset(10, False), 4, seed=4, epoch=2, augment=True)])
    assert np.array_equal(forced, expected)


class _RunsCode:
    """What a crafted pickle does: name a callable that the unpickler will call while reading."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.makedirs, (self.path,))


@pytest.mark.parametrize("victim", ["data_batch_2", "batches.meta"])
def test_crafted_cifar_file_is_refused_without_running_it(tmp_path, victim):
    data_dir = write_cifar10_files(tmp_path / "cifar", 4, 4)
    marker = tmp_path / "ran"
    content = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3], b"label_names": _RunsCode(marker)}
    with open(data_dir / victim, "wb") as handle:
        pickle.dump(content, handle, protocol=2)
    with pytest.raises(DataError, match=f"{victim} refers to os.makedirs, which no CIFAR-10 file contains"):
        load_dataset("cifar10", data_dir)
    assert not marker.exists()  # nothing in it was executed
    pickle.loads((data_dir / victim).read_bytes())  # the plain unpickler does run it: the test can fail
    assert marker.exists()
