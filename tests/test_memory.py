"""Freed activation-sized blocks stay in the process: reused without page faults (glibc)."""

import subprocess
import sys

import pytest

from study.experiment.memory import keep_freed_memory

STEPS = """
import resource, sys
import numpy as np
from study.experiment.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():  # a training step's pattern: a few 8 MiB buffers, every page written, then all freed
    buffers = [np.ones(2**21, dtype=np.float32) for _ in range(4)]
    del buffers
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_freed_buffers_are_reused_without_page_faults():
    assert page_faults("default") > 5_000  # glibc's defaults hand the blocks back: the pages fault again
    assert page_faults("keep") < 100


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_keep_freed_memory_reports_success_on_glibc():
    assert keep_freed_memory() is True
