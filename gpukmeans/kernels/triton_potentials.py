"""CUDA path of k-means++'s candidate potentials: one Triton pass, nothing written per row.

Same contract as :func:`gpukmeans.kernels.reference.candidate_potentials_reference`, plus
``lower_closest`` as in the CPU kernel. Each greedy k-means++ step needs, for each of its
few candidates, ``sum_i w_i min(closest_i, ||x_i - c||^2)``, and then every row's
``closest`` lowered to the chosen centre. Through the assignment kernel that was the
candidates as groups of one centre: a label and a distance written per row and candidate,
then read back by PyTorch, block by block (on an H200, 0.89 s of a 1.15 s default fit at
(100M, 32, 16)). Here a row tile's distances to all candidates are one small product
(the assignment's :func:`~gpukmeans.kernels.triton_assign._matmul`, at the precision it
uses for the same stored dtype), and each program keeps float64 totals per candidate,
stored in a slot of its own and added up by the caller in a fixed order, so the
potentials do not depend on the order programs finish in.

The distances are computed as the assignment kernel computes them (``||c||^2 - 2 x.c``
from the same product, plus ``||x||^2``, clamped at 0). On an H200 it took k-means++ at
(100M, 32, 16) from 0.73-0.78 s to 0.36-0.37 s, picking the same rows (docs/speed.md).
"""

import torch
import triton
import triton.language as tl

from . import triton_assign
from .triton_assign import _PRECISION_BY_DTYPE, _matmul, _row_tile, _tile_sizes

supports = triton_assign.supports  # the rows it reads are the assignment's

_PROGRAMS_PER_SM = 8  # as the assignment kernel, which measured it (see triton_assign)


@triton.jit
def _potentials_kernel(
    X, W, C, CN, CLOSEST, PARTIAL,
    n_rows, n_features, n_candidates, stride_x, n_row_tiles,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ONE_FEATURE_TILE: tl.constexpr, WEIGHTED: tl.constexpr, LOWER: tl.constexpr,
    DISTANCE_PRECISION: tl.constexpr,
):
    program = tl.program_id(0)
    n_programs = tl.num_programs(0)
    tile_candidates = tl.arange(0, BLOCK_K)
    tile_features = tl.arange(0, BLOCK_D)
    feature_ok = tile_features < n_features
    candidate_ok = tile_candidates < n_candidates
    # padding candidates get +inf norms: their "distance" is +inf, their potential junk
    # that the caller drops
    norms = tl.load(CN + tile_candidates, mask=candidate_ok, other=float("inf"))
    totals = tl.zeros((BLOCK_K,), tl.float64)
    for tile in range(program, n_row_tiles, n_programs):
        rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < n_rows
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
        nearest = tl.minimum(distances, closest[:, None])
        if WEIGHTED:
            weight = tl.load(W + rows64, mask=row_ok, other=0.0).to(tl.float64)
        else:
            weight = row_ok.to(tl.float64)
        totals += tl.sum(nearest.to(tl.float64) * weight[:, None], axis=0)
        if LOWER:  # one candidate: its distances become each row's closest
            lowered = tl.sum(tl.where(tile_candidates[None, :] == 0, nearest, 0.0), axis=1)
            tl.store(CLOSEST + rows64, lowered.to(CLOSEST.dtype.element_ty), mask=row_ok)
    tl.store(PARTIAL + program.to(tl.int64) * BLOCK_K + tile_candidates, totals)


def compile_settings(x_dtype, device_type, n_features, n_candidates, *, weighted, lower):
    """The kernel's compile-time constants for one launch (benchmarks/kernel_sass.py and
    the tests compile from them)."""
    block_m, block_k, block_d = _tile_sizes(n_features, n_candidates)
    distance_precision = _PRECISION_BY_DTYPE[x_dtype][0]
    if device_type != "cuda" and distance_precision == "split_bf16":
        distance_precision = "ieee"  # as the assignment kernel under the interpreter
    return dict(BLOCK_M=block_m, BLOCK_K=block_k, BLOCK_D=block_d, ONE_FEATURE_TILE=n_features <= block_d,
                WEIGHTED=weighted, LOWER=lower, DISTANCE_PRECISION=distance_precision)


def candidate_potentials_triton(X, candidates, candidate_sq_norms, closest, weights=None, *,
                                lower_closest=False) -> torch.Tensor:
    """(T,) float64 potentials of the candidates (see the module docstring). With
    ``lower_closest`` (one candidate), ``closest`` (contiguous) is lowered in place."""
    n_rows, n_features = X.shape
    n_candidates = candidates.shape[0]
    if lower_closest and (n_candidates != 1 or not closest.is_contiguous()):
        raise ValueError("lower_closest needs one candidate and a contiguous closest.")
    if X.stride(1) != 1:
        X = X.contiguous()
    candidates = candidates.detach().to(torch.float32).contiguous()
    candidate_sq_norms = candidate_sq_norms.detach().to(torch.float32).contiguous()
    if weights is not None:
        weights = weights.detach().to(torch.float32).contiguous()
    target = closest if lower_closest else closest.detach().contiguous()
    constants = compile_settings(X.dtype, X.device.type, n_features, n_candidates,
                                 weighted=weights is not None, lower=lower_closest)
    block_m, block_k = constants["BLOCK_M"], constants["BLOCK_K"]
    if n_candidates > block_k:  # more candidates than one tile: a pass per tile
        parts = [candidate_potentials_triton(X, candidates[start:start + block_k],
                                             candidate_sq_norms[start:start + block_k], closest, weights)
                 for start in range(0, n_candidates, block_k)]
        return torch.cat(parts)
    n_row_tiles = max(1, triton.cdiv(n_rows, block_m))
    if X.device.type == "cuda":
        n_sms = torch.cuda.get_device_properties(X.device).multi_processor_count
        n_programs = min(n_row_tiles, _PROGRAMS_PER_SM * n_sms)
    else:  # Triton's interpreter (tests): few programs, each walking several tiles
        n_programs = max(1, min(n_row_tiles // 2, 2))
    partial = torch.empty((n_programs, block_k), dtype=torch.float64, device=X.device)
    if n_rows == 0:
        return torch.zeros(n_candidates, dtype=torch.float64, device=X.device)
    _potentials_kernel[(n_programs,)](
        X.detach(), weights if weights is not None else candidate_sq_norms, candidates, candidate_sq_norms,
        target, partial, n_rows, n_features, n_candidates, X.stride(0), n_row_tiles, **constants)
    return partial.sum(dim=0)[:n_candidates]


def available() -> bool:
    """As the assignment kernel, whose pieces it uses: CUDA and Triton >= 3.0."""
    return triton_assign.available()
