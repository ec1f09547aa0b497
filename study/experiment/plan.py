"""`resnet-study plan`: a study's wall time and device-hours, predicted before it is paid for.

Each run costs (seconds, in the slot it trains in: one worker or one GPU)::

    train = fixed + epochs x (n_train / train_rate + n_test / eval_rate)
    probe = evaluations x n_test / eval_rate(probe twin) x probe_factor

with the rates of a `study.experiment.throughput.Throughput` table (a study folder, a compare.json, a
saved table or the shipped one). The runner's own schedule is then simulated (`simulate`): process
groups one after another, the replay and gradient-flow tasks first, the runs longest first
(`study.configs.longest_first`, the order the runner uses), each worker a FIFO slot; the local engine
queues a run's probes after it, the Ray engine probes inside the run's task. Runs sharing a GPU
(`runs_per_gpu`) share its throughput. Device-hours are the runs' busy time on their devices, and the
devices held for the whole wall time.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from study.configs import GridPoint, StudyConfig, longest_first
from study.core.twin import process_groups
from study.experiment.throughput import Throughput, dataset_facts

# -- the schedule ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCost:
    point: GridPoint
    train_s: float
    probe_s: float
    measured: bool  # the network was measured as such (else scaled by FLOPs)


def simulate(head: list[float], runs: list[tuple[float, float]], workers: int, window: float,
             probes_with_run: bool) -> float:  # fmt: skip
    """Seconds until the last task of one process group ends, as `study.experiment.runner.StudyRun.run_group`
    schedules them: the `head` tasks (replay, gradient flow) submitted first, then `window` runs
    ((train, probe) seconds, in order), each landed run's probe and the next run submitted; every
    worker takes the oldest queued task (a process pool's, or Ray's, FIFO)."""
    queue: deque[tuple[str, float, float]] = deque(("head", s, 0.0) for s in head)
    pending = deque(runs)

    def submit() -> None:
        if pending:
            train, probe = pending.popleft()
            queue.append(("train", train + probe if probes_with_run else train, probe))

    for _ in range(int(min(window, len(pending)))):
        submit()
    running: list[tuple[float, int, str, float]] = []
    now, idle, order = 0.0, workers, 0
    while queue or running:
        while idle and queue:
            kind, seconds, probe = queue.popleft()
            heapq.heappush(running, (now + seconds, order, kind, probe))
            idle, order = idle - 1, order + 1
        now, _, kind, probe = heapq.heappop(running)
        idle += 1
        if kind == "train":
            if not probes_with_run:
                queue.append(("probe", probe, 0.0))
            submit()
    return now


@dataclass
class Plan:
    config: StudyConfig
    device: str
    slots: int  # runs at once
    gpus: int  # devices held (0: CPU)
    executor: str
    runs: list[RunCost]
    wall_s: float
    busy_s: float  # the runs' seconds (train and probes), summed
    table: Throughput

    def to_dict(self) -> dict:
        cells: dict[tuple, dict] = {}
        for run in self.runs:
            key = (run.point.backend, run.point.network_spec().name, run.point.epochs or self.config.recipe.epochs)
            cell = cells.setdefault(
                key,
                {
                    "backend": key[0],
                    "network": key[1],
                    "epochs": key[2],
                    "runs": 0,
                    "train_s": run.train_s,
                    "probe_s": run.probe_s,
                    "measured": run.measured,
                },
            )
            cell["runs"] += 1
        return {
            "config": self.config.name,
            "study": self.config.study_id,
            "runs": len(self.runs),
            "device": self.device,
            "slots": self.slots,
            "gpus": self.gpus,
            "executor": self.executor,
            "wall_s": self.wall_s,
            "run_seconds": self.busy_s,
            "device_hours_busy": self.busy_s * max(1, self.gpus) / max(1, self.slots) / 3600 if self.gpus else None,
            "device_hours_held": self.wall_s * self.gpus / 3600 if self.gpus else None,
            "per_run": list(cells.values()),
            "source": self.table.source,
            "slot_as_measured": self.table.slots,
            "assumptions": self.table.notes,
        }


REPLAY_PER_LAYER = 0.131  # a replayed depth's cost over depth 8's grows by this per layer (measured below)


def replay_scale(config: StudyConfig) -> float:
    """The float64 replay's seconds relative to the tables' (measured on studies replaying depth 8):
    each replayed depth costs 1 + `REPLAY_PER_LAYER` x (depth - 8) depth-8 replays — Keras's float64
    replay of plain/resnet-8 5.4 s and of -32 20.6 s, Lightning's 1.0 s and 5.0 s, each network replayed
    by both twins and once more by Lightning for its rounding sensitivity (2-core development machine,
    one thread each)."""
    from study.measure.exactness import replayed_depths

    return sum(1 + REPLAY_PER_LAYER * (depth - 8) for depth in replayed_depths(config))


def replay_seconds(config: StudyConfig, table: Throughput) -> float:
    """The float64 replay's seconds for `config` (none with one backend: nothing to compare)."""
    return table.study_s.get("replay", 0.0) * replay_scale(config) if len(config.backends) > 1 else 0.0


def plan_study(config: StudyConfig, table: Throughput, *, workers: int = 1, gpus: int = 0, runs_per_gpu: int = 1,
               executor: str = "local") -> Plan:  # fmt: skip
    """The predicted wall time of `config` on `workers` CPU workers, or on `gpus` GPUs with
    `runs_per_gpu` runs sharing each (runs sharing a GPU are assumed to share its throughput: each at
    1/runs_per_gpu of the measured rate)."""
    device = "gpu" if gpus else "cpu"
    slots = gpus * runs_per_gpu if gpus else workers
    share = runs_per_gpu if gpus else 1
    shape, classes, n_train, n_test = dataset_facts(config.dataset)
    runs = []
    for point in longest_first(config.points()):
        spec = point.network_spec().with_overrides(input_shape=shape, classes=classes)
        train, evaluate, measured = table.per_image(point.backend, device, spec)
        epochs = point.epochs or config.recipe.epochs
        train_s = table.fixed(point.backend, device, spec) + share * epochs * (n_train * train + n_test * evaluate)
        probe_s = share * table.probe(config.probe_backend, device, spec, n_test)
        runs.append(RunCost(point, train_s, probe_s, measured))
    study_s = table.study_s
    window = slots if executor == "local" else math.inf
    wall = study_s.get("start", 0.0) + study_s.get("analysis", 0.0)
    groups = process_groups(config.backends, config.probe_backend)
    replay = [replay_seconds(config, table) / len(groups)] if len(config.backends) > 1 else []  # one per group
    for index, group in enumerate(groups):
        head = replay + ([study_s.get("gradflow", 0.0)] if index == 0 else [])
        mine = [(r.train_s, r.probe_s) for r in runs if r.point.backend in group]
        wall += simulate(head, mine, slots, window, executor == "ray")
    busy = sum(r.train_s + r.probe_s for r in runs)
    return Plan(config, device, slots, gpus, executor, runs, wall, busy, table)


def hours(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def describe_plan(plan: Plan) -> Iterable[str]:
    data = plan.to_dict()
    where = (f"{plan.gpus} GPU{'s' if plan.gpus > 1 else ''}, {plan.slots} runs at once" if plan.gpus
             else f"{plan.slots} CPU worker{'s' if plan.slots > 1 else ''}")  # fmt: skip
    yield f"{plan.config.name}: {len(plan.runs)} runs on {where} ({plan.executor} executor)"
    yield "| backend | network | epochs | runs | train s/run | probes s/run | rates |"
    yield "| --- | --- | ---: | ---: | ---: | ---: | --- |"
    for cell in data["per_run"]:
        yield (f"| {cell['backend']} | {cell['network']} | {cell['epochs']} | {cell['runs']} | {cell['train_s']:.1f} | "
               f"{cell['probe_s']:.1f} | {'measured' if cell['measured'] else 'scaled by FLOPs'} |")  # fmt: skip
    line = f"predicted wall time: {hours(plan.wall_s)} ({plan.wall_s:.0f} s); the runs' seconds: {hours(plan.busy_s)}"
    if plan.gpus:
        line += (f"; GPU-hours: {data['device_hours_busy']:.1f} busy, {data['device_hours_held']:.1f} held "
                 f"({plan.gpus} for the whole wall time)")  # fmt: skip
    yield line
    yield f"rates: {plan.table.source}; one slot as measured: {plan.table.slots}"
    for note in plan.table.notes:
        yield f"assumed: {note}"


# A study above either size runs only when confirmed (`run --confirm-size`): ten times the runs of the
# largest shipped config (paper: 100), or a day of predicted wall time on this machine's CPU.
MAX_UNCONFIRMED_RUNS = 1000
MAX_UNCONFIRMED_HOURS = 24.0


def study_size(config: StudyConfig, table: Throughput, workers: int) -> tuple[int, float]:
    """(runs, predicted wall seconds on `workers` CPU workers) of `config`. Above
    `MAX_UNCONFIRMED_RUNS` the schedule of its first seeds is simulated and scaled by the runs (a study's
    time is linear in its seeds), so stating a huge study's size costs no more than a small one's."""
    runs = len(config.points())
    sample = config
    if runs > MAX_UNCONFIRMED_RUNS:
        per_seed = max(1, runs // len(config.seeds))
        sample = dataclasses.replace(config, seeds=config.seeds[: max(1, MAX_UNCONFIRMED_RUNS // per_seed)], settle=0)
    return runs, plan_study(sample, table, workers=workers).wall_s * runs / len(sample.points())
