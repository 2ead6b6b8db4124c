"""Exact Euclidean silhouette, computed in memory-bounded tiles on a torch device.

Memory is O(n * n_clusters + block^2), never O(n^2): 50,000 rows need well
under 100 MB, a million rows on a GPU a few hundred MB.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ._inputs import to_output, validate
from ._pairwise import augment, cluster_distance_sums_sorted, default_block

__all__ = ["silhouette_samples", "silhouette_score", "silhouette_from_sums"]


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


def _exact_silhouette_sorted(
    X: torch.Tensor, labels: torch.Tensor, n_labels: int, block
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


def _resolve_block(block_size: Any, device: torch.device):
    if block_size is None or (isinstance(block_size, str) and block_size == "auto"):
        return default_block(device)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int or 'auto', got {block_size!r}")
    return block_size


def _check_metric(metric: str) -> None:
    if metric != "euclidean":
        raise ValueError(
            f"metric={metric!r} is not supported: gpukmeans computes the Euclidean "
            "silhouette only (use scikit-learn for other metrics)"
        )


def silhouette_samples(
    X: Any,
    labels: Any,
    *,
    metric: str = "euclidean",
    device: Any = "auto",
    block_size: Any = "auto",
):
    """Exact Euclidean silhouette coefficient of every sample.

    Same definition and conventions as :func:`sklearn.metrics.silhouette_samples`:
    ``s = (b - a) / max(a, b)`` with ``a`` the mean distance to the other members
    of the sample's cluster and ``b`` the smallest mean distance to another
    cluster; a sample alone in its cluster scores 0. The pairwise distances are
    computed tile by tile on ``device`` and never stored whole.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        numpy array, pandas DataFrame, torch tensor or CuPy array.
    labels : array-like of shape (n_samples,)
        Cluster label of each sample (any sortable values).
    metric : {"euclidean"}
        Only the Euclidean distance is supported; anything else raises.
    device : "auto", "cpu", "cuda" or torch.device, default="auto"
        "auto" keeps a torch tensor on its device and otherwise uses CUDA when
        available. Asking for "cuda" without a GPU raises ``ValueError``.
    block_size : int or "auto", default="auto"
        Side of a square distance tile. "auto" is 512 x 2048 on the CPU (cache
        sized) and 8192 x 8192 on CUDA. Memory is one tile plus
        ``n_samples * n_clusters`` float64 sums.

    Returns
    -------
    silhouette : ndarray of shape (n_samples,)
        A torch tensor (on ``X``'s device) if ``X`` is a tensor, a CuPy array if
        ``X`` is one. Computed in ``X``'s precision (float32 or float64).

    Raises
    ------
    ValueError
        If the number of distinct labels is not between 2 and n_samples - 1.

    Examples
    --------
    >>> import numpy as np
    >>> from gpukmeans.metrics import silhouette_samples
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    >>> silhouette_samples(X, [0, 0, 1, 1]).round(3)
    array([0.802, 0.802, 0.802, 0.802])
    """
    _check_metric(metric)
    data = validate(X, labels, device)
    block = _resolve_block(block_size, data.X.device)
    values = _exact_silhouette_sorted(data.X, data.labels, data.n_labels, block)
    return to_output(values.to(data.X.dtype), data.output)


def silhouette_score(
    X: Any,
    labels: Any,
    *,
    sample_size: Optional[int] = None,
    random_state: Any = None,
    metric: str = "euclidean",
    confidence: float = 0.95,
    device: Any = "auto",
    block_size: Any = "auto",
):
    """Mean silhouette coefficient: exact by default, estimated when ``sample_size`` is set.

    * ``sample_size=None`` (default): the exact mean of :func:`silhouette_samples`
      over all rows, returned as a plain ``float`` (matches scikit-learn's
      ``silhouette_score`` to about 1e-12 in float64).
    * ``sample_size=m``: a stratified-sample **estimate**, returned as a
      :class:`~gpukmeans.metrics.SilhouetteEstimate` (value, 95% interval, how it
      was computed); see :func:`silhouette_score_sampled`. The return type is
      different on purpose, so that an estimate is never mistaken for the exact
      value: read ``.value``, ``.low`` and ``.high``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    sample_size : int or None, default=None
        Number of rows to score. Unlike scikit-learn's uniform subsample, the
        sample is stratified by cluster so that small clusters are represented.
    random_state : int, numpy Generator/RandomState or None
        Seeds the sample (only used with ``sample_size``).
    metric : {"euclidean"}
    confidence : float, default=0.95
        Level of the interval of a sampled estimate.
    device, block_size : see :func:`silhouette_samples`.

    Returns
    -------
    float or SilhouetteEstimate
        ``float`` when exact (``sample_size=None``); ``SilhouetteEstimate`` when
        ``sample_size`` is given (with ``method="exact"`` and a zero-width
        interval if ``sample_size >= n_samples``).

    Examples
    --------
    >>> import numpy as np
    >>> from gpukmeans.metrics import silhouette_score
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    >>> round(silhouette_score(X, [0, 0, 1, 1]), 3)
    0.802
    """
    _check_metric(metric)
    if sample_size is not None:
        from ._sampled import silhouette_score_sampled

        return silhouette_score_sampled(
            X,
            labels,
            sample_size=sample_size,
            random_state=random_state,
            confidence=confidence,
            device=device,
            block_size=block_size,
        )
    data = validate(X, labels, device)
    block = _resolve_block(block_size, data.X.device)
    values = _exact_silhouette_sorted(data.X, data.labels, data.n_labels, block)
    return float(values.mean())
