"""Where a study's time goes: wall and CPU seconds per phase, in the study folder's timings.json.

The runner's tasks run in worker processes side by side, so a phase's seconds are the sum over its
tasks of each task's own time in its worker (`timed`: the runs, probes, the float64 replay, the
gradient flow); the phases of the study process itself (analysis, W&B) are timed where they run
(`Timings.phase`). `resnet-study bench
--study` runs the main job and prints this table beside the job's total wall and CPU time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from study.files import TIMINGS
from study.schemas.study_folder import TimingsFile


def timed(fn: Callable, /, *args, **kwargs) -> tuple[object, float, float]:
    """(fn's result, its wall seconds, the CPU seconds of this process meanwhile): run in a worker."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


class Timings:
    """Seconds per named phase, in the order the phases first appear."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self.tasks: list[dict] = []  # each run's own tasks: what `resnet-study plan` learns a run's cost from

    def add(self, name: str, wall_s: float, cpu_s: float, key: str | None = None) -> None:
        phase = self.phases.setdefault(name, {"tasks": 0, "wall_s": 0.0, "cpu_s": 0.0})
        phase["tasks"] += 1
        phase["wall_s"] += wall_s
        phase["cpu_s"] += cpu_s
        if key is not None:
            self.tasks.append({"phase": name, "key": key, "wall_s": wall_s, "cpu_s": cpu_s})

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase of this process."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - wall, time.process_time() - cpu)

    def write(self, folder: Path, total_wall_s: float, workers: int | None = None) -> None:
        """timings.json: the invocation's wall time, its runs at once (`workers`), phases and run tasks."""
        rows = [{"phase": name, **values} for name, values in self.phases.items()]
        record = {"wall_s": total_wall_s, "workers": workers, "phases": rows, "tasks": self.tasks}
        TimingsFile.model_validate(record).write(Path(folder) / TIMINGS)


def bench_study(out: Path, config: str = "default", extra: tuple[str, ...] = ()) -> dict:
    """Run the study `config` into the fresh folder `out` in a process of its own and time it: the
    total wall and CPU time (user + system of the process and every worker it waited for, as
    /usr/bin/time counts them), the phases of its timings.json and its verdicts."""
    import resource
    import subprocess
    import sys

    command = [sys.executable, "-m", "study", "run", "--config", config, "--out", str(out), "--json", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the study exited with {done.returncode}: {last}")
    verdict = json.loads(done.stdout)
    timings = TimingsFile.read(Path(out) / TIMINGS).as_dict()
    return {
        "config": config,
        "out": str(out),
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "phases": timings["phases"],
        "verdicts": {name: verdict[name]["verdict"] for name in ("degradation", "agreement") if name in verdict},
    }
