"""Blockwise Euclidean distance reductions: the O(n^2) core of the silhouette.

The n x n distance matrix is never held whole. Rows and columns are walked in
tiles (512 x 2048 on the CPU, 8192 x 8192 on CUDA); each tile is one matrix product
on augmented rows (``[x, |x|^2, 1] . [-2y, 1, |y|^2] = |x - y|^2``), then clamp,
square root, and a reduction, all in place in one reused buffer. Tile sums go
into float64 accumulators, so long sums do not lose digits in float32.

Two reductions are provided:

* :func:`cluster_distance_sums_sorted`: rows already sorted by cluster, each
  column tile lies inside one cluster and is reduced by a row sum. This is the
  cheapest form for one labelling (the exact silhouette).
* :func:`distance_matmul`: ``D @ right`` for any ``right`` (n x K), used with
  one-hot (or weighted one-hot) columns for several labellings at once, as in
  the sampled silhouette of a sweep over k.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = [
    "as_tile_shape",
    "augment",
    "cluster_distance_sums_sorted",
    "default_block",
    "distance_matmul",
]


def default_block(device: torch.device) -> tuple[int, int]:
    """(rows, columns) of a distance tile.

    On the CPU a 512 x 2048 tile (8 MB in float64) stays in the last-level cache
    while it is clamped, square-rooted and summed; measured single-threaded on a
    2-core EPYC it is 20% faster in float64 than 2048 x 2048 and as fast in float32.
    A GPU wants far bigger tiles to fill its cores.
    """
    return (8192, 8192) if device.type == "cuda" else (512, 2048)


def as_tile_shape(block) -> tuple[int, int]:
    """Accept a side (square tiles) or a (rows, columns) pair."""
    if isinstance(block, tuple):
        return int(block[0]), int(block[1])
    return int(block), int(block)


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


def cluster_distance_sums_sorted(
    row_factor: torch.Tensor,
    col_factor: torch.Tensor,
    bounds: Sequence[int],
    block,
) -> torch.Tensor:
    """Sum of distances from every row to every cluster, rows sorted by cluster.

    Parameters
    ----------
    row_factor, col_factor : (n, d + 2) tensors from :func:`augment` of the
        cluster-sorted data.
    bounds : cluster ``c`` occupies rows ``bounds[c]:bounds[c + 1]``.
    block : tile side, or (rows, columns).

    Returns
    -------
    (n, n_clusters) float64 tensor: ``sums[i, c] = sum_{j in c, j != i} |x_i - x_j|``.
    """
    n_samples = row_factor.shape[0]
    n_clusters = len(bounds) - 1
    device = row_factor.device
    row_block, col_block = as_tile_shape(block)
    sums = torch.zeros(n_samples, n_clusters, dtype=torch.float64, device=device)
    buffer = torch.empty(row_block * col_block, dtype=row_factor.dtype, device=device)
    for row_start in range(0, n_samples, row_block):
        row_stop = min(row_start + row_block, n_samples)
        rows = row_factor[row_start:row_stop]
        out = sums[row_start:row_stop]
        for cluster in range(n_clusters):
            for col_start in range(bounds[cluster], bounds[cluster + 1], col_block):
                col_stop = min(col_start + col_block, bounds[cluster + 1])
                tile = _distance_tile(
                    buffer, rows, col_factor[col_start:col_stop], row_start - col_start
                )
                out[:, cluster] += tile.sum(dim=1)
    return sums


def distance_matmul(
    row_factor: torch.Tensor,
    col_factor: torch.Tensor,
    right: torch.Tensor,
    block,
) -> torch.Tensor:
    """``D @ right`` with ``D[i, j] = |x_i - x_j|`` (diagonal exactly 0), blockwise.

    Parameters
    ----------
    row_factor, col_factor : (n, d + 2) tensors from :func:`augment`.
    right : (n, K) tensor, any float dtype; used in the data's dtype per tile.
    block : tile side, or (rows, columns).

    Returns
    -------
    (n, K) float64 tensor.
    """
    n_samples = row_factor.shape[0]
    device = row_factor.device
    row_block, col_block = as_tile_shape(block)
    right = right.to(row_factor.dtype)
    result = torch.zeros(n_samples, right.shape[1], dtype=torch.float64, device=device)
    buffer = torch.empty(row_block * col_block, dtype=row_factor.dtype, device=device)
    for row_start in range(0, n_samples, row_block):
        row_stop = min(row_start + row_block, n_samples)
        rows = row_factor[row_start:row_stop]
        for col_start in range(0, n_samples, col_block):
            col_stop = min(col_start + col_block, n_samples)
            tile = _distance_tile(
                buffer, rows, col_factor[col_start:col_stop], row_start - col_start
            )
            result[row_start:row_stop] += tile @ right[col_start:col_stop]
    return result
