"""CPU fast path of the fused assign-and-accumulate step: numba plus one SIMD micro-kernel.

Same contract as :func:`gpukmeans.kernels.reference.assign_accumulate_reference`.
Rows are split into as many parts as there are threads (times a few, for balance);
each part keeps its own float64 partial sums, merged at the end, so no two threads
ever write the same memory and the result does not depend on scheduling.

Why a hand-written micro-kernel (LLVM IR through a numba intrinsic): numba's
auto-vectoriser only vectorises innermost loops and has its SLP vectoriser switched
off, so any plain-Python formulation of the distance loop either keeps its
accumulators in memory (one store per multiply-add, about a third of peak) or falls
back to scalar code. Here the accumulators are LLVM vector values that stay in
registers for the whole pass over the features, which reaches the core's FMA
throughput (as MKL's GEMM does) without ever writing the rows x k distance tile.

Layout, prepared by :func:`_pack_centers`:

- centres are split into blocks of ``L`` lanes (16 or 8 for float32, 8 or 4 for
  float64) and stored as ``centers_t[g, block, feature, lane] = -2 * c``, so that
  one vector load serves ``L`` centres for one feature;
- ``norms[g, block, lane]`` holds ``||c||^2``, ``+inf`` on padding lanes.

For :data:`ROWS` rows at a time the kernel keeps one accumulator per row, runs over
the features with fused multiply-adds against broadcast row values, keeps a running
per-lane minimum and its centre index, and reduces across lanes at the end (the
lowest index wins exact ties, as with ``torch.argmin``). It then writes the label
and the squared distance. Every :data:`_ACCUMULATE_ROWS` rows, a second loop over
those rows (still in cache) adds each weighted row to its part's sums, under the
labels just written.

That layout has centres in the vectors' lanes. For few features a second one is
faster, rows in lanes (see the section of that name below): a tile of as many rows
as a vector holds is transposed, and the running minimum is lane by lane.
:func:`layout_for` picks one; both give the same bits.

Everything lives in this one file on purpose: numba's on-disk cache is keyed on the
source file of the jitted function, so a micro-kernel kept in another module could
change without invalidating a stale cached binary.
"""

import concurrent.futures
import itertools
import math
import threading
from typing import NamedTuple, Optional

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .reference import AssignResult, StepResult

ROWS = 8  # rows per micro-tile: 8 independent FMA chains hide the FMA latency
VECTOR_BYTES = 64  # vectors of the row-wise helpers; LLVM splits them on narrower CPUs
# Centres per vector the compiled kernel handles, by dtype: every host width from
# SSE/NEON (16 bytes) to AVX-512 (64 bytes), full and half vectors. The kernel picks
# the path from the packed array's shape, so one compiled (and cached) binary serves
# whichever width the packing chose.
_LANE_CHOICES = {4: (16, 8, 4), 8: (8, 4, 2)}

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _splat(builder, value, vector_type):
    undef = ir.Constant(vector_type, ir.Undefined)
    first = builder.insert_element(undef, value, _I32(0))
    zeros = ir.Constant(ir.VectorType(_I32, vector_type.count), [0] * vector_type.count)
    return builder.shuffle_vector(first, undef, zeros)


def _suffix(element_type, lanes):
    return f"v{lanes}{'f32' if element_type == ir.FloatType() else 'f64'}"


def _declare(builder, name, return_type, argument_types):
    function_type = ir.FunctionType(return_type, argument_types)
    return cgutils.get_or_insert_function(builder.module, function_type, name)


def _vector_load(builder, pointer, vector_type, align):
    return builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=align)


def _vector_store(builder, value, pointer, align):
    builder.store(value, builder.bitcast(pointer, value.type.as_pointer()), align=align)


def _emit_block_distances(builder, fma, vector, element_bytes, row_pointers, n_features, centers,
                          norms, block, accumulators):
    """``accumulators[r] = ||c||^2 - 2 x_r . c`` for the ``L`` centres of one block (``L``
    lanes of ``vector``): the norms, then one FMA per feature against the broadcast row value."""
    lanes = vector.count
    block_norms = _vector_load(
        builder, builder.gep(norms, [builder.mul(block, _I64(lanes))]), vector, element_bytes)
    for accumulator in accumulators:
        builder.store(block_norms, accumulator)
    block_start = builder.mul(builder.mul(block, n_features), _I64(lanes))
    with cgutils.for_range(builder, n_features) as feature_loop:
        feature = feature_loop.index
        column = _vector_load(
            builder,
            builder.gep(centers, [builder.add(block_start, builder.mul(feature, _I64(lanes)))]),
            vector, element_bytes)
        for pointer, accumulator in zip(row_pointers, accumulators):
            value = builder.load(builder.gep(pointer, [feature]))
            builder.store(builder.call(fma, [_splat(builder, value, vector), column,
                                             builder.load(accumulator)]), accumulator)


def _emit_nearest(builder, element_type, lanes, row_pointers, n_features, centers,
                  norms, n_blocks, best_values, best_index):
    """Emit the distance/argmin loop for one lane width; results go to two allocas."""
    vector = ir.VectorType(element_type, lanes)
    index_vector = ir.VectorType(_I32, lanes)
    suffix = _suffix(element_type, lanes)
    fma = _declare(builder, f"llvm.fma.{suffix}", vector, [vector] * 3)
    element_bytes = 4 if element_type == ir.FloatType() else 8

    accumulators = [cgutils.alloca_once(builder, vector) for _ in range(ROWS)]
    running_min = [cgutils.alloca_once(builder, vector) for _ in range(ROWS)]
    running_index = [cgutils.alloca_once(builder, index_vector) for _ in range(ROWS)]
    for row in range(ROWS):
        builder.store(ir.Constant(vector, [float("inf")] * lanes), running_min[row])
        builder.store(ir.Constant(index_vector, [0] * lanes), running_index[row])
    lane_ids = ir.Constant(index_vector, list(range(lanes)))

    with cgutils.for_range(builder, n_blocks) as block_loop:
        block = block_loop.index
        _emit_block_distances(builder, fma, vector, element_bytes, row_pointers, n_features, centers,
                              norms, block, accumulators)
        centre_ids = builder.add(
            _splat(builder, builder.trunc(builder.mul(block, _I64(lanes)), _I32), index_vector),
            lane_ids)
        for row in range(ROWS):
            candidate = builder.load(accumulators[row])
            current = builder.load(running_min[row])
            # strict '<': a later block never displaces an equal earlier one (lowest index wins)
            better = builder.fcmp_ordered("<", candidate, current)
            builder.store(builder.select(better, candidate, current), running_min[row])
            builder.store(
                builder.select(better, centre_ids, builder.load(running_index[row])),
                running_index[row])

    minima = [builder.load(running_min[row]) for row in range(ROWS)]
    indices = [builder.load(running_index[row]) for row in range(ROWS)]
    best, best_ids = _emit_rows_argmin(builder, minima, indices)
    # lane by lane: the row loop reads them back one at a time (one vector store read
    # back lane by lane measured slower: loads wait on a wider store)
    for row in range(ROWS):
        builder.store(builder.extract_element(best, _I32(row)), builder.gep(best_values, [_I64(row)]))
        builder.store(builder.extract_element(best_ids, _I32(row)), builder.gep(best_index, [_I64(row)]))


def _emit_rows_argmin(builder, minima, indices):
    """Each row's smallest value and its centre index, for all rows at once.

    ``minima[r]`` and ``indices[r]`` are row r's per-lane running minimum and centre.
    Rather than a horizontal reduction per row, pairs of vectors are merged by an
    even/odd lane shuffle and a lane-wise choice: each step halves the lanes a row
    holds and doubles the rows a vector holds, until one vector holds one lane per
    row (about half the instructions of per-row reductions). The choice takes the
    smaller value and, on a tie, the lower index, so the lowest index wins exact
    ties as with ``torch.argmin``. A row whose values are all +inf or NaN never
    updated its running minimum: it keeps +inf and centre 0.
    """
    values, ids = list(minima), list(indices)
    lanes_per_row = values[0].type.count
    while lanes_per_row > 1 or len(values) > 1:
        width = values[0].type.count
        if len(values) == 1:
            # one vector left whose rows still hold 2+ lanes: merge it with itself
            pairs = [(values[0], values[0], ids[0], ids[0])]
            even, odd = list(range(0, width, 2)), list(range(1, width, 2))
        else:
            pairs = [(values[j], values[j + 1], ids[j], ids[j + 1]) for j in range(0, len(values), 2)]
            even, odd = list(range(0, 2 * width, 2)), list(range(1, 2 * width, 2))
        merged_values, merged_ids = [], []
        for first, second, first_ids, second_ids in pairs:
            if lanes_per_row == 1:  # rows are single lanes: just concatenate
                order = _shuffle_mask(range(2 * width))
                merged_values.append(builder.shuffle_vector(first, second, order))
                merged_ids.append(builder.shuffle_vector(first_ids, second_ids, order))
                continue
            low = builder.shuffle_vector(first, second, _shuffle_mask(even))
            high = builder.shuffle_vector(first, second, _shuffle_mask(odd))
            low_ids = builder.shuffle_vector(first_ids, second_ids, _shuffle_mask(even))
            high_ids = builder.shuffle_vector(first_ids, second_ids, _shuffle_mask(odd))
            take_high = builder.or_(
                builder.fcmp_ordered("<", high, low),
                builder.and_(builder.fcmp_ordered("==", high, low), builder.icmp_signed("<", high_ids, low_ids)))
            merged_values.append(builder.select(take_high, high, low))
            merged_ids.append(builder.select(take_high, high_ids, low_ids))
        values, ids = merged_values, merged_ids
        lanes_per_row = max(1, lanes_per_row // 2)
    return values[0], ids[0]


def _shuffle_mask(positions):
    positions = list(positions)
    return ir.Constant(ir.VectorType(_I32, len(positions)), positions)


def _emit_row_sq_norm(builder, element_type, row, n_features):
    """||row||^2 with vector FMAs over full vectors and a scalar tail."""
    lanes = VECTOR_BYTES // (4 if element_type == ir.FloatType() else 8)
    vector = ir.VectorType(element_type, lanes)
    suffix = _suffix(element_type, lanes)
    fma = _declare(builder, f"llvm.fma.{suffix}", vector, [vector] * 3)
    reduce_add = _declare(builder, f"llvm.vector.reduce.fadd.{suffix}", element_type,
                          [element_type, vector])
    vector_sum = cgutils.alloca_once(builder, vector)
    builder.store(ir.Constant(vector, [0.0] * lanes), vector_sum)
    full = builder.mul(builder.sdiv(n_features, _I64(lanes)), _I64(lanes))
    with cgutils.for_range_slice(builder, _I64(0), full, _I64(lanes)) as (feature, _):
        x = _vector_load(builder, builder.gep(row, [feature]), vector, 1)
        builder.store(builder.call(fma, [x, x, builder.load(vector_sum)]), vector_sum)
    total = cgutils.alloca_once(builder, element_type)
    # reassoc: a tree instead of the strictly ordered (lane by lane) reduction
    builder.store(builder.call(reduce_add, [ir.Constant(element_type, 0.0), builder.load(vector_sum)],
                               fastmath=("reassoc",)), total)
    with cgutils.for_range(builder, n_features, start=full) as tail:
        x = builder.load(builder.gep(row, [tail.index]))
        builder.store(builder.fadd(builder.load(total), builder.fmul(x, x)), total)
    return builder.load(total)


def _for_the_lane_width(builder, element_type, lanes_here, name, emit):
    """Emit ``emit(lanes)`` for every width the packing may choose (``_LANE_CHOICES``) and
    run the one equal to ``lanes_here``: one compiled binary serves every host width.
    Any other width is refused before the kernel runs."""
    done = builder.append_basic_block(f"{name}.done")
    for lanes in _LANE_CHOICES[4 if element_type == ir.FloatType() else 8]:
        with builder.if_then(builder.icmp_signed("==", lanes_here, _I64(lanes))):
            emit(lanes)
            builder.branch(done)
    builder.branch(done)
    builder.position_at_end(done)


def _clamped_row_pointers(builder, data, first_row, rows_here, n_features, count):
    """Pointers to ``count`` rows from ``first_row``; those past ``rows_here`` repeat the
    last real row (their results are computed and dropped)."""
    pointers = []
    for row in range(count):
        clamped = builder.select(builder.icmp_signed("<", _I64(row), rows_here),
                                 _I64(row), builder.sub(rows_here, _I64(1)))
        pointers.append(builder.gep(data, [builder.mul(builder.add(first_row, clamped), n_features)]))
    return pointers


def _arguments(context, builder, sig, args, array_positions, int_positions):
    """An intrinsic's array arguments (position -> numba array struct) and its integer
    arguments as intp, in the order asked."""
    arrays = {position: context.make_array(sig.args[position])(context, builder, args[position])
              for position in array_positions}
    integers = [context.cast(builder, args[position], sig.args[position], types.intp)
                for position in int_positions]
    return arrays, integers


def _part_start(builder, array, part_id):
    """Pointer to part ``part_id`` of a per-part array (parts are padded apart, so
    the stride is read from the array: no two parts share a cache line)."""
    part_stride = cgutils.unpack_tuple(builder, array.strides)[0]
    raw = builder.bitcast(array.data, ir.IntType(8).as_pointer())
    return builder.bitcast(builder.gep(raw, [builder.mul(part_id, part_stride)]), array.data.type)


# bits of the ``flags`` argument of assign_tile
_FLAG_ACCUMULATE = 1  # add w * x and w to the part's sums
_FLAG_WEIGHTED = 2  # rows carry weights (else every weight is 1)
_FLAG_DISTANCES = 4  # write each row's squared distance
_FLAG_LLOYD = 8  # count label changes against the labels already there
_FLAG_INERTIA = 16  # sum w * distance per group
_FLAG_LOWER = 32  # potentials_tile: the first centre lowers closest in place, before the others see it


@intrinsic
def assign_tile(typingctx, X, weights, row0, n_rows, centers_t, norms, group, n_blocks,
                labels, label_columns, min_sq, changed, inertia, part, flags):
    """Assign rows ``row0 .. row0 + n_rows - 1`` (``n_rows <= ROWS``) for one group.

    Writes the label to ``labels[i, label_columns[group]]`` (any integer dtype). By
    ``flags`` (see the ``_FLAG_*`` constants) it also writes ``min_sq[i, group]``,
    counts a change of the label stored before in ``changed[part, group]``, and adds
    ``w_i * distance`` to ``inertia[part, group]``. The sums are left to
    :func:`accumulate_rows`. Arrays are C-contiguous (the caller guarantees it).
    """
    signature = types.void(X, weights, row0, n_rows, centers_t, norms, group, n_blocks,
                           labels, label_columns, min_sq, changed, inertia, part, flags)

    def codegen(context, builder, sig, args):
        array, (first_row, rows_here, group_id, blocks_here, part_id, flag_bits) = _arguments(
            context, builder, sig, args, (0, 1, 4, 5, 8, 9, 10, 11, 12), (2, 3, 6, 7, 13, 14))

        def has(flag):
            return builder.icmp_signed("!=", builder.and_(flag_bits, _I64(flag)), _I64(0))
        element_type = context.get_value_type(sig.args[0].dtype)
        label_type = context.get_value_type(sig.args[8].dtype)
        data = array[0].data
        _, n_features = cgutils.unpack_tuple(builder, array[0].shape, 2)
        n_groups, max_blocks, _, lanes_here = cgutils.unpack_tuple(builder, array[4].shape, 4)
        padded_k = builder.mul(max_blocks, lanes_here)

        row_pointers = _clamped_row_pointers(builder, data, first_row, rows_here, n_features, ROWS)

        group_centers = builder.gep(
            array[4].data, [builder.mul(builder.mul(group_id, padded_k), n_features)])
        group_norms = builder.gep(array[5].data, [builder.mul(group_id, padded_k)])
        best_values = cgutils.alloca_once(builder, element_type, size=ROWS)
        best_index = cgutils.alloca_once(builder, _I32, size=ROWS)
        _for_the_lane_width(builder, element_type, lanes_here, "nearest", lambda lanes: _emit_nearest(
            builder, element_type, lanes, row_pointers, n_features, group_centers, group_norms, blocks_here,
            best_values, best_index))

        _emit_tile_results(builder, has, element_type, label_type, array[0], array[1], array[8], array[9],
                           array[10], array[11], array[12], first_row, rows_here, group_id, part_id,
                           n_groups, best_values, best_index)
        return context.get_dummy_value()

    return signature, codegen


def _emit_tile_results(builder, has, element_type, label_type, X, weights, labels, label_columns, min_sq,
                       changed, inertia, first_row, rows_here, group_id, part_id, n_groups, best_values,
                       best_index):
    """Per row of a tile, from its nearest centre (``best_index``) and ``||c||^2 - 2 x.c``
    (``best_values``): write the label, and as ``has(flag)`` says count a change of the
    label stored before, write the squared distance and add ``w * distance`` to the inertia."""
    data = X.data
    double = ir.DoubleType()
    _, n_features = cgutils.unpack_tuple(builder, X.shape, 2)
    _, n_label_columns = cgutils.unpack_tuple(builder, labels.shape, 2)
    changed_slot = builder.gep(_part_start(builder, changed, part_id), [group_id])
    inertia_slot = builder.gep(_part_start(builder, inertia, part_id), [group_id])
    label_column = builder.load(builder.gep(label_columns.data, [group_id]))
    zero = ir.Constant(element_type, 0.0)
    weight = cgutils.alloca_once(builder, double)
    # The tile's change count and inertia live in registers and reach the part's
    # totals once per tile: a read-modify-write of memory per row would chain every
    # row to the store of the one before.
    tile_changed = cgutils.alloca_once_value(builder, _I64(0))
    tile_inertia = cgutils.alloca_once_value(builder, ir.Constant(double, 0.0))
    with cgutils.for_range(builder, rows_here) as row_loop:
        row = row_loop.index
        i = builder.add(first_row, row)
        row_pointer = builder.gep(data, [builder.mul(i, n_features)])
        label = builder.sext(builder.load(builder.gep(best_index, [row])), _I64)
        label_slot = builder.gep(labels.data, [builder.add(builder.mul(i, n_label_columns), label_column)])
        builder.store(ir.Constant(double, 1.0), weight)
        with builder.if_then(has(_FLAG_WEIGHTED)):
            w = builder.load(builder.gep(weights.data, [i]))
            builder.store(w if element_type == double else builder.fpext(w, double), weight)

        with builder.if_then(has(_FLAG_LLOYD)):
            previous = builder.sext(builder.load(label_slot), _I64)
            is_new = builder.zext(builder.icmp_signed("!=", previous, label), _I64)
            builder.store(builder.add(builder.load(tile_changed), is_new), tile_changed)
        # the distance needs ||x||^2, a second look at the row: only when asked for
        with builder.if_then(builder.or_(has(_FLAG_DISTANCES), has(_FLAG_INERTIA))):
            distance = builder.fadd(builder.load(builder.gep(best_values, [row])),
                                    _emit_row_sq_norm(builder, element_type, row_pointer, n_features))
            # ||x||^2 + ||c||^2 - 2 x.c can round below zero: distances are clamped at 0
            distance = builder.select(builder.fcmp_ordered(">", distance, zero), distance, zero)
            with builder.if_then(has(_FLAG_DISTANCES)):
                builder.store(distance, builder.gep(min_sq.data, [builder.add(builder.mul(i, n_groups), group_id)]))
            with builder.if_then(has(_FLAG_INERTIA)):
                wide_distance = distance if element_type == double else builder.fpext(distance, double)
                builder.store(builder.fadd(builder.load(tile_inertia),
                                           builder.fmul(wide_distance, builder.load(weight))), tile_inertia)
        builder.store(builder.trunc(label, label_type) if label_type.width < 64 else label, label_slot)
    with builder.if_then(has(_FLAG_LLOYD)):
        builder.store(builder.add(builder.load(changed_slot), builder.load(tile_changed)), changed_slot)
    with builder.if_then(has(_FLAG_INERTIA)):
        builder.store(builder.fadd(builder.load(inertia_slot), builder.load(tile_inertia)), inertia_slot)


# ---------------------------------------------------------------- rows in lanes
# The layout above puts centres in a vector's lanes. For few centres a row's work is
# then mostly overhead: its broadcasts serve one vector of centres, and each row needs
# a reduction across lanes to find its nearest. Here the lanes are rows instead: a
# tile of as many rows as a vector holds is transposed once, so that one vector load
# gives one feature of every row, and each centre costs one FMA per feature against
# its broadcast value. A running minimum over the centres is then lane by lane, with
# no reduction across lanes at all. Each (row, centre) distance is the same sequence
# of operations as in the layout above (||c||^2, then one FMA per feature in order),
# so both layouts give the same bits.

CENTRE_CHUNK = 8  # centres whose accumulators stay in registers during one pass over the features


def _transpose_vectors(builder, rows):
    """Transpose a square block: ``rows[r][f]`` in, ``columns[f][r]`` out, for ``L = len(rows)``
    vectors of ``L`` lanes. Each of ``log2(L)`` rounds interleaves the lower halves (and the
    upper halves) of vectors ``i`` and ``i + L/2`` into vectors ``2i`` and ``2i + 1``.

    (The textbook network for float32, in-lane unpacks before moves of 16-byte blocks,
    runs no faster.)
    """
    lanes = len(rows)
    half = lanes // 2
    low = _shuffle_mask(itertools.chain.from_iterable((j, lanes + j) for j in range(half)))
    high = _shuffle_mask(itertools.chain.from_iterable((half + j, lanes + half + j) for j in range(half)))
    vectors = list(rows)
    for _ in range(lanes.bit_length() - 1):
        interleaved = []
        for i in range(half):
            first, second = vectors[i], vectors[i + half]
            interleaved += [builder.shuffle_vector(first, second, low),
                            builder.shuffle_vector(first, second, high)]
        vectors = interleaved
    return vectors


def _emit_transpose(builder, element_type, lanes, data, first_row, rows_here, n_features, n_total, tile):
    """``tile[f * lanes + r] = X[first_row + r, f]``; rows past ``rows_here`` repeat the last."""
    vector = ir.VectorType(element_type, lanes)
    element_bytes = 4 if element_type == ir.FloatType() else 8
    row_pointers = _clamped_row_pointers(builder, data, first_row, rows_here, n_features, lanes)
    n_blocks = builder.sdiv(builder.add(n_features, _I64(lanes - 1)), _I64(lanes))
    # Whole-vector loads read up to a vector past a row's last feature: the next row's
    # values, transposed into tile rows nobody reads. Only the table's last rows would
    # read past its end; those take the element-by-element copy.
    last_read = builder.add(builder.mul(builder.add(first_row, builder.sub(rows_here, _I64(1))), n_features),
                            builder.mul(n_blocks, _I64(lanes)))
    in_table = builder.icmp_signed("<=", last_read, builder.mul(n_total, n_features))
    with builder.if_else(in_table) as (whole_vectors, element_by_element):
        with whole_vectors:
            with cgutils.for_range(builder, n_blocks) as block_loop:
                start = builder.mul(block_loop.index, _I64(lanes))
                rows = [_vector_load(builder, builder.gep(pointer, [start]), vector, element_bytes)
                        for pointer in row_pointers]
                for feature, column in enumerate(_transpose_vectors(builder, rows)):
                    offset = builder.mul(builder.add(start, _I64(feature)), _I64(lanes))
                    _vector_store(builder, column, builder.gep(tile, [offset]), element_bytes)
        with element_by_element:
            with cgutils.for_range(builder, n_features) as feature_loop:
                base = builder.mul(feature_loop.index, _I64(lanes))
                for row, pointer in enumerate(row_pointers):
                    builder.store(builder.load(builder.gep(pointer, [feature_loop.index])),
                                  builder.gep(tile, [builder.add(base, _I64(row))]))


@intrinsic
def transpose_tile(typingctx, X, row0, n_rows, tile):
    """Copy rows ``row0 .. row0 + n_rows - 1`` (``n_rows <= L``) of ``X`` into ``tile``
    (``(>= d, L)``, C-contiguous) as columns: ``tile[f, r] = X[row0 + r, f]``. ``L``, the
    lanes of a vector, is read from the tile's shape."""
    signature = types.void(X, row0, n_rows, tile)

    def codegen(context, builder, sig, args):
        array, (first_row, rows_here) = _arguments(context, builder, sig, args, (0, 3), (1, 2))
        element_type = context.get_value_type(sig.args[0].dtype)
        n_total, n_features = cgutils.unpack_tuple(builder, array[0].shape, 2)
        _, lanes_here = cgutils.unpack_tuple(builder, array[3].shape, 2)
        _for_the_lane_width(builder, element_type, lanes_here, "transpose", lambda lanes: _emit_transpose(
            builder, element_type, lanes, array[0].data, first_row, rows_here, n_features, n_total,
            array[3].data))
        return context.get_dummy_value()

    return signature, codegen


def _emit_nearest_in_row_lanes(builder, element_type, lanes, tile, n_features, centers, norms, n_chunks):
    """Each tile row's ``||c||^2 - 2 x.c`` and nearest centre, as two vectors of ``lanes``.

    ``centers[chunk, f, j] = -2 c`` and ``norms[chunk, j] = ||c||^2`` (``+inf`` on padding)
    in chunks of :data:`CENTRE_CHUNK`. Strict ``<`` over centres in increasing order: the
    lowest index wins exact ties, as in the centres-in-lanes layout.
    """
    vector = ir.VectorType(element_type, lanes)
    index_vector = ir.VectorType(_I32, lanes)
    fma = _declare(builder, f"llvm.fma.{_suffix(element_type, lanes)}", vector, [vector] * 3)
    element_bytes = 4 if element_type == ir.FloatType() else 8
    accumulators = [cgutils.alloca_once(builder, vector) for _ in range(CENTRE_CHUNK)]
    running_min = cgutils.alloca_once_value(builder, ir.Constant(vector, [float("inf")] * lanes))
    running_index = cgutils.alloca_once_value(builder, ir.Constant(index_vector, [0] * lanes))
    with cgutils.for_range(builder, n_chunks) as chunk_loop:
        first_centre = builder.mul(chunk_loop.index, _I64(CENTRE_CHUNK))
        for j, accumulator in enumerate(accumulators):
            norm = builder.load(builder.gep(norms, [builder.add(first_centre, _I64(j))]))
            builder.store(_splat(builder, norm, vector), accumulator)
        chunk_centers = builder.gep(centers, [builder.mul(first_centre, n_features)])
        with cgutils.for_range(builder, n_features) as feature_loop:
            feature = feature_loop.index
            x = _vector_load(builder, builder.gep(tile, [builder.mul(feature, _I64(lanes))]), vector, element_bytes)
            values = builder.gep(chunk_centers, [builder.mul(feature, _I64(CENTRE_CHUNK))])
            for j, accumulator in enumerate(accumulators):
                c = _splat(builder, builder.load(builder.gep(values, [_I64(j)])), vector)
                builder.store(builder.call(fma, [x, c, builder.load(accumulator)]), accumulator)
        for j, accumulator in enumerate(accumulators):
            candidate, current = builder.load(accumulator), builder.load(running_min)
            better = builder.fcmp_ordered("<", candidate, current)
            builder.store(builder.select(better, candidate, current), running_min)
            centre = _splat(builder, builder.trunc(builder.add(first_centre, _I64(j)), _I32), index_vector)
            builder.store(builder.select(better, centre, builder.load(running_index)), running_index)
    return builder.load(running_min), builder.load(running_index)


def _emit_tile_labels(builder, has, label_type, labels, label_columns, changed, first_row, group_id, part_id,
                      index):
    """Write a whole tile's labels (``index``, one lane per row) and, with ``_FLAG_LLOYD``,
    count those that differ from the labels stored before. A table with one column
    takes one vector load and store; others a load and store per row, unrolled."""
    lanes = index.type.count
    _, n_label_columns = cgutils.unpack_tuple(builder, labels.shape, 2)
    label_column = builder.load(builder.gep(label_columns.data, [group_id]))
    label_vector = ir.VectorType(label_type, lanes)
    if label_type.width > 32:
        new = builder.sext(index, label_vector)
    elif label_type.width < 32:
        new = builder.trunc(index, label_vector)
    else:
        new = index
    first_slot = builder.gep(labels.data, [builder.add(builder.mul(first_row, n_label_columns), label_column)])
    count = cgutils.alloca_once(builder, _I64)
    with builder.if_else(builder.icmp_signed("==", n_label_columns, _I64(1))) as (one_column, columns):
        with one_column:
            previous = _vector_load(builder, first_slot, label_vector, 1)
            differ = builder.zext(builder.icmp_signed("!=", previous, new), ir.VectorType(_I32, lanes))
            add = _declare(builder, f"llvm.vector.reduce.add.v{lanes}i32", _I32, [differ.type])
            builder.store(builder.zext(builder.call(add, [differ]), _I64), count)
            _vector_store(builder, new, first_slot, 1)
        with columns:
            total = _I64(0)
            for row in range(lanes):
                slot = builder.gep(first_slot, [builder.mul(_I64(row), n_label_columns)])
                label = builder.extract_element(new, _I32(row))
                total = builder.add(total, builder.zext(builder.icmp_signed("!=", builder.load(slot), label), _I64))
                builder.store(label, slot)
            builder.store(total, count)
    with builder.if_then(has(_FLAG_LLOYD)):
        changed_slot = builder.gep(_part_start(builder, changed, part_id), [group_id])
        builder.store(builder.add(builder.load(changed_slot), builder.load(count)), changed_slot)


@intrinsic
def assign_tile_in_row_lanes(typingctx, X, weights, row0, n_rows, tile, centers_t, norms, group, n_chunks,
                             labels, label_columns, min_sq, changed, inertia, part, flags):
    """:func:`assign_tile` for a tile that :func:`transpose_tile` laid out, rows in lanes:
    ``n_rows <= L`` rows, ``centers_t`` packed in chunks of :data:`CENTRE_CHUNK` centres
    (``(G, chunks, d, CENTRE_CHUNK)``), ``norms`` ``(G, chunks, CENTRE_CHUNK)``."""
    signature = types.void(X, weights, row0, n_rows, tile, centers_t, norms, group, n_chunks,
                           labels, label_columns, min_sq, changed, inertia, part, flags)

    def codegen(context, builder, sig, args):
        array, (first_row, rows_here, group_id, chunks_here, part_id, flag_bits) = _arguments(
            context, builder, sig, args, (0, 1, 4, 5, 6, 9, 10, 11, 12, 13), (2, 3, 7, 8, 14, 15))

        def has(flag):
            return builder.icmp_signed("!=", builder.and_(flag_bits, _I64(flag)), _I64(0))
        element_type = context.get_value_type(sig.args[0].dtype)
        label_type = context.get_value_type(sig.args[9].dtype)
        _, n_features = cgutils.unpack_tuple(builder, array[0].shape, 2)
        _, lanes_here = cgutils.unpack_tuple(builder, array[4].shape, 2)
        n_groups, max_chunks, _, _ = cgutils.unpack_tuple(builder, array[5].shape, 4)
        padded_k = builder.mul(max_chunks, _I64(CENTRE_CHUNK))
        group_centers = builder.gep(array[5].data, [builder.mul(builder.mul(group_id, padded_k), n_features)])
        group_norms = builder.gep(array[6].data, [builder.mul(group_id, padded_k)])
        widest = _LANE_CHOICES[4 if element_type == ir.FloatType() else 8][0]
        best_values = cgutils.alloca_once(builder, element_type, size=widest)
        best_index = cgutils.alloca_once(builder, _I32, size=widest)

        def assign(lanes):
            values, index = _emit_nearest_in_row_lanes(builder, element_type, lanes, array[4].data, n_features,
                                                       group_centers, group_norms, chunks_here)
            # The Lloyd pass's common case (a whole tile, only labels and change
            # counts asked for) stays in registers; the rest goes row by row.
            simple = builder.and_(builder.icmp_signed("==", rows_here, _I64(lanes)),
                                  builder.not_(builder.or_(has(_FLAG_DISTANCES), has(_FLAG_INERTIA))))
            with builder.if_else(simple) as (whole_tile, row_by_row):
                with whole_tile:
                    _emit_tile_labels(builder, has, label_type, array[9], array[10], array[12], first_row,
                                      group_id, part_id, index)
                with row_by_row:
                    _vector_store(builder, values, best_values, 1)
                    _vector_store(builder, index, best_index, 1)
                    _emit_tile_results(builder, has, element_type, label_type, array[0], array[1], array[9],
                                       array[10], array[11], array[12], array[13], first_row, rows_here,
                                       group_id, part_id, n_groups, best_values, best_index)
        _for_the_lane_width(builder, element_type, lanes_here, "nearest", assign)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def accumulate_rows(typingctx, X, weights, row0, n_rows, labels, label_columns, sums,
                    weight_sums, part, flags):
    """Add ``w_i * x_i`` and ``w_i`` to ``sums[part, group, label]`` and
    ``weight_sums[part, group, label]`` (float64) for rows ``row0 .. row0 + n_rows - 1``
    and every group, the labels read back from the table :func:`assign_tile` wrote.

    Why a separate pass over rows still in cache, rather than adding each row as soon
    as its tile is assigned: there the address of the sums depends on the argmin just
    computed, and the loads of the next rows' sums wait on it (a ten-group pass about 15%
    slower that way, one group alike: benchmarks/bench_lloyd.py). The unweighted case
    gets a loop of its own, without a multiply or a branch per row.
    """
    signature = types.void(X, weights, row0, n_rows, labels, label_columns, sums,
                           weight_sums, part, flags)

    def codegen(context, builder, sig, args):
        array, (first_row, rows_here, part_id, flag_bits) = _arguments(
            context, builder, sig, args, (0, 1, 4, 5, 6, 7), (2, 3, 8, 9))
        element_type = context.get_value_type(sig.args[0].dtype)
        double = ir.DoubleType()
        _, n_features = cgutils.unpack_tuple(builder, array[0].shape, 2)
        _, n_label_columns = cgutils.unpack_tuple(builder, array[4].shape, 2)
        _, n_groups, padded_k, _ = cgutils.unpack_tuple(builder, array[6].shape, 4)
        part_sums = _part_start(builder, array[6], part_id)
        part_weight_sums = _part_start(builder, array[7], part_id)
        has_weights = builder.icmp_signed(
            "!=", builder.and_(flag_bits, _I64(_FLAG_WEIGHTED)), _I64(0))
        lanes = VECTOR_BYTES // (4 if element_type == ir.FloatType() else 8)
        source_vector = ir.VectorType(element_type, lanes)
        target_vector = ir.VectorType(double, lanes)
        full = builder.mul(builder.sdiv(n_features, _I64(lanes)), _I64(lanes))

        def add_rows(weighted):
            with cgutils.for_range(builder, rows_here) as row_loop:
                i = builder.add(first_row, row_loop.index)
                row_pointer = builder.gep(array[0].data, [builder.mul(i, n_features)])
                label_row = builder.gep(array[4].data, [builder.mul(i, n_label_columns)])
                if weighted:
                    w = builder.load(builder.gep(array[1].data, [i]))
                    w = w if element_type == double else builder.fpext(w, double)
                else:
                    w = ir.Constant(double, 1.0)
                weights = _splat(builder, w, target_vector)
                with cgutils.for_range(builder, n_groups) as group_loop:
                    group = group_loop.index
                    column = builder.load(builder.gep(array[5].data, [group]))
                    label = builder.sext(builder.load(builder.gep(label_row, [column])), _I64)
                    slot = builder.add(builder.mul(group, padded_k), label)
                    destination = builder.gep(part_sums, [builder.mul(slot, n_features)])
                    with cgutils.for_range_slice(builder, _I64(0), full, _I64(lanes)) as (feature, _):
                        x = _vector_load(builder, builder.gep(row_pointer, [feature]), source_vector, 1)
                        if element_type != double:
                            x = builder.fpext(x, target_vector)
                        if weighted:
                            x = builder.fmul(x, weights)
                        target = builder.gep(destination, [feature])
                        old = _vector_load(builder, target, target_vector, 1)
                        _vector_store(builder, builder.fadd(old, x), target, 1)
                    with cgutils.for_range(builder, n_features, start=full) as tail:
                        x = builder.load(builder.gep(row_pointer, [tail.index]))
                        if element_type != double:
                            x = builder.fpext(x, double)
                        if weighted:
                            x = builder.fmul(x, w)
                        target = builder.gep(destination, [tail.index])
                        builder.store(builder.fadd(builder.load(target), x), target)
                    target = builder.gep(part_weight_sums, [slot])
                    builder.store(builder.fadd(builder.load(target), w), target)

        # one loop per case: a weight of 1.0 then costs no multiply and no branch per row
        with builder.if_else(has_weights) as (with_weights, without_weights):
            with with_weights:
                add_rows(True)
            with without_weights:
                add_rows(False)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def potentials_tile(typingctx, X, weights, row0, n_rows, centers_t, norms, closest, sums, part, flags):
    """Add ``w_i * min(closest_i, ||x_i - c_j||^2)`` for rows ``row0 .. row0 + n_rows - 1``
    (``n_rows <= ROWS``) to ``sums[part, j]`` (float64), for every centre ``j`` of the one
    packed group: k-means++'s potential of each candidate, without a distance per row
    and candidate ever reaching memory. Lanes past the last candidate add junk that the
    caller drops. The distances are the ones :func:`assign_tile` computes, bit for bit.
    With ``_FLAG_LOWER``, ``closest_i`` is first lowered in place to its distance to the
    first centre, and every centre's minimum is taken against the lowered value.
    """
    signature = types.void(X, weights, row0, n_rows, centers_t, norms, closest, sums, part, flags)

    def codegen(context, builder, sig, args):
        array, (first_row, rows_here, part_id, flag_bits) = _arguments(
            context, builder, sig, args, (0, 1, 4, 5, 6, 7), (2, 3, 8, 9))
        element_type = context.get_value_type(sig.args[0].dtype)
        double = ir.DoubleType()
        _, n_features = cgutils.unpack_tuple(builder, array[0].shape, 2)
        _, n_blocks, _, lanes_here = cgutils.unpack_tuple(builder, array[4].shape, 4)
        weighted = builder.icmp_signed("!=", builder.and_(flag_bits, _I64(_FLAG_WEIGHTED)), _I64(0))
        lower = builder.icmp_signed("!=", builder.and_(flag_bits, _I64(_FLAG_LOWER)), _I64(0))
        part_sums = _part_start(builder, array[7], part_id)

        # per row of the tile: (pointer, ||x||^2, closest's slot, weight: 0 past n_rows,
        # where the last row repeats and rewrites its own value)
        rows = []
        for row in range(ROWS):
            real = builder.icmp_signed("<", _I64(row), rows_here)
            i = builder.add(first_row, builder.select(real, _I64(row), builder.sub(rows_here, _I64(1))))
            pointer = builder.gep(array[0].data, [builder.mul(i, n_features)])
            weight = cgutils.alloca_once_value(builder, ir.Constant(double, 1.0))
            with builder.if_then(weighted):
                w = builder.load(builder.gep(array[1].data, [i]))
                builder.store(w if element_type == double else builder.fpext(w, double), weight)
            weight = builder.select(real, builder.load(weight), ir.Constant(double, 0.0))
            closest_slot = builder.gep(array[6].data, [i])
            rows.append((pointer, _emit_row_sq_norm(builder, element_type, pointer, n_features),
                         closest_slot, weight))

        _for_the_lane_width(builder, element_type, lanes_here, "potentials", lambda lanes: _emit_potentials(
            builder, element_type, lanes, rows, n_features, array[4].data, array[5].data, n_blocks, part_sums,
            lower))
        return context.get_dummy_value()

    return signature, codegen


def _emit_potentials(builder, element_type, lanes, rows, n_features, centers, norms, n_blocks, sums, lower):
    """The distance loop of :func:`_emit_nearest`, then per lane ``min(d, closest) * w``
    summed over the tile's rows in float64 and added to ``sums`` once per block; when
    ``lower``, lane 0 of the first block (the first centre) lowers each row's closest,
    in memory and for every lane, before the minima are taken."""
    vector = ir.VectorType(element_type, lanes)
    wide = ir.VectorType(ir.DoubleType(), lanes)
    fma = _declare(builder, f"llvm.fma.{_suffix(element_type, lanes)}", vector, [vector] * 3)
    element_bytes = 4 if element_type == ir.FloatType() else 8
    zero = ir.Constant(vector, [0.0] * lanes)
    accumulators = [cgutils.alloca_once(builder, vector) for _ in range(ROWS)]
    with cgutils.for_range(builder, n_blocks) as block_loop:
        block = block_loop.index
        _emit_block_distances(builder, fma, vector, element_bytes, [row[0] for row in rows], n_features,
                              centers, norms, block, accumulators)
        lowers_here = builder.and_(lower, builder.icmp_signed("==", block, _I64(0)))
        total = ir.Constant(wide, [0.0] * lanes)
        for row, (_, sq_norm, closest_slot, weight) in enumerate(rows):
            distance = builder.fadd(builder.load(accumulators[row]), _splat(builder, sq_norm, vector))
            # clamped at 0 as in assign_tile; padding lanes (+inf) keep closest
            distance = builder.select(builder.fcmp_ordered(">", distance, zero), distance, zero)
            # read here, not once per tile: the first block may have lowered it (and a
            # repeated last row of a ragged tile reads what its original wrote)
            closest = builder.load(closest_slot)
            first = builder.extract_element(distance, _I32(0))
            lowered = builder.select(builder.fcmp_ordered("<", first, closest), first, closest)
            closest = builder.select(lowers_here, lowered, closest)
            with builder.if_then(lowers_here):
                builder.store(closest, closest_slot)
            bound = _splat(builder, closest, vector)
            nearest = builder.select(builder.fcmp_ordered("<", distance, bound), distance, bound)
            if element_type != ir.DoubleType():
                nearest = builder.fpext(nearest, wide)
            total = builder.fadd(total, builder.fmul(nearest, _splat(builder, weight, wide)))
        target = builder.gep(sums, [builder.mul(block, _I64(lanes))])
        _vector_store(builder, builder.fadd(_vector_load(builder, target, wide, 8), total), target, 8)


# Rows assigned before they are added to the sums: a multiple of ROWS, few enough
# that they are still in L1/L2 when added (16 to 256 alike within noise, 32 a little
# ahead with many centres)
_ACCUMULATE_ROWS = 32
_MIN_ROWS_PER_PART = 4096  # below this, waking another thread costs more than it saves
_PARTS_PER_THREAD = 4
_MAX_PARTIAL_BYTES = 64 * 2**20  # cap on the per-part float64 sums
_CACHE_LINE = 64


@numba.njit(cache=True, nogil=True)
def _assign_rows(X, weights, centers_t, norms, n_blocks, labels, label_columns, min_sq, sums,
                 weight_sums, changed, inertia, part, first_row, stop_row, flags):
    n_groups = norms.shape[0]
    for block_start in range(first_row, stop_row, _ACCUMULATE_ROWS):
        block_stop = min(stop_row, block_start + _ACCUMULATE_ROWS)
        for row0 in range(block_start, block_stop, ROWS):
            rows_here = min(ROWS, block_stop - row0)
            # every group sees the tile while its rows are still in L1
            for group in range(n_groups):
                assign_tile(X, weights, row0, rows_here, centers_t, norms, group, n_blocks[group],
                            labels, label_columns, min_sq, changed, inertia, part, flags)
        if flags & _FLAG_ACCUMULATE:
            accumulate_rows(X, weights, block_start, block_stop - block_start, labels,
                            label_columns, sums, weight_sums, part, flags)


@numba.njit(cache=True, nogil=True)
def _assign_rows_in_row_lanes(X, weights, centers_t, norms, n_chunks, labels, label_columns, min_sq, sums,
                              weight_sums, changed, inertia, part, first_row, stop_row, flags, lanes):
    n_groups = norms.shape[0]
    tile = np.empty(((X.shape[1] + lanes - 1) // lanes * lanes, lanes), dtype=X.dtype)
    for block_start in range(first_row, stop_row, _ACCUMULATE_ROWS):
        block_stop = min(stop_row, block_start + _ACCUMULATE_ROWS)
        for row0 in range(block_start, block_stop, lanes):
            rows_here = min(lanes, block_stop - row0)
            transpose_tile(X, row0, rows_here, tile)
            # every group reads the same transposed tile
            for group in range(n_groups):
                assign_tile_in_row_lanes(X, weights, row0, rows_here, tile, centers_t, norms, group,
                                         n_chunks[group], labels, label_columns, min_sq, changed, inertia,
                                         part, flags)
        if flags & _FLAG_ACCUMULATE:
            accumulate_rows(X, weights, block_start, block_stop - block_start, labels,
                            label_columns, sums, weight_sums, part, flags)


@numba.njit(cache=True, nogil=True)
def _potential_rows(X, weights, centers_t, norms, closest, sums, part, first_row, stop_row, flags):
    for row0 in range(first_row, stop_row, ROWS):
        potentials_tile(X, weights, row0, min(ROWS, stop_row - row0), centers_t, norms, closest,
                        sums, part, flags)


@numba.njit(cache=True, nogil=True)
def _potential_blocks(X, weights, centers_t, norms, closest, sums, first_block, stop_block, block_rows,
                      block_offset, flags):
    # block b's totals go to part b; its tiles start at its first row, so a block's
    # total is the same whichever call and thread it falls to
    for block in range(first_block, stop_block):
        first_row = max(0, block * block_rows - block_offset)
        stop_row = min(X.shape[0], (block + 1) * block_rows - block_offset)
        _potential_rows(X, weights, centers_t, norms, closest, sums, block, first_row, stop_row, flags)


@numba.njit(cache=True, nogil=True)
def _exact_sq_distance_rows(X, centers, labels, out, first_row, stop_row):
    # as the PyTorch form: each difference and its square in X's dtype, summed in float64
    n_groups, n_features = centers.shape[0], X.shape[1]
    for i in range(first_row, stop_row):
        for group in range(n_groups):
            centre = labels[i, group]
            total = 0.0
            for feature in range(n_features):
                difference = X[i, feature] - centers[group, centre, feature]
                total += difference * difference
            out[i, group] = total


# Rows whose sums a moments pass keeps before folding them into the part's moments: few
# enough that the sums of squares about a row of the block lose no digit that matters.
_MOMENT_BLOCK_ROWS = 256


@numba.njit(cache=True, nogil=True)
def _label_sum_rows(X, labels, weights, weighted, sums, totals, first_row, stop_row):
    for i in range(first_row, stop_row):
        label = labels[i]
        weight = weights[i] if weighted else 1.0
        totals[label] += weight
        for feature in range(X.shape[1]):
            sums[label, feature] += weight * np.float64(X[i, feature])


@numba.njit(cache=True, nogil=True)
def _moment_rows(X, counts, mean, sum_sq_dev, minimum, maximum, part, first_row, stop_row, scale):
    # Per block of rows: sums and sums of squares about the block's first row (two
    # multiply-adds per value, in float64, in local arrays so that the loop over the
    # features vectorises), then Chan et al.'s merge into the part's moments.
    n_features = X.shape[1]
    shift = np.empty(n_features)
    first = np.zeros(n_features)
    second = np.zeros(n_features)
    low = np.empty(n_features)
    high = np.empty(n_features)
    part_mean = np.zeros(n_features)
    part_sq = np.zeros(n_features)
    part_low = np.full(n_features, np.inf)
    part_high = np.full(n_features, -np.inf)
    part_count = 0.0
    for block in range(first_row, stop_row, _MOMENT_BLOCK_ROWS):
        stop = min(block + _MOMENT_BLOCK_ROWS, stop_row)
        for feature in range(n_features):
            value = np.float64(X[block, feature]) * scale
            shift[feature] = value
            first[feature] = 0.0
            second[feature] = 0.0
            low[feature] = value
            high[feature] = value
        for i in range(block, stop):
            for feature in range(n_features):
                value = np.float64(X[i, feature]) * scale
                difference = value - shift[feature]
                first[feature] += difference
                second[feature] += difference * difference
                low[feature] = min(low[feature], value)
                high[feature] = max(high[feature], value)
        count = np.float64(stop - block)
        total = part_count + count
        for feature in range(n_features):
            block_mean = shift[feature] + first[feature] / count
            block_sq = second[feature] - first[feature] * first[feature] / count
            delta = block_mean - part_mean[feature]
            part_mean[feature] += delta * (count / total)
            part_sq[feature] += block_sq + delta * delta * (part_count * count / total)
            part_low[feature] = min(part_low[feature], low[feature])
            part_high[feature] = max(part_high[feature], high[feature])
        part_count = total
    counts[part] = part_count
    for feature in range(n_features):
        mean[part, feature] = part_mean[feature]
        sum_sq_dev[part, feature] = part_sq[feature]
        minimum[part, feature] = part_low[feature]
        maximum[part, feature] = part_high[feature]


_pool = None
_pool_size = 0
_pool_lock = threading.Lock()


def _executor(n_threads):
    """A process-wide pool of worker threads, grown on demand.

    Plain threads rather than ``numba.prange``: numba's OpenMP layer is a second
    OpenMP runtime beside PyTorch's, and the two spin-wait against each other on a
    busy machine (Lloyd iterations tens of times slower); its workqueue layer fails on
    concurrent calls from several threads.
    The kernel releases the GIL (``nogil``), so the threads run in parallel.
    """
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < n_threads:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=n_threads, thread_name_prefix="gpukmeans-cpu")
            _pool_size = n_threads
        return _pool


def _host_vector_bytes() -> int:
    """The widest vector registers of this CPU: 64 (AVX-512), 32 (AVX/AVX2), else 16."""
    try:
        from llvmlite import binding

        features = binding.get_host_cpu_features()
    except Exception:  # an unknown host: the narrowest width is correct everywhere
        return 16
    if features.get("avx512f"):
        return 64
    if features.get("avx2") or features.get("avx"):
        return 32
    return 16


HOST_VECTOR_BYTES = _host_vector_bytes()


def lane_count(k_max: int, dtype: torch.dtype, vector_bytes: Optional[int] = None) -> int:
    """Centres per vector: full or half host vectors, whichever pads ``k_max`` least
    (the full one on a tie).

    A half-width vector costs about half as much, so the cost is proportional to the
    padded number of centres; the full vector has fewer blocks to loop over.
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    choices = _LANE_CHOICES[itemsize]
    wide = min(max((vector_bytes or HOST_VECTOR_BYTES) // itemsize, choices[-1]), choices[0])
    narrow = max(wide // 2, choices[-1])
    return wide if math.ceil(k_max / wide) * wide <= math.ceil(k_max / narrow) * narrow else narrow


class _PackedCenters(NamedTuple):
    centers_t: np.ndarray  # (G, blocks, d, lanes): -2 c, blocked and transposed
    norms: np.ndarray  # (G, blocks, lanes): ||c||^2, +inf on padding
    blocks_per_group: np.ndarray  # (G,) int64: blocks up to each group's last real centre


_packed_cache = threading.local()


def _pack_centers(centers: torch.Tensor, center_sq_norms: torch.Tensor, lanes: Optional[int] = None) -> _PackedCenters:
    """The kernel's layout of the centres, reused while the same centres come back.

    Every chunk of one Lloyd pass brings the same centres; packing them costs a
    dozen small tensor operations, which would add up over the chunks. The cache
    compares values, never addresses, so a reused buffer cannot return stale centres.
    ``lanes``: centres per block (by default :func:`lane_count`'s).
    """
    n_groups, k_max, n_features = centers.shape
    lanes = lanes or lane_count(k_max, centers.dtype)
    cached = getattr(_packed_cache, "entry", None)
    if (cached is not None and cached[0].shape == centers.shape and cached[0].dtype == centers.dtype
            and cached[2].norms.shape[2] == lanes
            and torch.equal(cached[0], centers) and torch.equal(cached[1], center_sq_norms)):
        return cached[2]
    n_blocks = math.ceil(k_max / lanes)
    padded = n_blocks * lanes
    scaled = torch.zeros(n_groups, padded, n_features, dtype=centers.dtype)
    scaled[:, :k_max] = centers * -2.0  # times a power of two: exact
    centers_t = scaled.view(n_groups, n_blocks, lanes, n_features).transpose(2, 3).contiguous()
    norms = torch.full((n_groups, padded), math.inf, dtype=centers.dtype)
    norms[:, :k_max] = center_sq_norms
    # Blocks after a group's last real centre hold only padding: skip them.
    last_real = torch.where(torch.isfinite(norms), torch.arange(padded), -1).max(dim=1).values
    blocks_per_group = torch.div(last_real + lanes, lanes, rounding_mode="floor").clamp_min(1)
    packed = _PackedCenters(centers_t.numpy(), norms.view(n_groups, n_blocks, lanes).numpy(),
                            blocks_per_group.numpy())
    _packed_cache.entry = (centers.clone(), center_sq_norms.clone(), packed)
    return packed


def _thread_count() -> int:
    # honour torch.set_num_threads, so that one knob sets the parallelism of a fit
    return max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads()))


class _Partials(NamedTuple):
    sums: np.ndarray  # (P, G, padded k, d) float64
    weight_sums: np.ndarray  # (P, G, padded k) float64
    changed: np.ndarray  # (P, G) int64
    inertia: np.ndarray  # (P, G) float64


def _per_part(shape, dtype, n_parts) -> np.ndarray:
    """Zeros of ``(n_parts, *shape)`` whose parts lie at least a cache line apart.

    Each thread adds into its own part row by row; parts that shared a 64-byte line
    would bounce it between cores on every row (two threads would be slower than
    one). The kernel reads the part stride from the array, so the gap is free.
    """
    itemsize = np.dtype(dtype).itemsize
    used = int(np.prod(shape)) * itemsize
    part_bytes = -(-used // _CACHE_LINE) * _CACHE_LINE + _CACHE_LINE
    # Parts start on a cache line too: a vector of sums that straddles two lines
    # costs two accesses (about a tenth of a ten-group pass when misaligned).
    raw = np.zeros(n_parts * part_bytes + _CACHE_LINE, dtype=np.uint8)
    offset = -raw.ctypes.data % _CACHE_LINE
    buffer = raw[offset:offset + n_parts * part_bytes].view(dtype).reshape(n_parts, -1)
    inner = np.zeros(shape, dtype=dtype).strides
    return np.lib.stride_tricks.as_strided(buffer, shape=(n_parts, *shape), strides=(part_bytes, *inner))


def _run(X, centers, center_sq_norms, weights, labels, label_columns, min_sq, flags, layout=None) -> _Partials:
    """Split the rows into parts, run the kernel on the thread pool, return per-part totals.
    ``layout``: "rows" or "centres" in the vectors' lanes; by default :func:`layout_for`'s."""
    n_rows, n_features = X.shape
    layout = layout or layout_for(n_features, centers.shape[1])
    packed = _pack_centers(centers.detach().to(X.dtype), center_sq_norms.detach().to(X.dtype),
                           CENTRE_CHUNK if layout == "rows" else None)
    n_groups = packed.norms.shape[0]
    padded = packed.norms.shape[1] * packed.norms.shape[2]
    if weights is not None:
        flags |= _FLAG_WEIGHTED
        row_weights = weights.detach().to(X.dtype).contiguous().numpy()
    else:
        row_weights = np.empty(0, dtype=packed.norms.dtype)

    sum_shape = (n_groups, padded) if flags & _FLAG_ACCUMULATE else (0, 0)
    n_threads, n_parts = _parts_for(n_rows, sum_shape[0] * sum_shape[1] * (n_features + 1) * 8)
    partials = _Partials(
        sums=_per_part((*sum_shape, n_features if sum_shape[0] else 0), np.float64, n_parts),
        weight_sums=_per_part(sum_shape, np.float64, n_parts),
        changed=_per_part((n_groups,), np.int64, n_parts),
        inertia=_per_part((n_groups,), np.float64, n_parts),
    )
    arguments = (X.numpy(), row_weights, packed.centers_t, packed.norms, packed.blocks_per_group,
                 labels.numpy(), label_columns.numpy(), min_sq.numpy(), *partials)
    if layout == "rows":
        lanes = row_lanes(X.dtype)
        _run_parts(n_rows, n_threads, n_parts, lambda part, start, stop: _assign_rows_in_row_lanes(
            *arguments, part, start, stop, flags, lanes))
    else:
        _run_parts(n_rows, n_threads, n_parts,
                   lambda part, start, stop: _assign_rows(*arguments, part, start, stop, flags))
    return partials


def row_lanes(dtype: torch.dtype, vector_bytes: Optional[int] = None) -> int:
    """Rows per transposed tile in the rows-in-lanes layout: the lanes of the host's widest vector."""
    choices = _LANE_CHOICES[torch.empty((), dtype=dtype).element_size()]
    return min(max((vector_bytes or HOST_VECTOR_BYTES) // torch.empty((), dtype=dtype).element_size(),
                   choices[-1]), choices[0])


# Where rows in lanes (the section of that name above) is the faster layout: up to 16
# features whatever k, up to 24 for at most 16 centres (benchmarks/bench_cpu_layouts.py)
ROWS_IN_LANES_MAX_FEATURES = 16
ROWS_IN_LANES_MAX_FEATURES_FEW_CENTRES = (24, 16)


def layout_for(n_features: int, k_max: int) -> str:
    """Which layout the kernel uses: "rows" or "centres" in the vectors' lanes.

    Rows in lanes for few features (see :data:`ROWS_IN_LANES_MAX_FEATURES`): there it
    saves the cross-lane reduction and the per-row work that dominate a pass; with more
    features, transposing each tile costs more than it saves (benchmarks/bench_cpu_layouts.py
    times both; the kernel's entry points take ``layout=`` to run the other one).
    """
    max_features, max_centres = ROWS_IN_LANES_MAX_FEATURES_FEW_CENTRES
    few = n_features <= ROWS_IN_LANES_MAX_FEATURES or (n_features <= max_features and k_max <= max_centres)
    return "rows" if few else "centres"


def _run_parts(n_rows, n_threads, n_parts, run_part, unit=ROWS) -> None:
    """``run_part(part, first_row, stop_row)`` for ``n_parts`` parts of whole tiles (or of
    whole ``unit``s), on ``n_threads`` threads (the calling one included)."""
    units = -(-n_rows // unit)
    bounds = [min(n_rows, unit * (units * p // n_parts)) for p in range(n_parts + 1)]
    next_part = itertools.count()  # next() is atomic under the GIL

    def work():
        for part in iter(lambda: next(next_part), None):
            if part >= n_parts:
                return
            run_part(part, bounds[part], bounds[part + 1])

    # The calling thread works too: one thread fewer to wake.
    n_workers = min(n_threads, n_parts)
    futures = [_executor(n_workers - 1).submit(work) for _ in range(n_workers - 1)] if n_workers > 1 else []
    work()
    for future in futures:
        future.result()


def _parts_for(n_rows, part_bytes):
    """(threads, parts) for a pass over ``n_rows`` whose parts keep ``part_bytes`` of totals each:
    a few parts per thread, taken from a shared counter, so that a thread another
    process holds up leaves its remaining parts to the others."""
    n_threads = max(1, min(_thread_count(), n_rows // _MIN_ROWS_PER_PART))
    n_parts = n_threads * _PARTS_PER_THREAD if n_threads > 1 else 1
    return n_threads, max(1, min(n_parts, _MAX_PARTIAL_BYTES // max(part_bytes, 1)))


def assign_accumulate_cpu(
    X: torch.Tensor,
    centers: torch.Tensor,
    center_sq_norms: torch.Tensor,
    weights: Optional[torch.Tensor] = None,
    *,
    accumulate: bool = True,
    layout: Optional[str] = None,
) -> AssignResult:
    """Fast CPU implementation of :func:`~gpukmeans.kernels.assign_accumulate`.

    Parameters and results as in the reference. ``X`` must be a float32 or float64
    CPU tensor (see :func:`supports`); it is made C-contiguous if it is not.
    ``layout`` ("rows" or "centres" in the vectors' lanes) overrides :func:`layout_for`;
    both give the same bits.
    """
    X = X.detach().contiguous()
    n_rows = X.shape[0]
    n_groups, k_max, _ = centers.shape
    labels = torch.empty((n_rows, n_groups), dtype=torch.int64)
    min_sq = torch.empty((n_rows, n_groups), dtype=X.dtype)
    flags = _FLAG_DISTANCES | (_FLAG_ACCUMULATE if accumulate else 0)
    partials = _run(X, centers, center_sq_norms, weights, labels,
                    torch.arange(n_groups), min_sq, flags, layout)
    if not accumulate:
        return AssignResult(labels, min_sq, None, None)
    sums = torch.from_numpy(partials.sums.sum(axis=0)[:, :k_max]).to(X.dtype)
    weight_sums = torch.from_numpy(partials.weight_sums.sum(axis=0)[:, :k_max]).to(X.dtype)
    return AssignResult(labels, min_sq, sums, weight_sums)


def lloyd_step_cpu(
    X: torch.Tensor,
    centers: torch.Tensor,
    center_sq_norms: torch.Tensor,
    weights: Optional[torch.Tensor],
    labels: torch.Tensor,
    label_columns: torch.Tensor,
    *,
    compute_inertia: bool = True,
    layout: Optional[str] = None,
) -> StepResult:
    """Fast CPU implementation of :func:`~gpukmeans.kernels.lloyd_step`: one pass,
    no per-row output besides the labels written in place. ``layout`` as in
    :func:`assign_accumulate_cpu`."""
    X = X.detach().contiguous()
    if not labels.is_contiguous():
        raise ValueError("lloyd_step_cpu needs a C-contiguous labels block (rows of the label table).")
    k_max = centers.shape[1]
    partials = _run(X, centers, center_sq_norms, weights, labels,
                    label_columns.to(torch.int64).contiguous(), torch.empty((0, 0), dtype=X.dtype),
                    _FLAG_ACCUMULATE | _FLAG_LLOYD | (_FLAG_INERTIA if compute_inertia else 0), layout)
    return StepResult(
        sums=torch.from_numpy(partials.sums.sum(axis=0)[:, :k_max]),
        weight_sums=torch.from_numpy(partials.weight_sums.sum(axis=0)[:, :k_max]),
        n_changed=torch.from_numpy(partials.changed.sum(axis=0)),
        inertia=torch.from_numpy(partials.inertia.sum(axis=0)) if compute_inertia else None,
    )


def candidate_potentials_cpu(
    X: torch.Tensor,
    candidates: torch.Tensor,
    candidate_sq_norms: torch.Tensor,
    closest: torch.Tensor,
    weights: Optional[torch.Tensor] = None,
    *,
    lower_closest: bool = False,
    block_rows: Optional[int] = None,
    block_offset: int = 0,
) -> torch.Tensor:
    """Fast CPU implementation of :func:`~gpukmeans.kernels.candidate_potentials_reference`
    (its ``lower_closest`` and ``block_rows`` included): one pass over ``X``, nothing
    written per row but the lowered ``closest`` (then C-contiguous, in X's dtype)."""
    X = X.detach().contiguous()
    if lower_closest and (closest.dtype != X.dtype or not closest.is_contiguous()):
        raise ValueError("lower_closest needs a C-contiguous closest in X's dtype.")
    n_rows = X.shape[0]
    packed = _pack_centers(candidates.detach().to(X.dtype)[None], candidate_sq_norms.detach().to(X.dtype)[None])
    padded = packed.norms.shape[1] * packed.norms.shape[2]
    flags = _FLAG_LOWER if lower_closest else 0
    row_weights = np.empty(0, dtype=packed.norms.dtype)
    if weights is not None:
        flags |= _FLAG_WEIGHTED
        row_weights = weights.detach().to(X.dtype).contiguous().numpy()
    n_threads, n_parts = _parts_for(n_rows, padded * 8)
    arguments = (X.numpy(), row_weights, packed.centers_t, packed.norms,
                 closest.detach().to(X.dtype).contiguous().numpy())  # the same memory when lowering
    if block_rows is None:
        sums = _per_part((padded,), np.float64, n_parts)
        _run_parts(n_rows, n_threads, n_parts,
                   lambda part, start, stop: _potential_rows(*arguments, sums, part, start, stop, flags))
        return torch.from_numpy(sums.sum(axis=0)[: candidates.shape[0]])
    n_blocks = -(-(block_offset + n_rows) // block_rows)
    sums = _per_part((padded,), np.float64, n_blocks)
    if n_blocks == 0:
        return torch.zeros((0, candidates.shape[0]), dtype=torch.float64)
    _run_parts(n_blocks, n_threads, min(n_parts, n_blocks), lambda part, first, stop: _potential_blocks(
        *arguments, sums, first, stop, block_rows, block_offset, flags), unit=1)
    return torch.from_numpy(np.ascontiguousarray(sums[:, : candidates.shape[0]]))


def exact_sq_distances_cpu(X: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(m, G) float64 squared distance from each row to its centre in each group, by direct
    difference (``centers`` (G, k, d), ``labels`` (m, G)): one pass on the thread pool
    instead of a gather, a difference, a square and a sum per group over the whole chunk
    (several times faster than those PyTorch operations)."""
    X = X.detach().contiguous()
    n_rows, n_groups = X.shape[0], centers.shape[0]
    out = np.empty((n_rows, n_groups), dtype=np.float64)
    arguments = (X.numpy(), centers.detach().to(X.dtype).contiguous().numpy(),
                 labels.detach().to(torch.int64).contiguous().numpy(), out)
    n_threads, n_parts = _parts_for(n_rows, 0)
    _run_parts(n_rows, n_threads, n_parts,
               lambda part, start, stop: _exact_sq_distance_rows(*arguments, start, stop))
    return torch.from_numpy(out)


def label_sums_cpu(X: torch.Tensor, labels: torch.Tensor, n_labels: int, weights: Optional[torch.Tensor] = None):
    """Per label, the float64 sum of its (weighted) rows and its total weight, one pass
    on the thread pool (each part sums into its own totals, merged in part order)."""
    X = X.detach().contiguous()
    n_rows, n_features = X.shape
    n_threads, n_parts = _parts_for(n_rows, n_labels * (n_features + 1) * 8)
    sums = np.zeros((n_parts, n_labels, n_features))
    totals = np.zeros((n_parts, n_labels))
    rows = X.numpy()
    codes = labels.detach().to(torch.int64).contiguous().numpy()
    row_weights = np.zeros(0) if weights is None else weights.detach().to(torch.float64).contiguous().numpy()
    _run_parts(n_rows, n_threads, n_parts, lambda part, start, stop: _label_sum_rows(
        rows, codes, row_weights, weights is not None, sums[part], totals[part], start, stop))
    return sums.sum(axis=0), totals.sum(axis=0)


def moments_cpu(X: torch.Tensor, scale: float = 1.0):
    """Per-part moments of ``X * scale`` (float64): ``(counts (P,), means (P, d), sums of
    squared deviations (P, d), minima (P, d), maxima (P, d))``, one pass on the thread
    pool; the caller merges the parts (Chan et al.'s pairwise formula)."""
    X = X.detach().contiguous()
    n_rows, n_features = X.shape
    n_threads, n_parts = _parts_for(n_rows, 0)
    counts = np.zeros(n_parts)
    mean = np.zeros((n_parts, n_features))
    sum_sq_dev = np.zeros((n_parts, n_features))
    minimum = np.full((n_parts, n_features), np.inf)
    maximum = np.full((n_parts, n_features), -np.inf)
    rows = X.numpy()
    _run_parts(n_rows, n_threads, n_parts, lambda part, start, stop: _moment_rows(
        rows, counts, mean, sum_sq_dev, minimum, maximum, part, start, stop, scale))
    return counts, mean, sum_sq_dev, minimum, maximum


def supports(X: torch.Tensor) -> bool:
    """Whether the CPU path handles this chunk: float32/float64 rows on the CPU."""
    return X.device.type == "cpu" and X.dtype in (torch.float32, torch.float64) and X.dim() == 2


def available() -> bool:
    """The CPU path needs nothing beyond numba, whose import already succeeded."""
    return True
