"""Silhouette estimated from a stratified sample, with a confidence interval.

Design
------
The exact silhouette is O(n^2). For large tables we score a sample instead,
and we say so: :func:`silhouette_score_sampled` returns a :class:`SilhouetteEstimate`
(value and interval), and ``silhouette_score(..., sample_size=m)`` a float that carries
it (:class:`SampledSilhouetteScore`), a drop-in for scikit-learn's.

* **Stratified by cluster.** Every cluster contributes
  ``min(n_c, max(m_min, proportional share))`` rows, so a cluster holding 0.1% of
  the rows is still scored (a uniform sample of 10,000 rows would often miss it).
  Each cluster's sample is the first ``m_c`` of its rows in one random
  permutation, so it is a simple random sample of that cluster.
* **Estimator.** Every sampled row is scored against the sampled rows (its
  ``a`` and ``b`` are means over the sampled members of each cluster), and the
  cluster means of those scores are combined with weights ``n_c / n``. So the
  estimate targets the silhouette of the *whole* table, not of the sample.
* **Interval.** The estimator is a two-sample U-statistic: each sampled row acts
  once as a scored row and once as a reference point for everyone else's ``a``
  and ``b``. Its first-order (delta-method / Hajek) linearisation gives every
  sampled row an influence value ``u_j = (n_c / n) s_j + h_j``, where ``h_j`` is
  how much row ``j``, as a reference point, moves the estimate. The variance is
  the stratified-sampling variance of ``u`` (with finite-population
  correction), and the interval is ``value +/- z * sqrt(variance)``. Computing
  ``h`` costs a second blockwise pass over the sample's pairwise distances.
  Ignoring ``h`` (treating the per-row scores as exact) understates the width
  by a factor of 1.4 to 1.7 in our checks: about 80% coverage instead of 95%.
* **Bias correction.** ``b`` is a minimum over noisy cluster means, so the
  plain estimate is biased low by a term of order ``1 / m_c``, which matters
  with small samples and many overlapping clusters (coverage fell to ~80% there).
  Each cluster's sample alternates into two halves; scoring against one half
  doubles that term, so ``estimate - (half-sample average - estimate)`` cancels
  it (split-half, Richardson-style). The same pass computes both halves' sums.

Several labellings of the same rows (the k's of a sweep) share one pool of
sampled rows, one set of distance tiles, and two matrix products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ._inputs import validate
from ._pairwise import augment, default_block, distance_matmul
from ._exact import exact_silhouette_values, resolve_block, silhouette_from_sums

__all__ = [
    "SampledSilhouetteScore",
    "SilhouetteEstimate",
    "allocate_stratified",
    "estimate_silhouettes",
    "make_generator",
    "silhouette_score_sampled",
    "stratified_sample",
]

# A cluster is scored on at least this many rows (or all of them, if fewer),
# so that its mean and the within-cluster variance are both usable.
MIN_ROWS_PER_CLUSTER = 50


@dataclass(frozen=True)
class SilhouetteEstimate:
    """A mean silhouette together with how it was obtained.

    Attributes
    ----------
    value : float
        The point estimate (the exact value when ``method == "exact"``).
    low, high : float
        The ``confidence`` interval for the silhouette of all ``n_samples``
        rows; equal to ``value`` when ``method == "exact"``.
    sample_size : int
        Rows scored.
    n_samples : int
        Rows in the data.
    method : {"sampled", "exact"}
        "exact" when every row was scored (``sample_size >= n_samples``).
    confidence : float
        Level of the interval (0.95 by default).

    Notes
    -----
    This is not a ``float``, so that the interval is never dropped unread: use
    ``.value`` for the number and ``.low`` / ``.high`` for its uncertainty.
    :func:`~gpukmeans.metrics.silhouette_score` wraps it in a
    :class:`SampledSilhouetteScore`, a float.
    """

    value: float
    low: float
    high: float
    sample_size: int
    n_samples: int
    method: str
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the interval's width (0 when exact)."""
        return (self.high - self.low) / 2.0

    @property
    def is_exact(self) -> bool:
        return self.method == "exact"

    def __repr__(self) -> str:
        if self.is_exact:
            return (
                f"SilhouetteEstimate(value={self.value:.6g}, exact over all "
                f"{self.n_samples} rows)"
            )
        return (
            f"SilhouetteEstimate(value={self.value:.6g}, "
            f"{self.confidence:.0%} CI [{self.low:.6g}, {self.high:.6g}], "
            f"stratified sample of {self.sample_size} of {self.n_samples} rows)"
        )


class SampledSilhouetteScore(float):
    """A sampled silhouette as a ``float`` (the point estimate) that carries its estimate.

    What :func:`~gpukmeans.metrics.silhouette_score` returns with ``sample_size``, so
    that it stands in for scikit-learn's: it compares, formats and adds as the number
    it is, while ``low``, ``high``, ``sample_size``, ``n_samples``, ``method``,
    ``confidence``, ``half_width`` and ``is_exact`` still say how it was obtained, and
    ``estimate`` is the whole :class:`SilhouetteEstimate`.
    """

    estimate: SilhouetteEstimate

    def __new__(cls, estimate: SilhouetteEstimate) -> "SampledSilhouetteScore":
        score = super().__new__(cls, estimate.value)
        score.estimate = estimate
        return score

    def __getnewargs__(self):
        return (self.estimate,)

    value = property(lambda self: self.estimate.value, doc="The point estimate, as a plain float.")
    low = property(lambda self: self.estimate.low, doc="Lower end of the interval.")
    high = property(lambda self: self.estimate.high, doc="Upper end of the interval.")
    sample_size = property(lambda self: self.estimate.sample_size, doc="Rows scored.")
    n_samples = property(lambda self: self.estimate.n_samples, doc="Rows in the data.")
    method = property(lambda self: self.estimate.method, doc='"sampled" or "exact".')
    confidence = property(lambda self: self.estimate.confidence, doc="Level of the interval.")
    half_width = property(lambda self: self.estimate.half_width, doc="Half the interval's width.")
    is_exact = property(lambda self: self.estimate.is_exact, doc="Whether every row was scored.")


def make_generator(random_state: Any) -> torch.Generator:
    """A CPU torch generator from an int, a numpy Generator/RandomState, or None."""
    generator = torch.Generator(device="cpu")
    if random_state is None:
        generator.seed()
    elif isinstance(random_state, (bool, np.bool_)):
        raise ValueError(f"random_state must be an int or a generator, got {random_state!r}")
    elif isinstance(random_state, (int, np.integer)):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        generator.manual_seed(int(random_state))
    elif isinstance(random_state, np.random.RandomState):
        generator.manual_seed(int(random_state.randint(0, 2**31 - 1)))
    elif isinstance(random_state, np.random.Generator):
        generator.manual_seed(int(random_state.integers(0, 2**63 - 1)))
    elif isinstance(random_state, torch.Generator):
        generator.manual_seed(int(torch.randint(0, 2**62, (1,), generator=random_state)))
    else:
        raise ValueError(
            f"random_state must be None, an int, or a numpy/torch generator, "
            f"got {type(random_state).__name__}"
        )
    return generator


def allocate_stratified(
    cluster_sizes: Sequence[int], sample_size: int, min_per_cluster: int = MIN_ROWS_PER_CLUSTER
) -> np.ndarray:
    """Rows to draw from each cluster: a floor for every cluster, the rest proportional.

    Each cluster first gets ``min(n_c, m_min)`` rows with
    ``m_min = max(2, min(min_per_cluster, sample_size // (2 * k)))``; the remaining
    budget is shared in proportion to cluster size (largest remainders), never
    exceeding a cluster's size. The total is ``min(sample_size, n)``.
    """
    sizes = np.asarray(cluster_sizes, dtype=np.int64)
    n_clusters = sizes.shape[0]
    total = int(sizes.sum())
    budget = min(int(sample_size), total)
    floor = max(2, min(min_per_cluster, budget // (2 * n_clusters)))
    alloc = np.minimum(sizes, floor)
    remaining = budget - int(alloc.sum())
    # Hand out the rest proportionally to size; repeat while clusters saturate.
    while remaining > 0:
        capacity = sizes - alloc
        open_clusters = capacity > 0
        share = remaining * sizes * open_clusters / max(1, int(sizes[open_clusters].sum()))
        extra = np.minimum(np.floor(share).astype(np.int64), capacity)
        leftover = remaining - int(extra.sum())
        if leftover > 0:
            # Largest remainder first, among clusters that still have room.
            room = capacity - extra
            fractional = np.where(room > 0, share - np.floor(share), -1.0)
            for index in np.argsort(-fractional, kind="stable"):
                if leftover == 0:
                    break
                if room[index] > 0:
                    extra[index] += 1
                    leftover -= 1
        alloc += extra
        remaining = budget - int(alloc.sum())
    return alloc


def stratified_sample(
    labels: torch.Tensor,
    n_labels: int,
    sample_size: int,
    permutation: torch.Tensor,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, torch.Tensor]:
    """Indices of a stratified sample: the first ``m_c`` rows of each cluster in
    ``permutation`` order.

    Returns
    -------
    indices : (m,) int64 row indices (on ``labels``' device), cluster by cluster.
    cluster_sizes : (k,) ``n_c``.
    sample_counts : (k,) ``m_c``.
    halves : (m,) int64, 0 or 1: alternate rows of each cluster's sample.
    """
    sizes = torch.bincount(labels, minlength=n_labels).cpu().numpy()
    counts = allocate_stratified(sizes, sample_size)
    permuted_labels = labels[permutation]
    # Proportional shares are almost always found in a prefix twice the sample's
    # size; only clusters short there (small ones at their floor) scan everything.
    prefix = permuted_labels[: min(permuted_labels.shape[0], 2 * int(counts.sum()))]
    in_prefix = torch.bincount(prefix, minlength=n_labels).cpu().numpy()
    by_cluster = torch.argsort(prefix, stable=True)  # stable: permutation order within a cluster
    starts = np.concatenate([[0], np.cumsum(in_prefix)[:-1]])
    pieces = []
    for cluster, (start, wanted) in enumerate(zip(starts.tolist(), counts.tolist())):
        if in_prefix[cluster] >= wanted:
            pieces.append(by_cluster[start : start + wanted])
        else:
            pieces.append(torch.nonzero(permuted_labels == cluster).squeeze(1)[:wanted])
    indices = permutation[torch.cat(pieces)]
    # Alternate rows of each cluster's sample (in permutation order) into two
    # random halves, for the split-half bias correction.
    halves = torch.cat([torch.arange(len(piece), device=labels.device) % 2 for piece in pieces])
    return indices, sizes, counts, halves


def _influence_weights(
    values: torch.Tensor,
    intra: torch.Tensor,
    inter: torch.Tensor,
    singleton: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Derivatives of ``s = (b - a) / max(a, b)`` with respect to ``a`` and ``b``."""
    a_smaller = intra <= inter
    d_intra = torch.where(a_smaller, -1.0 / inter, -inter / (intra * intra))
    d_inter = torch.where(a_smaller, intra / (inter * inter), 1.0 / intra)
    # s is pinned to 0 for single-member clusters and for a = b = 0.
    pinned = singleton | ((intra == 0) & (inter == 0))
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    d_intra = torch.where(pinned, zero, torch.nan_to_num(d_intra, nan=0.0, posinf=0.0, neginf=0.0))
    d_inter = torch.where(pinned, zero, torch.nan_to_num(d_inter, nan=0.0, posinf=0.0, neginf=0.0))
    return d_intra, d_inter


def estimate_silhouettes(
    X: torch.Tensor,
    labelings: Sequence[torch.Tensor],
    n_labels: Sequence[int],
    sample_size: int,
    generator: torch.Generator,
    *,
    confidence: float = 0.95,
    block: Optional[int] = None,
    keep_values: bool = False,
    reference_term: bool = True,
) -> list:
    """Stratified-sample silhouette estimates for several labellings of ``X``.

    All labellings share one random permutation, so their samples overlap and
    one pool of rows (the union) serves all of them: one set of distance tiles,
    one matrix product for the per-cluster sums (in two halves, for the bias
    correction) and one for the intervals.

    Parameters
    ----------
    X : (n, d) float tensor on the compute device, or rows read by index
        (:class:`gpukmeans.sources.RowsByIndex`): only the sampled rows are read.
    labelings : list of (n,) int64 tensors with codes ``0..n_labels[g]-1``.
    n_labels : number of clusters of each labelling (each in 2..n-1).
    sample_size : rows to score per labelling; ``>= n`` means exact.
    generator : CPU generator for the permutation.
    confidence : level of the intervals.
    block : tile side (default: by device).
    keep_values : also return, per labelling, the scored rows (indices into
        ``X``) and their silhouettes, as ``(estimate, rows, values)`` tuples.
    reference_term : False drops the reference-sample term from the interval,
        giving the naive (too narrow) one; only for showing the difference.

    Returns
    -------
    list of SilhouetteEstimate, or of ``(estimate, rows, values)`` tuples.
    """
    device = X.device
    n_samples = X.shape[0]
    block = block or default_block(device)
    permutation = torch.randperm(n_samples, generator=generator).to(device)
    samples = [
        stratified_sample(labels, k, sample_size, permutation)
        for labels, k in zip(labelings, n_labels)
    ]
    pool, members, pool_labels, one_hot, offsets = _pool_columns(X, labelings, n_labels, samples)

    pool_X = X[pool]
    pool_X = pool_X - pool_X.mean(dim=0, keepdim=True)
    row_factor, col_factor = augment(pool_X)
    del pool_X
    # Two columns per cluster: distances to its sampled members in each half.
    half_sums = distance_matmul(row_factor, col_factor, one_hot, block)
    del one_hot
    sums = half_sums[:, 0::2] + half_sums[:, 1::2]

    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    results: list[Optional[SilhouetteEstimate]] = [None] * len(samples)
    scored_values: list[Optional[torch.Tensor]] = [None] * len(samples)
    influence_columns = torch.zeros(pool.shape[0], offsets[-1], dtype=torch.float64, device=device)
    pending = []  # per labelling: what the second pass needs
    for g, (_, sizes, counts, _) in enumerate(samples):
        rows, part = members[g], slice(offsets[g], offsets[g + 1])
        labels_here = pool_labels[g][rows]
        sizes64 = torch.as_tensor(sizes, dtype=torch.float64, device=device)
        counts64 = torch.as_tensor(counts, dtype=torch.float64, device=device)
        own_counts = (counts64 - 1.0)[labels_here]
        values, intra, inter, nearest = silhouette_from_sums(
            sums[rows, part], labels_here, own_counts, counts64
        )
        intra = torch.nan_to_num(intra, nan=0.0)  # single-member clusters
        scored_values[g] = values
        cluster_weight = sizes64 / n_samples
        estimate = _stratified_mean(values, labels_here, counts64, cluster_weight)
        sampled_rows = int(counts.sum())
        if np.array_equal(sizes, counts):
            results[g] = SilhouetteEstimate(
                estimate, estimate, estimate, sampled_rows, n_samples, "exact", confidence
            )
            continue
        estimate = _split_half_corrected(
            estimate, half_sums[rows, 2 * offsets[g] : 2 * offsets[g + 1]],
            labels_here, pool_halves(samples[g], pool, rows), sizes, counts, cluster_weight,
            n_samples,
        )
        singleton = sizes64[labels_here] == 1
        d_intra, d_inter = _influence_weights(values, intra, inter, singleton)
        # Row i counts with weight n_c / (n m_c) in the estimate; its own-cluster
        # mean divides by m_c - 1, hence the m_c / (m_c - 1) factor.
        row_weight = (sizes64 / (n_samples * counts64))[labels_here]
        own_scale = counts64[labels_here] / own_counts.clamp_min(1.0)
        coef_own = row_weight * d_intra * own_scale
        coef_nearest = row_weight * d_inter
        influence_columns[rows, offsets[g] + labels_here] += coef_own
        influence_columns[rows, offsets[g] + nearest] += coef_nearest
        # sum_i coef_i(c) * A_i(c): the centring term of each reference cluster.
        centring = torch.zeros_like(counts64)
        centring.index_add_(0, labels_here, coef_own * intra)
        centring.index_add_(0, nearest, coef_nearest * inter)
        pending.append((g, rows, labels_here, values, cluster_weight, counts64, sizes64,
                        coef_own, intra, centring, estimate, sampled_rows))

    if pending:
        reference_effect = distance_matmul(row_factor, col_factor, influence_columns, block)
        for (g, rows, labels_here, values, cluster_weight, counts64, sizes64,
             coef_own, intra, centring, estimate, sampled_rows) in pending:
            effect = reference_effect[rows, offsets[g] + labels_here]
            # Leave row j out of its own reference term (it is not its own neighbour).
            effect = effect - (centring[labels_here] - coef_own * intra)
            influence = cluster_weight[labels_here] * values
            if reference_term:
                influence = influence + effect
            variance = _stratified_variance(influence, labels_here, counts64, sizes64)
            half = z * math.sqrt(max(variance, 0.0))
            results[g] = SilhouetteEstimate(
                estimate,
                max(-1.0, estimate - half),
                min(1.0, estimate + half),
                sampled_rows,
                n_samples,
                "sampled",
                confidence,
            )
    if keep_values:
        return [
            (results[g], pool[members[g]], scored_values[g]) for g in range(len(samples))
        ]
    return results


def _pool_columns(X, labelings, n_labels, samples):
    """The union of the samples, and one-hot columns (two halves per cluster).

    Returns ``pool`` (row indices into X), per labelling the positions of its
    members in the pool and the pool's labels, the (pool, 2 * sum(k)) one-hot
    matrix whose column ``2 * (offset_g + c) + half`` marks the sampled members
    of cluster c of labelling g in that half, and the column offsets.
    """
    device, n_samples = X.device, X.shape[0]
    in_pool = torch.zeros(n_samples, dtype=torch.bool, device=device)
    for indices, _, _, _ in samples:
        in_pool[indices] = True
    pool = torch.nonzero(in_pool).squeeze(1)
    offsets = np.concatenate([[0], np.cumsum(n_labels)]).astype(int).tolist()
    one_hot = torch.zeros(pool.shape[0], 2 * offsets[-1], dtype=X.dtype, device=device)
    members, pool_labels = [], []
    for g, sample in enumerate(samples):
        mark = torch.zeros(n_samples, dtype=torch.bool, device=device)
        mark[sample[0]] = True
        rows = torch.nonzero(mark[pool]).squeeze(1)
        labels_here = labelings[g][pool]
        halves = pool_halves(sample, pool, rows)
        one_hot[rows, 2 * (offsets[g] + labels_here[rows]) + halves] = 1.0
        members.append(rows)
        pool_labels.append(labels_here)
    return pool, members, pool_labels, one_hot, offsets


def pool_halves(sample, pool, rows) -> torch.Tensor:
    """The half (0 or 1) of each sampled row, at positions ``rows`` of ``pool``."""
    indices, _, _, halves = sample
    lookup = torch.zeros(int(pool.max()) + 1, dtype=torch.int64, device=pool.device)
    lookup[indices] = halves
    return lookup[pool[rows]]


def _stratified_mean(values, labels, counts64, cluster_weight) -> float:
    """``sum_c (n_c / n) * mean of the sampled values in c``."""
    per_cluster = torch.zeros_like(counts64).index_add_(0, labels, values) / counts64
    return float((cluster_weight * per_cluster).sum())


# A cluster's sample is split for the bias correction only from this many rows.
_MIN_ROWS_TO_SPLIT = 8


def _split_half_corrected(
    estimate, half_sums, labels, halves, sizes, counts, cluster_weight, n_samples
) -> float:
    """Remove the leading bias of the estimate by comparing it with half-reference ones.

    ``b`` is a minimum of noisy means, so the estimate is biased low by about
    ``beta * (1 / m - 1 / n)``. Scoring every sampled row against only one half
    of each cluster's sampled rows doubles the ``1 / m`` part; the average of the
    two half estimates, ``H``, gives ``estimate - (H - estimate) * (1 - m / n)``
    with the leading term cancelled. Clusters that are complete or too small to
    split keep their full reference set in both halves.
    """
    device = half_sums.device
    split = torch.as_tensor(
        (counts < sizes) & (counts >= _MIN_ROWS_TO_SPLIT), device=device
    )
    counts64 = torch.as_tensor(counts, dtype=torch.float64, device=device)
    first_half = torch.ceil(counts64 / 2)
    full_sums = half_sums[:, 0::2] + half_sums[:, 1::2]
    half_estimates = []
    for half, half_counts in ((0, first_half), (1, counts64 - first_half)):
        reference = torch.where(split[None, :], half_sums[:, half::2], full_sums)
        reference_counts = torch.where(split, half_counts, counts64)
        # A row is not its own reference: one less in its cluster if it is in this half.
        in_this_half = (halves == half) | ~split[labels]
        own = reference_counts[labels] - in_this_half.to(torch.float64)
        values, _, _, _ = silhouette_from_sums(reference, labels, own, reference_counts)
        half_estimates.append(_stratified_mean(values, labels, counts64, cluster_weight))
    sampled_fraction = float(counts64.sum()) / n_samples
    half_average = sum(half_estimates) / 2.0
    return min(1.0, max(-1.0, estimate - (half_average - estimate) * (1.0 - sampled_fraction)))


def _stratified_variance(
    influence: torch.Tensor,
    labels: torch.Tensor,
    counts: torch.Tensor,
    sizes: torch.Tensor,
) -> float:
    """``sum_c (1 - m_c / n_c) * var_c(u) / m_c`` with the within-cluster variance."""
    sums = torch.zeros_like(counts).index_add_(0, labels, influence)
    means = sums / counts
    squares = torch.zeros_like(counts).index_add_(
        0, labels, (influence - means[labels]) ** 2
    )
    within = squares / (counts - 1.0).clamp_min(1.0)
    finite_population = (1.0 - counts / sizes).clamp_min(0.0)
    return float((finite_population * within / counts).sum())


def silhouette_score_sampled(
    X: Any,
    labels: Any,
    *,
    sample_size: int = 10_000,
    random_state: Any = None,
    confidence: float = 0.95,
    device: Any = "auto",
    block_size: Any = "auto",
    dtype: Any = None, columns: Any = None, distributed: bool = True,
) -> SilhouetteEstimate:
    """Estimate the mean Euclidean silhouette from a stratified sample, with an interval.

    Every cluster is sampled (``min(n_c, 50)`` rows at least, the rest in
    proportion to size), each sampled row is scored against the sampled rows,
    and cluster means are weighted by cluster size. The interval accounts for
    both the choice of scored rows and the sampled reference points (see the
    module notes). Cost: two passes over ``sample_size**2`` distances.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or a path
        Anything :meth:`gpukmeans.KMeans.fit` takes; from a file (or other ranks) only the
        sampled rows are read.
    labels : array-like of shape (n_samples,)
    sample_size : int, default=10000
        Rows to score. At least 2 per cluster. With ``sample_size >= n_samples``
        every row is scored and the result is exact (``method="exact"``).
    random_state : int, numpy/torch generator or None
    confidence : float in (0, 1), default=0.95
    device : "auto", "cpu", "cuda" or torch.device
    block_size : int or "auto"
    dtype, columns, distributed : see :func:`~gpukmeans.metrics.silhouette_samples`.

    Returns
    -------
    SilhouetteEstimate
        ``value``, ``low``, ``high``, ``sample_size``, ``n_samples``, ``method``.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from gpukmeans.metrics import silhouette_score_sampled
    >>> X, y = make_blobs(5000, 4, centers=3, random_state=0)
    >>> est = silhouette_score_sampled(X, y, sample_size=1000, random_state=0)
    >>> est.method, est.low <= est.value <= est.high
    ('sampled', True)
    """
    if isinstance(sample_size, bool) or not isinstance(sample_size, (int, np.integer)):
        raise ValueError(f"sample_size must be an int, got {sample_size!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    data = validate(X, labels, device, dtype=dtype, columns=columns, distributed=distributed)
    if sample_size < 2 * data.n_labels:
        raise ValueError(
            f"sample_size={sample_size} is too small for {data.n_labels} clusters: "
            f"need at least 2 rows per cluster ({2 * data.n_labels})"
        )
    block = resolve_block(block_size, data.X.device)
    n_samples = data.X.shape[0]
    if sample_size >= n_samples:
        value = float(exact_silhouette_values(data.all_rows(), data.labels, data.n_labels, block).mean())
        return SilhouetteEstimate(value, value, value, n_samples, n_samples, "exact", confidence)
    generator = make_generator(random_state)
    (result,) = estimate_silhouettes(
        data.X,
        [data.labels],
        [data.n_labels],
        int(sample_size),
        generator,
        confidence=confidence,
        block=block,
    )
    return result
