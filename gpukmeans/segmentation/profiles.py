"""Describe segments in the user's own units, and name them by what sets them apart.

Two views of every segment:

- :func:`profile_segments` (a table in memory) or :class:`ProfileSums` (a table read
  in batches): size, share, and the mean and median of each feature in its original
  units, with each mean relative to the whole population;
- :func:`segment_contrasts` (or :meth:`MatrixSummary.contrasts` of the clustered
  matrix on its device): how far each segment's mean lies from the population's, in
  population standard deviations, measured in the space that was clustered (after
  log transforms and clipping). This is what sets segments apart, so it drives both
  the names (:func:`name_segments`) and the profile heatmap.

Means and shares are exact: sums over every clustered row. Medians are exact for a
table of at most :data:`~gpukmeans.segmentation.statistics.SAMPLE_ROWS` rows; above
that they are the medians of each segment's rows in the uniform sample of the
statistics pass (see :mod:`~gpukmeans.segmentation.statistics` for their accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

#: A segment is "High"/"Low" in a feature when its mean is this many population
#: standard deviations above/below the population mean...
NOTABLE = 0.5
#: ...and "Very High"/"Very Low" from this many.
EXTREME = 1.5


def segment_means(values: np.ndarray, labels: np.ndarray, n_segments: int) -> np.ndarray:
    """Mean of every column per segment, ignoring missing values; (n_segments, n_columns)."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.zeros((n_segments, values.shape[1]))
    counts = np.zeros((n_segments, values.shape[1]))
    for j in range(values.shape[1]):
        column = values[:, j]
        present = np.isfinite(column)
        sums[:, j] = np.bincount(labels[present], weights=column[present], minlength=n_segments)
        counts[:, j] = np.bincount(labels[present], minlength=n_segments)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def profile_segments(
    features: pd.DataFrame,
    labels: np.ndarray,
    n_segments: int,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per segment: size, share, and mean, median and relative mean per feature.

    Parameters
    ----------
    features : pandas.DataFrame
        The clustered rows in original units (see
        :meth:`~gpukmeans.segmentation.Preprocessor.original_units`); missing
        values are ignored.
    labels : ndarray of shape (n_rows,)
        Segment of every row, in ``0 .. n_segments - 1``.
    n_segments : int
    names : sequence of str, optional
        Segment names, added as the ``segment_name`` column.

    Returns
    -------
    pandas.DataFrame
        Columns ``segment``, [``segment_name``], ``size``, ``share``, then for each
        feature ``<feature> mean``, ``<feature> median`` and ``<feature> vs population``
        (segment mean divided by population mean; 1.0 is average, empty where the
        population mean is zero).
    """
    labels = np.asarray(labels)
    values = features.to_numpy(dtype=np.float64, na_value=np.nan)
    sizes = np.bincount(labels, minlength=n_segments)
    means = segment_means(values, labels, n_segments)
    population = np.nanmean(values, axis=0) if len(values) else np.full(values.shape[1], np.nan)
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    medians = np.full_like(means, np.nan)
    for s in range(n_segments):
        block = values[order[bounds[s] : bounds[s + 1]]]
        if len(block):
            with np.errstate(all="ignore"):
                present = np.isfinite(block)
                for j in np.flatnonzero(present.any(axis=0)):
                    medians[s, j] = np.median(block[present[:, j], j])
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(population != 0, means / population, np.nan)

    table = {"segment": np.arange(n_segments)}
    if names is not None:
        table["segment_name"] = list(names)
    table["size"] = sizes
    table["share"] = sizes / max(len(labels), 1)
    for j, name in enumerate(features.columns):
        table[f"{name} mean"] = means[:, j]
        table[f"{name} median"] = medians[:, j]
        table[f"{name} vs population"] = relative[:, j]
    return pd.DataFrame(table)


def segment_contrasts(
    X: np.ndarray, labels: np.ndarray, n_segments: int, feature_names: Sequence[str]
) -> pd.DataFrame:
    """Standardised difference between each segment's mean and the population's.

    Computed on the clustered matrix ``X``; because scaling is per column and
    affine, the result does not depend on which scaler was used.

    Returns
    -------
    pandas.DataFrame of shape (n_segments, n_features)
        ``(segment mean - population mean) / population standard deviation``.
    """
    X = np.asarray(X, dtype=np.float64)
    spread = X.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    contrasts = (segment_means(X, labels, n_segments) - X.mean(axis=0)) / spread
    return pd.DataFrame(contrasts, columns=list(feature_names))


def name_segments(
    contrasts: pd.DataFrame,
    shares: pd.DataFrame | None = None,
    *,
    max_terms: int = 2,
) -> list[str]:
    """Name every segment by its most distinctive features; the names are distinct.

    A name lists up to ``max_terms`` features whose segment mean is at least
    :data:`NOTABLE` population standard deviations from the population mean, the
    strongest first chosen, shown in column order: "High Annual Income (k$), Low
    Spending Score (1-100)". A segment with no such feature is "Average", one
    without customers "Empty". When
    two segments would share a name, weaker features are added (as
    "Above-average X" / "Below-average X") until they differ; a number is the
    last resort.

    Parameters
    ----------
    contrasts : pandas.DataFrame of shape (n_segments, n_features)
        From :func:`segment_contrasts`. One-hot columns are named ``column=level``.
    shares : pandas.DataFrame, optional
        Segment means of the one-hot columns (the share of each category level,
        one row per segment). Its columns are the ones treated as category
        levels: worded "Mostly col=level" (share at least one half) or "Often
        col=level", and used only when the level is over-represented.
    max_terms : int, default=2

    Returns
    -------
    list of str
    """
    z = contrasts.to_numpy(dtype=np.float64)
    columns = list(contrasts.columns)
    levels = set(shares.columns) if shares is not None else set()
    n_segments = len(z)
    # Features ordered by strength for each segment. A category level only
    # describes a segment by being over-represented; its absence is implied by
    # another level's presence.
    ranked = []
    for s in range(n_segments):
        usable = [j for j in range(len(columns)) if not (columns[j] in levels and z[s, j] <= 0)]
        ranked.append(sorted(usable, key=lambda j: -abs(z[s, j])))
    n_terms = [
        min(max_terms, sum(abs(z[s, j]) >= NOTABLE for j in ranked[s])) for s in range(n_segments)
    ]

    def render(s: int) -> str:
        if np.isnan(z[s]).all():  # a segment with no customers has no means
            return "Empty"
        chosen = sorted(ranked[s][: n_terms[s]])
        if not chosen:
            return "Average"
        return ", ".join(_term(columns[j], z[s, j], shares, s) for j in chosen)

    names = [render(s) for s in range(n_segments)]
    while True:
        clashes = _clashing(names)
        if not clashes:
            return names
        grown = False
        for s in clashes:
            if n_terms[s] < len(ranked[s]):
                n_terms[s] += 1
                names[s] = render(s)
                grown = True
        if not grown:
            break
    seen: dict[str, int] = {}
    for s, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[s] = f"{name} #{seen[name]}"
    return names


def _clashing(names: list[str]) -> list[int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [s for s, name in enumerate(names) if counts[name] > 1]


def _term(column: str, z: float, shares: pd.DataFrame | None, segment: int) -> str:
    if shares is not None and column in shares.columns:
        word = "Mostly" if shares[column].iloc[segment] >= 0.5 else "Often"
        return f"{word} {column}"
    if z >= EXTREME:
        level = "Very High"
    elif z >= NOTABLE:
        level = "High"
    elif z > -NOTABLE:
        level = "Above-average" if z >= 0 else "Below-average"
    elif z > -EXTREME:
        level = "Low"
    else:
        level = "Very Low"
    return f"{level} {column}"


# ---------------------------------------------------------------- tables read in batches


class ProfileSums:
    """Per segment, the sums a profile needs, added batch by batch (exact).

    Parameters
    ----------
    n_segments : int
    numeric : sequence of str
        Numeric columns: their finite raw values are summed and counted.
    categories : dict of str to list of str
        Categorical columns and their levels: present values are counted by level.
    """

    def __init__(self, n_segments: int, numeric: Sequence[str], categories: dict):
        self.n_segments = n_segments
        self.numeric = list(numeric)
        self.categories = {name: list(levels) for name, levels in categories.items()}
        self.sizes = np.zeros(n_segments, dtype=np.int64)
        self.sums = np.zeros((n_segments, len(self.numeric)))
        self.counts = np.zeros((n_segments, len(self.numeric)), dtype=np.int64)
        self.level_counts = {name: np.zeros((n_segments, len(levels)), dtype=np.int64)
                             for name, levels in self.categories.items()}
        self.present = {name: np.zeros(n_segments, dtype=np.int64) for name in self.categories}

    def add(self, batch, kept, labels: np.ndarray, prep) -> None:
        """Add a batch's clustered rows (``kept``: their positions in the batch, None:
        all) with their segments ``labels``."""
        from ._kernels import profile_sums

        labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.sizes += np.bincount(labels, minlength=self.n_segments)
        numbers = np.stack([batch.numbers[name] for name in self.numeric]) if self.numeric \
            else np.zeros((0, batch.n_rows))
        codes = prep.category_codes(batch) if self.categories else np.zeros((0, batch.n_rows), dtype=np.int32)
        sizes = [len(levels) for levels in self.categories.values()]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        kept = None if kept is None else np.ascontiguousarray(kept, dtype=np.int64)
        sums, counts, levels, present = profile_sums(numbers, codes, offsets, kept, labels, self.n_segments)
        self.sums += sums
        self.counts += counts.astype(np.int64)
        for c, name in enumerate(self.categories):
            self.level_counts[name] += levels[:, offsets[c]:offsets[c + 1]].astype(np.int64)
            self.present[name] += present[:, c].astype(np.int64)

    def feature_names(self) -> list[str]:
        return self.numeric + [f"{name}={level}" for name, levels in self.categories.items() for level in levels]

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        """Per segment and overall, the mean of every feature (a level: its share)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            means = [self.sums / self.counts]
            overall = [self.sums.sum(axis=0) / self.counts.sum(axis=0)]
            for name in self.categories:
                counts, present = self.level_counts[name], self.present[name]
                means.append(counts / present[:, None])
                overall.append(counts.sum(axis=0) / present.sum())
        return np.hstack(means), np.concatenate(overall)

    def table(self, names: Sequence[str] | None, medians: np.ndarray) -> pd.DataFrame:
        """The profile table, as :func:`profile_segments` gives it."""
        means, population = self.means()
        with np.errstate(invalid="ignore", divide="ignore"):
            relative = np.where(population != 0, means / population, np.nan)
        table = {"segment": np.arange(self.n_segments)}
        if names is not None:
            table["segment_name"] = list(names)
        table["size"] = self.sizes
        table["share"] = self.sizes / max(int(self.sizes.sum()), 1)
        for j, name in enumerate(self.feature_names()):
            table[f"{name} mean"] = means[:, j]
            table[f"{name} median"] = medians[:, j]
            table[f"{name} vs population"] = relative[:, j]
        return pd.DataFrame(table)


def segment_medians(values: np.ndarray, labels: np.ndarray, n_segments: int) -> np.ndarray:
    """Median of every column per segment, ignoring missing values; (n_segments, n_columns)."""
    values = np.asarray(values, dtype=np.float64)
    medians = np.full((n_segments, values.shape[1]), np.nan)
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=n_segments))])
    for s in range(n_segments):
        block = values[order[bounds[s] : bounds[s + 1]]]
        for j in range(values.shape[1]):
            column = block[:, j]
            column = column[np.isfinite(column)]
            if column.size:
                medians[s, j] = np.median(column)
    return medians


@dataclass
class MatrixSummary:
    """Per segment, the mean of every column of the clustered matrix, and the
    population's mean and standard deviation of each column (:func:`summarize_matrix`)."""

    means: np.ndarray
    sizes: np.ndarray
    population_mean: np.ndarray
    population_std: np.ndarray

    def contrasts(self, feature_names: Sequence[str]) -> pd.DataFrame:
        """:func:`segment_contrasts` from the summary."""
        spread = np.where(self.population_std > 0, self.population_std, 1.0)
        return pd.DataFrame((self.means - self.population_mean) / spread, columns=list(feature_names))


def summarize_matrix(X, labels, n_segments: int, *, block_rows: int = 1 << 20) -> MatrixSummary:
    """One pass over the clustered float32 matrix on its device (``labels``: a tensor on
    the same device), summed in float64: a numba kernel on the CPU, torch elsewhere."""
    return summary_of_sums(*matrix_sums(X, labels, n_segments, block_rows=block_rows))


def matrix_sums(X, labels, n_segments: int, *, block_rows: int = 1 << 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per segment, the float64 sums and sums of squares of the matrix's columns, and
    the rows (what :func:`summary_of_sums` needs; ranks add theirs)."""
    import torch

    n, d = X.shape
    if X.device.type == "cpu":
        from ._kernels import segment_sums

        sums, squares, counts = segment_sums(X.numpy(), labels.to(torch.int64).numpy(), n_segments)
        return sums, squares, np.asarray(counts, dtype=np.float64)
    sums_t = torch.zeros((n_segments, d), dtype=torch.float64, device=X.device)
    squares_t = torch.zeros_like(sums_t)
    for start in range(0, n, block_rows):
        block, codes = X[start:start + block_rows].double(), labels[start:start + block_rows]
        sums_t.index_add_(0, codes, block)
        squares_t.index_add_(0, codes, block * block)
    counts = torch.bincount(labels, minlength=n_segments).double().cpu().numpy()
    return sums_t.cpu().numpy(), squares_t.cpu().numpy(), counts


def summary_of_sums(sums: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> MatrixSummary:
    """The :class:`MatrixSummary` of a matrix from its :func:`matrix_sums`."""
    total = max(float(counts.sum()), 1.0)
    mean = sums.sum(axis=0) / total
    variance = np.maximum(squares.sum(axis=0) / total - mean * mean, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    return MatrixSummary(means, counts.astype(np.int64), mean, np.sqrt(variance))
