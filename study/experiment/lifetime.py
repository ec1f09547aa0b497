"""A worker process lives no longer than the process that started it.

A study's worker processes (`study.experiment.runner`) and `compare`'s one process per backend
(`study.compare.worker`) each watch their parent: when it is gone — ended normally, or killed with
SIGKILL, which runs no cleanup of its own — the worker ends within `INTERVAL` seconds, so a rerun never
races an orphan still training or writing into the same folder. Watching the parent's pid is portable
and holds whichever thread started the worker (Linux's parent-death signal fires when that *thread*
ends, which a pool's spawning thread may do long before the parent).
"""

from __future__ import annotations

import os
import threading
import time

INTERVAL = 0.5  # seconds between looks at the parent


def _watch(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)  # no cleanup runs: the parent that would have used any of it is gone


def exit_with_parent(parent: int, interval: float = INTERVAL) -> None:
    """End this process as soon as `parent` (the pid that started it) is no longer its parent; at once
    if it already is not (it died before the worker started watching)."""
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch, args=(parent, interval), name="exit-with-parent", daemon=True).start()
