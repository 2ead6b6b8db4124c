"""The exact silhouette's arithmetic, shared by the exact and the sampled scores: per-row
values from per-cluster distance sums, and every row's value in cluster-sorted tiles.

Memory is O(n * n_clusters + block^2), never O(n^2): 50,000 rows need well under
100 MB, a million rows on a GPU a few hundred MB.
"""

from __future__ import annotations

from typing import Any

import torch

from ._pairwise import augment, cluster_distance_sums_sorted, default_block

__all__ = ["exact_silhouette_values", "resolve_block", "silhouette_from_sums"]


def silhouette_from_sums(
    sums: torch.Tensor,
    labels: torch.Tensor,
    own_counts: torch.Tensor,
    other_counts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Silhouette of each row from its per-cluster distance sums.

    Parameters
    ----------
    sums : (m, k) float64, ``sums[i, c]`` = sum of distances from row i to the
        members of cluster c that were counted (itself excluded).
    labels : (m,) int64 cluster of each row.
    own_counts : (m,) float64, how many members of its own cluster row i was
        compared with (``n_c - 1`` when exact); 0 marks a single-member cluster.
    other_counts : (k,) float64, how many members of each cluster were counted.

    Returns
    -------
    silhouette : (m,) float64, with scikit-learn's conventions (0 for a
        single-member cluster, and 0 where a = b = 0).
    intra : (m,) mean distance to the own cluster (a); NaN for a single-member cluster.
    inter : (m,) smallest mean distance to another cluster (b).
    nearest : (m,) int64, the cluster attaining b (the nearest other cluster).
    """
    rows = torch.arange(sums.shape[0], device=sums.device)
    intra = sums[rows, labels] / own_counts
    means = sums / other_counts
    means[rows, labels] = torch.inf
    inter, nearest = means.min(dim=1)
    silhouette = (inter - intra) / torch.maximum(intra, inter)
    # 0/0: a single-member cluster, or a = b = 0 (duplicates); scikit-learn gives 0.
    silhouette = torch.nan_to_num(silhouette, nan=0.0, posinf=0.0, neginf=0.0)
    return silhouette, intra, inter, nearest


def exact_silhouette_values(
    X: torch.Tensor, labels: torch.Tensor, n_labels: int, block: int
) -> torch.Tensor:
    """Silhouette values of all rows (in the input order), computed exactly."""
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    counts = torch.bincount(sorted_labels, minlength=n_labels)
    bounds = [0] + torch.cumsum(counts, 0).tolist()
    # Centring keeps |x|^2 small next to |x - y|^2, which the expansion needs.
    centred = X[order] - X.mean(dim=0, keepdim=True)
    row_factor, col_factor = augment(centred)
    del centred
    sums = cluster_distance_sums_sorted(row_factor, col_factor, bounds, block)
    counts64 = counts.to(torch.float64)
    own_counts = (counts64 - 1.0)[sorted_labels]
    values, _, _, _ = silhouette_from_sums(sums, sorted_labels, own_counts, counts64)
    unsorted = torch.empty_like(values)
    unsorted[order] = values
    return unsorted


def resolve_block(block_size: Any, device: torch.device) -> int:
    if block_size is None or (isinstance(block_size, str) and block_size == "auto"):
        return default_block(device)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int or 'auto', got {block_size!r}")
    return block_size
