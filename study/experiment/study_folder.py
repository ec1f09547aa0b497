"""The study folder on disk: opening it (study.json) and its tables rebuilt from the finished runs
(`study.experiment.collect` merges the runs of several machines' folders).

A run is finished when its `summary.json` exists (written last, atomically). The tables are rebuilt
from the finished runs under a lock and renamed into place, so a reader never sees half a table and
killing the study at any moment loses no finished run. The folder's files are `study.files`.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
from collections.abc import Iterator
from pathlib import Path

from study.configs import GridPoint, StudyConfig
from study.core.errors import UserError
from study.files import (
    BLOCK_RATIO_COLUMNS,
    BLOCK_RATIOS,
    GRADNORM_COLUMNS,
    GRADNORMS,
    HISTORY,
    HISTORY_COLUMNS,
    LESION,
    LESION_COLUMNS,
    RESULT_COLUMNS,
    RESULTS,
    RUN_IDENTITY,
    RUNS,
    STUDY,
    SUMMARY,
    claim_folder,
    write_csv,
)
from study.schemas.study_folder import StudyFile
from study.verdicts.inputs import load_study, load_summary


def open_study(out: Path, config: StudyConfig) -> str:
    """Create or resume the study folder; returns the study id (the W&B group). A folder that is not
    new, empty or a study folder (study.json) is refused, untouched."""
    claim_folder(out, (STUDY,), "study")
    path = out / STUDY
    if path.exists():
        existing = load_study(path)
        if existing["config"] != config.to_dict():
            declared = existing["config"].get("settle", 0)
            if {k: v for k, v in existing["config"].items() if k != "settle"} == {
                k: v for k, v in config.to_dict().items() if k != "settle"
            }:
                raise UserError(
                    f"--settle is declared when a study starts (its looks share alpha): {out} was started with "
                    + (f"--settle {declared}; resume it with the same" if declared else "no --settle; use a new --out")
                )
            raise UserError(
                f"{out} holds a study with a different config ({existing['config']['name']}); "
                "resume it with the same flags or choose another --out"
            )
        return existing["study_id"]
    study_id = config.study_id
    StudyFile.model_validate({"study_id": study_id, "config": config.to_dict()}).write(path)
    return study_id


def is_finished(out: Path, point: GridPoint) -> bool:
    return (out / RUNS / point.run_key / SUMMARY).exists()


@contextlib.contextmanager
def locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive flock on `path` (created if needed); yields False if busy and not blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _result_row(summary: dict, run_key: str, study_id: str) -> dict:
    spec = summary["config"]["spec"]
    chance = 1.0 - 1.0 / spec["classes"]  # a diverged run is a failure, whenever it diverged
    row = {
        "run_key": run_key,
        "study": study_id,
        "shortcut": spec["shortcut"],
        "activation": spec["activation"],
        "norm": spec["norm"],
        **{k: summary[k] for k in ("backend", "arch", "depth", "seed", "dataset", "epochs", "epochs_completed")},
        **{k: summary[k] for k in ("final_train_loss", "diverged", "wall_s", "train_img_per_s", "params")},
    }
    for key in ("final_train_error", "final_test_error", "best_test_error"):
        row[key] = chance if summary["diverged"] or summary[key] is None else summary[key]
    return row


def _read_rows(path: Path) -> list[dict]:
    if not path.exists() or not path.stat().st_size:
        return []
    with open(path) as handle:
        return list(csv.DictReader(handle))


def update_tables(out: Path) -> list[dict]:
    """Rebuild results.csv, history.csv, gradnorms.csv, lesion.csv and norms.csv from the finished
    (and probed) runs, atomically. Initialization rows of norms.csv are the same for every backend's
    run of a seed: kept once, without a run."""
    study_id = load_study(out / STUDY)["study_id"] if (out / STUDY).exists() else ""
    results, histories, gradnorms, lesions, norms, init_seen = [], [], [], [], [], set()
    with locked(out / ".tables.lock"):
        for summary_path in sorted((out / RUNS).glob(f"*/{SUMMARY}")):
            run_key = summary_path.parent.name
            if run_key.startswith("."):  # a run folder still being copied or unpacked in (collect, Ray)
                continue
            summary = load_summary(summary_path)  # one line naming a malformed one
            row = _result_row(summary, run_key, study_id)
            results.append(row)
            ident = {k: row[k] for k in RUN_IDENTITY}
            history_path = summary_path.parent / HISTORY
            if history_path.exists() and history_path.stat().st_size:
                with open(history_path) as handle:
                    for epoch in csv.DictReader(handle):
                        histories.append(ident | epoch)
                        layers = [k for k in epoch if k.startswith("grad_norm/")]
                        gradnorms += [
                            ident
                            | {
                                "epoch": epoch["epoch"],
                                "layer_index": i,
                                "layer": k.split("/", 1)[1],
                                "grad_norm": epoch[k],
                            }
                            for i, k in enumerate(layers)
                        ]
            network = ident | {"activation": row["activation"], "norm": row["norm"]}
            lesions += [network | entry for entry in _read_rows(summary_path.parent / LESION)]
            for entry in _read_rows(summary_path.parent / BLOCK_RATIOS):
                if entry["stage"] == "trained":
                    norms.append(network | entry)
                elif (
                    key := (*(network[k] for k in ("arch", "depth", "seed", "activation", "norm")), entry["block"])
                ) not in init_seen:
                    init_seen.add(key)
                    norms.append(network | {"run_key": "", "backend": ""} | entry)
        write_csv(out / RESULTS, results, RESULT_COLUMNS)
        write_csv(out / LESION, lesions, LESION_COLUMNS)
        write_csv(out / BLOCK_RATIOS, norms, BLOCK_RATIO_COLUMNS)
        write_csv(out / HISTORY, histories, HISTORY_COLUMNS)
        write_csv(out / GRADNORMS, gradnorms, GRADNORM_COLUMNS)
    return results
