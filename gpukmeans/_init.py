"""Initial centres: greedy k-means++, random rows, and k-means|| for very large tables.

Every initialiser works against a data source (see ``_sources``) in chunks, so it
runs on any device and never holds more than one chunk's distances.
"""

import math

import torch

from ._lloyd import lloyd
from ._random import row_uniforms
from ._sources import InMemorySource
from .kernels import assign_accumulate


def kmeans_plusplus_tensor(source, n_clusters, generator, n_local_trials=None):
    """Greedy k-means++ (as scikit-learn): ``2 + int(log k)`` candidates per step, keep the best.

    Candidates are drawn with probability proportional to ``weight * D(x)^2``, so a
    zero-weight row is never a centre. Besides one chunk, it holds one value per row
    (the distance to the nearest centre so far). Returns ``(centers (k, d), indices (k,))``.
    """
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    indices = torch.empty(n_clusters, dtype=torch.int64)
    indices[0] = _draw_proportional(source, None, 1, generator)[0]
    centers = [source.take(indices[:1])[0]]
    closest = _sq_distances_to_each(source, centers[0][None, :])[:, 0]
    for c in range(1, n_clusters):
        candidate_ids = _draw_proportional(source, closest, n_local_trials, generator)
        candidates = source.take(candidate_ids)
        candidate_potentials = _potentials_with_candidate(source, closest, candidates)
        best = int(torch.argmin(candidate_potentials))
        indices[c] = candidate_ids[best]
        centers.append(candidates[best])
        torch.minimum(closest, _sq_distances_to_each(source, candidates[best][None, :])[:, 0], out=closest)
    return torch.stack(centers), indices


def random_rows_init(source, n_clusters, seed):
    """``n_clusters`` distinct rows drawn without replacement, with probability by weight.

    Uses weighted reservoir keys ``log(u) / w`` (Efraimidis and Spirakis) with per-row
    uniforms, so the choice does not depend on the chunk size; zero weights never win.
    """
    device = source.device
    best_keys = torch.empty(0, dtype=torch.float64, device=device)
    best_rows = torch.empty(0, dtype=torch.int64, device=device)
    for start, rows, weights in source.chunks():
        row_ids = torch.arange(start, start + rows.shape[0], device=device)
        keys = torch.log(row_uniforms(seed, row_ids))
        if weights is not None:
            keys = torch.where(weights > 0, keys / weights.double(), torch.full_like(keys, -math.inf))
        best_keys = torch.cat([best_keys, keys])
        best_rows = torch.cat([best_rows, row_ids])
        best_keys, order = best_keys.topk(min(n_clusters, best_keys.shape[0]))
        best_rows = best_rows[order]
    return source.take(best_rows), best_rows.cpu()


def kmeans_parallel(source, n_clusters, seed, generator, *, oversampling=2.0, n_rounds=5):
    """k-means|| (Bahmani et al., 2012): a few passes that oversample candidates, then
    weighted k-means++ and Lloyd on the candidates only.

    Each round keeps every row independently with probability
    ``min(1, l * w * D(x)^2 / phi)`` where ``l = oversampling * k``; candidates are then
    weighted by the total weight of the rows nearest to them.
    """
    first = _draw_proportional(source, None, 1, generator)
    chosen = [first.to(source.device)]
    closest = _sq_distances_to_each(source, source.take(first))[:, 0]
    expected_per_round = oversampling * n_clusters
    for round_number in range(n_rounds):
        total = float(_weighted_chunk_totals(source, closest).sum())
        if total <= 0:
            break
        new_rows = []
        for start, rows, weights in source.chunks():
            potential = closest[start : start + rows.shape[0]].double()
            if weights is not None:
                potential = potential * weights.double()
            keep_probability = (expected_per_round * potential / total).clamp_max_(1.0)
            row_ids = torch.arange(start, start + rows.shape[0], device=source.device)
            new_rows.append(row_ids[row_uniforms(seed + round_number, row_ids) <= keep_probability])
        new_rows = torch.cat(new_rows)
        if new_rows.numel() == 0:
            continue
        chosen.append(new_rows)
        torch.minimum(closest, _min_sq_distance_to_set(source, source.take(new_rows)), out=closest)
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


def _weighted_chunk_totals(source, values) -> torch.Tensor:
    """Per chunk, the sum of ``weight * value`` (or of the weights when ``values`` is None)."""
    totals = []
    for start, rows, weights in source.chunks():
        if values is None:
            part = torch.ones(rows.shape[0], dtype=torch.float64, device=source.device)
        else:
            part = values[start : start + rows.shape[0]].double()
        if weights is not None:
            part = part * weights.double()
        totals.append(part.sum())
    return torch.stack(totals).cpu()


def _draw_proportional(source, values, n_draws, generator) -> torch.Tensor:
    """Row indices drawn with probability proportional to ``weight * value`` (never a zero).

    ``values`` None means the weights alone. When every ``weight * value`` is zero (all
    rows already coincide with a centre), it falls back to the weights. Only one chunk's
    cumulative sum is ever formed.
    """
    chunk_totals = _weighted_chunk_totals(source, values)
    if float(chunk_totals.sum()) <= 0 and values is not None:
        return _draw_proportional(source, None, n_draws, generator)
    chunk_ends = torch.cumsum(chunk_totals, dim=0)
    # Uniforms in (0, 1]: a target of exactly 0 could land on a zero-valued leading row.
    targets = (1.0 - torch.rand(n_draws, generator=generator, dtype=torch.float64)) * chunk_ends[-1]
    chunk_of_target = torch.searchsorted(chunk_ends, targets).clamp_max_(len(chunk_ends) - 1)
    drawn = torch.empty(n_draws, dtype=torch.int64)
    wanted = set(chunk_of_target.tolist())
    for position, (start, rows, weights) in enumerate(source.chunks()):
        if position not in wanted:
            continue
        part = (
            torch.ones(rows.shape[0], dtype=torch.float64, device=source.device)
            if values is None
            else values[start : start + rows.shape[0]].double()
        )
        if weights is not None:
            part = part * weights.double()
        cumulative = torch.cumsum(part, dim=0).cpu()
        chunk_start = chunk_ends[position] - chunk_totals[position]
        for draw in torch.nonzero(chunk_of_target == position).flatten().tolist():
            local = torch.searchsorted(cumulative, targets[draw] - chunk_start)
            drawn[draw] = start + _nearest_positive(part, int(local))
    return drawn


def _nearest_positive(values, index) -> int:
    """``index`` if ``values[index] > 0``, else the closest positive row before it (or after).

    Round-off in the cumulative sums can point one row past the last positive one.
    """
    positive = torch.nonzero(values > 0).flatten().cpu()
    before = positive[positive <= index]
    return int(before[-1]) if before.numel() else int(positive[0])


def _sq_distances_to_each(source, points) -> torch.Tensor:
    """(n, p) squared distances from every row to each of ``points``: each point is a group."""
    groups = points[:, None, :]
    norms = (groups * groups).sum(dim=2)
    parts = [
        assign_accumulate(rows, groups, norms, accumulate=False).min_sq_distances
        for _, rows, _ in source.chunks()
    ]
    return torch.cat(parts)


def _min_sq_distance_to_set(source, points) -> torch.Tensor:
    """(n,) squared distance from every row to the nearest of ``points``."""
    group = points[None, :, :]
    norms = (group * group).sum(dim=2)
    parts = [
        assign_accumulate(rows, group, norms, accumulate=False).min_sq_distances[:, 0]
        for _, rows, _ in source.chunks()
    ]
    return torch.cat(parts)


def _potentials_with_candidate(source, closest, candidates) -> torch.Tensor:
    """For each candidate, the weighted potential if it were added as a centre."""
    groups = candidates[:, None, :]
    norms = (groups * groups).sum(dim=2)
    potentials = torch.zeros(candidates.shape[0], dtype=torch.float64, device=source.device)
    for start, rows, weights in source.chunks():
        distances = assign_accumulate(rows, groups, norms, accumulate=False).min_sq_distances
        distances = torch.minimum(distances, closest[start : start + rows.shape[0], None]).double()
        if weights is not None:
            distances = distances * weights.double()[:, None]
        potentials += distances.sum(dim=0)
    return potentials.cpu()


def _weight_nearest_to_each(source, points) -> torch.Tensor:
    """Total sample weight of the rows nearest to each point."""
    group = points[None, :, :]
    norms = (group * group).sum(dim=2)
    totals = torch.zeros(points.shape[0], dtype=torch.float64, device=source.device)
    for _, rows, weights in source.chunks():
        totals += assign_accumulate(rows, group, norms, weights).weight_sums[0]
    return totals.to(source.dtype)
