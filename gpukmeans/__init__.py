"""gpukmeans: GPU-accelerated k-means for customer segmentation, on PyTorch."""

from ._kmeans import KMeans, kmeans_plusplus

__all__ = ["KMeans", "kmeans_plusplus"]
__version__ = "0.1.0"
