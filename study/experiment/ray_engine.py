"""The study on a Ray cluster (`resnet-study run --executor ray`): every run of the grid, with its
probes, is one Ray task with the resources it declares (`--gpus-per-run`, `--cpus-per-run`); Ray
places the tasks on the cluster's nodes and GPUs and sets each task's CUDA_VISIBLE_DEVICES, so a run
sees only its own GPUs. The float64 replay and the gradient flow are tasks too.

No shared filesystem is assumed. The study folder stays with the driver (`study.experiment.runner`
owns it, as with local workers): a task trains into a private folder on its node, probes the run
there, and returns the whole run folder (history, summary, checkpoint, probes, its offline W&B run)
as one tar archive, which the driver unpacks beside the run's place and renames into it
(`study.experiment.run_archive.land_run`), so the folder appears whole or not at all, exactly as
the local runner writes it (summary.json's paths name the driver's folder). A restarted driver
skips every finished run.

Failures: a run whose worker or node is lost is started again elsewhere by Ray (`RETRIES`, Ray's
own retries of system failures); only its one returned folder is ever written, once. A run that
raises, or is lost more often than that, costs one line and the study goes on without it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import socket
import tarfile
import tempfile
from concurrent.futures import Executor, Future
from pathlib import Path

from study.configs import GridPoint
from study.core.errors import CheckpointError, UserError, one_line
from study.core.twin import keras_backend, load
from study.experiment.memory import keep_freed_memory
from study.experiment.post_run import probe_run
from study.experiment.run_archive import land_run, pack, remove_dead_landings
from study.experiment.runner import thread_environment
from study.experiment.study_folder import locked, update_tables
from study.experiment.timings import timed
from study.experiment.training_run import RunRequest, run_training
from study.files import BLOCK_RATIOS, LESION, RUNS, SUMMARY, atomic_write, atomic_write_text
from study.tracking.dashboard import model_artifact_name
from study.verdicts.inputs import load_summary

RETRIES = 3  # times Ray starts a run again after its worker or node was lost
CONNECT_TIMEOUT_S = 10  # an --address that does not accept a connection within this is refused
INSTALL = "pip install -c constraints.txt -e '.[ray]'"
FORWARDED = ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_BASE_URL")  # the driver's, to every run
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps a loopback node address as it is


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a GCS address HOST:PORT or a Ray Client address ray://HOST:PORT; None if malformed."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _is_loopback(host: str) -> bool:
    return host == "localhost" or host == "::1" or host.startswith("127.")


def check_address(address: str | None) -> None:
    """One line (`UserError`) for an address that is malformed or accepts no connection within
    CONNECT_TIMEOUT_S; "local" and "auto" are Ray's own (a new local instance, the cluster of this node)."""
    if address in ("local", "auto"):
        return
    parsed = _host_port(address)
    if parsed is None:
        raise UserError(f"--address must be HOST:PORT (a Ray cluster's GCS address), ray://HOST:PORT or auto; "
                        f"got {address!r}")  # fmt: skip
    try:
        socket.create_connection(parsed, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise UserError(
            f"--address {address}: no Ray cluster reachable there within {CONNECT_TIMEOUT_S} s ({reason})"
        ) from None


def cluster_address(address: str | None) -> str:
    """What `ray.init` is given: --address, else RAY_ADDRESS (Ray's own variable), else "local" (a new
    Ray of this machine for this study alone: never a cluster that happens to run here)."""
    return address or os.environ.get("RAY_ADDRESS") or "local"


def import_ray(address: str):
    """Ray, imported for `address` (`cluster_address`): a new local instance, or a cluster on this
    machine's loopback address, listens on the loopback address only (Ray otherwise swaps a loopback
    address for the machine's network address). Not installed: one line naming the extra."""
    host = (_host_port(address) or ("",))[0] if address not in ("local", "auto") else ""
    if address == "local" or _is_loopback(host):
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, not installed here: {INSTALL}") from None
    return ray


# -- in the task: its worker process, its run --------------------------------------------------------

_PREPARED: set[str] = set()  # the backends whose threads this worker process has set


def _prepare(threads: int, twins: tuple[str, ...]) -> None:
    """Once per worker process: keep freed memory, and the twins' thread counts (their runtimes
    read them when they start; the environment is the task's runtime_env, `RayEngine.environment`)."""
    if not _PREPARED:
        keep_freed_memory()
    for backend in twins:
        if backend not in _PREPARED:
            load(backend).set_threads(threads)
            _PREPARED.add(backend)


def _task(threads: int, twins: tuple[str, ...], fn, *args):
    """What every Ray task runs: the worker prepared for `twins`, then `fn(*args)`."""
    _prepare(threads, twins)
    return fn(*args)


def _relocated(summary: dict, staging: Path, run_dir: str, run_dir_abs: str) -> dict:
    """The summary as the run would have written it in the driver's `run_dir`: its paths moved there."""
    summary = dict(summary)
    summary["checkpoint"] = str(Path(run_dir) / Path(summary["checkpoint"]).name)
    if summary.get("wandb_dir"):
        for prefix in (str(staging.resolve()), str(staging)):
            if summary["wandb_dir"].startswith(prefix):
                summary["wandb_dir"] = run_dir_abs + summary["wandb_dir"][len(prefix) :]
                break
    return summary


def train_remote(point: GridPoint, run_dir: str, run_dir_abs: str, study_id: str, data_dir, wandb_mode: str | None,
                 device: str, log_model: bool, evaluator: str | None) -> dict:  # fmt: skip
    """In a Ray task: the point's run trained (and probed by `evaluator`, None: not probed) in a
    private folder of this node; returns its summary, the folder as a tar archive and the seconds of
    training and probing."""
    import ray

    os.environ.pop("WANDB_DIR", None)  # the run's W&B folder travels inside the run folder
    with tempfile.TemporaryDirectory(prefix="resnet-study-run-") as root:
        staging = Path(root) / point.run_key
        request = RunRequest.for_point(
            point, staging, data_dir=data_dir, wandb_mode=wandb_mode, device=device, study=study_id,
            log_model=log_model, artifact_name=model_artifact_name(point.run_key), verbose=0,
        )  # fmt: skip
        summary, *train_s = timed(run_training, request)
        probe_s, note = None, None
        if evaluator is not None:
            try:
                _, *probe_s = timed(probe_run, staging, data_dir, evaluator)
            except CheckpointError as error:  # the run stands; the next study invocation probes it again
                note = str(error)
        context = ray.get_runtime_context()
        placement = summary["placement"] | {
            "ray_node_id": context.get_node_id(),
            "ray_gpu_ids": [str(i) for i in context.get_accelerator_ids().get("GPU", [])],
        }
        summary = _relocated(summary, staging, run_dir, run_dir_abs) | {"placement": placement}
        atomic_write_text(staging / SUMMARY, json.dumps(summary, indent=2))
        return {"summary": summary, "folder": pack(staging), "train_s": train_s, "probe_s": probe_s, "note": note}


def probe_remote(run_key: str, folder: bytes, data_dir, evaluator: str) -> dict[str, bytes]:
    """In a Ray task: the probes of a finished run (its summary and checkpoint in `folder`); returns
    the probe files' contents."""
    with tempfile.TemporaryDirectory(prefix="resnet-study-probe-") as root:
        staging = Path(root) / run_key
        staging.mkdir()
        with tarfile.open(fileobj=io.BytesIO(folder)) as archive:
            archive.extractall(staging, filter="data")
        probe_run(staging, data_dir, evaluator)
        return {name: (staging / name).read_bytes() for name in (LESION, BLOCK_RATIOS)}


# -- on the driver ---------------------------------------------------------------------------------


def _done(value) -> Future:
    future = Future()
    future.set_result(value)
    return future


class RayExecutor(Executor):
    """Submits each task to Ray with the engine's resources and the group's runtime environment; the
    returned futures are Ray's own (`ObjectRef.future`), so the study's loop waits on them as on a pool."""

    def __init__(self, engine: RayEngine, twins: tuple[str, ...]):
        self.engine, self.twins, self.refs = engine, twins, []
        options = {"num_cpus": engine.cpus_per_run, "num_gpus": engine.gpus_per_run, "max_retries": RETRIES,
                   "retry_exceptions": False, "runtime_env": {"env_vars": engine.environment(twins)}}  # fmt: skip
        # A framework binds to its GPU at first use: each GPU task gets a fresh worker process.
        remote = engine.ray.remote(max_calls=1) if engine.gpus_per_run else engine.ray.remote
        self.task = remote(_task).options(**options)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        ref = self.task.remote(self.engine.threads, self.twins, fn, *args, **kwargs)
        self.refs.append(ref)
        return ref.future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for ref in self.refs:
                self.engine.ray.cancel(ref, force=True)

    def __exit__(self, kind, value, traceback):
        self.shutdown(cancel_futures=kind is not None)  # interrupted: the runs in flight are stopped
        return False


class RayEngine:
    """The study's tasks on a Ray cluster (module docstring): `address` (`cluster_address`) "local"
    starts a Ray of this machine for the study, "auto" joins the cluster of this node, HOST:PORT that one."""

    probes_with_run = True
    window = math.inf  # every run submitted at once: Ray's scheduler (and autoscaler) sees the whole study

    def __init__(self, address: str | None, gpus_per_run: float | None, cpus_per_run: int, device: str):
        address = cluster_address(address)
        check_address(address)
        self.ray = ray = import_ray(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="warning")
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(f"--executor ray: cannot start or reach Ray ({address}): {one_line(error)}") from None
        self.failures = (ray.exceptions.RayError,)
        self.locks: dict[str, contextlib.ExitStack] = {}  # run key -> its lock, held while its task is out
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        most_gpus = max((node.get("GPU", 0) for node in nodes), default=0)
        most_cpus = max((node.get("CPU", 0) for node in nodes), default=0)
        try:
            if gpus_per_run is None:
                gpus_per_run = 1 if device != "cpu" and most_gpus >= 1 else 0
            if device == "gpu" and most_gpus == 0:
                raise UserError("--device gpu: the Ray cluster has no GPUs")
            if device == "cpu" and gpus_per_run:
                raise UserError("--gpus-per-run: the runs train on the CPU (--device cpu)")
            if gpus_per_run > most_gpus:
                raise UserError(f"--gpus-per-run {gpus_per_run:g}: no node of the Ray cluster has that many GPUs "
                                f"(the most: {most_gpus:g})")  # fmt: skip
            if cpus_per_run > most_cpus:
                raise UserError(f"--cpus-per-run {cpus_per_run}: no node of the Ray cluster has that many CPUs "
                                f"(the most: {most_cpus:g})")  # fmt: skip
        except UserError:
            self.close()
            raise
        self.gpus_per_run, self.cpus_per_run, self.threads = gpus_per_run, cpus_per_run, cpus_per_run
        # Runs at once on the cluster as it is now (what --settle's cost estimate divides by).
        per_node = [node.get("CPU", 0) // cpus_per_run for node in nodes]
        if gpus_per_run:
            per_node = [min(n, node.get("GPU", 0) // gpus_per_run) for n, node in zip(per_node, nodes, strict=True)]
        self.parallel = max(1, int(sum(per_node)))

    def close(self) -> None:
        for held in self.locks.values():
            held.close()
        self.locks.clear()
        self.ray.shutdown()

    def environment(self, twins: tuple[str, ...]) -> dict[str, str]:
        """The variables of a task's worker process, set before any framework starts in it: its threads,
        its Keras backend, and the driver's W&B project and group."""
        env = thread_environment(self.threads)
        keras = {keras_backend(b) for b in twins} - {None}
        if keras:
            env["KERAS_BACKEND"] = keras.pop()
        return env | {name: os.environ[name] for name in FORWARDED if os.environ.get(name)}

    def open(self, out: Path) -> None:
        remove_dead_landings(Path(out) / RUNS)

    def executor(self, twins: tuple[str, ...], log_path: Path) -> Executor:
        return RayExecutor(self, twins)

    def train(self, executor: Executor, point: GridPoint, study) -> Future:
        """The run as a task, its folder locked by this driver while the task is out (as a local worker
        locks it): a run another process trains is skipped, a finished one is not trained again."""
        run_dir = study.run_dir(point)
        held = contextlib.ExitStack()
        if not held.enter_context(locked(run_dir.parent / f".{point.run_key}.lock", blocking=False)):
            held.close()
            return _done({"summary": None})
        if (run_dir / SUMMARY).exists():
            held.close()
            return _done({"summary": load_summary(run_dir / SUMMARY)})
        self.locks[point.run_key] = held
        evaluator = study.config.probe_backend if study.probing else None
        wandb_mode, device, log_model = study.run_args[3:6]
        return executor.submit(train_remote, point, str(run_dir), os.path.abspath(run_dir), study.study_id,
                               study.data_dir, wandb_mode, device, log_model, evaluator)  # fmt: skip

    def landed(self, point: GridPoint, study, future: Future) -> dict | None:
        try:
            result = future.result()
            if result.get("folder") is None:  # skipped, or finished before
                return result["summary"]
            summary = land_run(study.run_dir(point), result["folder"])
            update_tables(study.out)  # as a local worker does after each run
        finally:
            self.locks.pop(point.run_key, contextlib.ExitStack()).close()
        study.timings.add(f"train {point.backend}", *result["train_s"], point.run_key)
        if result["probe_s"] is not None:
            study.timings.add(f"probe {point.backend} runs", *result["probe_s"], point.run_key)
        if result["note"]:
            study.write(f"{point.run_key}: not probed: {result['note']}")
        return summary

    def probe(self, executor: Executor, point: GridPoint, study) -> Future:
        run_dir = study.run_dir(point)
        summary = load_summary(run_dir / SUMMARY)
        folder = pack(run_dir, [SUMMARY, Path(summary["checkpoint"]).name] if not summary["diverged"] else [SUMMARY])
        return executor.submit(timed, probe_remote, point.run_key, folder, study.data_dir, study.config.probe_backend)

    def probed(self, point: GridPoint, study, future: Future) -> None:
        files = study.result(future, f"probe {point.backend} runs")
        for name, content in files.items():
            atomic_write(study.run_dir(point) / name, lambda handle, content=content: handle.write(content))
