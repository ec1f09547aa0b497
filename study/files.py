"""The study folder's files: their names, their CSV columns, and how every one of them is written.

A study folder (`resnet-study run --out DIR`)::

    study.json              the config and its W&B group (the study id)
    runs/<run_key>/         one training run: history.csv, summary.json, checkpoint, wandb/
    results.csv             one row per finished run (RESULT_COLUMNS)
    history.csv             one row per run and epoch (HISTORY_COLUMNS)
    gradnorms.csv           one row per run, epoch and weighted layer (GRADNORM_COLUMNS)
    gradflow.csv            per-layer gradient norms at initialization (`study.measure.gradflow`)
    gradflow_fit.csv        their fitted decay per network
    exactness.json          the float64 replay of the recipe by every twin (`study.measure.exactness`)
    settle.json             a `run --settle N` study's look 1: the undecided cells and the seeds added to them
    timings.json            where the last invocation's time went: wall and CPU seconds per phase and run
    lesion.csv              test errors of every trained network with blocks deleted (the lesion study)
    norms.csv               block gradient ratios at initialization and after training (norm preservation)
    verdict.json            the verdicts and the statistics behind them (`study.verdicts`)
    report.md, report.html  the report, with figures/ beside it

A training folder (`resnet-study train --out DIR`, and each ``runs/<run_key>/``) holds run.json
(written when the run starts: its configuration and W&B run id), the twin's checkpoint (saved after
every epoch, so a restarted run resumes), history.csv (one row per epoch:
`study.core.records.EpochRecord.to_row`) and summary.json (written last: a folder without it holds no
finished run).

Every file is written whole or not at all (`atomic_write_text`): readers, a killed process and a
second writer never see half a file. docs/design.md documents the columns.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from study.core.errors import UserError

STUDY = "study.json"
RUNS = "runs"
RESULTS = "results.csv"
HISTORY = "history.csv"  # a run's epochs; in a study folder, every run's epochs
SUMMARY = "summary.json"
RUN_STATE = "run.json"  # a run's identity and W&B id, written when it starts: how a restart resumes it
GRADNORMS = "gradnorms.csv"
GRADFLOW = "gradflow.csv"
GRADFLOW_FIT = "gradflow_fit.csv"
EXACTNESS = "exactness.json"
TIMINGS = "timings.json"  # where the invocation's time went (`study.experiment.timings`)
SETTLE = "settle.json"  # a --settle study's look 1: the cells it left undecided and the seeds added to them
LESION = "lesion.csv"  # a run's, and the study's: test errors with blocks deleted (the lesion study)
BLOCK_RATIOS = "norms.csv"  # a run's, and the study's: block gradient ratios (norm preservation)
VERDICT = "verdict.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"

RESULT_COLUMNS = [
    "run_key", "study", "backend", "arch", "depth", "shortcut", "activation", "norm", "seed", "dataset",
    "epochs", "epochs_completed", "final_train_loss", "final_train_error", "final_test_error",
    "best_test_error", "diverged", "wall_s", "train_img_per_s", "params",
]  # fmt: skip
RUN_IDENTITY = ["run_key", "backend", "arch", "depth", "seed"]  # the first columns of the per-run tables
HISTORY_COLUMNS = [*RUN_IDENTITY, "epoch", "train_loss", "train_error", "test_loss", "test_error", "lr", "wall_s",
                   "train_img_per_s"]  # fmt: skip
GRADNORM_COLUMNS = [*RUN_IDENTITY, "epoch", "layer_index", "layer", "grad_norm"]
LESION_COLUMNS = [*RUN_IDENTITY, "activation", "norm", "kind", "k", "draw", "blocks", "test_error"]
BLOCK_RATIO_COLUMNS = [
    "stage",
    *RUN_IDENTITY,
    "activation",
    "norm",
    "block_index",
    "block",
    "grad_in",
    "grad_out",
    "ratio",
]


_UMASK = os.umask(0o022)  # read once; written files get the ordinary mode (0666 less the umask)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write via a temporary file in the same folder and rename: readers, a killed process and a second
    writer see all or nothing, and a failed write (disk full, read-only folder) leaves nothing behind
    and ends in one line naming the path (`UserError`)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`text` (UTF-8) into `path`, atomically (`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text.encode()))


def claim_folder(path: Path, markers: tuple[str, ...], what: str, flag: str = "--out") -> Path:
    """`path` as a folder this tool may write into: a new or empty one, or one that holds one of
    `markers` (the files by which this tool knows its own folders: study.json, run.json, ...). Anything
    else is a user's folder: refused in one line, nothing in it touched."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder")
    if path.is_dir() and not any((path / marker).exists() for marker in markers):
        try:
            empty = next(path.iterdir(), None) is None
        except OSError as error:
            raise UserError(f"{flag} {path} cannot be read: {error.strerror or error}") from None
        if not empty:
            raise UserError(
                f"{flag} {path} is not empty and holds no {what} of this tool ({' or '.join(markers)}); "
                "choose a new or empty folder (nothing in it was touched)"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{flag} {path} cannot be created: {error.strerror or error}") from None
    return path


def csv_text(columns: list[str], rows: list[dict]) -> str:
    """CSV with a header; keys of a row outside `columns` are left out, missing ones left empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """`rows` as a CSV file, atomically; `columns` defaults to the first row's keys (no rows: empty file)."""
    if columns is None:
        columns = list(rows[0]) if rows else []
    atomic_write_text(path, csv_text(columns, rows) if columns else "")


# exactness.json (`study.measure.exactness` writes it, `study.verdicts.inputs.load_exactness` reads it)
EXACTNESS_SCHEMA = 2  # 2 added each network's "rounding" (its sensitivity to rounding); 1 is still read
EXACTNESS_SCHEMAS = (1, 2)
EXACTNESS_TOLERANCE = 1e-8  # float64: the twins agree to ~1e-14, a recipe difference moves a quantity >= 1e-4
# A network is judged only where rounding alone stays far inside the tolerance: one twin's replay from
# initial weights perturbed by 1e-13 (relative; about the twins' own rounding differences after one
# forward pass of a deep net) must move no quantity by more than a tenth of the tolerance.
EXACTNESS_PERTURBATION = 1e-13
EXACTNESS_ROUNDING_LIMIT = EXACTNESS_TOLERANCE / 10
EXACTNESS_EPOCH_QUANTITIES = ("train_loss", "train_error", "test_loss", "test_error", "lr")
EXACTNESS_QUANTITIES = ("step_losses", *EXACTNESS_EPOCH_QUANTITIES, "grad_norms", "final_weights", "final_bn_stats")
