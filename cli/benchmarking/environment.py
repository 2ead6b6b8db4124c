"""Where a benchmark's numbers were measured: the machine, its load, the library versions.

Every result file records these beside its figures, so that a figure is never read
apart from the machine and the moment that produced it.
"""

import importlib.metadata
import os
import platform
import subprocess
import time
from typing import Optional

import torch

VERSIONS_OF = ["gpukmeans", "torch", "numpy", "numba", "scikit-learn", "faiss-cpu", "faiss-gpu", "fastkmeans",
               "fast-pytorch-kmeans", "flash-kmeans", "cuml", "triton"]


def environment(devices) -> dict:
    """The machine, its load at the start, the library versions, and the GPU where
    ``devices`` name CUDA."""
    info = {
        "cpu": cpu_model(),
        "git_commit": git_commit(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
        "versions": library_versions(),
        "devices": devices,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if any(d.startswith("cuda") for d in devices):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def library_versions() -> dict:
    """The installed version of gpukmeans and of every peer (None where absent)."""
    versions = {}
    for name in VERSIONS_OF:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    if versions["gpukmeans"] is None:  # run from a source tree
        import gpukmeans

        versions["gpukmeans"] = getattr(gpukmeans, "__version__", None)
    return versions


def git_commit() -> Optional[str]:
    """The short commit of the checkout this package runs from, or None outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (the platform's answer elsewhere)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
