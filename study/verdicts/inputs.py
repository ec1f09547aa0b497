"""What the verdicts read from a study folder, validated: untrusted files in, one line out.

`load_results` (results.csv, required), `load_exactness` (exactness.json, the float64 replay written
by `study.measure.exactness`) and `read_optional` (the other tables: a verdict whose table is missing
says so); `read_study_folder` all of them. Each raises a `UserError` naming the file and the problem
on the first one found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from study.core.data import CLASSES, DATASETS
from study.core.errors import UserError
from study.core.recipe import MAX_SEED
from study.core.spec import ACTIVATIONS, ARCHS, MAX_CIFAR_DEPTH, NORMS, SHORTCUTS
from study.core.twin import BACKENDS
from study.files import (
    BLOCK_RATIOS,
    EXACTNESS,
    GRADFLOW,
    GRADFLOW_FIT,
    GRADNORMS,
    HISTORY,
    LESION,
    RESULTS,
    SETTLE,
    STUDY,
)
from study.schemas import base as schemas
from study.schemas.exactness import Exactness
from study.schemas.run import Summary
from study.schemas.study_folder import SettleFile, StudyFile

# The optional named columns of results.csv and the tables, checked against the names the product
# writes: a crafted folder's text never reaches a report as anything but one of these.
VOCABULARY = {"dataset": DATASETS, "shortcut": SHORTCUTS, "activation": ACTIVATIONS, "norm": NORMS}
MAX_DEPTH = MAX_CIFAR_DEPTH  # the deepest net the specs accept (ImageNet-style nets are shallower)
ERROR_COLUMNS = ("final_train_error", "final_test_error", "best_test_error")
REQUIRED_COLUMNS: tuple[str, ...] = ("run_key", "backend", "arch", "depth", "seed", *ERROR_COLUMNS, "diverged")
DEFAULT_CLASSES = 10  # a results table without a known data set: chance level as for 10 classes
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}


class ResultsError(UserError):
    """results.csv is missing or malformed; the message is one line naming the problem."""


def load_results(path) -> pd.DataFrame:
    """Read and validate results.csv: one row per run, `REQUIRED_COLUMNS` at least.

    Returns the table with ``depth``/``seed`` as int, error columns as float fractions and ``diverged`` as
    bool (parsed from True/False/true/false/1/0). Raises `ResultsError` on the first problem found.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"run_key": str, "backend": str, "arch": str, "diverged": str})
    except OSError as exc:
        raise ResultsError(f"cannot read results file {path}: {exc.strerror or exc}") from None
    except pd.errors.EmptyDataError:
        raise ResultsError(f"results file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError):
        raise ResultsError(f"results file {path} is not a readable CSV table") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ResultsError(f"results file {path} lacks column(s): {', '.join(missing)}")
    if frame.empty:
        raise ResultsError(f"results file {path} has no rows")
    duplicated = frame.run_key[frame.run_key.duplicated()]
    if len(duplicated):
        raise ResultsError(f"results file {path}: duplicate run_key {duplicated.iloc[0]!r}")

    def reject(bad: pd.Series, column: str, expected: str) -> None:
        if bad.any():
            row = frame[bad].iloc[0]
            value = "empty" if pd.isna(row[column]) else repr(str(row[column]))
            raise ResultsError(f"results file {path}: {column} of run {row.run_key!r} is {value}, expected {expected}")

    reject(~frame.backend.isin(BACKENDS), "backend", " or ".join(BACKENDS))
    reject(~frame.arch.isin(ARCHS), "arch", " or ".join(ARCHS))
    for column, names in VOCABULARY.items():  # optional columns, but never free text: the report shows them
        if column in frame:
            reject(~frame[column].astype(str).isin(names), column, " or ".join(names))
    for column, high in (("depth", MAX_DEPTH), ("seed", MAX_SEED)):
        values = pd.to_numeric(frame[column], errors="coerce")
        reject(values.isna() | (values % 1 != 0) | ~values.between(0, high), column, f"an integer in 0..{high}")
        frame[column] = values.astype("int64")
    for column in ERROR_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        reject(~values.between(0.0, 1.0), column, "a number in [0, 1]")  # NaN is not between
        frame[column] = values.astype(float)
    diverged = frame.diverged.str.strip().str.lower().map(_BOOLEANS)
    reject(diverged.isna(), "diverged", "True or False")
    frame["diverged"] = diverged.astype(bool)
    # A diverged run is a failure at chance level, whenever it diverged (a table written before this
    # rule kept the last finite error of a run that diverged after its first epoch).
    classes = frame.dataset.map(CLASSES).fillna(DEFAULT_CLASSES) if "dataset" in frame else DEFAULT_CLASSES
    for column in ERROR_COLUMNS:
        frame[column] = frame[column].where(~frame.diverged, 1.0 - 1.0 / classes)
    return frame


def read_json(path: Path, error: type[UserError] = UserError, kind: str = ""):
    """A JSON file's content, bounded in size and nesting (`study.schemas.base.read_json`), unvalidated."""
    return schemas.read_json(path, error, kind)


class ExactnessError(UserError):
    """exactness.json is unreadable or malformed; the message is one line naming the problem."""


def load_exactness(path: Path) -> dict:
    """exactness.json, validated (`study.schemas.exactness.Exactness`); `ExactnessError` in one line."""
    return Exactness.read(path, ExactnessError).as_dict()


class SettleError(UserError):
    """settle.json is unreadable or malformed; the message is one line naming the problem."""


def load_settle(path: Path) -> dict:
    """settle.json (a `--settle` study's look 1), validated (`study.schemas.study_folder.SettleFile`)."""
    return SettleFile.read(path, SettleError).as_dict()


def load_study(path: Path) -> dict:
    """study.json, validated (`study.schemas.study_folder.StudyFile`): its study id and config."""
    return StudyFile.read(path).as_dict()


def load_summary(path: Path) -> dict:
    """A run's summary.json, validated (`study.schemas.run.Summary`); `ResultsError` in one line."""
    return Summary.read(path, ResultsError).as_dict()


HISTORY_REQUIRED = ("run_key", "backend", "arch", "depth", "seed", "epoch", "train_error")


def load_history(path: Path) -> pd.DataFrame | None:
    """history.csv (None where missing), validated where a verdict reads it: its key columns, integer
    depth, seed and epoch, and training errors in [0, 1] (a diverged run's NaN is kept)."""
    frame = read_optional(path)
    if frame is None:
        return None
    if missing := [c for c in HISTORY_REQUIRED if c not in frame.columns]:
        raise ResultsError(f"history file {path} lacks column(s): {', '.join(missing)}")
    for column in ("depth", "seed", "epoch"):
        values = pd.to_numeric(frame[column], errors="coerce")
        if (values.isna() | (values % 1 != 0)).any():
            raise ResultsError(f"history file {path}: {column} must be an integer in every row")
        frame[column] = values.astype(int)
    errors = pd.to_numeric(frame.train_error, errors="coerce")
    if (errors.notna() & ~errors.between(0.0, 1.0)).any() or (errors.isna() & frame.train_error.notna()).any():
        raise ResultsError(f"history file {path}: train_error must be a number in [0, 1]")
    frame["train_error"] = errors
    return frame


def read_optional(path: Path) -> pd.DataFrame | None:
    """An optional table of the study folder, or None where it is missing or empty."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    except OSError as error:
        raise ResultsError(f"cannot read {path}: {error.strerror or error}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError):
        raise ResultsError(f"{path} is not a readable CSV table") from None
    return frame if not frame.empty else None


# What the verdicts and the report read of each optional table: its columns and their values. "int": a
# whole number >= 0; "number": a number >= 0 (a diverged run's inf included) or empty; "real": a finite
# number or empty;
# "fraction": a number in [0, 1] or empty; "text": anything; a tuple: one of those values.
_IDENTITY = {"backend": (*BACKENDS, ""), "arch": ARCHS, "depth": "int", "seed": "int"}
TABLE_SCHEMAS = {
    LESION: {"run_key": "text", **_IDENTITY, "activation": ACTIVATIONS, "norm": NORMS,
             "kind": ("intact", "single", "random"), "k": "int", "test_error": "fraction"},
    BLOCK_RATIOS: {"stage": ("init", "trained"), "run_key": "text", **_IDENTITY, "activation": ACTIVATIONS,
                   "norm": NORMS, "block_index": "int", "block": "text", "ratio": "number"},
    GRADNORMS: {"run_key": "text", **_IDENTITY, "epoch": "int", "layer_index": "int", "layer": "text",
                "grad_norm": "number"},
    GRADFLOW: {**_IDENTITY, "activation": ACTIVATIONS, "norm": NORMS, "layer_index": "int", "layer": "text",
               "grad_norm": "number"},
    GRADFLOW_FIT: {**_IDENTITY, "activation": ACTIVATIONS, "norm": NORMS, "decay_per_layer": "real",
                   "first_to_last": "number"},
}  # fmt: skip


def read_table(path: Path) -> pd.DataFrame | None:
    """An optional table of the study folder (`TABLE_SCHEMAS`, by file name), validated: None where it
    is missing or empty, else `ResultsError` with one line naming the file, column and run."""
    frame = read_optional(path)
    if frame is None:
        return None
    schema = TABLE_SCHEMAS[path.name]
    if missing := [column for column in schema if column not in frame.columns]:
        raise ResultsError(f"{path} lacks column(s): {', '.join(missing)}")
    for column, rule in schema.items():
        text = frame[column].astype(str).where(frame[column].notna(), "")
        if isinstance(rule, tuple):
            bad = ~text.isin(rule)
            expected = " or ".join(v or "empty" for v in rule)
        elif rule == "text":
            frame[column] = text
            continue
        else:
            values = pd.to_numeric(frame[column], errors="coerce")
            empty = frame[column].isna()
            unparsed = values.isna() & ~empty
            if rule == "int":
                bad = empty | unparsed | (values % 1 != 0) | ~values.between(0, MAX_SEED)
                expected = f"a whole number in 0..{MAX_SEED}"
            else:
                finite = values.abs() < float("inf")
                inside = {"number": values >= 0, "real": finite, "fraction": values.between(0.0, 1.0)}[rule]
                bad = unparsed | (~empty & ~(finite & inside))
                expected = {
                    "number": "a finite number >= 0",
                    "real": "a finite number",
                    "fraction": "a number in [0, 1]",
                }[rule]
            if not bad.any():
                frame[column] = values.astype("int64") if rule == "int" else values.astype(float)
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ResultsError(f"{path}: {column} in row {row + 1} is {text.iloc[row]!r}, expected {expected}")
    return frame


@dataclass
class StudyTables:
    """Everything a study folder holds for the verdicts and the report; only `results` is required."""

    results: pd.DataFrame
    exactness: dict | None = None
    history: pd.DataFrame | None = None
    gradnorms: pd.DataFrame | None = None
    gradflow: pd.DataFrame | None = None
    gradflow_fit: pd.DataFrame | None = None
    lesion: pd.DataFrame | None = None
    norms: pd.DataFrame | None = None
    config: dict = field(default_factory=dict)  # study.json's config ({} where the folder has none)
    study_id: str | None = None  # study.json's study id (None where the folder has none)
    settle: dict | None = None  # settle.json: a --settle study's look 1 (None: a study of one look)


def read_study_folder(folder: Path) -> StudyTables:
    """The tables of a study folder (`study.files`), each validated or None where it is missing."""
    folder = Path(folder)
    return StudyTables(
        results=load_results(folder / RESULTS),
        exactness=load_exactness(folder / EXACTNESS) if (folder / EXACTNESS).exists() else None,
        history=load_history(folder / HISTORY),
        gradnorms=read_table(folder / GRADNORMS),
        gradflow=read_table(folder / GRADFLOW),
        gradflow_fit=read_table(folder / GRADFLOW_FIT),
        lesion=read_table(folder / LESION),
        norms=read_table(folder / BLOCK_RATIOS),
        **(load_study(folder / STUDY) if (folder / STUDY).exists() else {}),  # its config and study id
        settle=load_settle(folder / SETTLE) if (folder / SETTLE).exists() else None,
    )
