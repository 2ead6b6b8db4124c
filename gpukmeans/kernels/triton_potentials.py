"""CUDA path of k-means++'s greedy step: one Triton pass, nothing written per row but the
lowered distances.

Same contract as :func:`gpukmeans.kernels.reference.candidate_potentials_reference`,
``lower_closest`` and ``block_rows`` included. A greedy k-means++ step lowers every row's
``closest`` to the centre the step before chose, then needs, for each of its few
candidates, ``sum_i w_i min(closest_i, ||x_i - c||^2)``, per block of rows for the next
draw. Through the assignment kernel that was the candidates as groups of one centre: a
label and a distance written per row and candidate, then read back by PyTorch (most of a
default fit's time at 100M rows). Here a row tile's distances to
the chosen centre and all candidates are one small product (the assignment's
:func:`~gpukmeans.kernels.triton_assign._matmul`, at the precision it uses for the same
stored dtype), computed as the assignment kernel computes them (``||c||^2 - 2 x.c`` from
the same product, plus ``||x||^2``, clamped at 0).

Each program takes whole blocks of rows and adds a block's ``w * min(...)`` in float64,
per row and candidate over the block's tiles, then over its rows, in a fixed order: the
totals do not depend on the order programs finish in, nor on which program or launch a
block falls to. One pass for the potentials halves k-means++'s time at 100M rows against
the assignment kernel's blocks (benchmarks/gpu_whole_fit.py times both).
"""


import torch
import triton
import triton.language as tl

from . import triton_assign
from .triton_assign import _PRECISION_BY_DTYPE, _matmul, _prepare, _row_tile, _tile_sizes

supports = triton_assign.supports  # the rows it reads are the assignment's

_PROGRAMS_PER_SM = 8  # as the assignment kernel, which measured it (see triton_assign)


@triton.jit
def _potentials_kernel(
    X, W, C, CN, CLOSEST, BLOCK_TOTALS,
    n_rows, n_features, n_candidates, stride_x, block_offset, n_blocks, blocks_per_program,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, TILES_PER_BLOCK: tl.constexpr,
    ONE_FEATURE_TILE: tl.constexpr, WEIGHTED: tl.constexpr, LOWER: tl.constexpr,
    DISTANCE_PRECISION: tl.constexpr,
):
    # Each program takes whole blocks of rows, one after another, and writes each block's
    # totals once it is done. Tile ``slot`` holds the rows from ``slot * BLOCK_M -
    # block_offset``: tiles, like blocks, line up with the table's rows, not with the
    # chunk's (a chunk that starts inside a block masks the rows before it).
    program = tl.program_id(0)
    tile_candidates = tl.arange(0, BLOCK_K)
    tile_features = tl.arange(0, BLOCK_D)
    feature_ok = tile_features < n_features
    candidate_ok = tile_candidates < n_candidates
    # padding candidates get +inf norms: their "distance" is +inf, their potential junk
    # that is never stored
    norms = tl.load(CN + tile_candidates, mask=candidate_ok, other=float("inf"))
    first_block = program * blocks_per_program
    stop_block = tl.minimum(first_block + blocks_per_program, n_blocks)
    weighed = tl.zeros((BLOCK_M, BLOCK_K), tl.float64)
    for slot in range(first_block * TILES_PER_BLOCK, stop_block * TILES_PER_BLOCK):
        rows = slot * BLOCK_M - block_offset + tl.arange(0, BLOCK_M)
        row_ok = (rows >= 0) & (rows < n_rows)
        rows64 = rows.to(tl.int64)
        closest = tl.load(CLOSEST + rows64, mask=row_ok, other=0.0).to(tl.float32)
        products = tl.zeros((BLOCK_M, BLOCK_K), tl.float32)
        if ONE_FEATURE_TILE:
            x_stored = _row_tile(X, rows64, row_ok, stride_x, tile_features, n_features)
            x_tile = x_stored.to(tl.float32)
            x_sq = tl.sum(x_tile * x_tile, axis=1)
            c_t = tl.load(C + tile_candidates[None, :] * n_features + tile_features[:, None],
                          mask=candidate_ok[None, :] & feature_ok[:, None], other=0.0)
            products = _matmul(x_stored, c_t, products, DISTANCE_PRECISION, True)
        else:
            x_sq = tl.zeros((BLOCK_M,), tl.float32)
            for d0 in range(0, n_features, BLOCK_D):
                features = d0 + tile_features
                x = _row_tile(X, rows64, row_ok, stride_x, features, n_features)
                x_float = x.to(tl.float32)
                x_sq += tl.sum(x_float * x_float, axis=1)
                c_t = tl.load(C + tile_candidates[None, :] * n_features + features[:, None],
                              mask=candidate_ok[None, :] & (features < n_features)[:, None], other=0.0)
                products = _matmul(x, c_t, products, DISTANCE_PRECISION, True)
        # the assignment's order: ||c||^2 - 2 x.c, then + ||x||^2, clamped at 0
        distances = tl.maximum((norms[None, :] - 2.0 * products) + x_sq[:, None], 0.0)
        if LOWER:  # the first candidate is a chosen centre: it lowers closest first
            first = tl.sum(tl.where(tile_candidates[None, :] == 0, distances, 0.0), axis=1)
            closest = tl.minimum(closest, first)
            tl.store(CLOSEST + rows64, closest.to(CLOSEST.dtype.element_ty), mask=row_ok)
        nearest = tl.minimum(distances, closest[:, None])
        if WEIGHTED:
            weight = tl.load(W + rows64, mask=row_ok, other=0.0).to(tl.float64)
        else:
            weight = row_ok.to(tl.float64)
        # per row and candidate until the block ends, then over the rows: the tree
        # reduction (shuffles) once a block, not once a tile
        weighed += nearest.to(tl.float64) * weight[:, None]
        if slot % TILES_PER_BLOCK == TILES_PER_BLOCK - 1:
            block = slot // TILES_PER_BLOCK  # block * n_candidates < n_rows + 64 * n_candidates: 32 bits do
            tl.store(BLOCK_TOTALS + block * n_candidates + tile_candidates, tl.sum(weighed, axis=0), mask=candidate_ok)
            weighed = tl.zeros((BLOCK_M, BLOCK_K), tl.float64)


# Rows per block of the totals when the caller asks for none (their sum is returned)
_DEFAULT_BLOCK_ROWS = 1024


def compile_settings(x_dtype, device_type, n_features, n_candidates, *, weighted, lower,
                     block_rows=_DEFAULT_BLOCK_ROWS):
    """The kernel's compile-time constants for one launch (benchmarks/kernel_sass.py and
    the tests compile from them)."""
    block_m, block_k, block_d = _tile_sizes(n_features, n_candidates)
    if block_rows % block_m:
        raise ValueError(f"block_rows must be a multiple of {block_m} on this path, not {block_rows}.")
    distance_precision = _PRECISION_BY_DTYPE[x_dtype][0]
    if device_type != "cuda" and distance_precision == "split_bf16":
        distance_precision = "ieee"  # as the assignment kernel under the interpreter
    return dict(BLOCK_M=block_m, BLOCK_K=block_k, BLOCK_D=block_d, TILES_PER_BLOCK=block_rows // block_m,
                ONE_FEATURE_TILE=n_features <= block_d, WEIGHTED=weighted, LOWER=lower,
                DISTANCE_PRECISION=distance_precision)


def candidate_potentials_triton(X, candidates, candidate_sq_norms, closest, weights=None, *,
                                lower_closest=False, block_rows=None, block_offset=0) -> torch.Tensor:
    """The potentials of :func:`~gpukmeans.kernels.reference.candidate_potentials_reference`
    (its ``lower_closest`` and ``block_rows`` included; ``block_rows`` a multiple of 64):
    (T,) or (blocks, T) float64. When lowering, ``closest`` (contiguous) is written in place."""
    n_rows, n_features = X.shape
    n_candidates = candidates.shape[0]
    if lower_closest and not closest.is_contiguous():
        raise ValueError("lower_closest needs a contiguous closest.")
    if block_rows is None:
        return candidate_potentials_triton(X, candidates, candidate_sq_norms, closest, weights,
                                           lower_closest=lower_closest, block_rows=_DEFAULT_BLOCK_ROWS).sum(dim=0)
    if not 0 <= block_offset < block_rows:
        raise ValueError(f"block_offset must be in [0, block_rows), not {block_offset}.")
    X, candidates, candidate_sq_norms, weights = _prepare(X, candidates, candidate_sq_norms, weights)
    target = closest if lower_closest else closest.detach().contiguous()
    constants = compile_settings(X.dtype, X.device.type, n_features, n_candidates,
                                 weighted=weights is not None, lower=lower_closest, block_rows=block_rows)
    block_k = constants["BLOCK_K"]
    if n_candidates > block_k:  # more candidates than one tile: a pass per tile (only the first lowers)
        parts = [candidate_potentials_triton(X, candidates[start:start + block_k],
                                             candidate_sq_norms[start:start + block_k], closest, weights,
                                             lower_closest=lower_closest and start == 0,
                                             block_rows=block_rows, block_offset=block_offset)
                 for start in range(0, n_candidates, block_k)]
        return torch.cat(parts, dim=1)
    n_blocks = -(-(block_offset + n_rows) // block_rows)
    totals = torch.zeros((n_blocks, n_candidates), dtype=torch.float64, device=X.device)
    if n_rows == 0:
        return totals
    if X.device.type == "cuda":
        n_sms = torch.cuda.get_device_properties(X.device).multi_processor_count
        n_programs = min(n_blocks, _PROGRAMS_PER_SM * n_sms)
    else:  # Triton's interpreter (tests): few programs, each walking several blocks
        n_programs = max(1, min(n_blocks // 2, 2))
    blocks_per_program = -(-n_blocks // n_programs)
    n_programs = -(-n_blocks // blocks_per_program)
    _potentials_kernel[(n_programs,)](
        X, weights if weights is not None else candidate_sq_norms, candidates, candidate_sq_norms,
        target, totals, n_rows, n_features, n_candidates, X.stride(0), block_offset, n_blocks,
        blocks_per_program, **constants)
    return totals


def available() -> bool:
    """As the assignment kernel, whose pieces it uses: CUDA and Triton >= 3.0."""
    return triton_assign.available()
