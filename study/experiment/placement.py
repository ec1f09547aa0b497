"""Which devices a study worker trains on: the local runner's GPU placement, and what each run records
of where it ran.

A machine's GPUs are the ones CUDA_VISIBLE_DEVICES declares (the scheduler's or the user's list:
indices or UUIDs), else the ones `nvidia-smi` lists, else none. The local runner starts
`runs_per_gpu` workers per GPU and gives each worker its slot before any framework starts in it, by
setting CUDA_VISIBLE_DEVICES to that one GPU, so every framework in the worker sees exactly one
device and never another worker's. Ray does the same for its tasks (`study.experiment.ray_engine`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

VISIBLE = "CUDA_VISIBLE_DEVICES"
NVIDIA_SMI_TIMEOUT_S = 10


def machine_gpus() -> list[str]:
    """This machine's GPUs as CUDA_VISIBLE_DEVICES names them: its declared list where it is set ("" or
    "-1": none), else `nvidia-smi`'s indices, else []."""
    declared = os.environ.get(VISIBLE)
    if declared is not None:
        names = [name.strip() for name in declared.split(",") if name.strip()]
        # CUDA stops at the first invalid entry; "-1" (or any negative index) hides every GPU after it.
        kept = []
        for name in names:
            if name.lstrip("-").isdigit() and int(name) < 0:
                break
            kept.append(name)
        return kept
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listed = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                                timeout=NVIDIA_SMI_TIMEOUT_S)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listed.returncode != 0:
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip().isdigit()]


def gpu_slots(gpus: list[str], runs_per_gpu: int) -> list[str]:
    """One entry per worker: each GPU `runs_per_gpu` times, every GPU once before any twice (so fewer
    workers than slots still spread over the GPUs)."""
    return [gpu for _ in range(runs_per_gpu) for gpu in gpus]


def take_slot(slot: str | None) -> None:
    """Run this process on the GPU `slot` (None: leave it as it is); before any framework is imported."""
    if slot is not None:
        os.environ[VISIBLE] = slot


def where(started_at: float) -> dict:
    """What a run records of where it ran (summary.json's "placement"): the host, the process, the GPUs
    it was given (CUDA_VISIBLE_DEVICES as the run saw it; None: not set) and when it trained."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cuda_visible_devices": os.environ.get(VISIBLE),
        "started_at": started_at,
        "finished_at": time.time(),
    }
