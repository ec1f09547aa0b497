"""Lightning twin training: the wrapper model (LightningModule), the callbacks and `train`
(`Trainer.fit`), implementing `study.core.spec.TrainSpec`.

Mirrors `keras_impl/training.py`: `ClassifierModule` wraps the plain `nn.Module` backbone from
`lightning_impl.models.build` (the model stays usable without Lightning). The optimizer and LR
schedule are in `lightning_impl.optim`, the input pipeline (the data module serving exactly the
batches `study.core.data.epoch_batches` gives the Keras twin) in `lightning_impl.data`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.utilities import grad_norm
from torch import nn

from lightning_impl.data import StudyDataModule
from lightning_impl.optim import make_optimizer
from lightning_impl.port import CHECKPOINT, load_torch_state
from study.core import data as datasets
from study.core.init import initial_state
from study.core.recipe import TrainSpec
from study.core.records import FLOAT64, EpochRecord, RunContext, TrainOutcome, weighted_layer_names
from study.core.spec import NetworkSpec

TRAINER_PRECISION = {"32": "32-true", "bf16": "bf16-mixed", FLOAT64: "64-true"}  # run.precision -> Trainer's
RECORDS = ".epoch-records.json"  # multi-process runs: rank 0's records for the main process


class ClassifierModule(pl.LightningModule):
    """Backbone + mean cross-entropy on logits, train/test error, per-layer gradient norms.

    The optimizer is torch's SGD (the form `keras_impl.optim.TorchSGD` reproduces), coupled
    weight decay on every parameter, and a per-step piecewise-constant LR (`TrainSpec.lr_at`).
    """

    def __init__(self, backbone: nn.Module, train_spec: TrainSpec, steps_per_epoch: int, layer_names: list[str]):
        super().__init__()
        # Plain types only, so the checkpoint loads with torch.load(weights_only=True), as Lightning resumes.
        self.save_hyperparameters(
            {"train_spec": train_spec.to_dict(), "steps_per_epoch": steps_per_epoch, "layer_names": layer_names}
        )
        self.backbone = backbone
        self.train_spec, self.steps_per_epoch, self.layer_names = train_spec, steps_per_epoch, layer_names
        classes = backbone.fc.out_features
        # nan_strategy="disable": a NaN loss must show in the epoch mean (divergence), not be dropped.
        # The epoch means weight each batch by its size (the last one is partial), as Keras' twin does:
        # each update passes the batch's mean loss once per example, because with nan_strategy="disable"
        # torchmetrics (1.9) replaces a `weight` argument by ones.
        self.train_loss = torchmetrics.MeanMetric(nan_strategy="disable")
        self.test_loss = torchmetrics.MeanMetric(nan_strategy="disable")
        self.train_acc = torchmetrics.classification.MulticlassAccuracy(classes, average="micro")
        self.test_acc = torchmetrics.classification.MulticlassAccuracy(classes, average="micro")
        self.grad_norms: dict[str, float] = {}
        self.batch_losses: list[float] = []  # every step's loss if trace_steps (study.measure.numerics)
        self.trace_steps = False
        self.diverged = False
        self.channels_last = False  # NHWC memory layout (`use_channels_last`): oneDNN's and cuDNN's fast path
        self._compiled = None  # torch.compile'd backbone, kept off the module tree so state-dict keys stay

    def on_fit_start(self) -> None:
        """Metrics in float64 for a float64 backbone (the agreement checks); torchmetrics keeps float32
        otherwise, and the Trainer's precision set-up resets what is set before `fit`."""
        if next(self.backbone.parameters()).dtype == torch.float64:
            for metric in (self.train_loss, self.test_loss, self.train_acc, self.test_acc):
                metric.set_dtype(torch.float64)

    def compile_backbone(self) -> None:
        object.__setattr__(self, "_compiled", torch.compile(self.backbone))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self.backbone if self._compiled is None else self._compiled)(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        if self.trace_steps:  # a device sync per step: only for study.measure.numerics's trajectories
            self.batch_losses.append(loss.item())
        self.train_loss.update(loss.detach().expand(len(y)))  # batch-size weighted (see __init__)
        self.train_acc.update(logits.detach(), y)
        return loss

    @staticmethod
    def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy on logits, in float32 at least (bf16 logits are cast up)."""
        return F.cross_entropy(logits if logits.dtype == torch.float64 else logits.float(), y)

    def on_before_optimizer_step(self, optimizer):
        if self.trainer.is_last_batch:  # once per epoch: the gradient of the epoch's last step
            norms = grad_norm(self.backbone, norm_type=2)
            self.grad_norms = {name: float(norms[f"grad_2.0_norm/{name}.weight"]) for name in self.layer_names}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.test_loss.update(self._loss(logits, y).expand(len(y)))
        self.test_acc.update(logits, y)

    def configure_optimizers(self):
        return make_optimizer(self.parameters(), self.train_spec, self.steps_per_epoch)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint format, written to a temporary file and renamed into place: a run killed
    while saving keeps its previous checkpoint whole (Lightning writes the file in place)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        temporary = path.with_name(f".{path.name}.partial")
        try:
            super().save_checkpoint(checkpoint, temporary, storage_options)
            os.replace(temporary, path)
        except BaseException:  # a full disk or a kill: nothing half-written stays behind
            temporary.unlink(missing_ok=True)
            raise


class EpochRecorder(pl.Callback):
    """Turns the module's metrics into `EpochRecord`s, saves the run's checkpoint, publishes the record
    (`RunContext.publish`), measures time and throughput.

    The checkpoint (`CHECKPOINT`, Lightning's own: weights, optimizer, LR schedule, loop counters and
    this callback's records) is saved at the end of every epoch, before the epoch is published, so a
    run killed at any moment resumes from its last completed epoch (`Trainer.fit(ckpt_path=...)`).
    """

    def __init__(self, run: RunContext):
        self.run = run
        self.records: list[EpochRecord] = []
        self.restored = 0  # epochs restored from a checkpoint

    def state_dict(self) -> dict:
        return {"records": [dataclasses.asdict(record) for record in self.records]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.records = [EpochRecord(**record) for record in state_dict["records"]]
        self.restored = len(self.records)

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_validation_epoch_start(self, trainer, module):  # the epoch's training is done
        if module.device.type == "cuda":
            torch.cuda.synchronize()
        self.train_end = time.perf_counter()

    def on_validation_epoch_end(self, trainer, module):
        self.test = (float(module.test_loss.compute()), 1.0 - float(module.test_acc.compute()))
        module.test_loss.reset(), module.test_acc.reset()

    def on_train_epoch_end(self, trainer, module):
        train_loss = float(module.train_loss.compute())
        if not np.isfinite(train_loss):  # diverged: stop and record it (checked per epoch: no per-step sync)
            module.diverged = trainer.should_stop = True
            return
        record = self.run.record(
            epoch=trainer.current_epoch,
            train_loss=train_loss,
            train_error=1.0 - float(module.train_acc.compute()),
            test_loss=self.test[0],
            test_error=self.test[1],
            wall_s=time.perf_counter() - self.start,
            train_s=self.train_end - self.start,
            grad_norms=module.grad_norms,
        )
        module.train_loss.reset(), module.train_acc.reset()
        self.records.append(record)
        trainer.save_checkpoint(self.run.out_dir / CHECKPOINT)
        self.run.publish(record)

    def on_train_end(self, trainer, module):
        """Spawned processes: rank 0 writes what the main process reads back after `fit`."""
        if trainer.world_size > 1 and trainer.is_global_zero:
            state = {"records": self.state_dict()["records"], "diverged": module.diverged, "restored": self.restored}
            (self.run.out_dir / RECORDS).write_text(json.dumps(state))


def use_channels_last(precision: str) -> bool:
    """Whether the backbone trains in NHWC memory layout (the same math, in another layout).

    On GPUs, tensor cores want it; on CPUs, oneDNN's convolutions skip their reorders with it
    (measured, one thread, batch 128: a ResNet-20 step on CIFAR-shaped input 28 % faster; on the
    8x8 digits nets no gain above the noise, docs/benchmarks.md). Float64 stays NCHW: oneDNN has no
    float64 kernels, and the float64 checks keep the layout they were proven in.
    """
    return precision != FLOAT64


def make_trainer(run: RunContext, callbacks: list, max_steps: int = -1, verbose: bool = True) -> pl.Trainer:
    multi = run.devices > 1
    return pl.Trainer(
        max_epochs=run.train_spec.epochs,
        max_steps=max_steps,
        accelerator=run.device,
        devices=run.devices,
        # Spawned processes (gloo on CPU, NCCL on GPU); SyncBatchNorm exists only on accelerators, so on
        # CPU each process normalizes with its own share of the batch, as Keras' MirroredStrategy does.
        strategy="ddp_spawn" if multi else "auto",
        sync_batchnorm=multi and run.device == "gpu",
        use_distributed_sampler=False,  # EpochBatches already gives each process its share
        precision=TRAINER_PRECISION[run.precision],
        deterministic=True,
        logger=False,  # W&B: `RunContext.publish`, the same keys as the Keras twin (study.tracking.wandb_run)
        callbacks=callbacks,
        reload_dataloaders_every_n_epochs=1,
        num_sanity_val_steps=0,
        enable_progress_bar=verbose,
        enable_model_summary=False,
        enable_checkpointing=False,  # EpochRecorder saves the checkpoint itself, before it publishes the epoch
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run.out_dir),
    )


def train(
    spec: NetworkSpec,
    dataset: datasets.Dataset,
    run: RunContext,
    backbone: nn.Module | None = None,
    verbose: int = 1,
) -> TrainOutcome:
    """Train `spec` (or the given backbone, e.g. with ported weights) on `dataset` with `run.train_spec`."""
    import lightning_impl.models as models

    train_spec = run.train_spec
    if not verbose:  # Lightning's start-up notes (devices, tips) are noise inside a study
        for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.* is deprecated")  # inside Lightning itself
    pl.seed_everything(train_spec.seed, workers=True, verbose=False)
    dtype = torch.float64 if run.precision == FLOAT64 else torch.float32
    if backbone is None:
        backbone = models.build(spec, "float64" if run.precision == FLOAT64 else "float32")
        load_torch_state(backbone, initial_state(spec, train_spec.seed))  # the same start as the Keras twin
    module = ClassifierModule(backbone, train_spec, run.steps_per_epoch, weighted_layer_names(spec))
    module.trace_steps = run.trace_steps
    if use_channels_last(run.precision):
        module.channels_last = True
        backbone.to(memory_format=torch.channels_last)
    if run.compile:
        module.compile_backbone()
    recorder = EpochRecorder(run)
    trainer = make_trainer(run, [recorder], verbose=bool(verbose))
    path = run.out_dir / CHECKPOINT
    resume_from = str(path) if run.resume and path.exists() else None  # Lightning restores everything
    trainer.fit(
        module, datamodule=StudyDataModule(dataset, train_spec, dtype), ckpt_path=resume_from, weights_only=True
    )  # never unpickle code from a checkpoint, whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says
    records, diverged, restored = recorder.records, module.diverged, recorder.restored
    if run.devices > 1:  # the epochs ran in spawned processes; rank 0 wrote them down
        state = json.loads((run.out_dir / RECORDS).read_text())
        records, diverged = [EpochRecord(**r) for r in state["records"]], state["diverged"]
        restored = state["restored"]
        (run.out_dir / RECORDS).unlink()
    return TrainOutcome(records, diverged, path, module.batch_losses, restored)
