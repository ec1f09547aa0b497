"""Weights & Biases: where runs go, what every run's config and tags hold, and the one epoch axis.

Both twins log the same keys (`study.core.records.EpochRecord.wandb_row`) against one 1-based step
metric, ``epoch`` (`define_metric`), through `RunContext.publish`: the frameworks' own W&B
integrations (Lightning's `WandbLogger`, Keras' `WandbMetricsLogger`) each log keys, steps and config
of their own (``trainer/global_step``, a 0-based ``epoch/epoch``, ``epoch/val_loss``, hyperparameters),
so parity on the dashboard needs one framework-neutral logger.

W&B's own environment variables are honoured where no flag is given: ``WANDB_MODE`` (else offline),
``WANDB_PROJECT`` (else resnet-study), ``WANDB_DIR`` (else the run's own folder) and
``WANDB_RUN_GROUP`` (else the study id).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

from study.core.errors import UserError
from study.core.records import STEP_METRIC
from study.core.twin import Twin

WANDB_MODES = ("offline", "online", "disabled")
DEFAULT_PROJECT = "resnet-study"
_LEGACY_MODES = {"dryrun": "offline", "run": "online"}  # values WANDB_MODE still accepts


def resolve_mode(flag: str | None) -> str:
    """--wandb if given, else WANDB_MODE, else offline (no account or network needed)."""
    if flag is not None:
        return flag
    mode = os.environ.get("WANDB_MODE", "offline")
    mode = _LEGACY_MODES.get(mode, mode)
    if mode not in WANDB_MODES:
        raise UserError(f"WANDB_MODE={os.environ['WANDB_MODE']!r} is not one of {', '.join(WANDB_MODES)}")
    return mode


def project() -> str:
    return os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT


def library_versions(twin: Twin) -> dict[str, str]:
    """Python, NumPy, W&B and the twin's own packages. The same keys for every twin (the dashboard
    compares configs key by key): the framework's packages are one string."""
    framework = ", ".join(f"{package} {package_version(package)}" for package in twin.PACKAGES)
    return {"python": platform.python_version(), "numpy": package_version("numpy"),
            "wandb": package_version("wandb"), "framework": framework}  # fmt: skip


def package_version(package: str) -> str:
    """The installed distribution's version, or "not installed" (W&B is optional where nothing logs)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def run_tags(arch: str, depth: int, backend: str, seed: int, dataset: str, study: str | None) -> list[str]:
    """Tags every training run carries: enough to filter the dashboard to one cell, backend or seed."""
    tags = [arch, f"depth-{depth}", f"{arch}-{depth}", backend, f"seed-{seed}", dataset]
    return [*tags, f"study-{study}"] if study else tags


def start_wandb(
    mode: str,
    out_dir: Path,
    config: dict,
    group: str,
    job_type: str,
    tags: list[str],
    name: str,
    run_id: str | None = None,
):
    """One W&B run (None when disabled), resumed when `run_id` names an earlier attempt of it.

    Offline runs land in `out_dir/wandb/` (or WANDB_DIR). Every metric logged under ``epoch/`` is
    plotted against the step metric ``epoch``.
    """
    if mode == "disabled":
        return None
    import wandb

    run = wandb.init(
        project=project(),
        group=os.environ.get("WANDB_RUN_GROUP") or group,
        job_type=job_type,
        tags=tags,
        name=name,
        config=config,
        mode=mode,
        id=run_id,
        resume="allow" if run_id else None,
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off"),
        **({} if os.environ.get("WANDB_DIR") else {"dir": str(out_dir)}),
    )
    run.define_metric(STEP_METRIC)
    run.define_metric(f"{STEP_METRIC}/*", step_metric=STEP_METRIC)
    return run
