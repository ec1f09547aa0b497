"""Weights & Biases set-up for a training run: project, modes, library versions."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from study.core.twin import Twin

WANDB_MODES = ("offline", "online", "disabled")
WANDB_PROJECT = "resnet-study"


def library_versions(twin: Twin) -> dict[str, str]:
    """Python's and every distribution's version that a run of `twin` depends on."""
    packages = ("numpy", "wandb", *twin.PACKAGES)
    return {"python": platform.python_version(), **{p: importlib.metadata.version(p) for p in packages}}


def start_wandb(mode: str, out_dir: Path, config: dict, group: str, backend: str, tags: list[str], name: str):
    """One W&B run (None when disabled). Offline runs land in `out_dir/wandb/`."""
    if mode == "disabled":
        return None
    import wandb

    return wandb.init(
        project=WANDB_PROJECT,
        group=group,
        job_type=backend,
        tags=tags,
        name=name,
        config=config,
        dir=str(out_dir),
        mode=mode,
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off"),
    )
