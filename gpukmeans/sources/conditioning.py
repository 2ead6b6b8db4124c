"""Conditioning: the rows every pass computes with, moved near the origin and to a safe magnitude.

Every kernel computes squared distances as ``||x||^2 - 2 x.c + ||c||^2``, one matrix
product for a tile of rows and centres. That form keeps the digits of
``||x||^2``, not of the distance: float32 blobs of spread 1 around 10,000 get
distances rounded to whole units, and about a third of their rows a wrong label.
Squares of values beyond about 1e19 overflow float32, and below about 1e-19 they
vanish.

So every fit first takes the rows' moments in one pass (float64, merged exactly across
chunks and ranks) and computes with

    x' = (x - shift) * 2**-exponent

``shift`` is the rows' mean when it lies farther from the origin than the rows
spread; scikit-learn always centres, but centring only where it matters leaves
already-centred data (standardised features) in place, uncopied. ``exponent``
brings the largest centred magnitude into the range the dtype squares safely.
k-means is equivariant under both: labels are unchanged, centres map back by
``c = c' * 2**exponent + shift`` and squared distances by ``4**exponent``. A power
of two scales every float exactly, so the scaling itself rounds nothing.

The mean is unweighted (as scikit-learn's): it only has to lie among the rows, and
the moments also give the unweighted per-feature variance that the tolerance needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from .._device import row_blocks, work_block_bytes

__all__ = ["Conditioning", "RowMoments", "check_squares_in_range", "fit_conditioning", "local_moments",
           "merged_moments"]

# log2 of the largest centred magnitude each storage dtype computes with unscaled. Within
# it the squares of d features stay far from overflow and from the subnormals; beyond
# it the rows are scaled by a power of two to a largest magnitude in [0.5, 1). float64
# could go much further, but the scores of a fit (Davies-Bouldin's test for "no spread",
# as scikit-learn's) compare with absolute tolerances that only mean something at
# magnitudes near 1.
_SAFE_LOG2_MAGNITUDE = {
    torch.float64: (-40, 40),
    torch.float32: (-40, 40),
    torch.bfloat16: (-40, 40),  # float32's range; its 8 bits of precision do not depend on scale
    torch.float16: (-6, 14),  # largest value 65504; subnormals below 2**-14
}


class RowMoments(NamedTuple):
    """Per-feature statistics of rows, in float64, of the rows multiplied by ``2**-prescale``.

    ``prescale`` is 0 unless the rows' squares overflow float64 (values beyond about
    1e154); then the moments are taken again of rows scaled into range.
    """

    count: float
    mean: torch.Tensor  # (d,)
    sum_sq_dev: torch.Tensor  # (d,): sum of squared deviations from the mean
    minimum: torch.Tensor  # (d,): +inf for no rows
    maximum: torch.Tensor  # (d,): -inf for no rows
    prescale: int = 0

    def packed(self) -> torch.Tensor:
        """One tensor, for an exchange between ranks: count, mean, sum_sq_dev, min, max."""
        count = torch.tensor([self.count], dtype=torch.float64, device=self.mean.device)
        return torch.cat([count, self.mean, self.sum_sq_dev, self.minimum, self.maximum])

    @classmethod
    def unpacked(cls, values: torch.Tensor, prescale: int = 0) -> "RowMoments":
        d = (values.shape[0] - 1) // 4
        parts = values[1:].split(d)
        return cls(float(values[0]), *parts, prescale=prescale)

    def merged(self, other: "RowMoments") -> "RowMoments":
        """The moments of both sets of rows (Chan et al.'s pairwise merge: exact in one pass)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        total = self.count + other.count
        delta = other.mean - self.mean
        return RowMoments(
            total,
            self.mean + delta * (other.count / total),
            self.sum_sq_dev + other.sum_sq_dev + delta**2 * (self.count * other.count / total),
            torch.minimum(self.minimum, other.minimum),
            torch.maximum(self.maximum, other.maximum),
            self.prescale,
        )

    @property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.mean).all()) and bool(torch.isfinite(self.sum_sq_dev).all())


def local_moments(source, prescale: int = 0) -> RowMoments:
    """The moments of this holder's rows (see :class:`RowMoments`), in one pass of chunks
    (the backend's ``moments``: one kernel pass on the CPU)."""
    d = source.n_features
    device = source.device
    moments = RowMoments(
        0.0,
        torch.zeros(d, dtype=torch.float64, device=device),
        torch.zeros(d, dtype=torch.float64, device=device),
        torch.full((d,), math.inf, dtype=torch.float64, device=device),
        torch.full((d,), -math.inf, dtype=torch.float64, device=device),
        prescale,
    )
    scale = math.ldexp(1.0, -prescale)
    for _, chunk, _ in source.chunks():
        counts, means, sums, minima, maxima = source.backend.moments(chunk, scale)
        for part in range(counts.shape[0]):
            if counts[part] > 0:
                moments = moments.merged(RowMoments(
                    float(counts[part]), means[part].to(device), sums[part].to(device), minima[part].to(device),
                    maxima[part].to(device), prescale))
    return moments


def merged_moments(source, local: RowMoments) -> RowMoments:
    """Every holder's moments merged in rank order: the same on every rank."""
    merged = None
    for part in source.all_gather(local.packed()):
        part = RowMoments.unpacked(part, local.prescale)
        merged = part if merged is None else merged.merged(part)
    return merged


def fit_conditioning(source, storage_dtype: torch.dtype, local: Optional[RowMoments] = None):
    """The conditioning of a fit on ``source`` (rows as given) whose rows will be stored in
    ``storage_dtype``, and the table's moments: ``(Conditioning, RowMoments)``.

    ``local`` is this holder's moments when already taken (a file's are taken while its
    rows are checked). A second, scaled pass is made only when squares overflow float64.
    Every rank gets the same answer.
    """
    moments = merged_moments(source, local if local is not None else local_moments(source))
    if not moments.finite:
        largest = float(torch.maximum(moments.maximum.abs(), moments.minimum.abs()).max())
        moments = merged_moments(source, local_moments(source, prescale=math.frexp(largest)[1]))
    return Conditioning.for_moments(moments, storage_dtype, source.dtype), moments


def check_squares_in_range(moments: RowMoments) -> None:
    """Refuse a table whose squared distances exceed float64's range (values beyond about
    1e154 with a spread to match): its inertia could not be reported. Every fit's inertia
    is at most one centre's, the total squared deviation the moments hold."""
    total = float(moments.sum_sq_dev.sum())
    if not math.isfinite(_ldexp(total, 2 * moments.prescale)):
        largest = float(torch.maximum(moments.maximum.abs(), moments.minimum.abs()).max())
        raise ValueError(
            f"X's squared distances exceed float64's range (values up to {_ldexp(largest, moments.prescale):.3g}); "
            "divide X by a constant first (k-means is unchanged by scaling)."
        )


@dataclass(frozen=True)
class Conditioning:
    """``x' = (x - shift) * 2**-exponent``: how a fit's rows are presented to every pass.

    ``shift`` is a (d,) float64 tensor on the CPU, or None for no shift.
    """

    shift: Optional[torch.Tensor] = None
    exponent: int = 0

    @property
    def is_identity(self) -> bool:
        return self.shift is None and self.exponent == 0

    @classmethod
    def for_moments(cls, moments: RowMoments, storage_dtype: torch.dtype,
                    rows_dtype: torch.dtype = torch.float64) -> "Conditioning":
        """Centre when the mean lies farther from the origin than the rows spread; scale by a
        power of two when the centred magnitudes leave the range ``storage_dtype`` squares
        safely.

        The shift is the mean rounded to ``rows_dtype``, the dtype of the rows as given:
        a row within a factor of two of it then subtracts it exactly (Sterbenz), so the
        conditioned rows are the rows, moved, not rounded again.
        """
        if moments.count == 0:
            return cls()
        mean = moments.mean.double().cpu()
        spread_sq = float(moments.sum_sq_dev.sum()) / moments.count
        offset_sq = float((mean * mean).sum())
        shift = mean if offset_sq > spread_sq else None
        centre = torch.zeros_like(mean) if shift is None else shift
        largest = float(torch.maximum((moments.maximum.cpu() - centre).abs(), (moments.minimum.cpu() - centre).abs()).max())
        exponent = 0
        if largest > 0:
            log2_largest = math.frexp(largest)[1] + moments.prescale
            low, high = _SAFE_LOG2_MAGNITUDE[storage_dtype]
            if not low <= log2_largest <= high:
                exponent = log2_largest
        if shift is not None:
            shift = (shift * math.ldexp(1.0, moments.prescale)).to(rows_dtype).double()
        return cls(shift, exponent)

    # ---------------------------------------------------------------- rows
    def rows(self, X: torch.Tensor, dtype: Optional[torch.dtype] = None, *, in_place: bool = False) -> torch.Tensor:
        """``X`` conditioned and stored in ``dtype`` (default X's), a block at a time.

        ``in_place`` writes over ``X`` where the dtype allows (X must then be a copy the
        caller owns); otherwise the result is a new tensor, or ``X`` itself when there is
        nothing to do.
        """
        from .storage import to_storage

        dtype = dtype or X.dtype
        if self.is_identity:
            return to_storage(X, dtype)  # its own range check: 16-bit storage ends early
        out = X if in_place and X.dtype == dtype else torch.empty(X.shape, dtype=dtype, device=X.device)
        shift = None if self.shift is None else self.shift.to(X.device)
        scale = math.ldexp(1.0, -self.exponent)
        for start, stop in row_blocks(X.shape[0], 16 * X.shape[1], work_block_bytes(X.device)):
            block = X[start:stop].to(torch.float64, copy=True)
            if shift is not None:
                block.sub_(shift)
            if self.exponent:
                block.mul_(scale)
            out[start:stop] = block
            if dtype != torch.float64 and not bool(torch.isfinite(out[start:stop]).all()):
                # rows far beyond those the conditioning was fitted on (a prediction)
                raise ValueError(
                    f"X has values beyond the range of {str(dtype).removeprefix('torch.')} once moved "
                    "and scaled as the fitted rows were; they lie too far from the data the model was fitted on."
                )
        return out

    # ------------------------------------------------------------- centres
    def centers_in(self, centers: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """Centres in original units as the conditioned rows see them, in ``dtype``."""
        dtype = dtype or centers.dtype
        if self.is_identity:
            return centers.to(dtype)
        values = centers.double()
        if self.shift is not None:
            values = values - self.shift.to(values.device)
        return (values * math.ldexp(1.0, -self.exponent)).to(dtype)

    def centers_out(self, centers: torch.Tensor) -> torch.Tensor:
        """Conditioned centres back in original units, in float64."""
        values = centers.double() * math.ldexp(1.0, self.exponent)
        if self.shift is not None:
            values = values + self.shift.to(values.device)
        return values

    def sq_distances_out(self, value: float) -> float:
        """A squared distance (or a sum of them, such as an inertia) in original units."""
        return _ldexp(float(value), 2 * self.exponent)

    def distances_out(self, values: torch.Tensor) -> torch.Tensor:
        """Distances in original units (a power-of-two scaling: exact)."""
        return values * math.ldexp(1.0, self.exponent) if self.exponent else values

    def tolerance(self, moments: RowMoments, tol: float) -> float:
        """scikit-learn's tolerance, ``tol`` times the mean per-feature variance (unweighted),
        in conditioned units."""
        if tol == 0 or moments.count == 0:
            return 0.0
        mean_variance = float((moments.sum_sq_dev / moments.count).mean())
        return _ldexp(mean_variance, 2 * (moments.prescale - self.exponent)) * tol


def _ldexp(value: float, exponent: int) -> float:
    """``value * 2**exponent``, infinite (not an error) beyond float64's range."""
    try:
        return math.ldexp(value, exponent)
    except OverflowError:
        return math.copysign(math.inf, value)
