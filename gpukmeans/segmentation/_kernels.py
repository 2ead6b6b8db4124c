"""The hot loops of preprocessing on the CPU: column summaries and the fitted transform.

Three operations run over every row of a table, batch by batch:

- :func:`column_summary` (the statistics pass): per column, the missing values,
  the extremes, and the count, mean and second and third central moments of the
  kept values, in units of a power of two so that values anywhere from 1e-300 to
  1e300 neither overflow nor vanish;
- :func:`transform_rows` (the transform pass, and every prediction): impute, log,
  clip, one-hot encode and condition each row into float32, and the moments of the
  conditioned values;
- :func:`profile_sums` (the profile pass): per segment, the sums and counts of the
  raw numeric values and the counts of each category level.

Each splits a batch into parts of :data:`PART_ROWS` rows, whatever the number of
threads, and merges the parts in order: the result depends on the rows only, not on
the machine. Parts run on a thread pool (numba releases the GIL), as the engine's
CPU kernels do. :mod:`~gpukmeans.segmentation.transform` holds the same transform as
torch operations, for CUDA and as the reference the tests compare against.
"""

from __future__ import annotations

import concurrent.futures
import math

import numba
import numpy as np

#: Rows per part: the unit of parallel work and of the moments' merge order.
PART_ROWS = 1 << 16

_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def run_parts(n_rows: int, run) -> int:
    """Call ``run(part, start, stop)`` for every part of ``n_rows`` rows on the thread
    pool; return the number of parts."""
    global _POOL
    n_parts = max(1, -(-n_rows // PART_ROWS))
    bounds = [(p, p * PART_ROWS, min(n_rows, (p + 1) * PART_ROWS)) for p in range(n_parts)]
    threads = min(_threads(), n_parts)
    if threads == 1:
        for part, start, stop in bounds:
            run(part, start, stop)
        return n_parts
    if _POOL is None or _POOL._max_workers < threads:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gpukmeans-prep")
    list(_POOL.map(lambda bound: run(*bound), bounds))
    return n_parts


# ---------------------------------------------------------------- moments


def merge_moments(a, b):
    """Chan et al.'s and Pébay's pairwise merge of (count, mean, m2, m3) tuples."""
    na, mean_a, m2a, m3a = a
    nb, mean_b, m2b, m3b = b
    n = na + nb
    if nb == 0:
        return a
    if na == 0:
        return b
    delta = mean_b - mean_a
    mean = mean_a + delta * nb / n
    m2 = m2a + m2b + delta * delta * na * nb / n
    m3 = m3a + m3b + delta**3 * na * nb * (na - nb) / (n * n) + 3.0 * delta * (na * m2b - nb * m2a) / n
    return n, mean, m2, m3


# ---------------------------------------------------------------- column summary


@numba.njit(nogil=True, cache=True)
def _summary_part(values, keep, use_keep, start, stop, out):
    """out = [missing over all rows, kept finite count, min, max, exponent, mean, m2, m3]:
    the moments of the kept finite values divided by ``2 ** exponent``, the power of
    two at the part's largest magnitude. Three loops over a part that stays in cache."""
    missing = 0.0
    count = 0.0
    low = np.inf
    high = -np.inf
    magnitude = 0.0
    for i in range(start, stop):
        v = values[i]
        if not np.isfinite(v):
            missing += 1.0
        elif not use_keep or keep[i]:
            count += 1.0
            low = min(low, v)
            high = max(high, v)
            magnitude = max(magnitude, abs(v))
    exponent = 0
    if magnitude > 0:
        exponent = math.frexp(magnitude)[1]
    scale = math.ldexp(1.0, -exponent)
    total = 0.0
    for i in range(start, stop):
        v = values[i]
        if np.isfinite(v) and (not use_keep or keep[i]):
            total += v * scale
    mean = total / count if count > 0 else 0.0
    m2 = 0.0
    m3 = 0.0
    for i in range(start, stop):
        v = values[i]
        if np.isfinite(v) and (not use_keep or keep[i]):
            d = v * scale - mean
            m2 += d * d
            m3 += d * d * d
    out[0] = missing
    out[1] = count
    out[2] = low
    out[3] = high
    out[4] = exponent
    out[5] = mean
    out[6] = m2
    out[7] = m3


def column_summary(values: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """Per part of :data:`PART_ROWS` rows of one column: missing values (over all rows),
    then over the kept finite values their count, minimum, maximum, and the exponent,
    mean and second and third central moments (sums) of the values divided by
    ``2 ** exponent``; shape (n_parts, 8).

    ``keep``: the rows whose values count (None: all).
    """
    n = values.size
    keep_array = keep if keep is not None else np.zeros(0, dtype=np.bool_)
    parts = np.zeros((max(1, -(-n // PART_ROWS)), 8))
    run_parts(n, lambda p, a, b: _summary_part(values, keep_array, keep is not None, a, b, parts[p]))
    return parts


# ---------------------------------------------------------------- transform


@numba.njit(nogil=True, cache=True)
def _kept_part(numbers, codes, start, stop, kept):
    """kept[i] = 1 where row i has every numeric value finite and every category present."""
    for i in range(start, stop):
        ok = 1
        for j in range(numbers.shape[0]):
            if not np.isfinite(numbers[j, i]):
                ok = 0
                break
        if ok:
            for j in range(codes.shape[0]):
                if codes[j, i] == -2:
                    ok = 0
                    break
        kept[i] = ok


@numba.njit(nogil=True, cache=True)
def _transform_part(numbers, codes, positions, impute, log, floor, low, high, fill, offsets, shift, unit,
                    center, scale, start, stop, out, out_start, moments):
    """Rows ``start..stop`` of the batch into ``out``; row i goes to ``positions[i]``
    (-1: dropped). Each value is conditioned, ``g = (v - shift) / unit``, rounded to
    float32, then centred and scaled in float64 and rounded again:
    ``float32((float32(g) - center) / scale)`` (with centre 0 and scale 1 that is
    ``float32(g)`` itself). ``moments[j] = [count, sum, sum of squares, min, max]``
    of column j's values g, before rounding: conditioning keeps g near zero and of
    order one, so plain sums of squares lose nothing to cancellation."""
    n_numeric = numbers.shape[0]
    n_out = out.shape[1]
    total = np.zeros(n_out)
    squares = np.zeros(n_out)
    smallest = np.full(n_out, np.inf)
    largest = np.full(n_out, -np.inf)
    count = 0.0
    for i in range(start, stop):
        row = positions[i]
        if row < 0:
            continue
        count += 1.0
        target = out_start + row
        for j in range(n_numeric):
            v = numbers[j, i]
            if not np.isfinite(v):
                v = impute[j]
            if log[j]:
                v = math.log1p(max(v, floor[j]))
            if v < low[j]:
                v = low[j]
            if v > high[j]:
                v = high[j]
            g = (v - shift[j]) / unit[j]
            out[target, j] = np.float32((np.float64(np.float32(g)) - center[j]) / scale[j])
            total[j] += g
            squares[j] += g * g
            smallest[j] = min(smallest[j], g)
            largest[j] = max(largest[j], g)
        for c in range(codes.shape[0]):
            code = codes[c, i]
            if code == -2:
                code = fill[c]
            first = offsets[c]
            for level in range(offsets[c + 1] - first):
                j = first + level
                g = ((1.0 if level == code else 0.0) - shift[j]) / unit[j]
                out[target, j] = np.float32((np.float64(np.float32(g)) - center[j]) / scale[j])
                total[j] += g
                squares[j] += g * g
                smallest[j] = min(smallest[j], g)
                largest[j] = max(largest[j], g)
    for j in range(n_out):
        moments[j, 0] = count
        moments[j, 1] = total[j] / count if count > 0 else 0.0
        moments[j, 2] = max(squares[j] - total[j] * moments[j, 1], 0.0)
        moments[j, 3] = smallest[j]
        moments[j, 4] = largest[j]


@numba.njit(nogil=True, cache=True)
def _center_and_scale_part(X, columns, center, scale, start, stop):
    for i in range(start, stop):
        for k in range(columns.size):
            j = columns[k]
            X[i, j] = np.float32((np.float64(X[i, j]) - center[k]) / scale[k])


def center_and_scale(X: np.ndarray, columns: np.ndarray, center: np.ndarray, scale: np.ndarray) -> None:
    """``X[:, j] = float32((float64(X[:, j]) - center) / scale)`` in place for ``columns``."""
    run_parts(X.shape[0], lambda p, a, b: _center_and_scale_part(X, columns, center, scale, a, b))


def kept_rows(numbers: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Which rows have no missing value (``codes`` -2 marks a missing category)."""
    n = numbers.shape[1] if numbers.shape[0] else codes.shape[1]
    kept = np.empty(n, dtype=np.uint8)
    run_parts(n, lambda p, a, b: _kept_part(numbers, codes, a, b, kept))
    return kept.view(np.bool_)


def transform_rows(numbers, codes, positions, params, out, out_start):
    """Transform a batch on the CPU; see :func:`_transform_part`.

    Parameters
    ----------
    numbers : ndarray (n_numeric, n) float64
    codes : ndarray (n_categorical, n) int32
        Level index, -1 for an unknown level, -2 for a missing value.
    positions : ndarray (n,) int64
        Output row of each input row (relative to ``out_start``), -1 to drop it.
    params : TransformParameters
    out : ndarray (rows, n_features) float32
    out_start : int

    Returns
    -------
    ndarray (n_parts, n_features, 5)
        Per part: count, mean, sum of squared deviations, min and max of each
        feature's conditioned values.
    """
    n = positions.size
    moments = np.zeros((max(1, -(-n // PART_ROWS)), out.shape[1], 5))
    arguments = (numbers, codes, positions, params.impute, params.log, params.floor, params.low, params.high,
                 params.fill, params.offsets, params.shift, params.unit, params.center, params.scale)
    run_parts(n, lambda p, a, b: _transform_part(*arguments, a, b, out, out_start, moments[p]))
    return moments


@numba.njit(nogil=True, cache=True)
def _profile_part(numbers, codes, offsets, kept, use_kept, labels, start, stop, sums, counts, levels, present):
    for r in range(start, stop):
        i = kept[r] if use_kept else r
        label = labels[r]
        for j in range(numbers.shape[0]):
            value = numbers[j, i]
            if np.isfinite(value):
                sums[label, j] += value
                counts[label, j] += 1.0
        for c in range(codes.shape[0]):
            code = codes[c, i]
            if code >= -1:
                present[label, c] += 1.0
            if code >= 0:
                levels[label, offsets[c] + code] += 1.0


def profile_sums(numbers: np.ndarray, codes: np.ndarray, offsets: np.ndarray, kept: np.ndarray | None,
                 labels: np.ndarray, n_segments: int):
    """Per segment, over a batch's clustered rows (``kept``: their positions in the
    batch, None: every row; ``labels``: theirs, in that order): the sums and counts of
    each numeric column's finite values, the count of each level (``codes`` (q, n):
    level index, -1 unknown, -2 missing; level ``l`` of column ``c`` counted at
    ``offsets[c] + l``) and of each categorical column's present values.

    Returns ``(sums (k, p), counts (k, p), levels (k, total levels), present (k, q))``.
    """
    n = labels.size
    n_parts = max(1, -(-n // PART_ROWS))
    sums = np.zeros((n_parts, n_segments, numbers.shape[0]))
    counts = np.zeros_like(sums)
    levels = np.zeros((n_parts, n_segments, int(offsets[-1]) if offsets.size else 0))
    present = np.zeros((n_parts, n_segments, codes.shape[0]))
    kept_rows = kept if kept is not None else np.zeros(0, dtype=np.int64)
    run_parts(n, lambda p, a, b: _profile_part(numbers, codes, offsets, kept_rows, kept is not None, labels, a, b,
                                               sums[p], counts[p], levels[p], present[p]))
    return sums.sum(axis=0), counts.sum(axis=0), levels.sum(axis=0), present.sum(axis=0)
