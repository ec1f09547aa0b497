"""A run folder as one archive, to move it between machines without a shared filesystem: packed where
the run trained (`pack`), landed in the study folder whole or not at all (`land_run`)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

from study.core.errors import UserError
from study.files import SUMMARY, atomic_write
from study.verdicts.inputs import load_summary

LANDING = ".landing-"  # a run folder being unpacked into runs/ (named with the driver's pid)


def _outside(path: Path, root: Path) -> bool:
    return path.is_symlink() and not path.resolve().is_relative_to(root.resolve())


def pack(folder: Path, names: list[str] | None = None) -> bytes:
    """`folder` (or only the files `names` in it) as an uncompressed tar archive of relative paths; a
    link leading out of the folder (W&B's debug-core.log points into the user's cache) is left out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in names if names is not None else sorted(os.listdir(folder)):

            def keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
                return None if _outside(folder / member.name, folder) else member

            archive.add(folder / name, arcname=name, filter=keep)
    return buffer.getvalue()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def land_run(run_dir: Path, folder: bytes) -> dict:
    """A returned run folder into `run_dir`, whole or not at all: unpacked beside it (only regular
    files and folders within it: tarfile's "data" filter), its summary.json checked and written last,
    then renamed into place (an unfinished attempt's folder there is replaced). A run already finished
    there is kept and the new copy dropped: a run is never in the study twice."""
    runs = run_dir.parent
    incoming = runs / f"{LANDING}{os.getpid()}-{run_dir.name}"
    stale = runs / f"{LANDING}{os.getpid()}-stale-{run_dir.name}"
    for leftover in (incoming, stale):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        incoming.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(folder)) as archive:
            members = archive.getmembers()
            archive.extractall(incoming, members=[m for m in members if m.name != SUMMARY], filter="data")
            summary = archive.extractfile(SUMMARY).read() if SUMMARY in archive.getnames() else None
        if summary is None:
            raise UserError(f"{run_dir.name}: the run's folder came back without {SUMMARY}")
        atomic_write(incoming / SUMMARY, lambda handle: handle.write(summary))
        checked = load_summary(incoming / SUMMARY)
        if (run_dir / SUMMARY).exists():
            shutil.rmtree(incoming)
            return load_summary(run_dir / SUMMARY)
        if run_dir.exists():
            os.rename(run_dir, stale)
        os.rename(incoming, run_dir)
        _fsync_folder(runs)
    except tarfile.TarError as error:  # not a folder this tool packed: nothing of it is kept
        shutil.rmtree(incoming, ignore_errors=True)
        raise UserError(f"{run_dir.name}: the run's folder came back malformed ({error})") from None
    except OSError as error:
        shutil.rmtree(incoming, ignore_errors=True)
        raise UserError(f"cannot write {run_dir}: {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    shutil.rmtree(stale, ignore_errors=True)
    return checked


def remove_dead_landings(runs: Path) -> None:
    """What a killed driver left half unpacked (its pid no longer runs): never a finished run."""
    for leftover in runs.glob(f"{LANDING}*"):
        pid = leftover.name[len(LANDING) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except PermissionError:  # another user's process: not ours to judge
            pass
