"""gpukmeans: GPU-accelerated k-means for customer segmentation, on PyTorch."""

import os

# OpenMP threads that spin while waiting make every chunked pass several times slower
# as soon as anything else wants the cores (measured: benchmarks/bench_omp_wait.py);
# set before torch loads, and only where the user has not chosen otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import metrics  # noqa: E402
from ._kmeans import KMeans, kmeans_plusplus  # noqa: E402
from ._minibatch import MiniBatchKMeans  # noqa: E402
from ._sweep import SweepResult, sweep  # noqa: E402

__all__ = ["KMeans", "MiniBatchKMeans", "SweepResult", "kmeans_plusplus", "metrics", "sweep"]
__version__ = "0.1.0"
