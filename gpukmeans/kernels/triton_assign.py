"""CUDA path of the fused assign-and-accumulate step: one Triton kernel.

A few programs per SM each walk many tiles of ``BLOCK_M`` rows of one group. For a
tile, the program loops over the group's centres ``BLOCK_K`` at a time with the
running minimum and its index in registers, never writing the rows x k distances.
Then, still holding the rows, it writes the labels (and, on request, the distances)
and adds the rows to the per-centre sums:

- for ``k_max <= BLOCK_K`` (one tile of centres, the customer-table case) as a small
  matrix product ``one_hot(labels)^T @ (w * X)`` per tile, kept in registers across
  the program's tiles (compensated summation). With one tile of features too, each
  program stores its totals in a slot of its own, which the caller adds up in float64
  in a fixed order: the sums are the same from run to run. (One atomic add per row
  would serialise millions of adds on the same few addresses.)
- for larger ``k`` or ``d`` with float32 atomic adds (per row, or per tile), whose
  last bits depend on the order programs finish in.

Every ``d`` and ``k`` works: tiles are padded to 16 (``tl.dot``'s minimum) with
zeros for features and ``+inf`` norms for centres. Products run on the tensor cores at
float32 accuracy (see :func:`_matmul`), accumulation is float32; ``X`` may be stored
as float16 or bfloat16 (half the bytes to read) while centres and sums stay float32.
Labels never depend on the order of programs (the running minimum is per row, exact
ties go to the lowest index).

Imported only when CUDA and Triton are present (:mod:`gpukmeans.kernels` does it).
Under ``TRITON_INTERPRET=1`` (set before Triton is imported) the same kernel runs on
CPU tensors in Triton's interpreter, which is how the tests check it without a GPU.
"""

import re
import warnings
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import triton
import triton.language as tl

from .reference import AssignResult, StepResult

_SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# 8 programs per SM, with the centres held in registers across row tiles, are the fastest
# layout at every customer-table shape; 8 warps, 256-row tiles and 1-2 pipeline stages
# are not (benchmarks/gpu_kernel_variants.py).
_PROGRAMS_PER_SM = 8
# The step is bound by each program's latency, not by memory (an Nsight Compute profile,
# benchmarks/gpu_session.sh's profile stage): more programs per SM is what speeds it up.
# 64-row tiles (against 128) and, at k <= 16, a cap of 128 registers (4 programs of 4
# warps per SM) are faster at every shape timed, by a fifth to a third (at k = 32 the
# cap spills, so it applies up to 16 centres).
_BLOCK_M = 64
_CAPPED_REGISTERS = 128


@dataclass(frozen=True)
class Tuning:
    """Launch settings of the kernel. The defaults are the product's choices; a tuning
    run (benchmarks/gpu_kernel_variants.py, benchmarks/kernel_sass.py) passes others to
    :func:`assign_accumulate_triton`, :func:`lloyd_step_triton` or :func:`_compile_settings`.

    ``None`` leaves the choice to :func:`_plan`, :func:`_compile_settings` or Triton's
    default (``maxnreg=0``: no register cap). The precisions are ``tl.dot``'s: "ieee"
    (float32 arithmetic), "tf32x3" (tensor cores, three TF32 products: close to
    float32), "tf32" (one: about 10 bits, too coarse for labels); and this file's
    "split_tf32", "split_bf16" (see _matmul) and "one_hot_bf16" (sums only, see
    _sums_by_center).
    """

    block_m: Optional[int] = None
    num_warps: Optional[int] = None
    num_stages: Optional[int] = None
    programs_per_sm: int = _PROGRAMS_PER_SM
    distance_precision: Optional[str] = None
    sum_precision: Optional[str] = None
    hoist_centers: bool = True
    maxnreg: Optional[int] = None
    slot_counts: bool = True
    reload_for_sums: Optional[bool] = None


DEFAULT_TUNING = Tuning()
# Sum precisions that multiply a 0/1 one-hot by the (weighted) rows: see _sums_by_center.
_ONE_HOT_SUM_PRECISIONS = ("split_tf32", "one_hot_bf16")
# (distances, sums) precision by the dtype X is stored in, where the tuning names none;
# "split_bf16" needs bfloat16 X. For float32 rows, split_tf32 is about twice as fast as
# "ieee" and faster than tf32x3, and its labels differ from float64 arithmetic only at
# ties; for bfloat16 rows the one-hot sums are the fastest (benchmarks/gpu_kernel_variants.py).
_PRECISION_BY_DTYPE = {torch.float32: ("split_tf32", "split_tf32"), torch.bfloat16: ("split_bf16", "one_hot_bf16"),
                       torch.float16: ("ieee", "ieee")}



@triton.jit
def _split_bf16(v):
    """Three bfloat16 tensors whose float32 sum is ``v``: 8 significant bits each, 24 in all."""
    high = v.to(tl.bfloat16)
    rest = v - high.to(tl.float32)
    middle = rest.to(tl.bfloat16)
    low = (rest - middle.to(tl.float32)).to(tl.bfloat16)
    return high, middle, low


@triton.jit
def _split_tf32(v):
    """``(high, low)``, ``high + low == v`` exactly: ``high`` is ``v`` cut to its top 11
    significant bits by a mask on the bits (exact in TF32; one instruction, where
    rounding, as tl.dot's own tf32x3 split does, takes four and more registers), ``low``
    the rest, under 2^-10 of ``v``, of which a TF32 product keeps 11 bits. A product of
    two split operands, less its low x low term, errs by about 2^-20 of |a||b|: the size
    of float32 arithmetic's own error over a few tens of features."""
    high = (v.to(tl.int32, bitcast=True) & -8192).to(tl.float32, bitcast=True)
    return high, v - high


@triton.jit
def _dot_split_bf16(a, b, acc, SPLIT_LEFT: tl.constexpr):
    """``a @ b + acc`` with the float32 operand (``a`` if ``SPLIT_LEFT``, else ``b``) split
    in three bfloat16 parts: three tensor-core products, each exact, accumulated in float32."""
    if SPLIT_LEFT:
        high, middle, low = _split_bf16(a)
        acc = tl.dot(low, b, acc)
        acc = tl.dot(middle, b, acc)
        acc = tl.dot(high, b, acc)
    else:
        high, middle, low = _split_bf16(b)
        acc = tl.dot(a, low, acc)
        acc = tl.dot(a, middle, acc)
        acc = tl.dot(a, high, acc)
    return acc


@triton.jit
def _matmul(a, b, acc, PRECISION: tl.constexpr, STORED_LEFT: tl.constexpr):
    """``a @ b + acc`` in float32, one operand a tile of X as stored (the left one if
    ``STORED_LEFT``), the other float32.

    "split_tf32": both operands split by :func:`_split_tf32`, three TF32 products.
    "split_bf16" (X stored as bfloat16): the float32 operand is split in three bfloat16
    parts, so that the three tensor-core products, each exact, accumulate in float32 to
    what float32 arithmetic gives. Otherwise both operands are float32 and ``PRECISION``
    is ``tl.dot``'s input precision.
    """
    if PRECISION == "split_tf32":
        a_high, a_low = _split_tf32(a.to(tl.float32))
        b_high, b_low = _split_tf32(b.to(tl.float32))
        acc = tl.dot(a_low, b_high, acc, input_precision="tf32")
        acc = tl.dot(a_high, b_low, acc, input_precision="tf32")
        acc = tl.dot(a_high, b_high, acc, input_precision="tf32")
    elif PRECISION == "split_bf16":
        acc = _dot_split_bf16(a, b, acc, not STORED_LEFT)
    else:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _sums_by_center(left, rows, weight, acc, PRECISION: tl.constexpr, WEIGHT_ROWS: tl.constexpr):
    """``left @ (rows, times weight where WEIGHT_ROWS) + acc`` in float32: a tile's sums per
    centre, ``left`` the one-hot (centres x rows) of the labels, of 0/1 or of the weights.

    With the one-hot precisions ``left`` holds only 0 and 1 (the weights, if any, go into
    the rows), exact in every format, so only the rows are split. "split_tf32": two TF32
    products, of the rows' high and low parts (:func:`_split_tf32`), against tf32x3's three
    that also split the one-hot. "one_hot_bf16": one exact product for bfloat16 rows, three
    for float32 ones (weighted rows). Otherwise as :func:`_matmul`.
    """
    if WEIGHT_ROWS:
        rows = rows.to(tl.float32) * weight[:, None]
    if PRECISION == "split_tf32":
        high, low = _split_tf32(rows.to(tl.float32))
        acc = tl.dot(left, low, acc, input_precision="tf32")
        acc = tl.dot(left, high, acc, input_precision="tf32")
    elif PRECISION == "one_hot_bf16":
        if rows.dtype == tl.bfloat16:
            acc = tl.dot(left.to(tl.bfloat16), rows, acc)
        else:
            acc = _dot_split_bf16(left.to(tl.bfloat16), rows, acc, False)
    else:
        acc = _matmul(left, rows, acc, PRECISION, False)
    return acc


@triton.jit
def _row_tile_cached(X, rows64, row_ok, stride_x, features, n_features, CACHE: tl.constexpr):
    """The rows' values at ``features`` as stored; zero past the last row or feature."""
    return tl.load(X + rows64[:, None] * stride_x + features[None, :],
                   mask=row_ok[:, None] & (features < n_features)[None, :], other=0.0, cache_modifier=CACHE)


@triton.jit
def _row_tile(X, rows64, row_ok, stride_x, features, n_features):
    return _row_tile_cached(X, rows64, row_ok, stride_x, features, n_features, "")


@triton.jit
def _nearest_in_tiles(X, C, CN, rows64, row_ok, x_stored, group_base, k_max, n_features, stride_x,
                      BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                      ONE_FEATURE_TILE: tl.constexpr, DISTANCE_PRECISION: tl.constexpr):
    """Nearest centre of each row and the partial distance to it (without ||x||^2),
    over the group's centres ``BLOCK_K`` at a time; ``x_stored`` is the row tile where
    it is one feature tile (else the rows are read again for each centre tile)."""
    tile_centers = tl.arange(0, BLOCK_K)
    tile_features = tl.arange(0, BLOCK_D)
    feature_ok = tile_features < n_features
    best = tl.full((BLOCK_M,), float("inf"), tl.float32)
    best_index = tl.zeros((BLOCK_M,), tl.int32)
    for k0 in range(0, k_max, BLOCK_K):
        centers = k0 + tile_centers
        center_ok = centers < k_max
        products = tl.zeros((BLOCK_M, BLOCK_K), tl.float32)
        if ONE_FEATURE_TILE:
            c_t = tl.load(C + (group_base + centers)[None, :] * n_features + tile_features[:, None],
                          mask=center_ok[None, :] & feature_ok[:, None], other=0.0)
            products = _matmul(x_stored, c_t, products, DISTANCE_PRECISION, True)
        else:
            for d0 in range(0, n_features, BLOCK_D):
                features = d0 + tile_features
                feature_in = features < n_features
                x = _row_tile(X, rows64, row_ok, stride_x, features, n_features)
                c_t = tl.load(C + (group_base + centers)[None, :] * n_features + features[:, None],
                              mask=center_ok[None, :] & feature_in[:, None], other=0.0)
                products = _matmul(x, c_t, products, DISTANCE_PRECISION, True)
        # padding centres (past k_max, or +inf norms inside a group) are never nearest
        norms = tl.load(CN + group_base + centers, mask=center_ok, other=float("inf"))
        partial = norms[None, :] - 2.0 * products
        tile_best = tl.min(partial, axis=1)
        tile_index = tl.argmin(partial, axis=1, tie_break_left=True).to(tl.int32) + k0
        # strict '<': a later tile never displaces an equal earlier one (lowest index wins)
        better = tile_best < best
        best = tl.where(better, tile_best, best)
        best_index = tl.where(better, tile_index, best_index)
    return best, best_index


@triton.jit
def _assign_kernel(
    X, W, C, CN, LABELS, LABEL_COLUMNS, MIN_SQ, SUMS, WEIGHT_SUMS, CHANGED, INERTIA,
    n_rows, n_features, k_max, n_label_columns, stride_x, n_row_tiles,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    ONE_FEATURE_TILE: tl.constexpr, ONE_CENTER_TILE: tl.constexpr, SUMS_IN_REGISTERS: tl.constexpr,
    WEIGHTED: tl.constexpr, ACCUMULATE: tl.constexpr, WRITE_DISTANCES: tl.constexpr,
    LLOYD: tl.constexpr, WITH_INERTIA: tl.constexpr,
    DISTANCE_PRECISION: tl.constexpr, SUM_PRECISION: tl.constexpr, HOIST_CENTERS: tl.constexpr,
    WEIGHT_ROWS: tl.constexpr, SLOT_COUNTS: tl.constexpr, RELOAD_FOR_SUMS: tl.constexpr,
):
    # The group is the grid's fastest axis: the G programs that walk the same row tiles
    # (one per group: restarts, or the k's of a sweep) are scheduled side by side, so
    # that a tile one of them reads from memory the others find in L2.
    group = tl.program_id(0)
    n_groups = tl.num_programs(0)
    program = tl.program_id(1)
    n_programs = tl.num_programs(1)
    tile_centers = tl.arange(0, BLOCK_K)
    tile_features = tl.arange(0, BLOCK_D)
    feature_ok = tile_features < n_features
    center_in_tile = tile_centers < k_max
    group_base = group.to(tl.int64) * k_max

    # Per-program totals, flushed with one atomic each at the end: a program walks many
    # row tiles, so that the atomics per address are as many as the programs, not the tiles.
    # The sums are compensated (Kahan) across tiles: float32 over ~10^5 rows per program.
    sums_total = tl.zeros((BLOCK_K, BLOCK_D), tl.float32)
    sums_error = tl.zeros((BLOCK_K, BLOCK_D), tl.float32)
    weights_total = tl.zeros((BLOCK_K,), tl.float32)
    weights_error = tl.zeros((BLOCK_K,), tl.float32)
    # SLOT_COUNTS (unweighted rows): counts per (row slot of the tile, centre), added up
    # over the slots once at the end: exact (integers), and no reduction across warps per tile
    counts = tl.zeros((BLOCK_M, BLOCK_K), tl.float32)
    changed_rows = tl.zeros((BLOCK_M,), tl.int32)
    inertia_rows = tl.zeros((BLOCK_M,), tl.float64)
    if HOIST_CENTERS:
        # one tile of centres and of features (the customer-table case): the centres are
        # read once per program, and the row loop holds no inner loop, so that Triton's
        # pipeliner can prefetch the next rows while this tile computes (float32 rows only
        # with the sums' own load: see _reads_rows_twice)
        hoisted_c_t = tl.load(C + (group_base + tile_centers)[None, :] * n_features + tile_features[:, None],
                              mask=center_in_tile[None, :] & feature_ok[:, None], other=0.0)
        hoisted_norms = tl.load(CN + group_base + tile_centers, mask=center_in_tile, other=float("inf"))

    if LLOYD:
        column = tl.load(LABEL_COLUMNS + group)

    for tile in range(program, n_row_tiles, n_programs):
        rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < n_rows
        rows64 = rows.to(tl.int64)
        # the tile's first row as a 64-bit pointer, once per tile; within the tile, 32-bit
        # offsets, not a 64-bit multiply-add per element (kernel_sass.py, Triton 3.6, at
        # (100M, 32, 16): 25.4 -> 24.3 instructions a row)
        tile_start = tl.cast(tile, tl.int64) * BLOCK_M  # tile: a plain int in the interpreter
        x_tile_base = X + tile_start * stride_x
        tile_rows = tl.arange(0, BLOCK_M)
        if LLOYD:
            # read first, so that its latency passes while the tile computes (placed after
            # the products, the load waited out a whole memory round trip per tile)
            slots = LABELS + tile_start * n_label_columns + column + tile_rows * n_label_columns
            previous = tl.load(slots, mask=row_ok, other=0).to(tl.int32)

        # ||x||^2 only shifts every distance of a row: it is added after the argmin.
        if ONE_FEATURE_TILE:
            x_stored = _row_tile(x_tile_base, tile_rows, row_ok, stride_x, tile_features, n_features)
            x_tile = x_stored.to(tl.float32)
            x_sq = tl.sum(x_tile * x_tile, axis=1)
        else:
            x_sq = tl.zeros((BLOCK_M,), tl.float32)
            for d0 in range(0, n_features, BLOCK_D):
                features = d0 + tile_features
                x = _row_tile(X, rows64, row_ok, stride_x, features, n_features).to(tl.float32)
                x_sq += tl.sum(x * x, axis=1)
            x_stored = x_sq  # unused: the centre tiles read the rows again, feature tile by tile

        if HOIST_CENTERS:
            partial = hoisted_norms[None, :] - 2.0 * _matmul(
                x_stored, hoisted_c_t, tl.zeros((BLOCK_M, BLOCK_K), tl.float32), DISTANCE_PRECISION, True)
            best = tl.min(partial, axis=1)
            best_index = tl.argmin(partial, axis=1, tie_break_left=True).to(tl.int32)
        else:
            best, best_index = _nearest_in_tiles(
                X, C, CN, rows64, row_ok, x_stored, group_base, k_max,
                n_features, stride_x, BLOCK_M, BLOCK_K, BLOCK_D, ONE_FEATURE_TILE, DISTANCE_PRECISION)

        # ||x||^2 + ||c||^2 - 2 x.c can round below zero: distances are clamped at 0
        distance = tl.maximum(best + x_sq, 0.0)
        if WEIGHTED:
            weight = tl.load(W + rows, mask=row_ok, other=0.0).to(tl.float32)
        else:
            weight = row_ok.to(tl.float32)

        if WRITE_DISTANCES:
            tl.store(MIN_SQ + rows64 * n_groups + group, distance, mask=row_ok)
        if LLOYD:
            changed_rows += (row_ok & (previous != best_index)).to(tl.int32)
            tl.store(slots, best_index.to(LABELS.dtype.element_ty), mask=row_ok)
        else:
            tl.store(LABELS + rows64 * n_groups + group, best_index.to(tl.int64), mask=row_ok)
        if WITH_INERTIA:
            inertia_rows += (distance * weight).to(tl.float64)

        if ACCUMULATE:
            if ONE_CENTER_TILE:
                # the tile's sums per centre as one_hot^T @ (w x): a small matrix product
                one_hot = tl.where(best_index[:, None] == tile_centers[None, :], weight[:, None], 0.0)
                if SLOT_COUNTS:
                    counts += one_hot
                else:
                    step = tl.sum(one_hot, axis=0) - weights_error
                    updated = weights_total + step
                    weights_error = (updated - weights_total) - step
                    weights_total = updated
                one_hot_t = tl.trans(one_hot)
                if WEIGHT_ROWS:
                    # the weights go into the rows, so that the one-hot holds only 0 and 1
                    sum_left = tl.trans(tl.where(best_index[:, None] == tile_centers[None, :], row_ok[:, None].to(tl.float32), 0.0))
                else:
                    sum_left = one_hot_t
                if SUMS_IN_REGISTERS:
                    x_sums = x_stored
                    if RELOAD_FOR_SUMS:
                        # the same rows, read again (from L2) by a load of their own: see
                        # _reads_rows_twice. A different cache hint keeps the compiler from
                        # merging it into the first.
                        x_sums = _row_tile_cached(x_tile_base, tile_rows, row_ok, stride_x, tile_features, n_features, ".cg")
                    step = _sums_by_center(sum_left, x_sums, weight, tl.zeros((BLOCK_K, BLOCK_D), tl.float32),
                                           SUM_PRECISION, WEIGHT_ROWS) - sums_error
                    updated = sums_total + step
                    sums_error = (updated - sums_total) - step
                    sums_total = updated
                else:
                    for d0 in range(0, n_features, BLOCK_D):
                        features = d0 + tile_features
                        feature_in = features < n_features
                        x = _row_tile(X, rows64, row_ok, stride_x, features, n_features)
                        tl.atomic_add(SUMS + (group_base + tile_centers)[:, None] * n_features + features[None, :],
                                      _sums_by_center(sum_left, x, weight, tl.zeros((BLOCK_K, BLOCK_D), tl.float32),
                                                      SUM_PRECISION, WEIGHT_ROWS),
                                      mask=center_in_tile[:, None] & feature_in[None, :])
            else:
                # many centres: rows spread over many addresses, so direct atomics do not queue
                targets = group_base + best_index.to(tl.int64)
                tl.atomic_add(WEIGHT_SUMS + targets, weight, mask=row_ok)
                for d0 in range(0, n_features, BLOCK_D):
                    features = d0 + tile_features
                    feature_in = features < n_features
                    x = _row_tile(X, rows64, row_ok, stride_x, features, n_features).to(tl.float32)
                    tl.atomic_add(SUMS + targets[:, None] * n_features + features[None, :],
                                  x * weight[:, None], mask=row_ok[:, None] & feature_in[None, :])

    # This program's slot of the per-program totals: the caller adds the slots up in a
    # fixed order, so that the sums do not depend on the order programs finish in.
    slot = program.to(tl.int64) * n_groups + group
    if SLOT_COUNTS:
        weights_total = tl.sum(counts, axis=0)
    if ACCUMULATE:
        if SUMS_IN_REGISTERS:
            tl.store(WEIGHT_SUMS + slot * k_max + tile_centers, weights_total, mask=center_in_tile)
            tl.store(SUMS + (slot * k_max + tile_centers)[:, None] * n_features + tile_features[None, :],
                     sums_total, mask=center_in_tile[:, None] & feature_ok[None, :])
        elif ONE_CENTER_TILE:
            tl.atomic_add(WEIGHT_SUMS + group_base + tile_centers, weights_total, mask=center_in_tile)
    if LLOYD:
        tl.atomic_add(CHANGED + group, tl.sum(changed_rows, axis=0))  # integers: exact in any order
    if WITH_INERTIA:
        tl.store(INERTIA + slot, tl.sum(inertia_rows, axis=0))


def _tile_sizes(n_features: int, k_max: int):
    block_d = max(16, min(triton.next_power_of_2(n_features), 64))
    block_k = max(16, min(triton.next_power_of_2(k_max), 64))
    return _BLOCK_M, block_k, block_d


class _Plan(NamedTuple):
    block_m: int
    block_k: int
    block_d: int
    n_row_tiles: int
    n_programs: int
    per_program_totals: bool  # sums and weight sums in per-program slots (see the kernel)


def _plan(X, centers, tuning: Tuning = DEFAULT_TUNING) -> _Plan:
    n_rows, n_features = X.shape
    k_max = centers.shape[1]
    block_m, block_k, block_d = _tile_sizes(n_features, k_max)
    block_m = tuning.block_m or block_m
    n_row_tiles = max(1, triton.cdiv(n_rows, block_m))
    if X.device.type == "cuda":
        # a few programs per SM keep every SM busy; each walks many tiles
        n_sms = torch.cuda.get_device_properties(X.device).multi_processor_count
        n_programs = min(n_row_tiles, tuning.programs_per_sm * n_sms)
    else:  # Triton's interpreter (tests): few programs, so that each walks several tiles
        n_programs = max(1, min(n_row_tiles // 2, 2))
    return _Plan(block_m, block_k, block_d, n_row_tiles, n_programs,
                 per_program_totals=n_features <= block_d and k_max <= block_k)


def _totals(plan, n_groups, k_max, n_features, device):
    """(sums, weight sums) for the kernel to write: per-program slots (every slot a
    program owns is written, so none is zeroed first), or zeros it adds into."""
    if plan.per_program_totals:
        shape = (plan.n_programs, n_groups, k_max)
        return (torch.empty(*shape, n_features, dtype=torch.float32, device=device),
                torch.empty(shape, dtype=torch.float32, device=device))
    return (torch.zeros(n_groups, k_max, n_features, dtype=torch.float32, device=device),
            torch.zeros(n_groups, k_max, dtype=torch.float32, device=device))


def _added_up(plan, totals):
    """Float64 totals per group from what the kernel wrote, in a fixed order."""
    return totals.sum(dim=0, dtype=torch.float64) if plan.per_program_totals else totals.double()


def _reads_rows_twice(x_dtype, distance_precision, sum_precision, one_tile, with_inertia, tuning=DEFAULT_TUNING):
    """Whether the sums read the row tile with a load of their own.

    Triton's software pipeliner (cp.async copies of the next tiles into shared memory while
    this one computes) skips a load that feeds two tensor-core products wanting different
    shared layouts: float32 rows are the distances' left operand (features contiguous)
    and the sums' right one (rows contiguous), and TF32 products cannot transpose in
    shared memory. Unpipelined, every tile waited out a whole memory round trip (SASS:
    no LDGSTS in the row loop; Triton 3.6 and 3.9 alike). With a second load, each is
    pipelined, the second served from L2. bfloat16 rows are pipelined as they are, and
    float32 products on the CUDA cores ("ieee") need no shared layout.

    Not with the inertia (a fit's last pass): there the two loads are slower than one at
    100M rows (benchmarks/gpu_kernel_variants.py); why is an open question (docs/design.md).
    """
    if tuning.reload_for_sums is not None:
        return bool(tuning.reload_for_sums) and one_tile
    return (one_tile and not with_inertia and x_dtype == torch.float32
            and distance_precision != "ieee" and sum_precision not in ("ieee", "one_hot_bf16"))


def _compile_settings(plan, x_dtype, device_type, n_features, k_max, *, weighted, accumulate, write_distances,
                      lloyd, with_inertia, tuning: Tuning = DEFAULT_TUNING):
    """The kernel's compile-time constants and launch options for one launch: what
    decides the code Triton generates (benchmarks/kernel_sass.py compiles from them)."""
    distance_precision, sum_precision = _PRECISION_BY_DTYPE[x_dtype]
    distance_precision = tuning.distance_precision or distance_precision
    sum_precision = tuning.sum_precision or sum_precision
    if "split_bf16" in (distance_precision, sum_precision) and x_dtype != torch.bfloat16:
        raise ValueError(f"the split_bf16 precision needs bfloat16 rows, not {x_dtype}")
    if device_type != "cuda":
        # Triton's interpreter (the tests without a GPU) computes bfloat16 products wrongly
        # (seen with triton 3.9): there the float32 arithmetic stands in, with the same result.
        distance_precision = "ieee" if distance_precision == "split_bf16" else distance_precision
        sum_precision = {"split_bf16": "ieee", "one_hot_bf16": "split_tf32"}.get(sum_precision, sum_precision)
    one_tile = n_features <= plan.block_d and k_max <= plan.block_k
    constants = dict(
        BLOCK_M=plan.block_m, BLOCK_K=plan.block_k, BLOCK_D=plan.block_d,
        ONE_FEATURE_TILE=n_features <= plan.block_d, ONE_CENTER_TILE=k_max <= plan.block_k,
        SUMS_IN_REGISTERS=one_tile,
        WEIGHTED=weighted, ACCUMULATE=accumulate, WRITE_DISTANCES=write_distances,
        LLOYD=lloyd, WITH_INERTIA=with_inertia,
        DISTANCE_PRECISION=distance_precision, SUM_PRECISION=sum_precision,
        HOIST_CENTERS=tuning.hoist_centers and one_tile,
        # where the one-hot must hold only 0 and 1, the weights go into the rows
        WEIGHT_ROWS=weighted and sum_precision in _ONE_HOT_SUM_PRECISIONS,
        SLOT_COUNTS=tuning.slot_counts and not weighted and k_max <= plan.block_k,
        RELOAD_FOR_SUMS=_reads_rows_twice(x_dtype, distance_precision, sum_precision, one_tile, with_inertia, tuning),
    )
    launch_options = {name: getattr(tuning, name) for name in ("num_warps", "num_stages")
                      if getattr(tuning, name) is not None}
    maxnreg = tuning.maxnreg
    if maxnreg is None:  # the measured rule (see _CAPPED_REGISTERS)
        maxnreg = _CAPPED_REGISTERS if one_tile and plan.block_k <= 16 else 0
    if maxnreg and device_type == "cuda":
        launch_options["maxnreg"] = maxnreg
    return constants, launch_options


def _launch(plan, X, centers, center_sq_norms, weights, labels, label_columns, min_sq, sums,
            weight_sums, changed, inertia, *, accumulate, write_distances, lloyd, with_inertia, tuning):
    n_rows, n_features = X.shape
    n_groups, k_max, _ = centers.shape
    device = X.device
    if n_rows == 0:
        return
    constants, launch_options = _compile_settings(
        plan, X.dtype, device.type, n_features, k_max, weighted=weights is not None, accumulate=accumulate,
        write_distances=write_distances, lloyd=lloyd, with_inertia=with_inertia, tuning=tuning)
    # stand-ins for the outputs this launch does not write: its flags keep the kernel from
    # touching them, so they are left uninitialised (a zero-filled one would cost a launch)
    dummy_float = torch.empty(1, dtype=torch.float32, device=device)
    grid = (n_groups, plan.n_programs)
    _assign_kernel[grid](
        X, weights if weights is not None else dummy_float,
        centers, center_sq_norms,
        labels, label_columns if label_columns is not None else torch.empty(1, dtype=torch.int64, device=device),
        min_sq if min_sq is not None else dummy_float,
        sums if sums is not None else dummy_float,
        weight_sums if weight_sums is not None else dummy_float,
        changed if changed is not None else torch.empty(1, dtype=torch.int32, device=device),
        inertia if inertia is not None else torch.empty(1, dtype=torch.float64, device=device),
        n_rows, n_features, k_max, labels.shape[1], X.stride(0), plan.n_row_tiles,
        **constants, **launch_options,
    )


def _prepare(X, centers, center_sq_norms, weights):
    if X.stride(1) != 1:
        X = X.contiguous()
    centers = centers.detach().to(torch.float32).contiguous()
    center_sq_norms = center_sq_norms.detach().to(torch.float32).contiguous()
    if weights is not None:
        weights = weights.detach().to(torch.float32).contiguous()
    return X.detach(), centers, center_sq_norms, weights


def assign_accumulate_triton(
    X: torch.Tensor,
    centers: torch.Tensor,
    center_sq_norms: torch.Tensor,
    weights: Optional[torch.Tensor] = None,
    *,
    accumulate: bool = True,
    tuning: Tuning = DEFAULT_TUNING,
) -> AssignResult:
    """Triton implementation of :func:`~gpukmeans.kernels.assign_accumulate`.

    As the reference, except that for float16/bfloat16 ``X`` the distances, sums and
    weight sums are float32 (the precision they were computed in).
    """
    X, centers, center_sq_norms, weights = _prepare(X, centers, center_sq_norms, weights)
    n_rows, n_features = X.shape
    n_groups, k_max, _ = centers.shape
    out_dtype = X.dtype if X.dtype == torch.float32 else torch.float32
    labels = torch.empty((n_rows, n_groups), dtype=torch.int64, device=X.device)
    min_sq = torch.empty((n_rows, n_groups), dtype=torch.float32, device=X.device)
    plan = _plan(X, centers, tuning)
    sums = weight_sums = None
    if accumulate:
        sums, weight_sums = _totals(plan, n_groups, k_max, n_features, X.device)
        if n_rows == 0:  # no program runs, so no slot is written
            sums, weight_sums = sums.zero_(), weight_sums.zero_()
    _launch(plan, X, centers, center_sq_norms, weights, labels, None, min_sq, sums, weight_sums, None, None,
            accumulate=accumulate, write_distances=True, lloyd=False, with_inertia=False, tuning=tuning)
    if not accumulate:
        return AssignResult(labels, min_sq.to(out_dtype), None, None)
    return AssignResult(labels, min_sq.to(out_dtype), _added_up(plan, sums).to(out_dtype),
                        _added_up(plan, weight_sums).to(out_dtype))


def lloyd_step_triton(
    X: torch.Tensor,
    centers: torch.Tensor,
    center_sq_norms: torch.Tensor,
    weights: Optional[torch.Tensor],
    labels: torch.Tensor,
    label_columns: torch.Tensor,
    *,
    compute_inertia: bool = True,
    tuning: Tuning = DEFAULT_TUNING,
) -> StepResult:
    """Triton implementation of :func:`~gpukmeans.kernels.lloyd_step`: labels updated in
    place, label changes counted and the inertia summed inside the kernel."""
    if labels.stride(1) != 1 or labels.stride(0) != labels.shape[1]:
        raise ValueError("lloyd_step_triton needs a C-contiguous labels block (rows of the label table).")
    X, centers, center_sq_norms, weights = _prepare(X, centers, center_sq_norms, weights)
    n_groups, k_max, n_features = centers.shape
    device = X.device
    plan = _plan(X, centers, tuning)
    sums, weight_sums = _totals(plan, n_groups, k_max, n_features, device)
    changed = torch.zeros(n_groups, dtype=torch.int32, device=device)
    inertia = (torch.empty(plan.n_programs, n_groups, dtype=torch.float64, device=device)
               if compute_inertia else None)
    if X.shape[0] == 0:  # no program runs, so no slot is written
        sums.zero_(), weight_sums.zero_()
        inertia = None if inertia is None else inertia.zero_()
    _launch(plan, X, centers, center_sq_norms, weights, labels, label_columns.to(device=device, dtype=torch.int64),
            None, sums, weight_sums, changed, inertia, accumulate=True, write_distances=False,
            lloyd=True, with_inertia=compute_inertia, tuning=tuning)
    return StepResult(_added_up(plan, sums), _added_up(plan, weight_sums), changed.to(torch.int64),
                      None if inertia is None else inertia.sum(dim=0))


def supports(X: torch.Tensor) -> bool:
    """Whether the Triton path handles this chunk: float32/float16/bfloat16 rows on CUDA."""
    return X.device.type == "cuda" and X.dtype in _SUPPORTED_DTYPES and X.dim() == 2


# tl.dot's input_precision and the maxnreg launch option came with Triton 3.0 (PyTorch 2.4);
# the kernel is tested with Triton 3.6 on Hopper GPUs and 3.9 under the interpreter.
_MIN_TRITON = (3, 0)


def _version(text: str) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def available() -> bool:
    """Triton compiles for CUDA devices only; the reference serves everything else, and
    CUDA with a Triton too old for this kernel (with a warning: it is several times slower)."""
    if not torch.cuda.is_available():
        return False
    if _version(triton.__version__) < _MIN_TRITON:
        warnings.warn(f"gpukmeans: Triton {triton.__version__} is older than "
                      f"{'.'.join(map(str, _MIN_TRITON))}, which the CUDA kernel needs (PyTorch >= 2.4 "
                      "ships it); using the plain-PyTorch reference, which is several times slower.",
                      RuntimeWarning, stacklevel=2)
        return False
    return True
