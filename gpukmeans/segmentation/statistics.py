"""What one pass over a customer table learns about its columns.

:class:`TableStatistics` takes the batches of a :class:`~.tables.TableReader` one
by one and keeps, in memory that does not grow with the table:

- exactly, per column of numbers: missing values, extremes, count, mean, second
  and third central moments (:class:`Moments`), and its distinct values while there
  are few (codes such as ``Region`` 1..3, flags, constant columns);
- exactly, per column of text: missing values and, for a categorical column, the
  count of every level;
- a uniform sample of :data:`SAMPLE_ROWS` rows (:class:`RowSample`), for what no
  pass computes exactly in bounded memory: medians, quantiles and the ID check.

The sample is the set of rows whose position has the smallest hash, so it is the
same whatever the batches, their order or the number of processes reading them.
A table of at most :data:`SAMPLE_ROWS` rows is its own sample: its medians and
quantiles are exact. Above that, a quantile q estimated from the sample lies at a
rank within ``3.3 * sqrt(q (1 - q) / SAMPLE_ROWS)`` of q (0.0017 for the median)
with probability 99.9%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import numbers as number_formats
from ._kernels import column_summary, merge_moments
from .tables import Batch

#: Rows in the uniform sample (see the module's notes).
SAMPLE_ROWS = 1_000_000
#: At most this many distinct whole numbers, each seen at least twice on average,
#: make a column look like codes rather than amounts.
MAX_CODE_LEVELS = 12
#: More distinct values than this in a categorical column is almost surely a mistake.
MAX_LEVELS = 100
#: Values looked at before sorting a whole batch to count distinct values.
_HEAD = 1000


@dataclass
class Moments:
    """Count, mean and second and third central moments of values divided by
    ``2 ** exponent`` (sums of powers of deviations, not averages)."""

    count: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    exponent: int = 0

    def merged(self, other: "Moments") -> "Moments":
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        exponent = max(self.exponent, other.exponent)
        a, b = self.rescaled(exponent), other.rescaled(exponent)
        count, mean, m2, m3 = merge_moments((a.count, a.mean, a.m2, a.m3), (b.count, b.mean, b.m2, b.m3))
        return Moments(count, mean, m2, m3, exponent)

    def rescaled(self, exponent: int) -> "Moments":
        factor = math.ldexp(1.0, self.exponent - exponent)
        return Moments(self.count, self.mean * factor, self.m2 * factor**2, self.m3 * factor**3, exponent)

    @classmethod
    def of_constant(cls, value: float, count: int) -> "Moments":
        exponent = math.frexp(abs(value))[1] if value != 0 else 0
        return cls(float(count), math.ldexp(value, -exponent), 0.0, 0.0, exponent)

    def skewness(self) -> float:
        """Population skewness (0 for a constant column)."""
        if self.count == 0 or self.m2 <= 0:
            return 0.0
        variance = self.m2 / self.count
        return float((self.m3 / self.count) / variance**1.5)


@dataclass
class NumberStats:
    """One column of numbers (see :class:`TableStatistics`).

    Attributes
    ----------
    missing : int
        Values that are missing or not finite, over all rows.
    kept_missing : int
        The same over the kept rows (the ones imputed).
    count, low, high : int, float, float
        Finite values of the kept rows, their minimum and maximum.
    moments : Moments
        Of the finite values of the kept rows.
    codes : set of float or None
        Every distinct finite value over all rows while they are at most
        :data:`MAX_CODE_LEVELS` whole numbers below 2**31 in magnitude; None after.
    levels : dict of float to int or None
        Distinct finite values of the kept rows and their counts, while there are
        at most :data:`MAX_LEVELS`; None after.
    """

    missing: int = 0
    kept_missing: int = 0
    count: int = 0
    low: float = math.inf
    high: float = -math.inf
    moments: Moments = field(default_factory=Moments)
    codes: set | None = field(default_factory=set)
    levels: dict | None = field(default_factory=dict)
    rows: int = 0

    @property
    def finite(self) -> int:
        """Finite values over all rows (for the code rule: each level seen twice on average)."""
        return self.rows - self.missing

    def add(self, values: np.ndarray, keep: np.ndarray | None) -> None:
        parts = column_summary(values, keep)
        missing, count = int(parts[:, 0].sum()), int(parts[:, 1].sum())
        self.rows += values.size
        self.missing += missing
        self.count += count
        self.kept_missing += (values.size if keep is None else int(keep.sum())) - count
        self.low, self.high = min(self.low, float(parts[:, 2].min())), max(self.high, float(parts[:, 3].max()))
        for part in parts:
            moments = Moments(part[1], part[5], part[6], part[7], int(part[4]))
            self.moments = self.moments.merged(moments)
        if self.codes is not None:
            self._track_codes(values)
        if self.levels is not None:
            self._track_levels(values if keep is None else values[keep])

    def merge(self, other: "NumberStats") -> None:
        """Take in the same column's statistics over later rows (another rank's)."""
        self.rows += other.rows
        self.missing += other.missing
        self.kept_missing += other.kept_missing
        self.count += other.count
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        self.moments = self.moments.merged(other.moments)
        self.codes = None if self.codes is None or other.codes is None else self.codes | other.codes
        if self.codes is not None and len(self.codes) > MAX_CODE_LEVELS:
            self.codes = None
        self.levels = _added_counts(self.levels, other.levels, MAX_LEVELS)

    def _track_codes(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        if np.unique(finite[:_HEAD]).size > MAX_CODE_LEVELS:
            self.codes = None
            return
        if np.any(np.abs(finite) >= 2**31) or np.any(finite != np.round(finite)):
            self.codes = None
            return
        self.codes |= set(np.unique(finite).tolist())
        if len(self.codes) > MAX_CODE_LEVELS:
            self.codes = None

    def _track_levels(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        if np.unique(finite[:_HEAD]).size > MAX_LEVELS:
            self.levels = None
            return
        distinct, counts = _value_counts(finite)
        for value, count in zip(distinct.tolist(), counts.tolist()):
            self.levels[value] = self.levels.get(value, 0) + count
        if len(self.levels) > MAX_LEVELS:
            self.levels = None


@dataclass
class TextStats:
    """One column of text (see :class:`TableStatistics`).

    Attributes
    ----------
    missing, kept_missing : int
        Missing cells (null, blank, placeholders) over all rows and over the kept rows.
    levels : dict of str to int or None
        For a categorical column, the count of every level over the kept rows;
        None once there are more than :data:`MAX_LEVELS`.
    first_non_number : (int, str) or None
        Row (0-based, in the table) and content of the first present cell of the
        column's first batch with any that is not a number.
    mostly_numbers : bool
        Whether most present cells of that batch are numbers.
    looked : bool
        Whether a batch with present cells was looked at (then no first non-number
        means cells that are numbers, but in formats that disagree).
    """

    missing: int = 0
    kept_missing: int = 0
    levels: dict | None = None
    first_non_number: tuple | None = None
    mostly_numbers: bool = False
    looked: bool = False

    def add(self, texts, keep: np.ndarray | None, start: int, categorical: bool) -> None:
        import pyarrow as pa

        is_null = texts.is_null().to_numpy(zero_copy_only=False)
        self.missing += int(is_null.sum())
        self.kept_missing += int(is_null.sum() if keep is None else (is_null & keep).sum())
        if categorical:
            if self.levels is None:
                self.levels = {}
            counted = texts if keep is None else texts.filter(pa.array(keep))
            for level, count in _level_counts(counted).items():
                self.levels[level] = self.levels.get(level, 0) + count
        elif not self.looked and not is_null.all():
            self._look_for_text(texts, start, int((~is_null).sum()))

    def merge(self, other: "TextStats") -> None:
        """Take in the same column's statistics over later rows (another rank's)."""
        self.missing += other.missing
        self.kept_missing += other.kept_missing
        if self.levels is not None or other.levels is not None:
            self.levels = {**(self.levels or {})}
            for level, count in (other.levels or {}).items():
                self.levels[level] = self.levels.get(level, 0) + count
        # The earliest row wins: ranks may have read their blocks in turn.
        earlier = other.first_non_number is not None and (
            self.first_non_number is None or other.first_non_number[0] < self.first_non_number[0])
        if earlier or (not self.looked and other.looked):
            self.first_non_number, self.mostly_numbers = other.first_non_number, other.mostly_numbers
        self.looked = self.looked or other.looked

    def _look_for_text(self, texts, start: int, present: int) -> None:
        import pyarrow as pa

        self.looked = True
        plain = texts.dictionary_decode() if pa.types.is_dictionary(texts.type) else texts
        positions, _ = number_formats.non_numbers(plain)
        if positions.size:
            first = int(positions[0])
            self.first_non_number = (start + first, str(plain[first].as_py()))
            self.mostly_numbers = positions.size * 2 < present


def _added_counts(a: dict | None, b: dict | None, limit: int) -> dict | None:
    """Counts of both, or None when either gave up or together they exceed ``limit``."""
    if a is None or b is None:
        return None
    total = dict(a)
    for value, count in b.items():
        total[value] = total.get(value, 0) + count
    return None if len(total) > limit else total


def _value_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their counts; whole numbers in a short range without sorting."""
    if values.size == 0:
        return values, np.zeros(0, dtype=np.int64)
    low, high = float(values.min()), float(values.max())
    if high - low <= 4096 and np.all(values == np.round(values)):
        counts = np.bincount((values - low).astype(np.int64))
        present = np.flatnonzero(counts)
        return present + low, counts[present]
    return np.unique(values, return_counts=True)


def _level_counts(texts) -> dict[str, int]:
    """Count of every non-null value of a string or dictionary array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = texts if pa.types.is_dictionary(texts.type) else pc.dictionary_encode(texts)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    valid = encoded.indices.is_valid().to_numpy(zero_copy_only=False)
    counts = np.bincount(indices[valid].astype(np.int64), minlength=len(encoded.dictionary))
    names = encoded.dictionary.to_pylist()
    result: dict[str, int] = {}
    for name, count in zip(names, counts.tolist()):
        if count and name is not None:
            result[name] = result.get(name, 0) + count
    return result


# ---------------------------------------------------------------- the sample


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def row_hashes(positions: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random 64-bit hash of each row position (splitmix64)."""
    z = positions.astype(np.uint64) * _GOLDEN + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass
class SampleRows:
    """The sampled rows, in table order.

    Attributes
    ----------
    positions : ndarray of int64
        Row positions (0-based) in the table.
    numbers : dict of str to ndarray of float64
    texts : dict of str to pyarrow.StringArray
    kept : ndarray of bool
        Which of them are kept (no missing value, when incomplete rows are dropped).
    """

    positions: np.ndarray
    numbers: dict
    texts: dict
    kept: np.ndarray


class RowSample:
    """The ``size`` rows of the smallest :func:`row_hashes`, kept as batches pass.

    When the table's rows are known up front (Parquet, a DataFrame), only rows whose
    hash is below a threshold that leaves some margin above ``size`` rows are looked
    at; :meth:`complete` says whether the margin held (it fails with a probability
    far below one in a billion, and the pass is then read again without a threshold).
    """

    def __init__(self, size: int = SAMPLE_ROWS, expected_rows: int | None = None):
        self.size = size
        self._threshold = np.uint64(np.iinfo(np.uint64).max)
        if expected_rows is not None and expected_rows > size:
            share = min(1.0, (1.05 * size + 20.0 * math.sqrt(size)) / expected_rows)
            self._threshold = np.uint64(min(share * 2.0**64, 2.0**64 - 2**12))
        self._parts: list[dict] = []
        self._held = 0
        self._seen = 0

    def complete(self) -> bool:
        """Whether the sample holds ``size`` rows, or every row seen."""
        return self._held >= min(self.size, self._seen)

    def add(self, batch: Batch, numbers: Sequence[str], texts: Sequence[str], kept: np.ndarray | None) -> None:
        import pyarrow as pa

        self._seen += batch.n_rows
        positions = np.arange(batch.start, batch.start + batch.n_rows, dtype=np.int64)
        hashes = row_hashes(positions)
        chosen = np.flatnonzero(hashes <= self._threshold)
        if chosen.size == 0:
            return
        take = pa.array(chosen)
        self._parts.append({
            "hashes": hashes[chosen],
            "positions": positions[chosen],
            "kept": np.ones(chosen.size, dtype=bool) if kept is None else kept[chosen],
            "numbers": {name: batch.numbers[name][chosen] for name in numbers if name in batch.numbers},
            "texts": {name: _plain(batch.texts[name].take(take)) for name in texts if name in batch.texts},
        })
        self._held += chosen.size
        if self._held > 2 * self.size:
            self._trim()

    def _trim(self) -> None:
        merged = self._merged()
        if merged["hashes"].size > self.size:
            keep = np.argpartition(merged["hashes"], self.size - 1)[: self.size]
            merged = _take(merged, np.sort(keep))
            self._threshold = merged["hashes"].max()
        self._parts = [merged]
        self._held = merged["hashes"].size

    def _merged(self) -> dict:
        import pyarrow as pa

        parts = self._parts
        if len(parts) == 1:
            return parts[0]
        names = {key: [n for n in parts[0][key]] for key in ("numbers", "texts")}
        return {
            "hashes": np.concatenate([p["hashes"] for p in parts]),
            "positions": np.concatenate([p["positions"] for p in parts]),
            "kept": np.concatenate([p["kept"] for p in parts]),
            "numbers": {n: np.concatenate([p["numbers"][n] for p in parts if n in p["numbers"]]) for n in names["numbers"]},
            "texts": {n: pa.concat_arrays([p["texts"][n] for p in parts if n in p["texts"]]) for n in names["texts"]},
        }

    def rows(self) -> SampleRows:
        """The sample, in table order."""
        if not self._parts:
            return SampleRows(np.zeros(0, dtype=np.int64), {}, {}, np.zeros(0, dtype=bool))
        self._trim()
        merged = self._parts[0]
        order = np.argsort(merged["positions"], kind="stable")
        merged = _take(merged, order)
        return SampleRows(merged["positions"], merged["numbers"], merged["texts"], merged["kept"])

    def state(self) -> dict:
        """What another process needs to merge this sample with its own (see :meth:`merge`)."""
        if not self._parts:
            return {}
        self._trim()
        return self._parts[0]

    @property
    def seen(self) -> int:
        """Rows offered to the sample."""
        return self._seen

    def merge(self, states: Sequence[dict], seen: int | None = None) -> None:
        """Take in every process's sample (``seen``: the rows all of them were
        offered): the union keeps the smallest hashes."""
        if seen is not None:
            self._seen = seen
        self._parts = [s for s in states if s]
        self._held = sum(s["hashes"].size for s in self._parts)
        if self._parts:
            self._trim()


def _take(part: dict, rows: np.ndarray) -> dict:
    import pyarrow as pa

    take = pa.array(rows)
    return {
        "hashes": part["hashes"][rows],
        "positions": part["positions"][rows],
        "kept": part["kept"][rows],
        "numbers": {n: v[rows] for n, v in part["numbers"].items()},
        "texts": {n: v.take(take) for n, v in part["texts"].items()},
    }


def _plain(texts):
    import pyarrow as pa

    return texts.dictionary_decode() if pa.types.is_dictionary(texts.type) else texts


# ---------------------------------------------------------------- the table


class TableStatistics:
    """Everything one pass learns (see the module's notes).

    Parameters
    ----------
    categorical : sequence of str
        Columns whose levels are counted.
    candidates : sequence of str or None
        With ``drop_missing``, the columns a kept row must have values in (None:
        every column of numbers and every categorical column).
    drop_missing : bool
        Whether incomplete rows are dropped (statistics over complete rows only).
    sample_rows : int
    expected_rows : int, optional
        The rows the pass will see, when known: the sample then looks at fewer.
    """

    def __init__(self, *, categorical: Sequence[str] = (), candidates: Sequence[str] | None = None,
                 drop_missing: bool = False, sample_rows: int = SAMPLE_ROWS, expected_rows: int | None = None):
        self.categorical = list(categorical)
        self.candidates = None if candidates is None else list(candidates)
        self.drop_missing = drop_missing
        self.n_rows = 0
        self.n_kept = 0
        self.numbers: dict[str, NumberStats] = {}
        self.texts: dict[str, TextStats] = {}
        self.sample = RowSample(sample_rows, expected_rows)
        self.placeholders: dict[str, dict[str, int]] = {}  # by column and spelling, set by the reader
        self.kept_by_rank: list[int] | None = None  # rows kept in each rank's share, once merged

    def add(self, batch: Batch) -> None:
        keep = self._kept(batch) if self.drop_missing else None
        self.n_rows += batch.n_rows
        self.n_kept += batch.n_rows if keep is None else int(keep.sum())
        for name, values in batch.numbers.items():
            self.numbers.setdefault(name, NumberStats()).add(values, keep)
        for name, texts in batch.texts.items():
            self.texts.setdefault(name, TextStats()).add(texts, keep, batch.start, name in self.categorical)
        sampled_texts = [n for n in batch.texts if n in self.categorical or n not in self.numbers]
        self.sample.add(batch, list(batch.numbers), sampled_texts, keep)

    def merge(self, other: "TableStatistics") -> None:
        """Take in the statistics of the rows that follow (another rank's share of the
        table); the sample is merged apart (:meth:`RowSample.merge`)."""
        self.n_rows += other.n_rows
        self.n_kept += other.n_kept
        for name, column in other.numbers.items():
            if name in self.numbers:
                self.numbers[name].merge(column)
            else:
                self.numbers[name] = column
        for name, column in other.texts.items():
            if name in self.texts:
                self.texts[name].merge(column)
            else:
                self.texts[name] = column
        for name, spellings in other.placeholders.items():
            counts = self.placeholders.setdefault(name, {})
            for spelling, count in spellings.items():
                counts[spelling] = counts.get(spelling, 0) + count

    def _kept(self, batch: Batch) -> np.ndarray:
        keep = np.ones(batch.n_rows, dtype=bool)
        for name, values in batch.numbers.items():
            if self.candidates is None or name in self.candidates:
                keep &= np.isfinite(values)
        for name, texts in batch.texts.items():
            if name in self.categorical and (self.candidates is None or name in self.candidates):
                keep &= texts.is_valid().to_numpy(zero_copy_only=False)
        return keep
