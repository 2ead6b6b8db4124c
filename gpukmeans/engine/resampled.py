"""k-means on many weightings of one table's rows ("resamples"), sharing each pass.

A bootstrap resample of a table is its rows with multinomial count weights; a
subsample without replacement is its rows with 0/1 weights. So B resamples are B
groups over the same rows, each with its own row weights. The engine's Lloyd groups
(:mod:`.lloyd`) share one weight per row, so resamples get their own pass here: each
block of rows is assigned to its nearest centre in every active group at once (the
backend's fused assignment, as every other pass), then each group's weighted sums
per centre are one matrix product of the block with a (rows, groups x k) matrix that
holds each row's weight in the group at its label's column. A group stops costing
work when it converges.

Each group starts from greedy k-means++ on its own weights (the engine's
:func:`~.initialisation.kmeans_plusplus_tensor`, so a row a resample left out is never
a centre), then runs Lloyd until no weighted row changes label or the centres move by
at most scikit-learn's default tolerance; a centre that loses every row keeps its
place. Of each resample's ``restarts`` groups the one of lowest weighted inertia is
kept. The draws come from ``seed`` alone and the sums are formed block by block in
float64, so a seed gives the same fits whatever ``chunk_size``.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .._device import assign_block_bytes, row_blocks
from ..kernels import padded_sq_norms
from ..sources.memory import InMemorySource
from .initialisation import kmeans_plusplus_tensor

__all__ = ["ResampledFits", "resampled_kmeans"]

# scikit-learn's default tol: centre shifts up to this fraction of the mean variance
_TOL = 1e-4


@dataclass
class ResampledFits:
    """The best restart of every resample."""

    labels: torch.Tensor  # (m, B) int64 on the host: every row's nearest centre in each resample's fit
    centers: torch.Tensor  # (B, k, d) float64 on the host
    inertia: torch.Tensor  # (B,) float64: weighted sum of squared distances
    n_iter: list  # per resample, the Lloyd iterations of the kept restart


def resampled_kmeans(rows: torch.Tensor, weights: torch.Tensor, k: int, *, restarts: int = 1, seed: int = 0,
                     max_iter: int = 300, chunk_size: Optional[int] = None) -> ResampledFits:
    """Fit k-means with ``k`` centres to ``rows`` ((m, d), on the device where the work
    runs) once per row of ``weights`` ((B, m), non-negative, each with at least ``k``
    positive entries), from ``restarts`` k-means++ starts each.

    ``chunk_size``: rows per piece of each pass (None: as many as a block of the
    device's assignment memory holds); it changes no result.
    """
    rows = rows.contiguous()
    weights = weights.to(device=rows.device, dtype=torch.float64)
    n_resamples, n_rows = weights.shape
    group_weights = weights.repeat_interleave(restarts, dim=0)  # group g is resample g // restarts
    source = InMemorySource(rows, None, chunk_size or n_rows)
    centers = _initial_centers(rows, group_weights, k, seed, chunk_size or n_rows)
    tolerance = _TOL * float(rows.double().var(dim=0).mean()) if n_rows > 1 else 0.0
    centers, n_iter = _lloyd(source, centers, group_weights, tolerance, max_iter, chunk_size)
    labels, inertia = _final_pass(source, centers, group_weights, chunk_size)
    inertia = inertia.view(n_resamples, restarts)
    best = inertia.argmin(dim=1)
    kept = torch.arange(n_resamples) * restarts + best
    return ResampledFits(
        labels=labels[:, kept.to(labels.device)].long().cpu(),
        centers=centers[kept.to(centers.device)].double().cpu(),
        inertia=inertia.gather(1, best[:, None])[:, 0],
        n_iter=[n_iter[int(g)] for g in kept],
    )


def _initial_centers(rows, group_weights, k, seed, chunk_size) -> torch.Tensor:
    """(G, k, d): greedy k-means++ on each group's weights, each from its own generator."""
    seeds = np.random.SeedSequence(seed).generate_state(group_weights.shape[0], dtype=np.uint64)
    starts = []
    for weights, group_seed in zip(group_weights, seeds):
        source = InMemorySource(rows, weights.to(rows.dtype if rows.is_floating_point() else torch.float32),
                                chunk_size)
        generator = torch.Generator().manual_seed(int(group_seed) & (2**63 - 1))
        starts.append(kmeans_plusplus_tensor(source, k, generator)[0])
    return torch.stack(starts).to(source.dtype)


def _lloyd(source, centers, group_weights, tolerance, max_iter, chunk_size):
    """Lloyd's iterations of every group until each converges: ``(centres, n_iter)``."""
    n_groups = centers.shape[0]
    previous = torch.full((source.n_samples, n_groups), -1, dtype=torch.int32, device=source.device)
    n_iter = [0] * n_groups
    active = list(range(n_groups))
    for iteration in range(max_iter):
        if not active:
            break
        index = torch.tensor(active, device=source.device)
        old = centers[index]
        sums, weight_sums, n_changed = _weighted_pass(source, old, group_weights[index], previous, index, chunk_size)
        safe = weight_sums.clamp_min(1e-300)[..., None]
        new = torch.where(weight_sums[..., None] > 0, sums / safe, old.double()).to(centers.dtype)
        shift = ((new.double() - old.double()) ** 2).sum(dim=(1, 2)).cpu()
        centers[index] = new
        n_changed = n_changed.cpu()
        still_active = []
        for position, group in enumerate(active):
            n_iter[group] = iteration + 1
            if n_changed[position] > 0 and shift[position] > tolerance:
                still_active.append(group)
        active = still_active
    return centers, n_iter


def _pieces(source, n_groups, k, chunk_size):
    """``(start, stop)`` over the rows: ``chunk_size`` rows, or a block of the device's
    assignment memory (a label, a distance and a float64 weight per group and centre)."""
    if chunk_size:
        for start in range(0, source.n_samples, chunk_size):
            yield start, min(start + chunk_size, source.n_samples)
        return
    bytes_per_row = n_groups * (12 + 8 * k) + 8 * source.n_features
    yield from row_blocks(source.n_samples, bytes_per_row, assign_block_bytes(source.device))


def _weighted_pass(source, centers, weights, previous, index, chunk_size):
    """One pass: per active group, the weighted sums and weights per centre (float64) and
    how many weighted rows changed label (``previous``'s columns ``index`` rewritten)."""
    n_groups, k, n_features = centers.shape
    norms = padded_sq_norms(centers, torch.ones(n_groups, k, dtype=torch.bool, device=centers.device))
    offsets = torch.arange(n_groups, device=source.device) * k
    sums = torch.zeros(n_groups * k, n_features, dtype=torch.float64, device=source.device)
    weight_sums = torch.zeros(n_groups * k, dtype=torch.float64, device=source.device)
    n_changed = torch.zeros(n_groups, dtype=torch.int64, device=source.device)
    for start, stop in _pieces(source, n_groups, k, chunk_size):
        block = source.X[start:stop]
        labels = source.assign(block, centers, norms).labels  # (m, A)
        block_weights = weights[:, start:stop].T  # (m, A)
        before = previous[start:stop, index]
        n_changed += ((labels != before) & (block_weights > 0)).sum(dim=0)
        previous[start:stop, index] = labels.to(previous.dtype)
        spread = torch.zeros(stop - start, n_groups * k, dtype=torch.float64, device=source.device)
        spread.scatter_(1, labels + offsets, block_weights)
        sums += spread.T @ block.double()
        weight_sums += spread.sum(dim=0)
    return sums.view(n_groups, k, n_features), weight_sums.view(n_groups, k), n_changed


def _final_pass(source, centers, group_weights, chunk_size):
    """Every row's nearest final centre per group ((m, G), on the device) and each group's
    weighted inertia ((G,) float64 on the host), in float64 as every final assignment."""
    n_groups, k, _ = centers.shape
    labels = torch.empty(source.n_samples, n_groups, dtype=torch.int32, device=source.device)
    inertia = torch.zeros(n_groups, dtype=torch.float64, device=source.device)
    wide = centers.double()
    norms = (wide * wide).sum(dim=2)
    for start, stop in _pieces(source, n_groups, k, chunk_size):
        result = source.assign(source.X[start:stop].double(), wide, norms)
        labels[start:stop] = result.labels.to(labels.dtype)
        inertia += (result.min_sq_distances.double() * group_weights[:, start:stop].T).sum(dim=0)
    return labels, inertia.cpu()
