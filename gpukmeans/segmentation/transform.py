"""Applying a fitted preprocessing to batches of rows, on the CPU or a CUDA device.

A fitted :class:`~gpukmeans.segmentation.Preprocessor` is, column by column, a
sequence of elementwise steps (:class:`TransformParameters`):

1. a missing value becomes the imputation value (a missing category, the fill level);
2. ``log1p(max(v, floor))`` for a log column;
3. clipping to ``[low, high]``;
4. one-hot encoding of the categories (an unknown level: all zeros);
5. conditioning, ``g = (v - shift) / unit``, rounded to float32;
6. centring and scaling, ``x = float32((float64(g) - center) / scale)``.

Steps 5 and 6 together are the scaling. Step 5 is known before the table is read a
second time, from its statistics and sample; it makes the float32 values accurate
whatever the column's offset or magnitude. Step 6 is what that second read learns
exactly (a standardised column's mean and standard deviation); with centre 0 and
scale 1 it leaves ``g`` as it is. Training rows and new customers go through the
same operations in the same order, so a row gets the same bits whether it is
transformed while fitting or when predicting.

On the CPU the steps run in one pass of a numba kernel
(:mod:`~gpukmeans.segmentation._kernels`); on a CUDA device as torch operations
(:func:`transform_torch`), which are also the reference the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kernels

#: Marks a missing category in a column of level codes (-1 marks an unknown level).
MISSING_CODE = -2


@dataclass
class TransformParameters:
    """The fitted steps as arrays (see the module's notes).

    Per numeric column: ``impute``, ``log`` (bool), ``floor``, ``low``, ``high``.
    Per categorical column: ``fill`` (a level index) and ``offsets`` (its first output
    column, plus one entry for the end). Per output column: ``shift``, ``unit``,
    ``center``, ``scale``.
    """

    impute: np.ndarray
    log: np.ndarray
    floor: np.ndarray
    low: np.ndarray
    high: np.ndarray
    fill: np.ndarray
    offsets: np.ndarray
    shift: np.ndarray
    unit: np.ndarray
    center: np.ndarray
    scale: np.ndarray

    @property
    def n_features(self) -> int:
        return self.shift.size


@dataclass
class TransformedBatch:
    """One batch after the transform.

    Attributes
    ----------
    rows : ndarray of int64 or None
        Positions in the batch of the rows kept (None: every row).
    moments : ndarray of shape (n_features, 5)
        Count, mean, sum of squared deviations, minimum and maximum of each
        column's conditioned values ``g`` over the kept rows.
    unknown : ndarray of int64
        Per categorical column, the kept rows whose level the fit never saw.
    """

    rows: np.ndarray | None
    moments: np.ndarray
    unknown: np.ndarray


def merge_parts(parts: np.ndarray) -> np.ndarray:
    """Merge per-part (count, mean, m2, min, max) rows in order into one per column."""
    result = parts[0].copy()
    for part in parts[1:]:
        for j in range(result.shape[0]):
            merged = _kernels.merge_moments(
                (result[j, 0], result[j, 1], result[j, 2], 0.0), (part[j, 0], part[j, 1], part[j, 2], 0.0)
            )
            result[j, :3] = merged[:3]
            result[j, 3] = min(result[j, 3], part[j, 3])
            result[j, 4] = max(result[j, 4], part[j, 4])
    return result


def transform_numpy(numbers: np.ndarray, codes: np.ndarray, drop_missing: bool, params: TransformParameters,
                    out: np.ndarray, out_start: int) -> TransformedBatch:
    """Transform one batch on the CPU into ``out[out_start:]`` (float32 rows).

    ``numbers``: (n_numeric, n) float64; ``codes``: (n_categorical, n) int32 level
    codes (see :data:`MISSING_CODE`). Returns what :class:`TransformedBatch`
    describes; the rows written are the kept ones, in order.
    """
    n = numbers.shape[1] if numbers.shape[0] else codes.shape[1]
    columns = numbers
    rows = None
    positions = np.arange(n, dtype=np.int64)
    if drop_missing:
        kept = _kernels.kept_rows(columns, codes)
        rows = np.flatnonzero(kept)
        positions = np.full(n, -1, dtype=np.int64)
        positions[rows] = np.arange(rows.size)
    parts = _kernels.transform_rows(columns, codes, positions, params, out, out_start)
    return TransformedBatch(rows, merge_parts(parts), _unknown(codes, rows))


def _unknown(codes: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    kept = codes if rows is None else codes[:, rows]
    return (kept == -1).sum(axis=1).astype(np.int64)


def transform_torch(numbers, codes, drop_missing: bool, params: TransformParameters, device):
    """The same transform as torch operations on ``device``.

    ``numbers``: (n_numeric, n) float64 tensor; ``codes``: (n_categorical, n) int32
    tensor. Returns the float32 rows (kept ones only) and a :class:`TransformedBatch`.
    """
    import torch

    def tensor(values, dtype=torch.float64):
        return torch.as_tensor(values, dtype=dtype, device=device)

    values = numbers.T
    missing = ~torch.isfinite(values)
    keep = None
    if drop_missing:
        keep = ~(missing.any(dim=1) | (codes == MISSING_CODE).any(dim=0))
    values = torch.where(missing, tensor(params.impute), values)
    log = torch.as_tensor(params.log, device=device)
    if bool(log.any()):
        logged = torch.log1p(torch.maximum(values, tensor(params.floor)))
        values = torch.where(log, logged, values)
    values = torch.minimum(torch.maximum(values, tensor(params.low)), tensor(params.high))
    blocks = [values]
    for c in range(codes.shape[0]):
        code = torch.where(codes[c] == MISSING_CODE, int(params.fill[c]), codes[c]).long()
        n_levels = int(params.offsets[c + 1] - params.offsets[c])
        levels = torch.arange(n_levels, device=device)
        blocks.append((code[:, None] == levels[None, :]).double())
    g = (torch.cat(blocks, dim=1) - tensor(params.shift)) / tensor(params.unit)
    rows = None
    if keep is not None:
        rows_t = torch.nonzero(keep).squeeze(1)
        g, rows = g[rows_t], rows_t.cpu().numpy()
    X = ((g.float().double() - tensor(params.center)) / tensor(params.scale)).float()
    moments = _batch_moments(g)
    unknown = (codes[:, rows_t] if keep is not None else codes) == -1
    return X, TransformedBatch(rows, moments, unknown.sum(dim=1).cpu().numpy().astype(np.int64))


def _batch_moments(g) -> np.ndarray:
    import torch

    d = g.shape[1]
    moments = np.zeros((d, 5))
    moments[:, 3], moments[:, 4] = np.inf, -np.inf
    if g.shape[0] == 0:
        return moments
    mean = g.mean(dim=0)
    moments[:, 0] = g.shape[0]
    moments[:, 1] = mean.cpu().numpy()
    moments[:, 2] = ((g - mean) ** 2).sum(dim=0).cpu().numpy()
    moments[:, 3] = torch.amin(g, dim=0).cpu().numpy()
    moments[:, 4] = torch.amax(g, dim=0).cpu().numpy()
    return moments

