"""Plain-PyTorch reference of the fused assign-and-accumulate step, and of Lloyd's
centre update after it.

It is the definition every fast path is tested against, and the fallback on any
device. It holds one chunk's ``m x (G * k_max)`` distances, never ``m x k x d``.
"""

from typing import NamedTuple, Optional

import torch


class AssignResult(NamedTuple):
    labels: torch.Tensor  # (m, G) int64: nearest centre within each group
    min_sq_distances: torch.Tensor  # (m, G), X's dtype, clamped at 0
    sums: Optional[torch.Tensor]  # (G, k_max, d), X's dtype: sum of w * x per centre
    weight_sums: Optional[torch.Tensor]  # (G, k_max), X's dtype: sum of w per centre


def assign_accumulate_reference(
    X: torch.Tensor,
    centers: torch.Tensor,
    center_sq_norms: torch.Tensor,
    weights: Optional[torch.Tensor] = None,
    *,
    accumulate: bool = True,
) -> AssignResult:
    """Assign each row of ``X`` to its nearest centre in every group, and accumulate.

    Parameters
    ----------
    X : (m, d) tensor, float32 or float64.
    centers : (G, k_max, d) tensor, X's dtype and device. Groups with fewer than
        ``k_max`` centres are padded with any finite rows.
    center_sq_norms : (G, k_max) tensor, ``||c||^2``, with ``+inf`` at padding so
        that a padded slot is never chosen.
    weights : (m,) tensor or None (all ones).
    accumulate : when False, ``sums`` and ``weight_sums`` are None (prediction).

    Ties go to the lowest index, like ``torch.argmin`` and scikit-learn.
    """
    n_groups, k_max, n_features = centers.shape
    flat_centers = centers.reshape(n_groups * k_max, n_features)
    # ||x - c||^2 = ||x||^2 + ||c||^2 - 2 x.c ; the ||x||^2 term does not change the argmin.
    partial = torch.addmm(
        center_sq_norms.reshape(1, -1), X, flat_centers.T, beta=1.0, alpha=-2.0
    ).view(-1, n_groups, k_max)
    partial_min, labels = partial.min(dim=2)
    x_sq_norms = (X * X).sum(dim=1, keepdim=True)
    min_sq_distances = (partial_min + x_sq_norms).clamp_min_(0)
    if not accumulate:
        return AssignResult(labels, min_sq_distances, None, None)

    flat_index = (
        labels + torch.arange(n_groups, device=X.device).mul_(k_max).view(1, -1)
    ).reshape(-1)
    row_weights = (
        torch.ones(X.shape[0], dtype=X.dtype, device=X.device)
        if weights is None
        else weights.to(X.dtype)
    )
    weighted_X = X * row_weights[:, None]
    sums = torch.zeros(n_groups * k_max, n_features, dtype=X.dtype, device=X.device)
    sums.index_add_(0, flat_index, weighted_X.repeat_interleave(n_groups, dim=0)
                    if n_groups > 1 else weighted_X)
    weight_sums = torch.zeros(n_groups * k_max, dtype=X.dtype, device=X.device)
    weight_sums.index_add_(
        0, flat_index,
        row_weights.repeat_interleave(n_groups) if n_groups > 1 else row_weights,
    )
    return AssignResult(
        labels,
        min_sq_distances,
        sums.view(n_groups, k_max, n_features),
        weight_sums.view(n_groups, k_max),
    )


class StepResult(NamedTuple):
    sums: torch.Tensor  # (G, k_max, d) float64: sum of w * x per centre
    weight_sums: torch.Tensor  # (G, k_max) float64: sum of w per centre
    n_changed: torch.Tensor  # (G,) int64: rows whose label differs from the one stored before
    inertia: Optional[torch.Tensor]  # (G,) float64: sum of w * squared distance; None if not asked


def lloyd_step_reference(
    X: torch.Tensor,
    centers: torch.Tensor,
    center_sq_norms: torch.Tensor,
    weights: Optional[torch.Tensor],
    labels: torch.Tensor,
    label_columns: torch.Tensor,
    *,
    compute_inertia: bool = True,
) -> StepResult:
    """One chunk of one Lloyd pass: assign, accumulate, and update the stored labels.

    ``labels`` is the chunk's block of the label table, (m, C) of any integer dtype;
    group ``g`` owns column ``label_columns[g]``. The new labels are written there in
    place, after counting how many differ from what was stored. Everything else is
    returned as per-group totals, so a Lloyd pass keeps no per-row array but the labels.
    The inertia (against these centres) costs a second look at every row: it is
    only computed when ``compute_inertia``.
    """
    result = assign_accumulate_reference(X, centers, center_sq_norms, weights)
    new_labels = result.labels.to(labels.dtype)
    n_changed = (labels[:, label_columns] != new_labels).sum(dim=0)
    labels[:, label_columns] = new_labels
    inertia = None
    if compute_inertia:
        distances = result.min_sq_distances.double()
        if weights is not None:
            distances = distances * weights.double()[:, None]
        inertia = distances.sum(dim=0)
    return StepResult(result.sums.double(), result.weight_sums.double(), n_changed, inertia)


def candidate_potentials_reference(
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
    """k-means++'s potential of each candidate centre: ``sum_i w_i min(closest_i, ||x_i - c_j||^2)``.

    ``candidates`` is (T, d) with its squared norms (T,); ``closest`` (n,) is each
    row's squared distance to the nearest centre chosen so far. Returns (T,) float64.
    The distances are the assignment's (``||x||^2 + ||c||^2 - 2 x.c``, clamped at 0).

    ``lower_closest``: the first candidate is a centre already chosen; ``closest`` is
    first lowered in place to each row's distance to it, and every potential is taken
    against the lowered values (the first one's is then their weighted total). So one
    pass both applies a greedy step's choice and weighs the next step's candidates.

    ``block_rows``: the potentials per block of rows, (blocks, T), instead of their
    total, for draws in proportion to the lowered distances. Block ``b`` holds the rows
    ``i`` with ``(block_offset + i) // block_rows == b``: a caller passing a chunk
    that starts inside a block says how far inside.
    """
    result = assign_accumulate_reference(X, candidates[:, None, :], candidate_sq_norms[:, None], accumulate=False)
    return potentials_from_distances(result.min_sq_distances, closest, weights, lower_closest=lower_closest,
                                     block_rows=block_rows, block_offset=block_offset)


def potentials_from_distances(distances, closest, weights=None, *, lower_closest=False, block_rows=None,
                              block_offset=0) -> torch.Tensor:
    """:func:`candidate_potentials_reference` of candidates whose per-row distances
    ``(n, T)`` are at hand."""
    if lower_closest:
        torch.minimum(closest, distances[:, 0].to(closest.dtype), out=closest)
    nearest = torch.minimum(distances, closest[:, None].to(distances.dtype)).double()
    if weights is not None:
        nearest = nearest * weights.double()[:, None]
    if block_rows is None:
        return nearest.sum(dim=0)
    return _block_sums(nearest, block_rows, block_offset)


def _block_sums(values: torch.Tensor, block_rows: int, block_offset: int) -> torch.Tensor:
    """``values`` (n, T) summed per block of rows (see :func:`candidate_potentials_reference`),
    each block's rows added one after another, so that a block's total does not depend
    on the blocks around it."""
    n_blocks = -(-(block_offset + values.shape[0]) // block_rows)
    padded = values.new_zeros((n_blocks * block_rows, values.shape[1]))
    padded[block_offset:block_offset + values.shape[0]] = values
    return padded.view(n_blocks, block_rows, -1).cumsum(dim=1)[:, -1]


def padded_sq_norms(centers: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``||c||^2`` per centre, ``+inf`` at padding so that padding is never nearest."""
    norms = (centers * centers).sum(dim=2)
    return norms.masked_fill(~valid, float("inf"))


class CenterUpdate(NamedTuple):
    new_centers: torch.Tensor  # (A, k_max, d), the old centres' dtype: the weighted means
    new_norms: torch.Tensor  # (A, k_max): their padded squared norms (see padded_sq_norms)
    progress: torch.Tensor  # (3, A) float64: label changes, centre shift, whether a centre emptied


def update_centers_reference(sums, weight_sums, n_changed, old_centers, valid) -> CenterUpdate:
    """Lloyd's update of A groups of centres from one pass's totals.

    Parameters
    ----------
    sums : (A, k_max, d) float64, the weighted sums of the rows assigned to each centre.
    weight_sums : (A, k_max) float64, their weights.
    n_changed : (A,) rows whose label changed, any numeric dtype.
    old_centers : (A, k_max, d), the centres the pass assigned to (their dtype is kept).
    valid : (A, k_max) bool, False at padding.

    A centre nobody was assigned to keeps its place (never NaN, never 0). ``progress``
    holds, per group, ``n_changed``, the squared distance the centres moved (summed
    over centres, in float64) and 1.0 where a valid centre got no weight, else 0.0:
    everything the host needs to look at, in one tensor (one transfer).
    """
    has_weight = weight_sums[..., None] > 0
    means = sums / torch.where(has_weight, weight_sums[..., None], 1.0)
    new_centers = torch.where(has_weight, means, old_centers.double()).to(old_centers.dtype)
    shift = ((new_centers.double() - old_centers.double()) ** 2).sum(dim=(1, 2))
    emptied = ((weight_sums == 0) & valid).any(dim=1)
    progress = torch.stack([n_changed.double(), shift, emptied.double()])
    return CenterUpdate(new_centers, padded_sq_norms(new_centers, valid), progress)
