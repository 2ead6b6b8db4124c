"""gpukmeans: GPU-accelerated k-means for customer segmentation, on PyTorch.

The public names load on first use, so that ``import gpukmeans`` (or a submodule such as
``gpukmeans.segmentation.io``) does not pay for torch, scikit-learn or numba until a
fit needs them; pyarrow, matplotlib, typer and rich load where files, figures and the
command line need them. The library changes no process-wide state on import.
"""

import importlib

__version__ = "0.1.0"
__all__ = [
    "KMeans", "MiniBatchKMeans", "SweepResult", "info", "kmeans_plusplus", "metrics", "resolve_device", "sweep",
]

_HOMES = {
    "KMeans": "._kmeans",
    "kmeans_plusplus": "._kmeans",
    "MiniBatchKMeans": "._minibatch",
    "SweepResult": "._sweep",
    "sweep": "._sweep",
    "metrics": ".metrics",
    "resolve_device": "._device",
    "info": "._environment",
}


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'gpukmeans' has no attribute {name!r}")
    module = importlib.import_module(_HOMES[name], __name__)
    value = module if name == "metrics" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
