"""Calinski-Harabasz and Davies-Bouldin indices: O(n d), chunked, in float64.

Both follow scikit-learn's definitions and edge cases. ``sample_weight`` is a
frequency weight: an integer weight ``w`` gives the same score as repeating the
row ``w`` times, and rows of weight 0 are ignored.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ..kernels.backend import backend_for
from ._inputs import check_number_of_labels, compact_labels, validate

__all__ = ["CentroidScores", "calinski_harabasz_score", "centroid_scores", "ch_db_many", "davies_bouldin_score"]


def _cluster_centroids(source, labelings: list[torch.Tensor], offsets: list[int], *,
                       weighted: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 centroids and cluster weights of one or more labellings, in one pass.

    The statistics every centroid-based score starts from. Labelling ``g``'s
    clusters are rows ``offsets[g]:offsets[g + 1]`` of the results, so that one
    pass over the rows serves every labelling (and, under torch.distributed, every
    holder's rows: the sums are added up across them). ``weighted`` False ignores the
    source's weights (plain means).
    """
    sums = torch.zeros(offsets[-1], source.n_features, dtype=torch.float64, device=source.device)
    totals = torch.zeros(offsets[-1], dtype=torch.float64, device=source.device)
    for start, chunk, weights in source.chunks():
        backend = source.backend if chunk.dtype == source.storage_dtype else backend_for(chunk.device, chunk.dtype)
        for g, labels in enumerate(labelings):
            codes = labels[start : start + chunk.shape[0]].to(chunk.device) + offsets[g]
            part_sums, part_totals = backend.label_sums(chunk, codes, offsets[-1], weights if weighted else None)
            sums += part_sums.to(sums.device)
            totals += part_totals.to(totals.device)
    sums, totals = source.reduce_sum(sums), source.reduce_sum(totals)
    return sums / totals[:, None], totals


def _both_scores(X, labels, sample_weight, device, dtype, columns, distributed) -> tuple[float, float]:
    """Calinski-Harabasz and Davies-Bouldin of one labelling, in two passes over the rows
    (which may be streamed from a file or spread across ranks). Rows of weight 0 count
    as absent."""
    data = validate(X, labels, device, check_labels=sample_weight is None, sample_weight=sample_weight,
                    dtype=dtype, columns=columns, distributed=distributed)
    codes, n_labels = compact_labels(data.source, data.local_labels, data.n_labels)
    if data.source.sample_weight is not None:
        present = int(data.source.reduce_sum((data.source.sample_weight > 0).sum().to(torch.int64)))
        check_number_of_labels(n_labels, present)
    calinski, davies = ch_db_many(data.source, [codes], [n_labels])
    return calinski[0], davies[0]


def calinski_harabasz_score(
    X: Any, labels: Any, *, sample_weight: Any = None, device: Any = "auto", dtype: Any = None,
    columns: Any = None, distributed: bool = True,
) -> float:
    """Calinski-Harabasz index (variance ratio criterion); higher is better.

    ``CH = [B / (k - 1)] / [W / (n - k)]`` with ``B`` the between-cluster and
    ``W`` the within-cluster sum of squares. Same value as
    :func:`sklearn.metrics.calinski_harabasz_score` (to 1e-9 or better in float64),
    including ``1.0`` when ``W == 0``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or a path
        Anything :meth:`gpukmeans.KMeans.fit` takes; a file is read in passes, never whole.
    labels : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights (``n`` becomes the total weight).
    device : "auto", "cpu", "cuda" or torch.device
    dtype, columns, distributed : as in :class:`gpukmeans.KMeans` (storage dtype, a file's
        feature columns, torch.distributed ranks each passing their own rows).

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
    return _both_scores(X, labels, sample_weight, device, dtype, columns, distributed)[0]


def davies_bouldin_score(
    X: Any, labels: Any, *, sample_weight: Any = None, device: Any = "auto", dtype: Any = None,
    columns: Any = None, distributed: bool = True,
) -> float:
    """Davies-Bouldin index; lower is better, 0 is the minimum.

    The mean over clusters of ``max_{j != i} (s_i + s_j) / d(c_i, c_j)``, with
    ``s_i`` the mean distance of cluster ``i``'s members to its centroid. Same
    value and edge cases as :func:`sklearn.metrics.davies_bouldin_score`.

    Parameters
    ----------
    X, labels, device, dtype, columns, distributed : as in :func:`calinski_harabasz_score`.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights for the centroids and the within-cluster means.

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
    return _both_scores(X, labels, sample_weight, device, dtype, columns, distributed)[1]


class CentroidScores(NamedTuple):
    """The two centroid-based indices of one labelling (see :func:`centroid_scores`)."""

    calinski_harabasz: float
    davies_bouldin: float


def centroid_scores(
    X: Any, labels: Any, *, sample_weight: Any = None, device: Any = "auto", dtype: Any = None,
    columns: Any = None, distributed: bool = True,
) -> CentroidScores:
    """:func:`calinski_harabasz_score` and :func:`davies_bouldin_score` together, from
    one pair of passes over the rows (what each of them alone costs).

    Parameters are those of :func:`calinski_harabasz_score`.

    Returns
    -------
    CentroidScores
        ``(calinski_harabasz, davies_bouldin)``.

    Examples
    --------
    >>> from gpukmeans.metrics import centroid_scores
    >>> X = [[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]]
    >>> centroid_scores(X, [0, 0, 1, 1])
    CentroidScores(calinski_harabasz=50.0, davies_bouldin=0.2)
    """
    return CentroidScores(*_both_scores(X, labels, sample_weight, device, dtype, columns, distributed))


def ch_db_many(
    source,
    labelings: list[torch.Tensor],
    n_labels: list[int],
) -> tuple[list[float], list[float]]:
    """Calinski-Harabasz and Davies-Bouldin of several labellings of the same rows.

    ``source`` is a data source: rows on any holder, weights as its ``sample_weight``.
    Two passes over the rows serve every labelling (the k's of a sweep), each through
    the source's backend: one for the centroids (``label_sums``), one for each row's
    distance to its centroid in every labelling, by direct difference
    (``exact_sq_distances``). Each
    labelling holds this holder's rows' codes ``0..n_labels[g]-1`` with every cluster
    of positive weight and ``2 <= n_labels[g] <= n - 1``; that is the caller's to check.
    """
    offsets = [0]
    for k in n_labels:
        offsets.append(offsets[-1] + k)
    centroids, totals = _cluster_centroids(source, labelings, offsets)
    # Every labelling's centroids as one group of a (G, k_max, d) array: one pass of the
    # backend's direct differences gives each row's distance to its centroid in each.
    grouped = torch.zeros(len(labelings), max(n_labels), source.n_features, dtype=torch.float64,
                          device=source.device)
    for g, k in enumerate(n_labels):
        grouped[g, :k] = centroids[offsets[g] : offsets[g + 1]]

    within = torch.zeros(len(labelings), dtype=torch.float64, device=source.device)
    spread = torch.zeros(offsets[-1], dtype=torch.float64, device=source.device)
    for start, chunk, weights in source.chunks():
        backend = source.backend if chunk.dtype == source.storage_dtype else backend_for(chunk.device, chunk.dtype)
        codes = torch.stack([labels[start : start + chunk.shape[0]].to(chunk.device) for labels in labelings], 1)
        residual_sq = backend.exact_sq_distances(chunk, grouped.to(chunk.device), codes).to(source.device)
        distance = residual_sq.sqrt()
        if weights is not None:
            w = weights.to(torch.float64)[:, None].to(source.device)
            residual_sq, distance = residual_sq * w, distance * w
        within += residual_sq.sum(dim=0)
        for g in range(len(labelings)):
            spread.index_add_(0, codes[:, g].to(source.device) + offsets[g], distance[:, g])
    within, spread = source.reduce_sum(within).tolist(), source.reduce_sum(spread)

    calinski, davies = [], []
    for g, k in enumerate(n_labels):
        part = slice(offsets[g], offsets[g + 1])
        group_totals, group_centroids = totals[part], centroids[part]
        total_weight = float(group_totals.sum())
        grand_mean = (group_centroids * group_totals[:, None]).sum(dim=0) / total_weight
        between = float((group_totals * ((group_centroids - grand_mean) ** 2).sum(dim=1)).sum())
        calinski.append(
            1.0 if _no_spread(within[g], between) else between * (total_weight - k) / (within[g] * (k - 1.0))
        )
        davies.append(_davies_bouldin_from(group_centroids, spread[part] / group_totals))
    return calinski, davies


def _no_spread(within: float, between: float) -> bool:
    """Whether the within-cluster sum of squares is zero but for rounding: each row then
    equals its centroid, which the conditioned rows' subtraction of a shift and the
    centroids' division miss by a few ulps (scikit-learn's ``W == 0`` case)."""
    epsilon = torch.finfo(torch.float64).eps
    return within <= (4.0 * epsilon) ** 2 * (within + between)


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
