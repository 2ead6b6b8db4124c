"""What this installation has: versions, devices, optional parts (``gpukmeans info``)."""

from __future__ import annotations

import importlib.util
import os
import platform
from importlib import metadata

#: The packages a part of gpukmeans works without, or falls back without, and what
#: each one enables (the package is also the module imported).
OPTIONAL_PARTS = {
    "numba": "fused CPU kernels (without it fits use the plain-PyTorch reference, several times slower); "
             "the sweep's structure check and the segmentation need it",
    "triton": "fused GPU kernels (without it fits on CUDA use the plain-PyTorch reference)",
    "cupy": "CuPy array input and output",
    "pyarrow": "Parquet input and output, fast CSV reading",
    "matplotlib": "report.html figures and sweep plots",
    "kneed": "knee of the elbow curve in sweeps",
    "safetensors": "saved segmentation models",
    "rich": "progress display",
    "typer": "the gpukmeans command",
}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment_info() -> dict:
    """Versions, CPU and CUDA devices (with free memory), and the optional parts installed
    (``gpukmeans.info()``; the ``gpukmeans info`` command prints it).

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
    optional = {name: importlib.util.find_spec(name) is not None for name in OPTIONAL_PARTS}
    return {
        "versions": versions,
        "cpu": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "cuda": cuda,
        "optional": optional,
        "optional_uses": dict(OPTIONAL_PARTS),
    }


info = environment_info
