"""The resumable, parallel study runner: one folder per grid point (`study.experiment.study_folder`).

Killing the study at any moment, SIGKILL included, loses no finished run and leaves no half-written
row; running the same command again skips every finished run and resumes the interrupted ones from
their last completed epoch. Each run holds an exclusive lock on its folder while it trains, so
parallel workers (or sweep agents sharing a disk) never train the same point twice.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol, TextIO

from study.configs import GridPoint, StudyConfig, longest_first
from study.core.errors import CheckpointError, one_line
from study.core.twin import load, loadable_here, process_groups
from study.experiment.console import LOG, progress_bar, redirect_descriptors
from study.experiment.lifetime import exit_with_parent
from study.experiment.memory import keep_freed_memory
from study.experiment.placement import gpu_slots, take_slot
from study.experiment.post_run import is_probed, probe_run
from study.experiment.settle import describe, look_one
from study.experiment.study_folder import is_finished, locked, open_study, update_tables
from study.experiment.timings import Timings, timed
from study.experiment.training_run import RunRequest, run_training
from study.files import (
    EXACTNESS,
    RUNS,
    SUMMARY,
)
from study.measure import gradflow
from study.measure.exactness import compare_replays, replay_networks, write_exactness
from study.tracking.dashboard import model_artifact_name
from study.verdicts.inputs import load_exactness, load_summary


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
            return load_summary(run_dir / SUMMARY)
        # An interrupted attempt's folder is resumed from its last completed epoch (study.experiment.training_run).
        request = RunRequest.for_point(
            point, run_dir, data_dir=data_dir, wandb_mode=wandb_mode, device=device, study=study_id,
            log_model=log_model, artifact_name=model_artifact_name(point.run_key), verbose=0,
        )  # fmt: skip
        summary = run_training(request)
    update_tables(out)
    return summary


def thread_environment(threads: int, xla_flags: str = "") -> dict[str, str]:
    """The variables that give a worker process `threads` CPU threads, set before any framework starts:
    OMP_NUM_THREADS, and for one thread XLA_FLAGS (`xla_flags` kept), since JAX's CPU thread pool is
    set when it starts, from XLA_FLAGS alone."""
    env = {"OMP_NUM_THREADS": str(threads)}
    if threads == 1:
        env["XLA_FLAGS"] = f"{xla_flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()
    return env


def _init_worker(threads: int, parent: int, backends: tuple[str, ...], log_path: Path, slots) -> None:
    redirect_descriptors(log_path)  # before any framework is imported: they print from C++ at import
    take_slot(slots.get() if slots is not None else None)  # this worker's GPU, before a framework sees any
    keep_freed_memory()
    os.environ.update(thread_environment(threads, os.environ.get("XLA_FLAGS", "")))
    exit_with_parent(parent)
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


class Engine(Protocol):
    """Where the study's tasks run: worker processes of this machine (`LocalEngine`) or a Ray cluster
    (`study.experiment.ray_engine.RayEngine`). The study folder stays with `StudyRun` either way."""

    window: float  # runs in flight at once
    parallel: int  # runs training at once (what --settle's cost estimate divides by)
    probes_with_run: bool  # a run's task probes it too (else a probe is a task of its own)
    failures: tuple[type[BaseException], ...]  # a task's errors that cost one line, not the study

    def open(self, out: Path) -> None:
        """Before the study's first task: tidy what an earlier, killed invocation left in `out`."""

    def close(self) -> None:
        """After the study's last task."""

    def executor(self, twins: tuple[str, ...], log_path: Path) -> Executor:
        """An executor whose tasks can load `twins`; `submit(timed, fn, *args)` as with a process pool."""

    def train(self, executor: Executor, point: GridPoint, study: StudyRun) -> Future:
        """The point's run (and its probes where `probes_with_run` and the study probes)."""

    def landed(self, point: GridPoint, study: StudyRun, future: Future) -> dict | None:
        """The run's summary once its folder is in the study folder (None: another process trains it)."""

    def probe(self, executor: Executor, point: GridPoint, study: StudyRun) -> Future:
        """A probe of a finished run of the study folder."""

    def probed(self, point: GridPoint, study: StudyRun, future: Future) -> None:
        """The probe's files in the run's folder."""


class LocalEngine:
    """Worker processes of this machine, each with cores/N threads: `workers` of them, or, on GPUs,
    `runs_per_gpu` per GPU (`study.experiment.placement`), each worker on its one GPU."""

    probes_with_run = False
    failures = ()

    def __init__(self, workers: int | None = None, gpus: list[str] | tuple[str, ...] = (), runs_per_gpu: int = 1):
        self.slots = gpu_slots(list(gpus), runs_per_gpu)
        if self.slots:
            self.workers = min(workers, len(self.slots)) if workers else len(self.slots)
        else:
            self.workers = workers or 1
        self.window = self.parallel = max(1, self.workers)  # one run queued per worker: each probe follows its run

    def open(self, out: Path) -> None:
        pass  # the runs' locks and summaries are all there is: an interrupted run resumes in its folder

    def close(self) -> None:
        pass  # each group's pool is shut down with its group

    def executor(self, twins: tuple[str, ...], log_path: Path) -> Executor:
        """This process with one worker when it can hold every twin of the group and needs no GPU of its
        own, else a process pool (one process per worker, or a process of its own for a Keras backend
        this one cannot hold)."""
        if self.workers <= 1 and not self.slots and all(loadable_here(backend) for backend in twins):
            return _InProcess()
        context = get_context("spawn")
        slots = None
        if self.slots:
            slots = context.Queue()
            for slot in self.slots[: self.workers]:
                slots.put(slot)
        threads = max(1, (os.cpu_count() or 1) // max(1, self.workers))
        initargs = (threads, os.getpid(), twins, log_path, slots)
        return ProcessPoolExecutor(max(1, self.workers), context, initializer=_init_worker, initargs=initargs)

    def train(self, executor: Executor, point: GridPoint, study: StudyRun) -> Future:
        return executor.submit(timed, run_point, point, *study.run_args)

    def landed(self, point: GridPoint, study: StudyRun, future: Future) -> dict | None:
        return study.result(future, f"train {point.backend}", point.run_key)

    def probe(self, executor: Executor, point: GridPoint, study: StudyRun) -> Future:
        return executor.submit(timed, probe_run, study.run_dir(point), study.data_dir, study.config.probe_backend)

    def probed(self, point: GridPoint, study: StudyRun, future: Future) -> None:
        study.result(future, f"probe {point.backend} runs", point.run_key)


class StudyRun:
    """One invocation of the study: every unfinished grid point trained (by its `Engine`), every
    trained run probed (`study.experiment.post_run`), the float64 replay of the recipe and the gradient
    flow at initialization (`study.measure.gradflow`, for the report) first, beside the first runs.

    `terminal` gets the study's own lines and a progress bar (None: nothing); the frameworks' output
    goes to `study.experiment.console.LOG` in the study folder.
    """

    def __init__(self, config: StudyConfig, out: Path, engine: Engine, data_dir, wandb_mode, device, terminal,
                 log_model: bool, alpha: float = 0.05, margin: float = 0.05,
                 timings: Timings | None = None):  # fmt: skip
        self.config, self.out, self.engine, self.data_dir = config, Path(out), engine, data_dir
        self.timings = timings if timings is not None else Timings()
        self.terminal, self.alpha, self.margin = terminal, alpha, margin
        self.probing = True  # the runs --settle adds are not probed: those verdicts use the grid seeds
        self.study_id = open_study(self.out, config)
        engine.open(self.out)
        self.run_args = (self.out, self.study_id, data_dir, wandb_mode, device, log_model)  # run_point's
        points = config.points()
        self.pending = [p for p in longest_first(points) if not is_finished(self.out, p)]
        self.unprobed = [p for p in points if is_finished(self.out, p) and not is_probed(self.run_dir(p))]
        self.say(
            f"study {self.study_id}: {len(points) - len(self.pending)} of {len(points)} runs finished, "
            f"{len(self.pending)} to run (frameworks' output: {self.out / LOG})"
        )
        total = len(self.pending) + len(self.unprobed)
        self.bar = progress_bar(total, terminal) if terminal is not None else None
        self.groups = process_groups(config.backends, config.probe_backend)
        self.replays: list[dict] = []
        # The twins' exactness needs two of them; it goes first, it takes seconds.
        self.replay = len(config.backends) > 1 and not (self.out / EXACTNESS).exists()
        self.gradflow = True  # measured again by every invocation: seconds, and the report reads it
        if len(config.backends) > 1 and not self.replay:
            self.replayed(load_exactness(self.out / EXACTNESS))

    def run_dir(self, point: GridPoint) -> Path:
        return self.out / RUNS / point.run_key

    def say(self, line: str) -> None:
        if self.terminal is not None:
            print(line, file=self.terminal, flush=True)

    def write(self, line: str) -> None:
        """A line above the progress bar."""
        self.bar.write(line, file=self.terminal) if self.bar is not None else self.say(line)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def replayed(self, evidence: dict) -> None:
        worst = evidence["worst"]
        chaotic = [n["spec"] for n in evidence["networks"] if not n.get("rounding", {}).get("replayable", True)]
        outcome = "passed" if evidence["passed"] else "FAILED" if worst else "cannot judge"
        self.write(
            f"exactness: float64 replay of the recipe by {', '.join(evidence['backends'])}: {outcome}"
            + (f" (largest difference {worst['error']:.1e} in {worst['quantity']}, {worst['spec']})" if worst else "")
            + (f"; {', '.join(chaotic)} not judged: rounding alone moves them beyond the limit" if chaotic else "")
        )

    @staticmethod
    def name(point: GridPoint) -> str:
        return f"{point.backend} {point.arch}-{point.depth} seed {point.seed}"

    def trained(self, point: GridPoint, summary: dict | None) -> bool:
        """Whether this process probes the run (not when another process trains it)."""
        name = self.name(point)
        if summary is None:
            self.write(f"{name}: running elsewhere, skipped")
            self.advance()
            return False
        if summary.get("restarted"):
            self.write(f"{name}: {summary['restarted']}")
        if summary["diverged"]:
            self.write(f"{name}: diverged")
        elif self.bar is not None:
            self.bar.set_postfix_str(f"last: {name}, train error {summary['final_train_error']:.3f}", refresh=False)
        return True

    def run_group(self, group: tuple[str, ...]) -> None:
        """The group's replay, runs and probes, in processes that hold its twins and the probe twin."""
        config, engine = self.config, self.engine
        with engine.executor(tuple(dict.fromkeys((*group, config.probe_backend))), self.out / LOG) as executor:
            tasks: dict[Future, tuple[str, GridPoint | None]] = {}

            def probe(point: GridPoint) -> None:
                tasks[engine.probe(executor, point, self)] = ("probe", point)

            def train_next() -> None:
                if queue:
                    point = queue.pop()
                    tasks[engine.train(executor, point, self)] = ("train", point)

            if self.replay:
                tasks[executor.submit(timed, replay_group, config, self.data_dir, group)] = ("replay", None)
            if self.gradflow:
                self.gradflow = False
                tasks[executor.submit(timed, measure_gradflow, config, self.data_dir)] = ("gradflow", None)
            for point in self.unprobed:
                if point.backend in group:
                    probe(point)
            queue = [point for point in reversed(self.pending) if point.backend in group]
            for _ in range(int(min(engine.window, len(queue)))):
                train_next()
            while tasks:
                done, _ = wait(tasks, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, point = tasks.pop(future)
                    if kind == "gradflow":
                        gradflow.write_gradflow(self.out, *self.result(future, "gradient flow"))
                    elif kind == "replay":
                        self.replays.append(self.result(future, f"replay {', '.join(group)}"))
                        if len(self.replays) == len(self.groups):  # every backend replayed: compare every pair
                            self.replayed(write_exactness(self.out, compare_replays(config, self.replays)))
                    elif kind == "train":
                        try:
                            summary = engine.landed(point, self, future)
                        except engine.failures as error:  # that run alone: one line, and the study goes on
                            self.write(f"{self.name(point)}: failed, not in the study ({one_line(error)})")
                            self.advance()
                        else:
                            if self.trained(point, summary):
                                probe(point) if self.probing and not engine.probes_with_run else self.advance()
                        train_next()
                    else:
                        try:
                            engine.probed(point, self, future)
                        except (CheckpointError, *engine.failures) as error:  # that run alone; a rerun tries again
                            self.write(f"{point.run_key}: not probed: {one_line(error)}")
                        self.advance()

    def result(self, future: Future, phase: str, key: str | None = None):
        """A `timed` task's result; its seconds go to the phase (and to the task `key`, a run's)."""
        result, wall_s, cpu_s = future.result()
        self.timings.add(phase, wall_s, cpu_s, key)
        return result

    def settle(self) -> None:
        """`--settle`: look 1 on the finished grid (`study.experiment.settle`), then the seeds it adds
        to the undecided cells, trained like the grid's runs (its cost is printed first)."""
        update_tables(self.out)
        record = look_one(self.out, self.config, self.alpha, self.margin, self.engine.parallel)
        self.write(describe(record))
        self.pending = [p for p in longest_first(self.config.settle_points(record["cells"]))
                        if not is_finished(self.out, p)]  # fmt: skip
        self.unprobed, self.replay, self.probing = [], False, False
        if self.bar is not None:
            self.bar.total += len(self.pending)
            self.bar.refresh()
        for group in self.groups:
            self.run_group(group)

    def run(self) -> list[dict]:
        try:
            for group in self.groups:
                self.run_group(group)
            if self.config.settle:
                self.settle()
        finally:
            if self.bar is not None:
                self.bar.close()
        return update_tables(self.out)


def run_study(
    config: StudyConfig,
    out: Path,
    engine: Engine | int = 1,
    data_dir=None,
    wandb_mode: str | None = None,
    device: str = "auto",
    terminal: TextIO | None = None,
    log_model: bool = True,
    alpha: float = 0.05,
    margin: float = 0.05,
    timings: Timings | None = None,
) -> list[dict]:
    """Run every unfinished grid point and probe every trained run (`StudyRun`) on `engine` (a number:
    that many local workers), then a `--settle` study's added seeds (look 1 at `alpha`/2 with
    `margin`); returns the results rows. The tasks' seconds are added to `timings`."""
    engine = LocalEngine(engine) if isinstance(engine, int) else engine
    study = StudyRun(config, out, engine, data_dir, wandb_mode, device, terminal, log_model, alpha, margin, timings)
    return study.run()


def measure_gradflow(config: StudyConfig, data_dir) -> tuple[list[dict], list[dict]]:
    """The gradient-flow rows and fits of the study's depths (`study.measure.gradflow.measure`)."""
    from study.core.data import load_dataset

    return gradflow.measure(config.gradflow_depths or config.depths, load_dataset(config.dataset, data_dir))


def replay_group(config: StudyConfig, data_dir, backends: tuple[str, ...]) -> dict:
    """The float64 replay of the study's recipe (`study.measure.exactness`) by the twins of one process group."""
    from study.core.data import load_dataset

    return replay_networks(config, load_dataset(config.dataset, data_dir), backends)
