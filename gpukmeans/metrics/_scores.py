"""Calinski-Harabasz and Davies-Bouldin indices: O(n d), chunked, in float64.

Both follow scikit-learn's definitions and edge cases. ``sample_weight`` is a
frequency weight: an integer weight ``w`` gives the same score as repeating the
row ``w`` times, and rows of weight 0 are ignored.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ._inputs import check_number_of_labels, validate, validate_sample_weight

__all__ = [
    "calinski_harabasz_score",
    "chunk_rows",
    "davies_bouldin_score",
    "weighted_centroids",
]


def chunk_rows(device: torch.device, n_columns: int) -> int:
    """Rows per chunk so that a float64 chunk stays around 64 MB (CPU) / 512 MB (GPU)."""
    budget = (512 if device.type == "cuda" else 64) * 2**20 // 8
    return max(1024, budget // max(1, n_columns))


def weighted_centroids(
    X: torch.Tensor,
    labels: torch.Tensor,
    n_labels: int,
    weights: Optional[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 centroids (k, d) and cluster weights (k,), accumulated by chunks."""
    n_samples, n_features = X.shape
    sums = torch.zeros(n_labels, n_features, dtype=torch.float64, device=X.device)
    totals = torch.zeros(n_labels, dtype=torch.float64, device=X.device)
    step = chunk_rows(X.device, n_features)
    for start in range(0, n_samples, step):
        rows = X[start : start + step].to(torch.float64)
        codes = labels[start : start + step]
        if weights is None:
            sums.index_add_(0, codes, rows)
            totals.index_add_(0, codes, torch.ones_like(codes, dtype=torch.float64))
        else:
            w = weights[start : start + step]
            sums.index_add_(0, codes, rows * w[:, None])
            totals.index_add_(0, codes, w)
    return sums / totals[:, None], totals


def _prepare(X: Any, labels: Any, sample_weight: Any, device: Any):
    """Validate, then drop zero-weight rows (they count as absent) and recheck k."""
    data = validate(X, labels, device, check_labels=sample_weight is None)
    weights = validate_sample_weight(sample_weight, data.X.shape[0], data.X.device)
    X_t, codes, n_labels = data.X, data.labels, data.n_labels
    if weights is not None:
        keep = weights > 0
        if not bool(keep.all()):
            X_t, codes, weights = X_t[keep], codes[keep], weights[keep]
        _, codes = torch.unique(codes, return_inverse=True)
        n_labels = int(codes.max()) + 1
        check_number_of_labels(n_labels, X_t.shape[0])
    return X_t, codes, n_labels, weights


def calinski_harabasz_score(
    X: Any, labels: Any, *, sample_weight: Any = None, device: Any = "auto"
) -> float:
    """Calinski-Harabasz index (variance ratio criterion); higher is better.

    ``CH = [B / (k - 1)] / [W / (n - k)]`` with ``B`` the between-cluster and
    ``W`` the within-cluster sum of squares. Same value as
    :func:`sklearn.metrics.calinski_harabasz_score` (to ~1e-12 in float64),
    including ``1.0`` when ``W == 0``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights (``n`` becomes the total weight).
    device : "auto", "cpu", "cuda" or torch.device

    Returns
    -------
    float

    Examples
    --------
    >>> from gpukmeans.metrics import calinski_harabasz_score
    >>> X = [[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]]
    >>> calinski_harabasz_score(X, [0, 0, 1, 1])
    50.0
    """
    X_t, codes, n_labels, weights = _prepare(X, labels, sample_weight, device)
    centroids, totals = weighted_centroids(X_t, codes, n_labels, weights)
    total_weight = totals.sum()
    grand_mean = (centroids * totals[:, None]).sum(dim=0) / total_weight
    between = float((totals * ((centroids - grand_mean) ** 2).sum(dim=1)).sum())
    within = 0.0
    step = chunk_rows(X_t.device, X_t.shape[1])
    for start in range(0, X_t.shape[0], step):
        rows = X_t[start : start + step].to(torch.float64)
        residual_sq = ((rows - centroids[codes[start : start + step]]) ** 2).sum(dim=1)
        if weights is not None:
            residual_sq = residual_sq * weights[start : start + step]
        within += float(residual_sq.sum())
    if within == 0.0:
        return 1.0
    n_effective = float(total_weight)
    return between * (n_effective - n_labels) / (within * (n_labels - 1.0))


def davies_bouldin_score(
    X: Any, labels: Any, *, sample_weight: Any = None, device: Any = "auto"
) -> float:
    """Davies-Bouldin index; lower is better, 0 is the minimum.

    The mean over clusters of ``max_{j != i} (s_i + s_j) / d(c_i, c_j)``, with
    ``s_i`` the mean distance of cluster ``i``'s members to its centroid. Same
    value and edge cases as :func:`sklearn.metrics.davies_bouldin_score`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights for the centroids and the within-cluster means.
    device : "auto", "cpu", "cuda" or torch.device

    Returns
    -------
    float

    Examples
    --------
    >>> from gpukmeans.metrics import davies_bouldin_score
    >>> X = [[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]]
    >>> davies_bouldin_score(X, [0, 0, 1, 1])
    0.2
    """
    X_t, codes, n_labels, weights = _prepare(X, labels, sample_weight, device)
    centroids, totals = weighted_centroids(X_t, codes, n_labels, weights)
    spread = torch.zeros(n_labels, dtype=torch.float64, device=X_t.device)
    step = chunk_rows(X_t.device, X_t.shape[1])
    for start in range(0, X_t.shape[0], step):
        rows = X_t[start : start + step].to(torch.float64)
        code = codes[start : start + step]
        distance = torch.linalg.vector_norm(rows - centroids[code], dim=1)
        if weights is not None:
            distance = distance * weights[start : start + step]
        spread.index_add_(0, code, distance)
    spread /= totals
    centroid_distances = torch.cdist(centroids, centroids, compute_mode="donot_use_mm_for_euclid_dist")
    zero = torch.zeros((), dtype=torch.float64, device=X_t.device)
    # scikit-learn's isclose(., 0) edge cases: no spread, or all centroids coincide.
    if bool(torch.isclose(spread, zero).all()) or bool(
        torch.isclose(centroid_distances, zero).all()
    ):
        return 0.0
    centroid_distances[centroid_distances == 0] = torch.inf
    ratios = (spread[:, None] + spread[None, :]) / centroid_distances
    return float(ratios.max(dim=1).values.mean())
