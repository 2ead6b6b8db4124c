"""How stable each segment is: Hennig's (2007) cluster-wise bootstrap stability.

"Cluster-wise assessment of cluster stability" (C. Hennig, Computational Statistics &
Data Analysis 52, 2007) asks of each cluster whether it is a feature of the data or of
the algorithm: refit the clustering on resampled data and see whether the cluster comes
back. Here:

1. The rows: the clustered matrix, or above :data:`MAX_ROWS` rows a uniform sample of
   that many (drawn without replacement, once, from the seed). A Jaccard over 100,000
   rows varies by far less than the readings' bands, and the refits' cost grows with
   their rows: B resamples of 100,000 rows with two starts each are 4M row-fits per
   pass against the final fit's 10M at 1M rows and ten restarts, so stability stays
   within a few times the final fit, and a larger table pays no more
   (``benchmarks/bench_stability.py``).
2. B bootstrap resamples of those rows (multinomial count weights, the nonparametric
   bootstrap Hennig recommends for k-means), each refitted with the same k from
   k-means++ starts (:func:`gpukmeans.engine.resampled.resampled_kmeans`: the
   resamples are groups sharing each pass over the rows, not B separate fits).
3. In each resample, over the distinct rows it drew (each counted once), each segment's
   members are matched to the refit's cluster of highest Jaccard similarity
   ``|A and B| / |A or B|``; a segment's stability is the mean of its best Jaccards over
   the resamples that drew any of its members. A segment no resample drew scores 0.

Hennig's reading of the mean: above 0.85 a stable segment, 0.75 to 0.85 fairly stable,
0.6 to 0.75 a pattern without clear boundaries, below 0.6 a segment that dissolves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: Resamples when none are asked for.
DEFAULT_RESAMPLES = 20

#: Rows the resamples are drawn from: a uniform sample of this many above it.
MAX_ROWS = 100_000

#: Rows per segment below which a bootstrap resample too often holds fewer distinct rows
#: than segments: stability is skipped on such a small table.
MIN_ROWS_PER_SEGMENT = 2

#: k-means++ starts per resample, at most (never more than the final fit's restarts).
MAX_RESTARTS = 2

#: Hennig's bands, highest first: (lowest mean Jaccard, reading); "stable" is strictly above its bound.
READINGS = ((0.85, "stable"), (0.75, "fairly stable"), (0.6, "a pattern without clear boundaries"),
            (-np.inf, "dissolves"))

#: Below this a segment dissolves under resampling; the command line says so.
DISSOLVES_BELOW = 0.6


@dataclass
class Stability:
    """Per segment, the mean Jaccard of its best match over the resamples (0 to 1)."""

    values: np.ndarray  # (k,) float64
    resamples: int
    method: str  # what was resampled, in words

    def readings(self) -> list[str]:
        return [stability_reading(value) for value in self.values]

    def dissolving(self) -> list[int]:
        """The segments below :data:`DISSOLVES_BELOW`."""
        return [s for s, value in enumerate(self.values) if value < DISSOLVES_BELOW]


def check_resamples(resamples) -> int:
    """``resamples`` as an int of at least 0 (0: stability is skipped), else an :class:`InputError`."""
    if isinstance(resamples, (bool, np.bool_)) or not isinstance(resamples, (int, np.integer)) or resamples < 0:
        raise InputError(f"stability must be a whole number of resamples (0 skips it), got {resamples!r}")
    return int(resamples)


def stability_reading(value: float) -> str:
    """Hennig's reading of a mean Jaccard (see the module's docstring)."""
    (highest, stable), *lower = READINGS
    if value > highest:
        return stable
    return next(reading for lowest, reading in lower if value >= lowest)


def segment_stability(X, labels, k: int, *, resamples: int = DEFAULT_RESAMPLES, restarts: int = 1, seed: int = 0,
                      max_rows: int = MAX_ROWS, max_iter: int = 300, chunk_size: int | None = None) -> Stability:
    """The :class:`Stability` of the segments ``labels`` ((n,), 0 to k-1) of the clustered
    rows ``X`` ((n, d) tensor on the device where the refits run); see the module's
    docstring. ``restarts``: k-means++ starts per resample (the lowest inertia is kept);
    ``chunk_size`` changes no result."""
    import torch

    n_rows = int(X.shape[0])
    sample, rng = resampled_rows(n_rows, seed=seed, max_rows=max_rows)
    rows = X if sample is None else X[torch.as_tensor(sample, device=X.device)]
    original = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels, dtype=np.int64)
    original = original if sample is None else original[sample]
    return stability_of_rows(rows, original, k, rng, resamples=resamples, restarts=restarts, max_iter=max_iter,
                             chunk_size=chunk_size, method=method_of(n_rows, sample))


def resampled_rows(n_rows: int, *, seed: int, max_rows: int = MAX_ROWS):
    """``(positions, rng)``: the sorted positions of the rows the resamples draw from
    (None: every row), and the generator that goes on to draw the resamples. The
    positions depend on ``n_rows`` and ``seed`` alone, so that ranks holding shares of
    the rows pick the rows one process would."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n_rows, size=max_rows, replace=False)) if n_rows > max_rows else None
    return sample, rng


def stability_of_rows(rows, original: np.ndarray, k: int, rng: np.random.Generator, *, resamples: int,
                      restarts: int, max_iter: int, chunk_size: int | None, method: str) -> Stability:
    """The :class:`Stability` of the segments ``original`` of ``rows`` (the rows
    :func:`resampled_rows` picked, as a tensor), from ``resamples`` bootstraps drawn
    with ``rng``."""
    import torch

    from ..engine.resampled import resampled_kmeans

    counts = bootstrap_counts(rows.shape[0], resamples, k, rng)
    fits = resampled_kmeans(rows, torch.as_tensor(counts), k, restarts=restarts, seed=int(rng.integers(2**32)),
                            max_iter=max_iter, chunk_size=chunk_size)
    refits = fits.labels.numpy()
    best = np.stack([best_jaccards(original, refits[:, b], counts[b] > 0, k) for b in range(resamples)])
    return Stability(values=mean_over_resamples(best), resamples=resamples, method=method)


def bootstrap_counts(n_rows: int, resamples: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(B, n) float32: how often each row is drawn in each of ``resamples`` bootstraps of
    ``n_rows`` draws. A draw with fewer than ``k`` distinct rows (possible only on a tiny
    table) is drawn again: k centres need k distinct rows."""
    if n_rows < k:
        raise InputError(f"stability needs at least k={k} rows, got {n_rows}")
    counts = np.zeros((resamples, n_rows), dtype=np.float32)
    for b in range(resamples):
        while True:
            drawn = np.bincount(rng.integers(0, n_rows, size=n_rows), minlength=n_rows)
            if np.count_nonzero(drawn) >= k:
                break
        counts[b] = drawn
    return counts


def best_jaccards(original: np.ndarray, refit: np.ndarray, present: np.ndarray, k: int) -> np.ndarray:
    """(k,): per original segment, the highest Jaccard similarity of its members to one of
    the refit's clusters, over the rows ``present`` in the resample; NaN for a segment
    with no member present (nothing to match)."""
    pairs = np.bincount(original[present] * k + refit[present], minlength=k * k).reshape(k, k).astype(np.float64)
    in_segment = pairs.sum(axis=1)
    in_cluster = pairs.sum(axis=0)
    union = in_segment[:, None] + in_cluster[None, :] - pairs
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = np.where(union > 0, pairs / np.where(union > 0, union, 1.0), 0.0)
    best = jaccard.max(axis=1)
    best[in_segment == 0] = np.nan
    return best


def mean_over_resamples(best: np.ndarray) -> np.ndarray:
    """(k,): the mean of each segment's best Jaccards ((B, k)) over the resamples that drew
    any of its members; 0.0 for a segment no resample drew."""
    drawn = np.isfinite(best)
    totals = np.where(drawn, best, 0.0).sum(axis=0)
    times = drawn.sum(axis=0)
    return np.where(times > 0, totals / np.maximum(times, 1), 0.0)


def method_of(n_rows: int, sample) -> str:
    if sample is None:
        return f"bootstrap of all {n_rows:,} rows"
    return f"bootstrap of {sample.size:,} rows sampled from {n_rows:,}"


def restarts_for(n_init) -> int:
    """k-means++ starts per resample: the final fit's restarts, at most :data:`MAX_RESTARTS`
    (``"auto"``: one, as the final fit's own "auto" with k-means++)."""
    if isinstance(n_init, str):
        return 1
    return max(1, min(int(n_init), MAX_RESTARTS))


def structure_sentence(structure: str, sentence: str, k: int, stability: Stability | None) -> str:
    """The structure verdict's sentence, told what the resamples found: segments that
    overlap ("weak" by their silhouette) yet all come back when the customers are
    resampled are a consistent split with soft boundaries, not an arbitrary one."""
    if structure != "weak" or stability is None or not np.all(stability.values > READINGS[0][0]):
        return sentence
    return (f"The {k} segments overlap (a weak silhouette), but every one comes back when the customers are "
            "resampled: a consistent split whose boundaries are soft, not natural groups with clear gaps.")


def summary_fields(stability: Stability | None, skipped_because: str | None = None) -> dict:
    """The summary's top-level stability fields."""
    if stability is None:
        return {"stability_method": f"skipped ({skipped_because})", "stability_resamples": 0}
    return {"stability_method": stability.method, "stability_resamples": stability.resamples}


def segment_fields(stability: Stability | None, segment: int) -> dict:
    """One segment's stability fields in the summary (none when skipped)."""
    if stability is None:
        return {}
    value = float(stability.values[segment])
    return {"stability": round(value, 4), "stability_reading": stability_reading(value)}


def with_stability_column(profiles, stability: Stability | None):
    """``profiles`` with a ``stability`` column after ``share`` (unchanged when skipped)."""
    if stability is None:
        return profiles
    profiles = profiles.copy()
    profiles.insert(profiles.columns.get_loc("share") + 1, "stability", np.round(stability.values, 4))
    return profiles
