"""Describe segments in the user's own units, and name them by what sets them apart.

Two views of every segment:

- :func:`profile_segments` (a table in memory) or :class:`ProfileSums` (a table read
  in batches): size, share, and the mean and median of each feature in its original
  units, with each mean relative to the whole population;
- :func:`trait_contrasts`: how far each segment's mean lies from the population's, in
  population standard deviations, in the original units, each numeric column first
  limited to its 1st to 99th percentiles so that a few wild values neither inflate the
  spread nor drag a mean. This is what a reader sees in the profiles (a segment with
  twice the population's cash advance stands out by its cash advance), so it drives
  both the names (:func:`name_segments`) and the profile heatmap.
  (:func:`segment_contrasts` measures the same in the clustered space, after log
  transforms, where a column of many zeros makes "low" look larger than it reads.)

Means and shares are exact: sums over every clustered row. Medians and contrasts are
exact for a table of at most :data:`~gpukmeans.segmentation.statistics.SAMPLE_ROWS`
rows; above that they come from each segment's rows in the uniform sample of the
statistics pass (see :mod:`~gpukmeans.segmentation.statistics` for their accuracy).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .labels import in_a_name

#: A segment is "high"/"low" in a feature when its mean is this many population
#: standard deviations above/below the population mean...
NOTABLE = 0.5
#: ...and "very high"/"very low" from this many.
EXTREME = 1.5
#: A segment with no notable feature is "Typical customers", followed by its one or
#: two strongest features, the second only when it lies at least this far out.
MILD = 0.25
#: A name's second feature lies on the other side of the population from its first
#: (the segment has more of one and less of the other) when such a notable feature
#: is at least this share as strong as the runner-up on the first one's side.
OTHER_SIDE = 0.5
#: Before :func:`trait_contrasts`, each numeric column is limited to the values
#: between these quantiles.
TRAIT_QUANTILES = (0.01, 0.99)


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


def trait_contrasts(
    values: np.ndarray, labels: np.ndarray, n_segments: int, feature_names: Sequence[str], *, n_numeric: int
) -> pd.DataFrame:
    """Standardised difference between each segment's mean and the population's, in
    original units.

    Parameters
    ----------
    values : ndarray of shape (n_rows, n_features)
        The rows in original units, missing values as NaN (ignored): first the
        ``n_numeric`` numeric columns, then 0/1 indicators of category levels.
    labels : ndarray of shape (n_rows,)
    n_segments : int
    feature_names : sequence of str
    n_numeric : int
        Numeric columns are limited to their :data:`TRAIT_QUANTILES` first; a column
        whose only variation lies beyond them (a rare flag) is kept whole.

    Returns
    -------
    pandas.DataFrame of shape (n_segments, n_features)
        ``(segment mean - population mean) / population standard deviation``.
    """
    values = np.array(values, dtype=np.float64)
    for j in range(n_numeric):
        values[:, j] = _limited(values[:, j])
    present = np.isfinite(values)
    # A contrast does not depend on its column's units: each column divided by its largest
    # magnitude keeps sums and squares finite and above underflow near 1e300 or 1e-300.
    magnitude = np.max(np.where(present, np.abs(values), 0.0), axis=0, initial=0.0)
    values = values / np.where(magnitude > 0, magnitude, 1.0)
    counts = np.maximum(present.sum(axis=0), 1)
    filled = np.where(present, values, 0.0)
    mean = filled.sum(axis=0) / counts
    spread = np.sqrt(np.where(present, (values - mean) ** 2, 0.0).sum(axis=0) / counts)
    spread = np.where(spread > 0, spread, 1.0)
    contrasts = (segment_means(values, labels, n_segments) - mean) / spread
    return pd.DataFrame(contrasts, columns=list(feature_names))


def _limited(column: np.ndarray) -> np.ndarray:
    present = column[np.isfinite(column)]
    if present.size == 0:
        return column
    low, high = np.quantile(present, TRAIT_QUANTILES)
    limited = np.clip(column, low, high)
    return limited if low < high else column


def name_segments(
    contrasts: pd.DataFrame,
    shares: pd.DataFrame | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    max_terms: int = 2,
) -> list[str]:
    """Name every segment by the features that most set it apart; the names are distinct.

    A name lists the ``max_terms`` strongest features whose segment mean is at least
    :data:`NOTABLE` population standard deviations from the population mean, in
    column order, so that names compare feature by feature: "Low purchases
    frequency, high cash advance" ("very high" and "very low" from :data:`EXTREME`).
    The second says what the first does not when it can: a segment that has more
    of one thing and less of another is named for both (the strongest feature on
    the other side, when it is at least :data:`OTHER_SIDE` as strong as the
    runner-up on the first one's side), rather than for two facets of one habit
    such as "low purchases, low purchases trx". A segment with no such feature is "Typical
    customers" with its strongest feature, and its second when that lies at least
    :data:`MILD` out ("Typical customers, above-average age"); one without
    customers is "Empty". When two segments would share a name, weaker features
    are added until they differ; a number is the last resort.

    Parameters
    ----------
    contrasts : pandas.DataFrame of shape (n_segments, n_features)
        From :func:`trait_contrasts`. One-hot columns are named ``column=level``.
    shares : pandas.DataFrame, optional
        Segment means of the one-hot columns (the share of each category level,
        one row per segment). Its columns are the ones treated as category
        levels: worded "mostly" (share at least one half) or "often", and used
        only when the level is over-represented.
    labels : mapping of str to str, optional
        How each feature reads (see :mod:`~gpukmeans.segmentation.labels`);
        a feature without one reads as its name.
    max_terms : int, default=2

    Returns
    -------
    list of str

    Examples
    --------
    >>> import pandas as pd
    >>> from gpukmeans.segmentation import name_segments
    >>> contrasts = pd.DataFrame([[0.6, 1.7], [-0.1, 0.3]], columns=["AGE", "CASH_ADVANCE"])
    >>> name_segments(contrasts, labels={"AGE": "Age", "CASH_ADVANCE": "Cash advance"})
    ['High age, very high cash advance', 'Typical customers, above-average cash advance']
    """
    z = contrasts.to_numpy(dtype=np.float64)
    columns = list(contrasts.columns)
    labels = labels or {}
    levels = set(shares.columns) if shares is not None else set()
    n_segments = len(z)
    # Features ordered by strength for each segment. A category level only
    # describes a segment by being over-represented; its absence is implied by
    # another level's presence.
    ranked = []
    for s in range(n_segments):
        usable = [j for j in range(len(columns))
                  if np.isfinite(z[s, j]) and not (columns[j] in levels and z[s, j] <= 0)]
        ranked.append(_other_side_second(z[s], sorted(usable, key=lambda j: -abs(z[s, j]))))
    notable = [sum(abs(z[s, j]) >= NOTABLE for j in ranked[s]) for s in range(n_segments)]
    n_terms = [min(max_terms, notable[s]) if notable[s] else _mild_terms(z[s], ranked[s])
               for s in range(n_segments)]

    def render(s: int) -> str:
        if np.isnan(z[s]).all():  # a segment with no customers has no means
            return "Empty"
        terms = [_term(labels.get(columns[j], columns[j]), z[s, j],
                       shares[columns[j]].iloc[s] if columns[j] in levels else None)
                 for j in sorted(ranked[s][: n_terms[s]])]
        if not notable[s]:
            terms.insert(0, "typical customers")
        return _capitalised(", ".join(terms))

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


def _other_side_second(z: np.ndarray, ranked: list[int]) -> list[int]:
    """``ranked`` (features by strength) with the strongest notable feature on the other
    side of the population from the first moved second, when it is at least
    :data:`OTHER_SIDE` as strong as the runner-up."""
    if len(ranked) < 3 or np.sign(z[ranked[1]]) != np.sign(z[ranked[0]]):
        return ranked
    floor = max(NOTABLE, OTHER_SIDE * abs(z[ranked[1]]))
    for position, j in enumerate(ranked[2:], start=2):
        if abs(z[j]) < floor:
            break
        if np.sign(z[j]) != np.sign(z[ranked[0]]):
            return [ranked[0], j, *ranked[1:position], *ranked[position + 1:]]
    return ranked


def _mild_terms(z: np.ndarray, ranked: list[int]) -> int:
    """Features named after "Typical customers": the strongest, and the second when it
    lies at least :data:`MILD` out."""
    return min(len(ranked), 1 + int(len(ranked) > 1 and abs(z[ranked[1]]) >= MILD))


def _clashing(names: list[str]) -> list[int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [s for s, name in enumerate(names) if counts[name] > 1]


def _term(label: str, z: float, share: float | None) -> str:
    """How a feature reads in a name; ``share``: the segment's share of a category level
    (None for a numeric feature)."""
    if share is not None:
        return f"{'mostly' if share >= 0.5 else 'often'} {in_a_name(label)}"
    if z >= EXTREME:
        level = "very high"
    elif z >= NOTABLE:
        level = "high"
    elif z > -NOTABLE:
        level = "above-average" if z >= 0 else "below-average"
    elif z > -EXTREME:
        level = "low"
    else:
        level = "very low"
    return f"{level} {in_a_name(label)}"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


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

    def add(self, batch, kept, labels: np.ndarray, prep, codes: np.ndarray | None = None) -> None:
        """Add a batch's clustered rows (``kept``: their positions in the batch, None:
        all) with their segments ``labels``; ``codes``: the batch's
        ``prep.category_codes`` where the caller has them."""
        from ._kernels import profile_sums

        labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.sizes += np.bincount(labels, minlength=self.n_segments)
        numbers = np.stack([batch.numbers[name] for name in self.numeric]) if self.numeric \
            else np.zeros((0, batch.n_rows))
        if not self.categories:
            codes = np.zeros((0, batch.n_rows), dtype=np.int32)
        elif codes is None:
            codes = prep.category_codes(batch)
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
