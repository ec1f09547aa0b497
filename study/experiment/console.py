"""The study's terminal: its own lines and one progress bar; the frameworks' output goes to a log file.

TensorFlow, Lightning and W&B write to the process's stdout and stderr from C++ and from Python,
some of it before their logging can be configured (TensorFlow's "All log messages before
absl::InitializeLog()" and its CUDA probing come from the C++ runtime at import). Only redirecting
the file descriptors themselves catches all of it: `frameworks_to` points descriptors 1 and 2 at a
log file in the study folder and hands the caller a stream to the real terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

LOG = "frameworks.log"  # in the study folder


def redirect_descriptors(log_path: Path) -> None:
    """Point this process's stdout and stderr descriptors (and Python's streams) at `log_path`, for good."""
    sys.stdout.flush(), sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1), os.dup2(fd, 2)
    os.close(fd)


@contextlib.contextmanager
def frameworks_to(log_path: Path) -> Iterator[TextIO]:
    """Within the block, whatever writes to descriptors 1 and 2 lands in `log_path`; the block's own
    lines go to the yielded stream, the terminal. Both descriptors are restored on the way out."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    try:
        redirect_descriptors(log_path)
        yield terminal
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        terminal.close()


def progress_bar(total: int, stream: TextIO):
    """Runs done / total, elapsed time and an estimate of the time left (tqdm)."""
    from tqdm import tqdm

    layout = "{desc} {n_fmt}/{total_fmt} |{bar}| elapsed {elapsed}, left ~{remaining}{postfix}"
    return tqdm(total=total, unit="run", desc="runs", file=stream, dynamic_ncols=True, smoothing=0.1, bar_format=layout)
