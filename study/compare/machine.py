"""The machine a comparison ran on, named from what the OS and package metadata say (nothing is imported:
the frameworks load in the workers)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from study.tracking.wandb_run import package_version

LIBRARIES = ("numpy", "torch", "pytorch-lightning", "torchmetrics", "keras", "tensorflow", "jax", "jaxlib", "wandb")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    found = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.MULTILINE)
    return found.group(1).strip() if found else (platform.processor() or platform.machine())


def usable_cores() -> int:
    """Cores this process may run on (its affinity, e.g. a container's share), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_gib() -> float | None:
    found = re.search(r"^MemTotal:\s*(\d+)\s*kB", _read("/proc/meminfo"), re.MULTILINE)
    return round(int(found.group(1)) / 2**20, 1) if found else None


def nvidia_gpus() -> list[dict[str, str]]:
    """Name, driver and memory of each NVIDIA GPU, from nvidia-smi (none where it is absent or fails)."""
    if not shutil.which("nvidia-smi"):
        return []
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        lines = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in lines:
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3:
            gpus.append(dict(zip(("name", "driver", "memory"), fields, strict=True)))
    return gpus


def describe_machine() -> dict:
    """CPU model and usable cores, memory, GPUs with their driver, OS, Python and library versions."""
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "memory_gib": memory_gib(),
        "gpus": nvidia_gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": {name: package_version(name) for name in LIBRARIES},
    }


def machine_line(machine: dict) -> str:
    """One line naming the machine, e.g. for a table's caption."""
    memory = f", {machine['memory_gib']} GiB" if machine.get("memory_gib") else ""
    gpus = "; ".join(f"{g['name']} (driver {g['driver']}, {g['memory']})" for g in machine.get("gpus", []))
    return f"{machine['cpu']}, {machine['cores']} cores{memory}; GPU: {gpus or 'none'}; {machine['os']}"


def libraries_line(machine: dict) -> str:
    installed = {k: v for k, v in machine["libraries"].items() if v != "not installed"}
    return f"Python {machine['python']}; " + ", ".join(f"{name} {version}" for name, version in installed.items())
