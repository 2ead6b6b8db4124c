"""Calinski-Harabasz and Davies-Bouldin indices: O(n d), chunked, in float64.

Both follow scikit-learn's definitions and edge cases. ``sample_weight`` is a
frequency weight: an integer weight ``w`` gives the same score as repeating the
row ``w`` times, and rows of weight 0 are ignored.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..sources.memory import InMemorySource
from ._inputs import check_number_of_labels, validate, validate_sample_weight

__all__ = [
    "calinski_harabasz_score",
    "ch_db_many",
    "chunk_rows",
    "davies_bouldin_score",
    "rows_of",
    "weighted_centroids",
]


# Relative rounding noise of |x|^2 - 2 x.c + |c|^2 in float64 (a few ulps of each term).
_NOISE = 64 * torch.finfo(torch.float64).eps


def chunk_rows(device: torch.device, n_columns: int) -> int:
    """Rows per block so that a float64 block stays around 64 MB (CPU) / 512 MB (GPU)."""
    budget = (512 if device.type == "cuda" else 64) * 2**20 // 8
    return max(1024, budget // max(1, n_columns))


def rows_of(X: torch.Tensor, weights: Optional[torch.Tensor] = None) -> InMemorySource:
    """Rows held in a tensor as a data source (what every score here passes over)."""
    return InMemorySource(X, weights, X.shape[0])


def weighted_centroids(
    X: torch.Tensor,
    labels: torch.Tensor,
    n_labels: int,
    weights: Optional[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 centroids (k, d) and cluster weights (k,), accumulated by blocks."""
    return _cluster_centroids(rows_of(X, weights), [labels], [0, n_labels])


def _float64_blocks(source, labelings):
    """``(rows, weights or None, [codes of each labelling])`` over a source's rows, in float64
    blocks of bounded size: this holder's rows, with its slice of every labelling."""
    for start, chunk, weights in source.chunks():
        step = chunk_rows(chunk.device, chunk.shape[1])
        for lo in range(0, chunk.shape[0], step):
            hi = min(lo + step, chunk.shape[0])
            w = None if weights is None else weights[lo:hi].to(torch.float64)
            yield (chunk[lo:hi].to(torch.float64), w,
                   [labels[start + lo : start + hi].to(chunk.device) for labels in labelings])


def _cluster_centroids(source, labelings: list[torch.Tensor], offsets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 centroids and cluster weights of one or more labellings, in one pass.

    The statistics every centroid-based score starts from. Labelling ``g``'s
    clusters are rows ``offsets[g]:offsets[g + 1]`` of the results, so that one
    pass over the rows serves every labelling (and, under torch.distributed, every
    holder's rows: the sums are added up across them).
    """
    sums = torch.zeros(offsets[-1], source.n_features, dtype=torch.float64, device=source.device)
    totals = torch.zeros(offsets[-1], dtype=torch.float64, device=source.device)
    for rows, w, codes in _float64_blocks(source, labelings):
        weighted_rows = rows if w is None else rows * w[:, None]
        unit = torch.ones(rows.shape[0], dtype=torch.float64, device=rows.device) if w is None else w
        for g, labels in enumerate(codes):
            sums.index_add_(0, labels + offsets[g], weighted_rows)
            totals.index_add_(0, labels + offsets[g], unit)
    sums, totals = source.reduce_sum(sums), source.reduce_sum(totals)
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
    :func:`sklearn.metrics.calinski_harabasz_score` (to 1e-9 or better in float64),
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
    calinski, _ = ch_db_many(rows_of(X_t, weights), [codes], [n_labels])
    return calinski[0]


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
    _, davies = ch_db_many(rows_of(X_t, weights), [codes], [n_labels])
    return davies[0]


def ch_db_many(
    source,
    labelings: list[torch.Tensor],
    n_labels: list[int],
) -> tuple[list[float], list[float]]:
    """Calinski-Harabasz and Davies-Bouldin of several labellings of the same rows.

    ``source`` is a data source (:func:`rows_of` for a tensor): rows on any holder,
    weights as its ``sample_weight``, its rows conditioned (near the origin, so that
    the expansion loses nothing that matters). Two passes over the rows serve every
    labelling (the k's of a sweep): one for the centroids, one for each row's distance
    to its centroid, where one matrix product against the centroids of all labellings
    gives ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` for all of them at once. Each
    labelling holds this holder's rows' codes ``0..n_labels[g]-1`` with every cluster
    of positive weight and ``2 <= n_labels[g] <= n - 1``; that is the caller's to check.
    """
    offsets = [0]
    for k in n_labels:
        offsets.append(offsets[-1] + k)
    centroids, totals = _cluster_centroids(source, labelings, offsets)
    centroid_sq = (centroids * centroids).sum(dim=1)

    within = torch.zeros(len(labelings), dtype=torch.float64, device=source.device)
    spread = torch.zeros(offsets[-1], dtype=torch.float64, device=source.device)
    for rows, w, codes_of in _float64_blocks(source, labelings):
        products = rows @ centroids.T
        row_sq = (rows * rows).sum(dim=1)
        for g, labels in enumerate(codes_of):
            codes = labels + offsets[g]
            scale = row_sq + centroid_sq[codes]
            residual_sq = row_sq - 2.0 * products.gather(1, codes[:, None]).squeeze(1) + centroid_sq[codes]
            # Below the expansion's rounding noise a residual is indistinguishable from 0.
            residual_sq = torch.where(residual_sq <= _NOISE * scale, 0.0, residual_sq)
            distance = residual_sq.sqrt()
            if w is not None:
                residual_sq, distance = residual_sq * w, distance * w
            within[g] += residual_sq.sum()
            spread.index_add_(0, codes, distance)
    within, spread = source.reduce_sum(within).tolist(), source.reduce_sum(spread)

    calinski, davies = [], []
    for g, k in enumerate(n_labels):
        part = slice(offsets[g], offsets[g + 1])
        group_totals, group_centroids = totals[part], centroids[part]
        total_weight = float(group_totals.sum())
        grand_mean = (group_centroids * group_totals[:, None]).sum(dim=0) / total_weight
        between = float((group_totals * ((group_centroids - grand_mean) ** 2).sum(dim=1)).sum())
        calinski.append(
            1.0 if within[g] == 0.0 else between * (total_weight - k) / (within[g] * (k - 1.0))
        )
        davies.append(_davies_bouldin_from(group_centroids, spread[part] / group_totals))
    return calinski, davies


def _davies_bouldin_from(centroids: torch.Tensor, spread: torch.Tensor) -> float:
    """Davies-Bouldin from centroids and mean member-to-centroid distances."""
    centroid_distances = torch.cdist(
        centroids, centroids, compute_mode="donot_use_mm_for_euclid_dist"
    )
    zero = torch.zeros((), dtype=torch.float64, device=centroids.device)
    # scikit-learn's isclose(., 0) edge cases: no spread, or all centroids coincide.
    if bool(torch.isclose(spread, zero).all()) or bool(
        torch.isclose(centroid_distances, zero).all()
    ):
        return 0.0
    centroid_distances[centroid_distances == 0] = torch.inf
    ratios = (spread[:, None] + spread[None, :]) / centroid_distances
    return float(ratios.max(dim=1).values.mean())
