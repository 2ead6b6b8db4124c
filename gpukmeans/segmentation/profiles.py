"""Describe segments in the user's own units, and name them by what sets them apart.

Two views of every segment:

- :func:`profile_segments`: size, share, and the mean and median of each feature in
  its original units, with each mean relative to the whole population;
- :func:`segment_contrasts`: how far each segment's mean lies from the population's,
  in population standard deviations, measured in the space that was clustered
  (after log transforms and clipping). This is what sets segments apart, so it
  drives both the names (:func:`name_segments`) and the profile heatmap.
"""

from __future__ import annotations

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
    Spending Score (1-100)". A segment with no such feature is "Average". When
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
