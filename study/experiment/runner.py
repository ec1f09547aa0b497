"""The resumable study runner: one folder per grid point, tables regenerated atomically.

The folder's files are described in `study.files`.

A run is finished when its `summary.json` exists (written last, atomically). The tables are rebuilt
from the finished runs under a lock and renamed into place, so killing the study at any moment,
SIGKILL included, loses no finished run and leaves no half-written row; running the same command
again skips every finished run and resumes the interrupted ones from their last completed epoch. Each run holds an
exclusive lock on its folder while it trains, so parallel workers (or sweep agents sharing a disk)
never train the same point twice.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import TextIO

from study.configs import GridPoint, StudyConfig
from study.core.errors import UserError
from study.core.twin import load, loadable_here, process_groups
from study.experiment.console import LOG, progress_bar, redirect_descriptors
from study.experiment.memory import keep_freed_memory
from study.experiment.post_run import is_probed, probe_run
from study.experiment.training_run import run_training
from study.files import (
    BLOCK_RATIO_COLUMNS,
    BLOCK_RATIOS,
    EXACTNESS,
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
    atomic_write_text,
    write_csv,
)
from study.measure.exactness import compare_replays, replay_networks, write_exactness
from study.tracking.dashboard import model_artifact_name
from study.verdicts.inputs import load_exactness


def open_study(out: Path, config: StudyConfig) -> str:
    """Create or resume the study folder; returns the study id (the W&B group)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / STUDY
    if path.exists():
        existing = json.loads(path.read_text())
        if existing["config"] != config.to_dict():
            raise UserError(
                f"{out} holds a study with a different config ({existing['config']['name']}); "
                "resume it with the same flags or choose another --out"
            )
        return existing["study_id"]
    study_id = config.study_id
    atomic_write_text(path, json.dumps({"study_id": study_id, "config": config.to_dict()}, indent=2))
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


def run_point(
    point: GridPoint, out: Path, study_id: str, data_dir=None, wandb_mode=None, device="auto", log_model=True
) -> dict | None:
    """Train one grid point into ``out/runs/<run_key>`` unless finished or being trained elsewhere.

    Returns its summary, or None when another process holds the point.
    """
    run_dir = out / RUNS / point.run_key
    with locked(out / RUNS / f".{point.run_key}.lock", blocking=False) as mine:
        if not mine:
            return None
        if (run_dir / SUMMARY).exists():
            return json.loads((run_dir / SUMMARY).read_text())
        # An interrupted attempt's folder is resumed from its last completed epoch (study.experiment.training_run).
        request = point.request(
            run_dir, data_dir=data_dir, wandb_mode=wandb_mode, device=device, study=study_id, log_model=log_model,
            artifact_name=model_artifact_name(point.run_key), verbose=0,
        )  # fmt: skip
        summary = run_training(request)
    update_tables(out)
    return summary


def _result_row(summary: dict, run_key: str, study_id: str) -> dict:
    spec = summary["config"]["spec"]
    chance = 1.0 - 1.0 / spec["classes"]  # a run that diverged before finishing one epoch
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
        row[key] = summary[key] if summary[key] is not None else chance
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
    study_id = json.loads((out / STUDY).read_text())["study_id"] if (out / STUDY).exists() else ""
    results, histories, gradnorms, lesions, norms, init_seen = [], [], [], [], [], set()
    with locked(out / ".tables.lock"):
        for summary_path in sorted((out / RUNS).glob(f"*/{SUMMARY}")):
            run_key = summary_path.parent.name
            summary = json.loads(summary_path.read_text())
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


def _exit_with_parent(parent: int) -> None:
    """Workers die with the study process (even under SIGKILL), so a restart never races an orphan."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _init_worker(threads: int, parent: int, backends: tuple[str, ...], log_path: Path) -> None:
    redirect_descriptors(log_path)  # before any framework is imported: they print from C++ at import
    keep_freed_memory()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if threads == 1:  # JAX's CPU thread pool is set when it starts, from XLA_FLAGS alone
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    for backend in backends:
        load(backend).set_threads(threads)


class _InProcess(Executor):
    """Runs each task as it is submitted (one worker): the same loop as with a process pool."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to whoever asks the future, as a pool does
            future.set_exception(error)
        return future


def run_study(
    config: StudyConfig,
    out: Path,
    workers: int = 1,
    data_dir=None,
    wandb_mode: str | None = None,
    device: str = "auto",
    terminal: TextIO | None = None,
    log_model: bool = True,
) -> list[dict]:
    """Run every unfinished grid point (in `workers` processes) and probe every trained run
    (`study.experiment.post_run`); returns the results rows.

    The tasks: first the float64 replay of the recipe (`study.measure.exactness`), then the runs, and each
    run's probe once it is trained. `terminal` gets the study's own lines and a progress bar (None:
    nothing); the frameworks' output goes to `study.experiment.console.LOG` in the study folder.
    """
    out = Path(out)
    study_id = open_study(out, config)
    points = config.points()
    pending = [p for p in points if not is_finished(out, p)]
    unprobed = [p for p in points if is_finished(out, p) and not is_probed(out / RUNS / p.run_key)]
    say = (lambda line: None) if terminal is None else (lambda line: print(line, file=terminal, flush=True))  # noqa: E731
    say(
        f"study {study_id}: {len(points) - len(pending)} of {len(points)} runs finished, {len(pending)} to run "
        f"(frameworks' output: {out / LOG})"
    )
    bar = progress_bar(len(pending) + len(unprobed), terminal) if terminal is not None else None

    def write(line: str) -> None:
        bar.write(line, file=terminal) if bar is not None else say(line)

    def replayed(evidence: dict) -> None:
        worst = evidence["worst"]
        write(
            f"exactness: float64 replay of the recipe by {', '.join(evidence['backends'])}: "
            + ("passed" if evidence["passed"] else "FAILED")
            + (f" (largest difference {worst['error']:.1e} in {worst['quantity']}, {worst['spec']})" if worst else "")
        )

    def trained(point: GridPoint, summary: dict | None) -> bool:
        """Whether this process probes the run (not when another process trains it)."""
        name = f"{point.backend} {point.arch}-{point.depth} seed {point.seed}"
        if summary is None:
            write(f"{name}: running elsewhere, skipped")
            if bar is not None:
                bar.update(1)
            return False
        if summary["diverged"]:
            write(f"{name}: diverged")
        elif bar is not None:
            bar.set_postfix_str(f"last: {name}, train error {summary['final_train_error']:.3f}", refresh=False)
        return True

    exactness = out / EXACTNESS
    replay = len(config.backends) > 1  # the twins' exactness needs two of them; first, it takes seconds
    if replay and exactness.exists():
        replayed(load_exactness(exactness))
        replay = False
    groups = process_groups(config.backends, config.probe_backend)
    replays: list[dict] = []
    args = (out, study_id, data_dir, wandb_mode, device, log_model)

    def run_group(group: tuple[str, ...]) -> None:
        """The group's replay, runs and probes, in processes that hold its twins and the probe twin."""
        twins = tuple(dict.fromkeys((*group, config.probe_backend)))
        if workers <= 1 and all(loadable_here(backend) for backend in twins):
            executor = _InProcess()
        else:  # one process per worker, or a process of its own for a Keras backend this one cannot hold
            threads = max(1, (os.cpu_count() or 1) // max(1, workers))
            initargs = (threads, os.getpid(), twins, out / LOG)
            executor = ProcessPoolExecutor(
                max(1, workers), get_context("spawn"), initializer=_init_worker, initargs=initargs
            )
        probe = lambda point: executor.submit(probe_run, out / RUNS / point.run_key, data_dir, config.probe_backend)  # noqa: E731
        with executor:
            tasks: dict[Future, tuple[str, GridPoint | None]] = {}
            if replay:
                tasks[executor.submit(replay_group, config, data_dir, group)] = ("replay", None)
            tasks |= {probe(point): ("probe", point) for point in unprobed if point.backend in group}
            queue = [point for point in reversed(pending) if point.backend in group]

            def train_next() -> None:  # one run queued per worker: each probe follows its run closely
                if queue:
                    point = queue.pop()
                    tasks[executor.submit(run_point, point, *args)] = ("train", point)

            for _ in range(max(1, workers)):
                train_next()
            while tasks:
                done, _ = wait(tasks, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, point = tasks.pop(future)
                    if kind == "replay":
                        replays.append(future.result())
                        if len(replays) == len(groups):  # every backend replayed: compare every pair
                            replayed(write_exactness(out, compare_replays(config, replays)))
                    elif kind == "train":
                        if trained(point, future.result()):
                            tasks[probe(point)] = ("probe", point)
                        train_next()
                    else:
                        future.result()
                        if bar is not None:
                            bar.update(1)

    try:
        for group in groups:
            run_group(group)
    finally:
        if bar is not None:
            bar.close()
    return update_tables(out)


def replay_group(config: StudyConfig, data_dir, backends: tuple[str, ...]) -> dict:
    """The float64 replay of the study's recipe (`study.measure.exactness`) by the twins of one process group."""
    from study.core.data import load_dataset

    return replay_networks(config, load_dataset(config.dataset, data_dir), backends)


def collect(out: Path, sources: list[Path]) -> list[dict]:
    """Merge the finished runs of study folders from several machines into `out` (no duplicates)."""
    out = Path(out)
    (out / RUNS).mkdir(parents=True, exist_ok=True)
    for source in map(Path, sources):
        if not (source / RUNS).is_dir():
            raise UserError(f"{source} is not a study folder (no {RUNS}/ inside)")
        if not (out / STUDY).exists() and (source / STUDY).exists():
            shutil.copy2(source / STUDY, out / STUDY)
        for summary in sorted((source / RUNS).glob(f"*/{SUMMARY}")):
            target = out / RUNS / summary.parent.name
            if not (target / SUMMARY).exists():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(summary.parent, target)
    return update_tables(out)
