"""Blockwise Euclidean distance reductions: the O(n^2) core of the silhouette.

The n x n distance matrix is never held whole. It is walked in square tiles
(768 x 768 on the CPU, 8192 x 8192 on CUDA); each tile is one matrix product
on augmented rows (``[x, |x|^2, 1] . [-2y, 1, |y|^2] = |x - y|^2``), then clamp
and square root in place in one reused buffer, then a reduction into float64
accumulators (so long sums do not lose digits in float32).

Distances are symmetric, so only tiles on and above the diagonal are computed:
each off-diagonal tile is reduced along its rows for its row block and along
its columns for its column block. That halves the products and square roots,
which are nearly all of the cost.

Two reductions are provided:

* :func:`cluster_distance_sums_sorted`: rows sorted by cluster and tiles cut at
  cluster boundaries, so a tile's row sums and column sums each belong to one
  cluster. The cheapest form for one labelling (the exact silhouette).
* :func:`distance_matmul`: ``D @ right`` for any ``right`` (n x K), used with
  one-hot (or weighted one-hot) columns for several labellings at once, as in
  the sampled silhouette of a sweep over k.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = [
    "augment",
    "cluster_distance_sums_sorted",
    "default_block",
    "distance_matmul",
]


def default_block(device: torch.device) -> int:
    """Side of a square distance tile.

    On the CPU a 768 x 768 tile (4.5 MB in float64) stays in the last-level
    cache while it is clamped, square-rooted and reduced; tiles from 384 to 1024
    cost about the same, larger ones more (benchmarks/bench_metrics.py). A GPU
    wants far bigger tiles to fill its cores.
    """
    return 8192 if device.type == "cuda" else 768


def augment(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (row_factor, col_factor) with ``row_factor @ col_factor.T = |x - y|^2``.

    ``X`` should be centred first: the expansion loses digits in proportion to
    ``|x|^2`` relative to ``|x - y|^2``.
    """
    sq_norms = (X * X).sum(dim=1, keepdim=True)
    ones = torch.ones_like(sq_norms)
    row_factor = torch.cat([X, sq_norms, ones], dim=1)
    col_factor = torch.cat([X * -2.0, ones, sq_norms], dim=1)
    return row_factor, col_factor


def _distance_tile(
    buffer: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    diagonal_offset: int,
) -> torch.Tensor:
    """Distances between ``rows`` and ``cols`` (augmented) written into ``buffer``.

    ``diagonal_offset = row_start - col_start`` locates the pairs (i, i) in the
    tile; they are set to exactly 0, as scikit-learn does, because the expansion
    leaves a rounding residue there that would bias small clusters.
    """
    tile = buffer[: rows.shape[0] * cols.shape[0]].view(rows.shape[0], cols.shape[0])
    torch.mm(rows, cols.T, out=tile)
    tile.clamp_min_(0.0).sqrt_()
    tile.diagonal(diagonal_offset).zero_()
    return tile


def _cut(bounds: Sequence[int], block: int) -> list[tuple[int, int, int]]:
    """Tiles ``(start, stop, segment)`` of at most ``block`` rows, never across a bound."""
    tiles = []
    for segment in range(len(bounds) - 1):
        for start in range(bounds[segment], bounds[segment + 1], block):
            tiles.append((start, min(start + block, bounds[segment + 1]), segment))
    return tiles


def cluster_distance_sums_sorted(
    row_factor: torch.Tensor,
    col_factor: torch.Tensor,
    bounds: Sequence[int],
    block: int,
) -> torch.Tensor:
    """Sum of distances from every row to every cluster, rows sorted by cluster.

    Parameters
    ----------
    row_factor, col_factor : (n, d + 2) tensors from :func:`augment` of the
        cluster-sorted data.
    bounds : cluster ``c`` occupies rows ``bounds[c]:bounds[c + 1]``.
    block : tile side.

    Returns
    -------
    (n, n_clusters) float64 tensor: ``sums[i, c] = sum_{j in c, j != i} |x_i - x_j|``.
    """
    n_samples = row_factor.shape[0]
    device = row_factor.device
    sums = torch.zeros(n_samples, len(bounds) - 1, dtype=torch.float64, device=device)
    buffer = torch.empty(block * block, dtype=row_factor.dtype, device=device)
    tiles = _cut(bounds, block)
    for p, (row_start, row_stop, row_cluster) in enumerate(tiles):
        rows = row_factor[row_start:row_stop]
        for col_start, col_stop, col_cluster in tiles[p:]:
            tile = _distance_tile(
                buffer, rows, col_factor[col_start:col_stop], row_start - col_start
            )
            sums[row_start:row_stop, col_cluster] += tile.sum(dim=1)
            if col_start != row_start:
                sums[col_start:col_stop, row_cluster] += tile.sum(dim=0)
    return sums


def distance_matmul(
    row_factor: torch.Tensor,
    col_factor: torch.Tensor,
    right: torch.Tensor,
    block: int,
) -> torch.Tensor:
    """``D @ right`` with ``D[i, j] = |x_i - x_j|`` (diagonal exactly 0), blockwise.

    Parameters
    ----------
    row_factor, col_factor : (n, d + 2) tensors from :func:`augment`.
    right : (n, K) tensor, any float dtype; used in the data's dtype per tile.
    block : tile side.

    Returns
    -------
    (n, K) float64 tensor, accumulated in the data's dtype (in place, no
    temporaries): float32 data gives sums good to about 1e-7 relative.
    """
    n_samples = row_factor.shape[0]
    device = row_factor.device
    right = right.to(row_factor.dtype)
    result = torch.zeros(n_samples, right.shape[1], dtype=row_factor.dtype, device=device)
    buffer = torch.empty(block * block, dtype=row_factor.dtype, device=device)
    starts = list(range(0, n_samples, block))
    for p, row_start in enumerate(starts):
        row_stop = min(row_start + block, n_samples)
        rows = row_factor[row_start:row_stop]
        for col_start in starts[p:]:
            col_stop = min(col_start + block, n_samples)
            tile = _distance_tile(
                buffer, rows, col_factor[col_start:col_stop], row_start - col_start
            )
            block_rows = result[row_start:row_stop]
            block_rows.addmm_(tile, right[col_start:col_stop])
            if col_start != row_start:
                block_cols = result[col_start:col_stop]
                block_cols.addmm_(tile.T, right[row_start:row_stop])
    return result.to(torch.float64)
