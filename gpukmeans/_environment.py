"""What this installation has: versions, devices, optional parts (``gpukmeans info``)."""

from __future__ import annotations

import importlib.util
import os
import platform
from importlib import metadata

#: Optional packages and what each one enables.
OPTIONAL_PARTS = {
    "pyarrow": "Parquet input and output, fast CSV reading",
    "matplotlib": "report.html figures and sweep plots",
    "safetensors": "saved segmentation models",
    "kneed": "knee of the elbow curve in sweeps",
    "rich": "progress display",
    "triton": "fused GPU kernels",
    "cupy": "CuPy array input and output",
}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment_info() -> dict:
    """Versions, CPU and CUDA devices (with free memory), and the optional parts installed.

    Returns
    -------
    dict
        ``versions``, ``cpu`` (cores, torch threads), ``cuda`` (available,
        version, devices with name and memory in GiB), ``optional`` (name -> bool).
    """
    import numpy
    import pandas
    import torch

    try:
        import gpukmeans

        own = getattr(gpukmeans, "__version__", None) or _version("gpukmeans") or "unknown"
    except ImportError:  # pragma: no cover - this module is part of gpukmeans
        own = "unknown"
    versions = {
        "gpukmeans": own,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "scikit-learn": _version("scikit-learn") or "missing",
    }
    cuda = {"available": bool(torch.cuda.is_available()), "version": torch.version.cuda, "devices": []}
    if cuda["available"]:
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            cuda["devices"].append(
                {
                    "index": index,
                    "name": torch.cuda.get_device_name(index),
                    "free_gib": free / 2**30,
                    "total_gib": total / 2**30,
                }
            )
    optional = {}
    for name in OPTIONAL_PARTS:
        module = "cupy" if name == "cupy" else name
        optional[name] = importlib.util.find_spec(module) is not None
    return {
        "versions": versions,
        "cpu": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "cuda": cuda,
        "optional": optional,
        "optional_uses": dict(OPTIONAL_PARTS),
    }
