"""The Lightning twin's input pipeline: `study.core.data`'s batches, gathered and augmented on the device.

Mirrors `keras_impl/data.py`: both serve exactly `study.core.data.epoch_batches` (docs/design.md,
convention 8).
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset

from study.core import data as datasets
from study.core.recipe import TrainSpec


def to_nchw(x: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
    """NHWC images (the layout of `study.core.data` and the Keras twin) as a contiguous NCHW tensor on `device`."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device, dtype)


def augment(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """`study.core.data.augment` for (N, C, H, W) tensors, on their device: the same pixels, element for element.

    Zero-pad by `pad`, crop H x W at (dy[i], dx[i]) of the padded image, mirror along W where flip[i].
    """
    n, c, h, w = x.shape
    device = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=device)
    cols = dx[:, None] + torch.arange(w, device=device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    images = torch.arange(n, device=device)[:, None, None, None]
    channels = torch.arange(c, device=device)[None, :, None, None]
    return padded[images, channels, rows[:, None, :, None], cols[:, None, None, :]]


class EpochBatches:
    """One epoch's train batches in `study.core.data.epoch_batches` order, gathered (and augmented) where the
    train set lives: on the GPU when training there, so no batch crosses the host-device link.

    Under data parallelism each of `world` processes takes its contiguous share of every global batch,
    so the averaged gradient is the one of the global batch (exactly so when the world size divides
    the batch).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        train_spec: TrainSpec,
        epoch: int,
        augment: bool,
        rank=0,
        world=1,
    ):
        self.images, self.labels, self.batch_size = images, labels, train_spec.batch_size
        self.share = rank, world
        n, device = len(labels), labels.device
        self.steps = datasets.steps_per_epoch(n, self.batch_size)
        self.order = torch.from_numpy(datasets.epoch_order(n, train_spec.seed, epoch)).to(device)
        self.augment = None
        if augment:
            dy, dx, flip = datasets.augment_params(n, train_spec.seed, epoch)
            self.augment = [torch.from_numpy(p).to(device) for p in (dy, dx, flip)]

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        rank, world = self.share
        for step in range(self.steps):
            start = step * self.batch_size
            positions = np.array_split(np.arange(start, min(start + self.batch_size, len(self.labels))), world)[rank]
            positions = slice(int(positions[0]), int(positions[-1]) + 1) if len(positions) else slice(start, start)
            index = self.order[positions]
            x = self.images[index]
            if self.augment is not None:
                x = augment(x, *(p[positions] for p in self.augment))
            yield x, self.labels[index]


class StudyDataModule(pl.LightningDataModule):
    """The data set in memory on the training device; train batches drawn afresh each epoch
    (`reload_dataloaders_every_n_epochs=1`), the test set in batches of 1000."""

    def __init__(self, dataset: datasets.Dataset, train_spec: TrainSpec, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.dataset, self.train_spec, self.dtype = dataset, train_spec, dtype

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")

        data = self.dataset
        self.train = to_nchw(data.x_train, device, self.dtype), torch.from_numpy(data.y_train).to(device)
        self.test = to_nchw(data.x_test, device, self.dtype), torch.from_numpy(data.y_test).to(device)

    def train_dataloader(self):
        trainer = self.trainer
        epoch, rank, world = (trainer.current_epoch, trainer.global_rank, trainer.world_size) if trainer else (0, 0, 1)
        augment = self.dataset.augment if self.train_spec.augment is None else self.train_spec.augment
        return EpochBatches(*self.train, self.train_spec, epoch, augment, rank, world)

    def val_dataloader(self):
        batches = BatchSampler(SequentialSampler(range(len(self.test[1]))), batch_size=1000, drop_last=False)
        return DataLoader(TensorDataset(*self.test), batch_size=None, sampler=batches)  # one gather per batch
