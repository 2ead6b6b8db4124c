"""Exact Euclidean silhouette, computed in memory-bounded tiles on a torch device.

Memory is O(n * n_clusters + block^2), never O(n^2): 50,000 rows need well
under 100 MB, a million rows on a GPU a few hundred MB.
"""

from __future__ import annotations

from typing import Any, Optional

from ._exact import exact_silhouette_values, resolve_block
from ._inputs import to_output, validate
from ._sampled import SampledSilhouetteScore, silhouette_score_sampled

__all__ = ["silhouette_samples", "silhouette_score"]


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
    dtype: Any = None, columns: Any = None, distributed: bool = True,
):
    """Exact Euclidean silhouette coefficient of every sample.

    Same definition and conventions as :func:`sklearn.metrics.silhouette_samples`:
    ``s = (b - a) / max(a, b)`` with ``a`` the mean distance to the other members
    of the sample's cluster and ``b`` the smallest mean distance to another
    cluster; a sample alone in its cluster scores 0. The pairwise distances are
    computed tile by tile on ``device`` and never stored whole.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or a path
        numpy array, pandas DataFrame, torch tensor or CuPy array; or anything else
        :meth:`gpukmeans.KMeans.fit` takes (a Parquet or CSV file, read once).
    labels : array-like of shape (n_samples,)
        Cluster label of each sample (any sortable values).
    metric : {"euclidean"}
        Only the Euclidean distance is supported; anything else raises.
    device : "auto", "cpu", "cuda" or torch.device, default="auto"
        "auto" keeps a torch tensor on its device and otherwise uses CUDA when
        available. Asking for "cuda" without a GPU raises ``ValueError``.
    block_size : int or "auto", default="auto"
        Side of the square distance tile: "auto" is 768 on the CPU (cache
        sized) and 8192 on CUDA. Memory is one tile plus
        ``n_samples * n_clusters`` float64 sums.
    dtype, columns, distributed : as in :class:`gpukmeans.KMeans` (storage dtype, a file's
        feature columns; under torch.distributed each rank passes its rows and integer
        labels and gets its rows' values, scored against every rank's rows).

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
    data = validate(X, labels, device, dtype=dtype, columns=columns, distributed=distributed)
    block = resolve_block(block_size, data.X.device)
    values = exact_silhouette_values(data.all_rows(), data.labels, data.n_labels, block)
    return to_output(data.local_part(values).to(data.X.dtype), data.output)


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
    dtype: Any = None, columns: Any = None, distributed: bool = True,
):
    """Mean silhouette coefficient: exact by default, estimated when ``sample_size`` is set.

    * ``sample_size=None`` (default): the exact mean of :func:`silhouette_samples`
      over all rows, returned as a plain ``float`` (matches scikit-learn's
      ``silhouette_score`` to about 1e-12 in float64).
    * ``sample_size=m``: a stratified-sample **estimate**, returned as a
      :class:`~gpukmeans.metrics.SampledSilhouetteScore`: a ``float`` (the point
      estimate, as scikit-learn's sampled score is a float) that also carries the
      interval and how it was computed (``.low``, ``.high``, ``.sample_size``,
      ``.method``, ``.estimate``); :func:`silhouette_score_sampled` returns the
      :class:`~gpukmeans.metrics.SilhouetteEstimate` itself.

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
    device, block_size, dtype, columns, distributed : see :func:`silhouette_samples`.

    Returns
    -------
    float
        A plain ``float`` when exact (``sample_size=None``); a
        ``SampledSilhouetteScore`` (a ``float``) when ``sample_size`` is given (with
        ``method="exact"`` and a zero-width interval if ``sample_size >= n_samples``).

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
        return SampledSilhouetteScore(silhouette_score_sampled(
            X,
            labels,
            sample_size=sample_size,
            random_state=random_state,
            confidence=confidence,
            device=device,
            block_size=block_size,
            dtype=dtype, columns=columns, distributed=distributed,
        ))
    data = validate(X, labels, device, dtype=dtype, columns=columns, distributed=distributed)
    block = resolve_block(block_size, data.X.device)
    values = exact_silhouette_values(data.all_rows(), data.labels, data.n_labels, block)
    return float(values.mean())
