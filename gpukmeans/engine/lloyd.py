"""Lloyd's algorithm for several independent runs ("groups") sharing each pass over X.

A group is one k-means run: a restart of one fit (``n_init``), or one k of a sweep.
All active groups are assigned in the same pass over the rows, so ten restarts read
X once per iteration instead of ten times, and a group stops costing work as soon as
it converges. Each group follows scikit-learn's ``_kmeans_single_lloyd`` exactly:
empty clusters are relocated to the farthest points, convergence is strict (labels
unchanged) or a centre shift of at most ``tol``, and a final assignment makes the
labels match the returned centres.
"""

import functools
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..kernels import padded_sq_norms
from .cuda_graph import RecordedWork, cuda_graphs_enabled

__all__ = ["LloydResult", "lloyd", "padded_sq_norms", "stack_groups", "weighted_sum"]


@dataclass
class LloydResult:
    centers: list  # per group, (k_g, d) tensors in the data's dtype
    labels: torch.Tensor  # (n, G) integer labels on the source's device
    inertia: torch.Tensor  # (G,) float64 on the CPU: weighted sum of squared distances
    n_iter: list  # per group, Lloyd iterations run
    n_replayed: int = 0  # iterations replayed from a CUDA graph


def stack_groups(centers_list, dtype, device):
    """Pad groups of centres to one (G, k_max, d) tensor and a validity mask."""
    k_max = max(c.shape[0] for c in centers_list)
    n_features = centers_list[0].shape[1]
    centers = torch.zeros(len(centers_list), k_max, n_features, dtype=dtype, device=device)
    valid = torch.zeros(len(centers_list), k_max, dtype=torch.bool, device=device)
    for g, group in enumerate(centers_list):
        centers[g, : group.shape[0]] = group.to(device=device, dtype=dtype)
        valid[g, : group.shape[0]] = True
    return centers, valid


def lloyd(source, initial_centers, *, max_iter=300, tol=0.0, verbose=0) -> LloydResult:
    """Run Lloyd's algorithm from each group of ``initial_centers`` (a list of (k_g, d)).

    ``tol`` is absolute: scikit-learn's ``tol`` times the mean feature variance.
    """
    centers, valid = stack_groups(initial_centers, source.dtype, source.device)
    n_groups, k_max, _ = centers.shape
    # The narrowest type that holds k_max and -1: with ten restarts the (n, G) table is
    # the largest thing a fit holds besides X.
    label_dtype = next(t for t in (torch.int8, torch.int16, torch.int32) if k_max <= torch.iinfo(t).max)
    # -1 is never a label, so the first iteration never looks converged.
    labels = torch.full((source.n_samples, n_groups), -1, dtype=label_dtype, device=source.device)
    n_iter = [0] * n_groups
    active = list(range(n_groups))

    norms = padded_sq_norms(centers, valid)
    group_index = None
    # While every group is active, the iteration's launches are recorded once as a CUDA
    # graph and replayed (see _cuda_graph): it reads ``centers`` and ``norms`` in place.
    recorder = _recorder_for(source)
    recorded = None
    n_replayed = 0
    for iteration in range(max_iter):
        if not active:
            break
        if group_index is None:  # made again only when a group converges
            group_index = torch.tensor(active, device=source.device)
        everyone = len(active) == n_groups
        if everyone:  # the whole stack is this pass's: no gathers before it
            old_centers, group_valid, old_norms = centers, valid, norms
        else:
            old_centers, group_valid, old_norms = centers[group_index], valid[group_index], norms[group_index]
            recorded = None  # its inputs are no longer the pass's; its memory is freed
        work = functools.partial(_iterate, source, old_centers, old_norms, group_valid, labels, group_index,
                                 bool(verbose))
        # The first iteration runs launch by launch: it compiles the kernels, which a
        # recording must not do.
        if recorder is not None and everyone and recorded is None and iteration >= _FIRST_RECORDED_ITERATION:
            recorded = _record(recorder, work, source.device)
            if recorded is None:
                recorder = None
        if recorded is not None:
            result = recorded.replay()
            n_replayed += 1
        else:
            result = work()
        # One device-to-host transfer per iteration in the common case. On a GPU each
        # transfer waits for the queue to drain, and whatever is launched after it, before
        # the next pass, runs with the GPU idle (about 15% of an iteration at (10M, 16, 8):
        # benchmarks/bench_lloyd.py). So the centres, and the norms the next pass needs, are
        # computed before it is known whether a cluster emptied; in the rare iteration where
        # one did, they are relocated and computed again.
        n_changed, shift, emptied = result.progress.cpu()
        new_centers, new_norms = result.new_centers, result.new_norms
        if bool(emptied.any()):
            _relocate_empty_clusters(source, old_centers, group_valid, result)
            update = source.backend.update_centers(result.sums, result.weight_sums, result.progress[0],
                                                   old_centers, group_valid)
            new_centers, new_norms, shift = update.new_centers, update.new_norms, update.progress[1].cpu()
        if recorded is not None:  # the recording's inputs, rewritten in place
            centers.copy_(new_centers)
            norms.copy_(new_norms)
        elif everyone:
            centers, norms = new_centers, new_norms
        else:
            centers[group_index] = new_centers
            norms[group_index] = new_norms

        still_active = []
        for position, group in enumerate(active):
            n_iter[group] = iteration + 1
            if verbose:
                print(f"Iteration {iteration}, group {group}, inertia {float(result.potential[position]):.6g}")
            if n_changed[position] == 0:
                if verbose:
                    print(f"Converged at iteration {iteration}: strict convergence (group {group}).")
            elif shift[position] <= tol:
                if verbose:
                    print(
                        f"Converged at iteration {iteration}: center shift {float(shift[position]):.6g} "
                        f"within tolerance {tol:.6g} (group {group})."
                    )
            else:
                still_active.append(group)
        if still_active != active:
            group_index = None
        active = still_active

    inertia = _final_assignment(source, centers, valid, labels)
    return LloydResult(
        centers=[centers[g, : int(valid[g].sum())].clone() for g in range(n_groups)],
        labels=labels,
        inertia=inertia,
        n_iter=n_iter,
        n_replayed=n_replayed,
    )


class _Iteration(NamedTuple):
    """What one iteration of the active groups computes on the device, before any of it
    is looked at on the host. Flat, so that a recording's outputs are a tuple of tensors."""

    sums: torch.Tensor  # (A, k_max, d) float64: the pass's weighted sums per centre
    weight_sums: torch.Tensor  # (A, k_max) float64
    potential: torch.Tensor  # (A,) float64: inertia against the old centres (zeros unless verbose)
    new_centers: torch.Tensor  # (A, k_max, d): the means, before any relocation
    new_norms: torch.Tensor  # (A, k_max): their padded squared norms
    progress: torch.Tensor  # (3, A) float64: rows whose label changed, centre shift, emptied flag


def _iterate(source, old_centers, old_norms, group_valid, labels, group_index, with_potential) -> _Iteration:
    """One Lloyd iteration of the active groups, launched without waiting on the device."""
    totals = _accumulate_pass(source, old_centers, old_norms, labels, group_index, with_potential)
    update = source.backend.update_centers(totals.sums, totals.weight_sums, totals.n_changed, old_centers,
                                           group_valid)
    return _Iteration(totals.sums, totals.weight_sums, totals.potential, *update)


# Iterations before this one run launch by launch (the first compiles the kernels).
_FIRST_RECORDED_ITERATION = 1


def _recorder_for(source):
    """How to record an iteration on ``source``'s device, or None where it runs launch by launch.

    Only rows held on the GPU by one process qualify (``source.recordable_pass``): a
    streamed pass copies from the host, and a sharded one waits on the other processes,
    inside the iteration.
    """
    return RecordedWork if source.recordable_pass and cuda_graphs_enabled() else None


def _record(recorder, work, device):
    """``recorder(work, device)``, or None (with a warning) where the recording fails: the
    iteration then runs launch by launch, with the same result."""
    try:
        return recorder(work, device)
    except Exception as error:  # noqa: BLE001 - any failure leaves the launch-by-launch loop intact
        warnings.warn(f"gpukmeans: the Lloyd iteration could not be recorded as a CUDA graph ({error}); "
                      "it runs launch by launch, with the same result.", RuntimeWarning, stacklevel=3)
        return None


@dataclass
class _PassTotals:
    sums: torch.Tensor  # (A, k_max, d) float64: weighted sums per centre
    weight_sums: torch.Tensor  # (A, k_max) float64
    n_changed: torch.Tensor  # (A,) int64: rows whose label changed
    potential: torch.Tensor  # (A,) float64: inertia against the old centres (zeros unless asked for)


def _accumulate_pass(source, centers, norms, labels, group_index, with_potential=True) -> _PassTotals:
    """One pass over the rows: each row assigned to its nearest centre per active group
    (``norms``: the centres' padded squared norms), labels updated, totals summed."""
    n_active, k_max, n_features = centers.shape
    device = source.device
    totals = None
    for start, rows, weights in source.lloyd_pass_chunks():
        step = source.lloyd_step(rows, centers, norms, weights, labels[start : start + rows.shape[0]],
                                 group_index, compute_inertia=with_potential)
        # only printed (verbose): it costs a second look at each row
        potential = step.inertia if with_potential else None
        if totals is None:  # the first chunk's totals are fresh tensors: kept, not added to zeros
            totals = _PassTotals(step.sums, step.weight_sums, step.n_changed, potential)
            continue
        totals.sums += step.sums
        totals.weight_sums += step.weight_sums
        totals.n_changed += step.n_changed
        if with_potential:
            totals.potential += potential
    if totals is None:  # no rows here (a holder of an empty share)
        totals = _PassTotals(torch.zeros(n_active, k_max, n_features, dtype=torch.float64, device=device),
                             torch.zeros(n_active, k_max, dtype=torch.float64, device=device),
                             torch.zeros(n_active, dtype=torch.int64, device=device), None)
    if totals.potential is None:
        totals.potential = torch.zeros(n_active, dtype=torch.float64, device=device)
    if source.world_size > 1:
        # One all-reduce per iteration instead of four: latency, not bandwidth, is the cost.
        parts = (totals.sums, totals.weight_sums, totals.n_changed, totals.potential)
        packed = source.reduce_sum(torch.cat([part.flatten().double() for part in parts]))
        sizes = [part.numel() for part in parts]
        sums, weight_sums, n_changed, potential = packed.split(sizes)
        totals.sums = sums.view_as(totals.sums)
        totals.weight_sums = weight_sums.view_as(totals.weight_sums)
        totals.n_changed = n_changed.round().to(torch.int64)  # exact: counts far below 2**53
        totals.potential = potential
    return totals


def _relocate_empty_clusters(source, centers, valid, totals) -> None:
    """Move each empty centre onto one of the points farthest from their own centre.

    As scikit-learn does, in the sums (before dividing): the point leaves its cluster's
    sum and becomes the empty cluster's sum. A point whose leaving would empty its own
    cluster is passed over, so relocation never creates a new empty cluster.
    """
    empty = (totals.weight_sums == 0) & valid
    groups_with_empty = torch.nonzero(empty.any(dim=1)).flatten().tolist()
    if not groups_with_empty:
        return
    group_index = torch.tensor(groups_with_empty, device=source.device)
    sub_centers, sub_valid = centers[group_index], valid[group_index]
    n_empty = int(empty[group_index].sum(dim=1).max())
    # Each cluster can refuse at most one candidate (its last point), hence + k_max.
    n_candidates = n_empty + sub_centers.shape[1]
    distances, indices, owners = _farthest_points(source, sub_centers, sub_valid, n_candidates)
    # One exchange for every group's candidates: with several holders, a row lives on one.
    candidate_points = source.take(indices.flatten()).double().view(*indices.shape, source.n_features)
    candidate_weights = source.weights_of(indices.flatten()).double().view(indices.shape)

    for position, group in enumerate(groups_with_empty):
        empty_ids = torch.nonzero(empty[group]).flatten().tolist()
        sums, weight_sums = totals.sums[group], totals.weight_sums[group]
        for rank in range(indices.shape[1]):
            if not empty_ids:
                break
            if distances[position, rank] < 0:
                break  # no usable candidate left (only zero-weight rows remain)
            owner = int(owners[position, rank])
            weight = candidate_weights[position, rank]
            if weight_sums[owner] - weight <= 0:
                continue
            point = candidate_points[position, rank] * weight
            new_id = empty_ids.pop(0)
            sums[owner] -= point
            weight_sums[owner] -= weight
            sums[new_id] = point
            weight_sums[new_id] = weight


def _farthest_points(source, centers, valid, n_candidates):
    """Per group, the ``n_candidates`` positive-weight rows farthest from their centre.

    Returns ``(distances, global row indices, owning centres)``, each (G, c), the same
    on every holder: each holder keeps its own best, then the best of those are kept.
    """
    norms = padded_sq_norms(centers, valid)
    n_groups = centers.shape[0]
    device = source.device
    best_distances = torch.empty(n_groups, 0, dtype=torch.float64, device=device)
    best_indices = torch.empty(n_groups, 0, dtype=torch.int64, device=device)
    best_owners = torch.empty(n_groups, 0, dtype=torch.int64, device=device)
    for start, rows, weights, result in source.assigned_blocks(centers, norms):
        distances = result.min_sq_distances.double().T  # (G, m)
        if weights is not None:
            distances = distances.masked_fill((weights == 0)[None, :], -1.0)
        first = source.row_offset + start
        row_ids = torch.arange(first, first + rows.shape[0], device=device).expand(n_groups, -1)
        best_distances, best_indices, best_owners = _keep_largest(
            n_candidates,
            torch.cat([best_distances, distances], dim=1),
            torch.cat([best_indices, row_ids], dim=1),
            torch.cat([best_owners, result.labels.T], dim=1),
        )
    if source.world_size == 1:
        return best_distances, best_indices, best_owners
    # Every holder's best, in rank order, then the best of all: (G, c) <-> (c, G) for concat.
    gathered = [source.concat(t.T.contiguous()).T for t in (best_distances, best_indices, best_owners)]
    return _keep_largest(n_candidates, *gathered)


def _keep_largest(n_keep, distances, indices, owners):
    keep = min(n_keep, distances.shape[1])
    distances, order = distances.topk(keep, dim=1)
    return distances, indices.gather(1, order), owners.gather(1, order)


def _final_assignment(source, centers, valid, labels) -> torch.Tensor:
    """Assign every row to the final centres by direct difference in float64 (each label
    is the nearest centre in float64 arithmetic) and return the exact weighted inertia
    per group."""
    inertia = torch.zeros(centers.shape[0], dtype=torch.float64, device=source.device)
    for start, rows, weights, result in source.exactly_assigned_blocks(centers, valid):
        labels[start : start + rows.shape[0]] = result.labels.to(labels.dtype)
        inertia += weighted_sum(result.min_sq_distances, weights)
    return source.reduce_sum(inertia).cpu()


def weighted_sum(distances: torch.Tensor, weights=None) -> torch.Tensor:
    """(G,) float64: per group, the sum of (m, G) float64 distances weighted by the rows' weights."""
    if weights is None:
        return distances.sum(dim=0)
    return (distances * weights.to(device=distances.device, dtype=torch.float64)[:, None]).sum(dim=0)
