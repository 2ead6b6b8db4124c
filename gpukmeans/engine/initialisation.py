"""Initial centres: greedy k-means++, random rows, and k-means|| for very large tables.

Every initialiser works against a data source (see ``_sources``) in chunks, so it
runs on any device, on rows streamed from files, and across torch.distributed ranks
(rows are named by global index; holders exchange only totals, drawn indices and the
chosen rows), and never holds more than one chunk's distances. Draws and keys depend
on the rows' weights and distances only, never on how the rows are chunked or split
(but for the last bits of a k-means++ block total that a chunk boundary splits in two,
which moves a draw only if it lands within that rounding of a row's bound).
"""

import functools
import math

import torch

from .._device import assign_block_bytes, row_blocks, work_block_bytes
from ..sources.memory import InMemorySource
from .lloyd import lloyd
from .uniforms import row_uniforms


# Rows per block of the draws: blocks bound the cumulative sums a draw forms, and read
# only per-row state (weights, distances), never the rows themselves.
_BLOCK_ROWS = 1 << 16

# Rows per block of k-means++'s draws. Each greedy step's pass returns its candidates'
# potentials per block, so a draw needs no pass of its own; but the rows of a drawn block
# are read again (see kmeans_plusplus_tensor), so these blocks are small. A multiple of
# the Triton kernel's 64-row tiles.
_PLUSPLUS_BLOCK_ROWS = 1024


def initial_centers(source, method: str, n_clusters: int, seed: int, generator=None) -> torch.Tensor:
    """``n_clusters`` initial centres by ``method`` ("k-means++", "random" or "k-means||"),
    from ``seed`` (and, where the draws continue one already begun, ``generator``)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    if method == "k-means++":
        return kmeans_plusplus_tensor(source, n_clusters, generator)[0]
    if method == "random":
        return random_rows_init(source, n_clusters, seed)[0]
    if method == "k-means||":
        return kmeans_parallel(source, n_clusters, seed, generator)
    raise ValueError(f"init must be 'k-means++', 'random' or 'k-means||', got {method!r}")


def kmeans_plusplus_tensor(source, n_clusters, generator, n_local_trials=None):
    """Greedy k-means++ (as scikit-learn): ``2 + int(log k)`` candidates per step, keep the best.

    Candidates are drawn with probability proportional to ``weight * D(x)^2``, so a
    zero-weight row is never a centre. Besides one chunk, it holds one value per row
    (the distance to the nearest centre so far). Returns ``(centers (k, d), indices (k,))``
    with global row indices.

    One pass over the rows per centre. A step's candidates are drawn before the pass
    that would lower every row's distance to the centre the step before chose; so
    each pass does both: it lowers the distances to the last chosen centre first, then
    weighs the new candidates against them, per block of rows. The chosen candidate's
    block totals are then the next draw's, and a draw reads again only the rows of the
    blocks it falls in, lowering them as the next pass will (with the same kernel, so to
    the same values). Lowering twice to the same centre changes nothing.
    """
    first = _draw_proportional(source, None, 1, generator)[:1]
    (centers, drawn), = extend_kmeans_plusplus(source, source.take(first), n_clusters, [generator], n_local_trials)
    return centers, torch.cat([first.cpu(), drawn])


def extend_kmeans_plusplus(source, centers, n_clusters, generators, n_local_trials=None) -> list:
    """``centers`` (m, d) followed by ``n_clusters - m`` more, chosen by greedy k-means++ steps
    (see :func:`kmeans_plusplus_tensor`) against them all; one independent extension per
    generator. Returns ``[(centers (k, d), indices (k - m,)), ...]``, the indices being the
    global row indices of the added centres.

    A sweep grows a k from the solution of a smaller k this way: every added centre can
    only lower a row's distance to its nearest centre, so the inertia of each extension is
    at most that of ``centers``. The extensions share the passes up to their first choice
    (the distances to ``centers``, then one pass weighing every extension's candidates).
    """
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    n_given, n_added = centers.shape[0], n_clusters - centers.shape[0]
    centers = centers.to(source.dtype)
    if n_added == 0:
        return [(centers, torch.empty(0, dtype=torch.int64)) for _ in generators]
    closest = torch.full((source.n_samples,), math.inf, dtype=source.dtype, device=source.device)
    if n_given > 1:
        _lower_closest(source, closest, centers[:-1])
    chosen = centers[-1:]
    block_potentials = _lower_and_weigh(source, closest, chosen)[:, 0]
    # The first step of every extension: candidates drawn from the same distances, weighed in one pass.
    candidate_ids = [
        _draw_by_block_totals(source, block_potentials, _PLUSPLUS_BLOCK_ROWS, n_local_trials, generator,
                              functools.partial(_lowered_block_values, source, closest, chosen))
        for generator in generators
    ]
    every_candidate = source.take(torch.cat(candidate_ids))
    block_totals = _lower_and_weigh(source, closest, torch.cat([chosen, every_candidate]))[:, 1:]
    potentials = source.reduce_sum(block_totals.sum(dim=0).to(source.device)).cpu()
    extensions = []
    for e, generator in enumerate(generators):
        own = slice(e * n_local_trials, (e + 1) * n_local_trials)
        best = int(torch.argmin(potentials[own]))
        first = every_candidate[own][best : best + 1]
        # the last extension lowers the shared distances itself; the others, a copy
        own_closest = closest if e == len(generators) - 1 or n_added == 1 else closest.clone()
        more, more_ids = _greedy_steps(source, own_closest, first, block_totals[:, own][:, best], n_added - 1,
                                       generator, n_local_trials)
        extensions.append((torch.cat([centers, first, more]), torch.cat([candidate_ids[e][best : best + 1], more_ids])))
    return extensions


def _greedy_steps(source, closest, chosen, block_potentials, n_steps, generator, n_local_trials):
    """``n_steps`` more greedy k-means++ centres, ``closest`` being lowered to every centre
    but the last ``chosen`` one, whose potentials per block are ``block_potentials``."""
    added, indices = [], torch.empty(n_steps, dtype=torch.int64)
    for step in range(n_steps):
        candidate_ids = _draw_by_block_totals(
            source, block_potentials, _PLUSPLUS_BLOCK_ROWS, n_local_trials, generator,
            functools.partial(_lowered_block_values, source, closest, chosen))
        candidates = source.take(candidate_ids)
        block_totals = _lower_and_weigh(source, closest, torch.cat([chosen, candidates]))[:, 1:]
        potentials = source.reduce_sum(block_totals.sum(dim=0).to(source.device)).cpu()
        best = int(torch.argmin(potentials))
        indices[step] = candidate_ids[best]
        chosen = candidates[best : best + 1]
        added.append(chosen)
        block_potentials = block_totals[:, best]
    more = torch.cat(added) if added else chosen[:0]
    return more, indices


def _lower_and_weigh(source, closest, points) -> torch.Tensor:
    """One pass of k-means++: ``closest`` lowered in place to each row's distance to
    ``points[0]``, then every point's potential against it, per block of
    ``_PLUSPLUS_BLOCK_ROWS`` rows: (this holder's blocks, points) float64 on the CPU."""
    norms = (points * points).sum(dim=1)
    n_blocks = -(-source.n_samples // _PLUSPLUS_BLOCK_ROWS)
    totals = torch.zeros((n_blocks, points.shape[0]), dtype=torch.float64, device=source.device)
    for start, rows, weights in _potential_pieces(source, points.shape[0]):
        part = source.backend.candidate_potentials(rows, points, norms, closest[start : start + rows.shape[0]],
                                                   weights, lower_closest=True, block_rows=_PLUSPLUS_BLOCK_ROWS,
                                                   block_offset=start % _PLUSPLUS_BLOCK_ROWS)
        first = start // _PLUSPLUS_BLOCK_ROWS
        # a block split between two pieces gets two partial totals; any other, its own
        totals[first : first + part.shape[0]] += part
    return totals.cpu()


def _potential_pieces(source, n_points):
    """``source.chunks()``, cut into blocks of bounded memory where the potentials come
    from the assignment's per-row results (a label and a distance per row and point)."""
    fused = source.backend.fused_potentials
    for start, chunk, weights in source.chunks():
        if fused:
            yield start, chunk, weights
            continue
        bytes_per_row = n_points * (16 + chunk.element_size())
        for lo, hi in row_blocks(chunk.shape[0], bytes_per_row, assign_block_bytes(chunk.device)):
            yield start + lo, chunk[lo:hi], None if weights is None else weights[lo:hi]


def _lowered_block_values(source, closest, chosen, bounds) -> list:
    """``weight * closest`` for each block of rows ``(start, stop)`` in ``bounds``, ``closest``
    first lowered there to ``chosen`` (one point) with the kernel of the passes, on the rows
    as stored. All blocks are read at once: from a CSV file that is one partial scan."""
    rows = source.stored_rows(bounds)
    index = torch.cat([torch.arange(start, stop) for start, stop in bounds]).to(closest.device)
    # a copy for the kernel to lower in place (lowering ignores weights), put back after
    lowered = closest[index]
    source.backend.candidate_potentials(rows, chosen, (chosen * chosen).sum(dim=1), lowered, lower_closest=True)
    closest[index] = lowered
    return [_block_values(source, closest, start, stop, _weights_of(source, start, stop)) for start, stop in bounds]


def random_rows_init(source, n_clusters, seed):
    """``n_clusters`` distinct rows drawn without replacement, with probability by weight.

    Uses weighted reservoir keys ``log(u) / w`` (Efraimidis and Spirakis) with per-row
    uniforms, so the choice does not depend on the chunk size or on how the rows are
    split between holders; zero weights never win.
    """
    device = source.device
    best_keys = torch.empty(0, dtype=torch.float64, device=device)
    best_rows = torch.empty(0, dtype=torch.int64, device=device)
    for start, stop, weights in _weight_blocks(source):
        row_ids = torch.arange(source.row_offset + start, source.row_offset + stop, device=device)
        keys = torch.log(row_uniforms(seed, row_ids))
        if weights is not None:
            keys = torch.where(weights > 0, keys / weights.double(), torch.full_like(keys, -math.inf))
        best_keys, best_rows = _top_keys(n_clusters, torch.cat([best_keys, keys]), torch.cat([best_rows, row_ids]))
    if source.world_size > 1:
        best_keys, best_rows = _top_keys(n_clusters, source.concat(best_keys), source.concat(best_rows))
    return source.take(best_rows), best_rows.cpu()


def _top_keys(n_keep, keys, rows):
    keys, order = keys.topk(min(n_keep, keys.shape[0]))
    return keys, rows[order]


def _rows_as_python_ints(device: torch.device) -> bool:
    """Whether k-means|| gathers a round's sampled rows as Python ints (see there)."""
    return device.type == "cpu"


def kmeans_parallel(source, n_clusters, seed, generator, *, oversampling=2.0, n_rounds=5):
    """k-means|| (Bahmani et al., 2012): a few passes that oversample candidates, then
    weighted k-means++ and Lloyd on the candidates only.

    Each round keeps every row independently with probability
    ``min(1, l * w * D(x)^2 / phi)`` where ``l = oversampling * k``; candidates are then
    weighted by the total weight of the rows nearest to them.
    """
    device = source.device
    first = _draw_proportional(source, None, 1, generator).to(device)
    chosen = [first]
    closest = _closest_sq_distances(source, source.take(first))
    expected_per_round = oversampling * n_clusters
    for round_number in range(n_rounds):
        total = _weighted_total(source, closest)
        if total <= 0:
            break
        # On the CPU the kept rows go to Python ints, not a tensor per block: a tensor
        # (even an empty one) outliving its block sits in the C heap among the block's
        # freed float64 temporaries, and glibc then grew the heap by about one block's
        # temporaries per block (about 8 bytes a row when streaming tens of millions of
        # rows from Parquet: benchmarks/bench_memory.py). On a GPU the blocks' tensors stay there: a
        # .tolist() per block would wait for the device every block.
        on_cpu = _rows_as_python_ints(device)
        new_rows = []
        for start, stop, weights in _weight_blocks(source):
            potential = _block_values(source, closest, start, stop, weights)
            keep_probability = (expected_per_round * potential / total).clamp_max_(1.0)
            row_ids = torch.arange(source.row_offset + start, source.row_offset + stop, device=device)
            kept = row_ids[row_uniforms(seed + round_number, row_ids) <= keep_probability]
            new_rows += kept.tolist() if on_cpu else [kept]
        new_rows = (torch.tensor(new_rows, dtype=torch.int64, device=device) if on_cpu
                    else torch.cat(new_rows) if new_rows else torch.empty(0, dtype=torch.int64, device=device))
        new_rows = source.concat(new_rows)
        if new_rows.numel() == 0:
            continue
        chosen.append(new_rows)
        _lower_closest(source, closest, source.take(new_rows))
    candidate_rows = torch.unique(torch.cat(chosen))
    if candidate_rows.numel() <= n_clusters:
        # Too few distinct candidates to choose from: the data has few distinct rows.
        return kmeans_plusplus_tensor(source, n_clusters, generator)[0]
    candidates = source.take(candidate_rows)
    candidate_weights = _weight_nearest_to_each(source, candidates)
    candidate_source = InMemorySource(candidates, candidate_weights, chunk_size=candidates.shape[0])
    seeds, _ = kmeans_plusplus_tensor(candidate_source, n_clusters, generator)
    refined = lloyd(candidate_source, [seeds], max_iter=30, tol=0.0)
    return refined.centers[0]


def _weight_blocks(source):
    """``(start, stop, weights or None)`` over this holder's rows, without reading them."""
    for start in range(0, source.n_samples, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, source.n_samples)
        yield start, stop, _weights_of(source, start, stop)


def _weights_of(source, start, stop):
    """This holder's weights of rows ``start:stop``, or None for unit weights."""
    return None if source.sample_weight is None else source.sample_weight[start:stop]


def _block_values(source, values, start, stop, weights) -> torch.Tensor:
    """``weight * value`` for rows ``start:stop`` in float64 (``values`` None: the weights)."""
    if values is None:
        part = torch.ones(stop - start, dtype=torch.float64, device=source.device)
    else:
        part = values[start:stop].double()
    return part if weights is None else part * weights.double()


def _weighted_total(source, values) -> float:
    """The sum of ``weight * value`` over every holder's rows."""
    local = _block_totals(source, values).sum().to(source.device)
    return float(source.reduce_sum(local))


def _block_totals(source, values) -> torch.Tensor:
    """(blocks,) float64 on the CPU: ``weight * value`` summed over each block of
    ``_BLOCK_ROWS`` rows (``values`` None: the weights).

    Many blocks at a time, and one transfer at the end: on a GPU a transfer per block
    waits for the device each time (at 100M rows, some 1,500 waits per draw).
    """
    rows_at_once = _BLOCK_ROWS * max(1, work_block_bytes(source.device) // (8 * _BLOCK_ROWS))
    totals = []
    for start in range(0, source.n_samples, rows_at_once):
        stop = min(start + rows_at_once, source.n_samples)
        weights = None if source.sample_weight is None else source.sample_weight[start:stop]
        part = _block_values(source, values, start, stop, weights)
        whole_blocks = (stop - start) // _BLOCK_ROWS * _BLOCK_ROWS
        totals.append(part[:whole_blocks].view(-1, _BLOCK_ROWS).sum(dim=1))
        if whole_blocks < stop - start:
            totals.append(part[whole_blocks:].sum().reshape(1))
    if not totals:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat(totals).cpu()


def _draw_proportional(source, values, n_draws, generator) -> torch.Tensor:
    """Global row indices drawn with probability proportional to ``weight * value``.

    ``values`` None means the weights alone. When every ``weight * value`` is zero (all
    rows already coincide with a centre), it falls back to the weights.
    """
    def values_of_blocks(bounds):
        return [_block_values(source, values, start, stop, _weights_of(source, start, stop)) for start, stop in bounds]

    return _draw_by_block_totals(source, _block_totals(source, values), _BLOCK_ROWS, n_draws, generator,
                                 values_of_blocks, weights_only=values is None)


def _draw_by_block_totals(source, block_totals, block_rows, n_draws, generator, values_of_blocks, *,
                          weights_only=False) -> torch.Tensor:
    """Global row indices drawn with probability proportional to per-row values, from
    their totals per block of ``block_rows`` rows (this holder's, on the CPU) and
    ``values_of_blocks([(start, stop), ...])``, the values of some blocks' rows.

    The uniforms come from ``generator`` (the same on every holder); each draw falls to
    the holder, then the block, then the row whose cumulative total passes it. Only the
    drawn blocks' values are formed; holders exchange their totals and the drawn indices.
    """
    holder_totals = source.all_gather(block_totals.sum().reshape(1).to(source.device)).flatten().cpu()
    holder_ends = torch.cumsum(holder_totals, dim=0)
    if float(holder_ends[-1]) <= 0:
        if weights_only:
            raise ValueError("sample_weight must have at least one positive weight; every weight is zero.")
        return _draw_proportional(source, None, n_draws, generator)
    # Uniforms in (0, 1]: a target of exactly 0 could land on a zero-valued leading row.
    targets = (1.0 - torch.rand(n_draws, generator=generator, dtype=torch.float64)) * holder_ends[-1]
    holder_of_target = torch.searchsorted(holder_ends, targets).clamp_max_(len(holder_ends) - 1)
    drawn = torch.zeros(n_draws, dtype=torch.int64)
    mine = torch.nonzero(holder_of_target == source.rank).flatten()
    if mine.numel():
        local_targets = targets[mine] - (holder_ends[source.rank] - holder_totals[source.rank])
        block_ends = torch.cumsum(block_totals, dim=0)
        block_of_target = torch.searchsorted(block_ends, local_targets).clamp_max_(len(block_totals) - 1)
        positions = sorted(set(block_of_target.tolist()))
        bounds = [(p * block_rows, min((p + 1) * block_rows, source.n_samples)) for p in positions]
        for position, (start, _), part in zip(positions, bounds, values_of_blocks(bounds)):
            cumulative = torch.cumsum(part, dim=0).cpu()
            block_start = block_ends[position] - block_totals[position]
            for draw in torch.nonzero(block_of_target == position).flatten().tolist():
                local = torch.searchsorted(cumulative, local_targets[draw] - block_start)
                drawn[mine[draw]] = source.row_offset + start + _nearest_positive(part, int(local))
    # Each draw was resolved by exactly one holder; the others contribute zeros.
    return source.reduce_sum(drawn.to(source.device)).cpu()


def _nearest_positive(values, index) -> int:
    """``index`` if ``values[index] > 0``, else the closest positive row before it (or after).

    Round-off in the cumulative sums can point one row past the last positive one.
    """
    positive = torch.nonzero(values > 0).flatten().cpu()
    before = positive[positive <= index]
    return int(before[-1]) if before.numel() else int(positive[0])


def _closest_sq_distances(source, points) -> torch.Tensor:
    """(n,) squared distance from each of this holder's rows to the nearest of ``points``."""
    closest = torch.full((source.n_samples,), math.inf, dtype=source.dtype, device=source.device)
    _lower_closest(source, closest, points)
    return closest


def _lower_closest(source, closest, points) -> None:
    """Lower ``closest`` in place to each row's squared distance to the nearest of ``points``.

    In place, block by block: never a second n-long array beside ``closest``.
    """
    if points.shape[0] == 1:
        _lower_and_weigh(source, closest, points)  # k-means++'s pass; its totals are not needed
        return
    for start, _, _, result in source.assigned_blocks(points[None, :, :]):
        distances = result.min_sq_distances[:, 0]
        block = closest[start : start + distances.shape[0]]
        torch.minimum(block, distances.to(block.dtype), out=block)


def _weight_nearest_to_each(source, points) -> torch.Tensor:
    """Total sample weight (over every holder) of the rows nearest to each point."""
    totals = torch.zeros(points.shape[0], dtype=torch.float64, device=source.device)
    for _, _, weights, result in source.assigned_blocks(points[None, :, :]):
        # Labels and a weighted count: the per-centre sums of rows are not needed here.
        nearest = result.labels[:, 0]
        totals += torch.bincount(nearest, weights=None if weights is None else weights.double(), minlength=len(points))
    return source.reduce_sum(totals).to(source.dtype)
