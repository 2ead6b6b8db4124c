"""gpukmeans: GPU-accelerated k-means for customer segmentation, on PyTorch."""

from . import metrics
from ._kmeans import KMeans, kmeans_plusplus
from ._sweep import SweepResult, sweep

__all__ = ["KMeans", "SweepResult", "kmeans_plusplus", "metrics", "sweep"]
__version__ = "0.1.0"
