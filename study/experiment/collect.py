"""`collect`: the finished runs of one study, from the folders of several machines, merged into one.

A safe merge: every source must be a folder of the same study (its study.json's id), and `out` new,
empty or that study's folder. A run is copied only when finished (its summary.json checks), only
once whatever its folder is called (its identity: backend, data set, spec and recipe), never through
a link (a linked run folder is refused; a link out of a run folder is left behind), and atomically
(copied under a hidden name in `out`, then renamed): a collect killed or out of disk leaves nothing
a rerun trips on, and the rerun completes it. The replay (exactness.json) and the gradient-flow
tables come along where `out` has none. A run that cannot be collected costs one line; the others
are merged. Two collects into one folder never interleave: each holds an exclusive lock on the
folder itself for the whole merge; the second waits, saying so in one line, then merges what the
first did not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from study.core.errors import UserError
from study.experiment.study_folder import update_tables
from study.files import EXACTNESS, GRADFLOW, GRADFLOW_FIT, RUNS, STUDY, SUMMARY, atomic_write, claim_folder
from study.schemas.study_folder import StudyFile
from study.verdicts.inputs import load_exactness, load_study, load_summary, read_table

INCOMING = ".incoming-"  # a run being copied in; a later collect removes what a killed one left
CARRIED = (EXACTNESS, GRADFLOW, GRADFLOW_FIT)  # the study's own files, beside its runs


def identity(summary: dict) -> str:
    """What determines a run's result, as its summary's config records it: a renamed copy is the same run."""
    config = summary["config"]
    return json.dumps({k: config.get(k) for k in ("backend", "dataset", "spec", "train_spec")}, sort_keys=True)


def _outward_links(run: Path):
    """copytree's `ignore`: the links in a run folder that lead out of it (W&B's `debug-core.log` points
    into the user's cache) are left behind, never followed; links within the run are copied as links."""
    inside = run.resolve()

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if (p := Path(folder) / n).is_symlink() and not p.resolve().is_relative_to(inside)}

    return ignore


def _sources(out: Path, sources: list[Path]) -> dict:
    """Each source's study.json, checked to be one study (and `out`'s, where it has one)."""
    studies = {}
    for source in map(Path, sources):
        if source.is_symlink() or not (source / RUNS).is_dir() or not (source / STUDY).is_file():
            raise UserError(f"{source} is not a study folder (no {STUDY} and {RUNS}/ inside)")
        studies[source] = load_study(source / STUDY)
    ids = {study["study_id"]: source for source, study in studies.items()}
    if (out / STUDY).exists():
        ids.setdefault(load_study(out / STUDY)["study_id"], out)
    if len(ids) > 1:
        named = ", ".join(f"{source} ({study_id})" for study_id, source in ids.items())
        raise UserError(f"collect merges the runs of one study; these folders hold different studies: {named}")
    return studies


def _copy_run(run: Path, target: Path) -> None:
    incoming = target.with_name(INCOMING + target.name)
    try:
        shutil.copytree(run, incoming, symlinks=True, ignore=_outward_links(run))  # nothing is followed
        os.rename(incoming, target)
    except OSError as error:
        shutil.rmtree(incoming, ignore_errors=True)
        raise UserError(f"cannot copy {run} into {target.parent}: {error.strerror or error}") from None


def _carry(out: Path, source: Path, config: dict, notes: list[str]) -> None:
    """The source's replay and gradient-flow tables into `out`, where it has none and they check."""
    for name in CARRIED:
        if (out / name).exists() or not (source / name).is_file() or (source / name).is_symlink():
            continue
        try:
            if name == EXACTNESS:
                evidence = load_exactness(source / name)
                if evidence.get("dataset", config.get("dataset")) != config.get("dataset"):
                    raise UserError(f"{source / name} replays the {evidence.get('dataset')} data set, not the study's")
            else:
                read_table(source / name)
        except UserError as error:
            notes.append(f"{error}; not collected")
            continue
        data = (source / name).read_bytes()
        atomic_write(out / name, lambda handle, data=data: handle.write(data))


@contextlib.contextmanager
def _merging_into(out: Path, wait: Callable[[str], None]) -> Iterator[None]:
    """An exclusive lock on the folder `out` itself (flock of its descriptor, so no file of ours is
    needed in a folder not yet known to be ours), released when the merge ends or its process dies."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise UserError(f"{out} cannot be opened: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            wait(f"{out}: another collect is merging into it; waiting until it ends")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def collect(out: Path, sources: list[Path], wait: Callable[[str], None] = print) -> tuple[list[dict], list[str]]:
    """Merge the finished runs of `sources` into `out` (module docstring); returns the results rows and
    one line for each thing not collected. `wait` hears one line if another collect holds `out`."""
    out = Path(out)
    _sources(out, sources)  # every source checked before anything is made
    if not out.is_dir():
        claim_folder(out, (STUDY,), "study")  # a file refused; a new folder made, to be locked
    with _merging_into(out, wait):
        return _merge(out, sources)


def _merge(out: Path, sources: list[Path]) -> tuple[list[dict], list[str]]:
    studies = _sources(out, sources)  # again: the collect we waited for may have given `out` its study
    claim_folder(out, (STUDY,), "study")
    if not (out / STUDY).exists():
        StudyFile.model_validate(next(iter(studies.values()))).write(out / STUDY)
    config = load_study(out / STUDY)["config"]
    (out / RUNS).mkdir(exist_ok=True)
    for leftover in (out / RUNS).glob(INCOMING + "*"):  # what a killed collect left: ours, half copied
        shutil.rmtree(leftover, ignore_errors=True)
    have = {identity(load_summary(path)) for path in (out / RUNS).glob(f"*/{SUMMARY}")}
    notes: list[str] = []
    for source in studies:
        for run in sorted((source / RUNS).iterdir()):
            if run.name.startswith("."):  # locks, and runs being copied into the source
                continue
            if run.is_symlink() or not run.is_dir():
                notes.append(f"{run}: a link or a file, not a run folder; not collected")
                continue
            if not (run / SUMMARY).is_file():  # unfinished
                continue
            try:
                summary = load_summary(run / SUMMARY)
            except UserError as error:
                notes.append(f"{error}; not collected")
                continue
            if identity(summary) in have:
                continue
            target = out / RUNS / run.name
            if target.exists():
                notes.append(f"{run}: {target} holds another run; not collected")
                continue
            _copy_run(run, target)
            have.add(identity(summary))
        _carry(out, source, config, notes)
    return update_tables(out), notes
