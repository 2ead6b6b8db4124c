"""Simplified (centroid-based) silhouette: O(n k d), for tables of any size.

This is a different index from the silhouette: ``a`` is the distance to the
sample's own centroid and ``b`` the distance to the nearest other centroid
(Hruschka et al., 2004). It tracks the silhouette's ranking of clusterings in
practice but its values are not interchangeable with it, hence its own name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._inputs import check_number_of_labels, data_to_tensor, to_output, validate
from ._scores import _cluster_centroids

__all__ = ["simplified_silhouette_samples", "simplified_silhouette_score"]


def _centroid_distances(
    X: torch.Tensor, centers: torch.Tensor
) -> torch.Tensor:
    """(n, k) float64 Euclidean distances, by chunks, from differences (no expansion)."""
    n_samples, n_features = X.shape
    n_centers = centers.shape[0]
    # Keep each (rows, k, d) difference block near 16M float64 elements.
    step = max(256, (16 * 2**20) // max(1, n_centers * n_features))
    out = torch.empty(n_samples, n_centers, dtype=torch.float64, device=X.device)
    for start in range(0, n_samples, step):
        rows = X[start : start + step].to(torch.float64)
        out[start : start + step] = torch.linalg.vector_norm(
            rows[:, None, :] - centers[None, :, :], dim=2
        )
    return out


def _simplified_values(X, codes, n_labels, centers, sizes=None) -> torch.Tensor:
    """Each row's simplified silhouette; ``sizes`` (the clusters' sizes over every row)
    default to ``codes``' own counts."""
    distances = _centroid_distances(X, centers)
    rows = torch.arange(X.shape[0], device=X.device)
    own = distances[rows, codes]
    distances[rows, codes] = torch.inf
    other = distances.min(dim=1).values
    values = (other - own) / torch.maximum(own, other)
    values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    sizes = torch.bincount(codes, minlength=n_labels) if sizes is None else sizes
    # A single-member cluster scores 0, as in the silhouette.
    return torch.where(sizes[codes] == 1, torch.zeros_like(values), values)


def _prepare(X, labels, centers, device, sample_weight=None, dtype=None, columns=None, distributed=True):
    """The validated rows, this holder's codes, their number, and the centres (conditioned
    as the rows are)."""
    if centers is None:
        data = validate(X, labels, device, sample_weight=sample_weight, dtype=dtype, columns=columns,
                        distributed=distributed)
        offsets = [0, data.n_labels]
        # the plain cluster means: the weights only weight the mean over rows
        centroids, _ = _cluster_centroids(data.source, [data.local_labels], offsets, weighted=False)
        return data, data.local_labels, data.n_labels, centroids
    data = validate(X, labels, device, check_labels=False, sample_weight=sample_weight, dtype=dtype,
                    columns=columns, distributed=distributed)
    centers_t, _ = data_to_tensor(centers, data.X.device)
    centers_t = data.conditioning.centers_in(centers_t, torch.float64)  # as the rows are
    if centers_t.dim() != 2 or centers_t.shape[1] != data.X.shape[1]:
        raise ValueError(
            f"centers must have shape (n_clusters, {data.X.shape[1]}), "
            f"got {tuple(centers_t.shape)}"
        )
    # With explicit centres the labels are indices into them (like KMeans.labels_).
    if isinstance(labels, torch.Tensor):
        raw = labels.detach().cpu().numpy()
    elif hasattr(labels, "get") and type(labels).__module__.startswith("cupy"):
        raw = labels.get()
    else:
        raw = np.asarray(labels)
    if raw.dtype.kind not in "iu" or raw.min() < 0 or raw.max() >= centers_t.shape[0]:
        raise ValueError(
            f"with centers given, labels must be integers in 0..{centers_t.shape[0] - 1}"
        )
    codes = torch.as_tensor(raw.astype(np.int64), device=data.X.device)
    n_labels = int(centers_t.shape[0])
    present = data.source.reduce_sum(torch.bincount(codes, minlength=n_labels)) > 0
    check_number_of_labels(int(present.sum()), data.n_samples)
    return data, codes, n_labels, centers_t


def _cluster_sizes(data, codes, n_labels) -> torch.Tensor:
    return data.source.reduce_sum(torch.bincount(codes, minlength=n_labels))


def simplified_silhouette_samples(
    X: Any, labels: Any, *, centers: Any = None, device: Any = "auto"
):
    """Simplified silhouette of every sample, from centroids: O(n k d).

    ``s = (b - a) / max(a, b)`` with ``a`` the distance to the sample's own
    centroid and ``b`` the distance to the nearest other centroid. A sample in
    a single-member cluster scores 0. Not the same number as
    :func:`silhouette_samples`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    centers : array-like of shape (n_clusters, n_features), optional
        Use these centres (e.g. ``KMeans.cluster_centers_``); ``labels`` must then
        be row indices into them. By default the cluster means of ``X``.
    device : "auto", "cpu", "cuda" or torch.device

    Returns
    -------
    ndarray of shape (n_samples,), float64 (a tensor / CuPy array for such inputs)

    Examples
    --------
    >>> from gpukmeans.metrics import simplified_silhouette_samples
    >>> X = [[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]]
    >>> simplified_silhouette_samples(X, [0, 0, 1, 1]).round(3)
    array([0.9, 0.9, 0.9, 0.9])
    """
    data, codes, n_labels, centers_t = _prepare(X, labels, centers, device)
    sizes = _cluster_sizes(data, codes, n_labels)
    values = torch.cat([_simplified_values(rows, codes[start : start + rows.shape[0]], n_labels, centers_t, sizes)
                        for start, rows, _ in data.source.chunks()])
    return to_output(values, data.output)


def simplified_silhouette_score(
    X: Any,
    labels: Any,
    *,
    centers: Any = None,
    sample_weight: Any = None,
    device: Any = "auto",
    dtype: Any = None, columns: Any = None, distributed: bool = True,
) -> float:
    """Mean simplified (centroid-based) silhouette: O(n k d), any table size.

    Use it when even a sampled silhouette is too slow, or to rank many
    clusterings cheaply. See :func:`simplified_silhouette_samples`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    centers : array-like of shape (n_clusters, n_features), optional
    sample_weight : array-like of shape (n_samples,), optional
        Weights of the mean over samples.
    device : "auto", "cpu", "cuda" or torch.device
    dtype, columns, distributed : see :func:`~gpukmeans.metrics.silhouette_samples`; a file
        is read in one pass (for the centroids, when not given) and one more.

    Returns
    -------
    float

    Examples
    --------
    >>> from gpukmeans.metrics import simplified_silhouette_score
    >>> X = [[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]]
    >>> round(simplified_silhouette_score(X, [0, 0, 1, 1]), 3)
    0.9
    """
    data, codes, n_labels, centers_t = _prepare(X, labels, centers, device, sample_weight, dtype, columns,
                                                distributed)
    sizes = _cluster_sizes(data, codes, n_labels)
    total = torch.zeros(2, dtype=torch.float64, device=data.source.device)
    for start, rows, weights in data.source.chunks():
        values = _simplified_values(rows, codes[start : start + rows.shape[0]], n_labels, centers_t, sizes)
        w = torch.ones_like(values) if weights is None else weights.to(values.dtype)
        total += torch.stack([(values * w).sum(), w.sum()])
    total = data.source.reduce_sum(total)
    return float(total[0] / total[1])
