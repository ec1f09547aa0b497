"""What a twin provides (`Twin`), and the one way the application gets one (`load`).

A twin is a package (`keras_impl`, `lightning_impl`) whose module ``twin`` implements the `Twin`
protocol with module-level functions. The application never imports a twin package itself: it calls
`load(backend)`, so commands that need neither framework (`describe` without a backend, `analyze`)
never import TensorFlow or torch, and every use of a twin goes through the functions listed here.

Conventions every implementation follows (docs/design.md, "Numerical conventions"):
- models are built from a `NetworkSpec` with layer names equal to torch state-dict keys;
- weights cross the boundary as a torch-layout state dict of NumPy arrays (conv kernels OIHW);
- images cross it as NHWC NumPy arrays (`study.core.data`), labels as int64 class indices.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from study.core.data import Dataset
from study.core.errors import UserError
from study.core.probe import Probe
from study.core.recipe import TrainSpec
from study.core.records import RunContext, TrainOutcome
from study.core.spec import NetworkSpec

BACKENDS = ("keras", "keras-jax", "keras-torch", "lightning")  # `--backend`, `--backends`, results.csv
# backend -> (package, the Keras backend it runs on). Keras chooses its backend once per process, when
# it is first imported: a process holds one Keras twin (and the Lightning twin beside it).
_PACKAGES = {
    "keras": ("keras_impl", "tensorflow"),
    "keras-jax": ("keras_impl", "jax"),
    "keras-torch": ("keras_impl", "torch"),
    "lightning": ("lightning_impl", None),
}
INSTALL = {  # what each backend needs beyond the project's own dependencies, where it is missing
    "keras": "pip install 'keras>=3.3' 'tensorflow>=2.16'",
    "keras-jax": "pip install 'keras>=3.3' 'jax>=0.4.34'",
    "keras-torch": "pip install 'keras>=3.3' 'torch>=2.3'",
    "lightning": "pip install 'torch>=2.3' 'pytorch-lightning>=2.2' 'torchmetrics>=1.3'",
}
REQUIRES = {  # the modules each backend imports beyond the project's own (INSTALL installs them)
    "keras": ("keras", "tensorflow"),
    "keras-jax": ("keras", "jax"),
    "keras-torch": ("keras", "torch"),
    "lightning": ("torch", "pytorch_lightning", "torchmetrics"),
}
KERAS_BACKENDS = {keras: backend for backend, (_, keras) in _PACKAGES.items() if keras}  # "jax" -> "keras-jax"


@runtime_checkable
class RawLoop(Protocol):
    """The baseline `resnet-study bench` measures a twin's training path against: the same network,
    trained by the framework's plainest loop on batches already in memory."""

    def train_epoch(self) -> float:
        """Seconds for one pass over the data (training)."""

    def infer_epoch(self) -> float:
        """Seconds for one pass over the data (inference)."""

    def peak_memory_mb(self) -> float | None:
        """Peak accelerator memory; None on CPU (where the process RSS counts)."""


@runtime_checkable
class Twin(Protocol):
    """One framework's implementation of the study's networks and recipe."""

    NAME: str  # the backend name, one of BACKENDS
    PACKAGES: tuple[str, ...]  # distributions whose versions a run records

    def build(
        self, spec: NetworkSpec, dtype: str = "float32", seed: int | None = None, device: str = "cpu",
        initialize: bool = True,
    ) -> Any:  # fmt: skip
        """The network of `spec`, freshly initialized by the framework's own RNG (seeded if `seed`), on
        `device` (one of DEVICES). `dtype`: "float32" or "float64". Input NHWC (Keras) / NCHW (torch);
        output logits. `initialize=False`: the caller loads a whole state next (`load_torch_state`),
        so a twin may skip drawing the weights."""

    def count_trainable_params(self, model: Any) -> int:
        """Trainable parameters counted from the built model."""

    def count_macs(self, model: Any, input_shape: tuple[int, int, int]) -> int:
        """Forward multiply-accumulates per example counted from the built model (conv and dense)."""

    def to_torch_state(self, model: Any) -> dict[str, np.ndarray]:
        """Weights and BN statistics as a torch state dict of NumPy arrays (the port's format)."""

    def load_torch_state(self, model: Any, state: dict[str, np.ndarray]) -> None:
        """Assign such a state dict to the model; keys must match exactly."""

    def checkpoint_state(self, path: Path) -> dict[str, np.ndarray]:
        """The trained network's state dict (that format) from one of this twin's run checkpoints,
        loaded without running code from it; `study.core.errors.CheckpointError` if it is unreadable."""

    def resume_problem(self, out_dir: Path) -> tuple[Path, str] | None:
        """The resume file of an unfinished run in `out_dir` that cannot be loaded safely, and why
        (None: there is none, or it loads). Loads nothing that could run code."""

    def forward(self, model: Any, x: np.ndarray, training: bool) -> np.ndarray:
        """Logits (batch, classes) of NHWC images; training=True uses and updates BN batch statistics."""

    def forward_backward(self, model: Any, x: np.ndarray, labels: np.ndarray) -> Probe:
        """One train-mode pass and the gradients of the mean cross-entropy, in torch layout."""

    def block_gradients(self, model: Any, x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """||d loss / d output|| of the stem ("stem") and of every block (by name), one train-mode pass."""

    def train(
        self,
        spec: NetworkSpec,
        dataset: Dataset,
        run: RunContext,
        backbone: Any = None,
        verbose: int = 1,
    ) -> TrainOutcome:
        """Train `spec` (or the given backbone) with the recipe (`run.train_spec`) on the data set's batches
        (`study.core.data.epoch_batches`), starting from `study.core.init.initial_state` unless a
        backbone is given; the checkpoint lands in `run.out_dir`."""

    def raw_loop(
        self,
        spec: NetworkSpec,
        train_spec: TrainSpec,
        x: np.ndarray,
        y: np.ndarray,
        device: str,
        precision: str,
        compile: bool = False,
    ) -> RawLoop:
        """The bench baseline for `spec` on these arrays."""

    def gpu_count(self) -> int:
        """GPUs the framework sees."""

    def gpu_name(self) -> str:
        """The first GPU's model name ("" without one): the bench looks up its peak FLOP/s by it."""

    def use_cpu_only(self) -> None:
        """Keep the framework off the GPUs (where it would otherwise place work there by itself)."""

    def full_precision_matmuls(self) -> None:
        """Switch off reduced-precision float32 math (TF32 on NVIDIA GPUs) for the agreement checks
        (docs/design.md, convention 6); a no-op on CPUs."""

    def set_threads(self, threads: int) -> None:
        """Intra- and inter-op CPU threads; call before the framework starts its runtime."""


def keras_backend(backend: str) -> str | None:
    """The Keras backend a twin runs on ("tensorflow", "jax", "torch"), or None for Lightning."""
    return _PACKAGES[backend][1]


def process_groups(backends: tuple[str, ...], evaluator: str | None = None) -> list[tuple[str, ...]]:
    """`backends` in groups one process can hold, in order: each Keras backend in a group of its own,
    Lightning in the first. With an `evaluator` (a twin every group also loads, e.g. the study's probe
    twin) that is a Keras twin, every Keras backend must be that one."""
    keras = [b for b in backends if keras_backend(b)]
    if evaluator and keras_backend(evaluator) and any(b != evaluator for b in keras):
        raise UserError(f"the probe twin {evaluator} cannot run beside {', '.join(sorted(set(keras) - {evaluator}))}")
    groups = [[b] for b in dict.fromkeys(keras)] or [[]]
    if "lightning" in backends:
        groups[0].append("lightning")
    return [tuple(group) for group in groups]


def check_devices(backend: str, count: int) -> None:
    """A one-line `UserError` where `backend` cannot train data-parallel on `count` devices."""
    if count > 1 and keras_backend(backend) == "torch":
        raise UserError(f"--devices {count}: Keras on torch trains on one device; use keras, keras-jax or lightning")


def request_cpu_devices(backend: str, count: int) -> None:
    """Let `backend` see `count` CPU devices for data parallelism without GPUs. JAX shows one CPU
    device unless XLA is told otherwise before it starts, so this must run before the twin loads;
    the other twins make their CPU replicas themselves (TensorFlow: logical devices; Lightning: processes)."""
    if keras_backend(backend) != "jax" or count <= 1:
        return
    if "jax" in sys.modules:
        raise UserError(f"--devices {count}: JAX already started in this process with its own CPU devices")
    flag = "--xla_force_host_platform_device_count"
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(flag)]
    os.environ["XLA_FLAGS"] = " ".join([*kept, f"{flag}={count}"])


def installed(backend: str) -> bool:
    """Whether `backend`'s frameworks are installed (looked up, not imported: `load` may still fail)."""
    return all(importlib.util.find_spec(module) is not None for module in REQUIRES[backend])


def loadable_here(backend: str) -> bool:
    """Whether this process can load `backend`: not a Keras twin on a backend other than the one Keras
    already runs on here."""
    keras = keras_backend(backend)
    return keras is None or "keras" not in sys.modules or sys.modules["keras"].backend.backend() == keras


def load(backend: str) -> Twin:
    """The twin named `backend` (one of BACKENDS), imported on first use.

    A Keras twin sets KERAS_BACKEND before Keras is imported; a process that already imported Keras
    on another backend cannot load it (a `UserError` says so: run that backend in a process of its own).
    """
    if backend not in _PACKAGES:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    package, keras = _PACKAGES[backend]
    if keras is not None:
        if not loadable_here(backend):
            current = sys.modules["keras"].backend.backend()
            raise UserError(f"{backend} needs a process of its own: Keras already runs on {current} in this one")
        os.environ["KERAS_BACKEND"] = keras
        # A study's workers share one GPU: JAX would take 75 % of its memory per process and TensorFlow
        # all of it when it starts; both allocate as they go instead (a user's own setting is kept).
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    try:
        module = importlib.import_module(f"{package}.twin")
    except ImportError as error:  # its framework is not installed here (the others still work)
        raise UserError(
            f"the {backend} backend cannot load here ({error}); install it with: {INSTALL[backend]}"
        ) from None
    if not isinstance(module, Twin):
        missing = [name for name in (*Twin.__annotations__, *vars(Twin)) if not name.startswith("_")]
        missing = [name for name in missing if not hasattr(module, name)]
        raise TypeError(f"{module.__name__} does not implement study.core.twin.Twin: missing {', '.join(missing)}")
    return module
