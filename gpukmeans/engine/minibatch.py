"""Mini-batch k-means' steps (scikit-learn's ``_mini_batch_step``): one batch assigned,
the centres moved towards it by counts, rare centres reassigned."""

import numpy as np
import torch

from ..kernels import backend_for, padded_sq_norms
from .lloyd import weighted_sum


def batch_inertia(rows, weights, centers) -> float:
    group = centers[None]
    norms = padded_sq_norms(group, torch.ones(group.shape[:2], dtype=torch.bool, device=group.device))
    backend = backend_for(rows.device, rows.dtype)
    labels = backend.assign(rows, group, norms, accumulate=False).labels
    return float(weighted_sum(backend.exact_sq_distances(rows, group, labels), weights).sum())


def minibatch_step(rows, weights, centers, counts, random_state, *, random_reassign, reassignment_ratio, verbose):
    """One mini-batch update; returns the new centres and the batch inertia (old centres).

    ``counts`` (the weight each centre has absorbed) is updated in place. A centre
    moves to ``(c * count + sum of its batch rows) / (count + their weight)``; a
    centre with no batch rows stays.
    """
    group = centers[None]
    norms = padded_sq_norms(group, torch.ones(group.shape[:2], dtype=torch.bool, device=group.device))
    backend = backend_for(rows.device, rows.dtype)
    result = backend.assign(rows, group, norms, weights)
    inertia = float(weighted_sum(backend.exact_sq_distances(rows, group, result.labels), weights).sum())
    batch_weights, batch_sums = result.weight_sums[0], result.sums[0]
    moved = batch_weights > 0
    new_counts = counts + batch_weights
    updated = (centers * counts[:, None] + batch_sums) / new_counts.clamp_min(torch.finfo(counts.dtype).tiny)[:, None]
    new_centers = torch.where(moved[:, None], updated, centers)
    counts.copy_(new_counts)

    if random_reassign and reassignment_ratio > 0:
        host_counts = counts.cpu().numpy()
        to_reassign = host_counts < reassignment_ratio * host_counts.max()
        n_rows = rows.shape[0]
        # At most half a batch of centres moves at once.
        if to_reassign.sum() > 0.5 * n_rows:
            to_reassign[np.argsort(host_counts)[int(0.5 * n_rows) :]] = False
        n_reassigns = int(to_reassign.sum())
        if n_reassigns:
            chosen = random_state.choice(n_rows, replace=False, size=n_reassigns)
            if verbose:
                print(f"[MiniBatchKMeans] Reassigning {n_reassigns} cluster centers.")
            targets = torch.from_numpy(np.nonzero(to_reassign)[0]).to(centers.device)
            new_centers[targets] = rows[torch.from_numpy(chosen).to(rows.device)]
        # A moved centre restarts at the smallest count kept, so that it is not moved again at once.
        if not to_reassign.all():
            host_counts[to_reassign] = host_counts[~to_reassign].min()
            counts.copy_(torch.from_numpy(host_counts))
    return new_centers, inertia
