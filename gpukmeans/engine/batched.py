"""k-means on many small tables at once, one fit per CPU thread at a time.

The criteria that choose k and judge structure fit k-means to many small tables (some
thousands of rows): uniform reference data for the gap statistic and the structure
verdict. The engine's passes (:mod:`.lloyd`) are built for one large table that every
group reads, and pay a fixed cost per iteration that dominates at that size. Here each
(table, k, restart) is one call of a compiled kernel that runs a whole fit without
returning to Python; the fits are spread over a thread pool (the kernel releases the
GIL), as the engine's CPU kernels are.

Each fit is greedy k-means++ (``2 + int(log k)`` candidates drawn by squared distance,
the best kept, as scikit-learn) then Lloyd until no label changes or no centre moves by
more than scikit-learn's default tolerance (or ``max_iter``); an empty cluster keeps its
centre. Everything is float64 on the host. The draws are uniforms made beforehand from
one seed, so a seed gives the same fits whatever the number of threads.
"""

import concurrent.futures
import math
from dataclasses import dataclass

import numba
import numpy as np
import torch

__all__ = ["BatchedFits", "batched_kmeans"]

# scikit-learn's default tol: centre shifts up to this fraction of the mean variance
_TOL = 1e-4


@dataclass
class BatchedFits:
    """The best restart of every (table, k)."""

    ks: list
    inertia: torch.Tensor  # (T, K) float64
    centers: torch.Tensor  # (T, K, k_max, d) float64; rows past k are zero
    labels: torch.Tensor  # (T, K, m) int64


def batched_kmeans(tables, ks, *, restarts: int, seed: int, max_iter: int = 300) -> BatchedFits:
    """Fit every k of ``ks`` to every table of ``tables`` ((T, m, d)), ``restarts`` times
    each, keeping the lowest inertia of each (table, k)."""
    ks = [int(k) for k in ks]
    tables = np.ascontiguousarray(torch.as_tensor(tables).detach().cpu().numpy(), dtype=np.float64)
    n_tables, n_rows, n_features = tables.shape
    if max(ks) > n_rows:
        raise ValueError(f"k={max(ks)} is more than the {n_rows} rows of each table")
    k_max = max(ks)
    fits = [(t, j, r) for t in range(n_tables) for j in range(len(ks)) for r in range(restarts)]
    uniforms = np.random.default_rng(seed).random((len(fits), 1 + k_max * (2 + int(math.log(k_max)))))
    tolerance = _TOL * tables.var(axis=1).mean(axis=1)
    centers = np.zeros((len(fits), k_max, n_features))
    labels = np.zeros((len(fits), n_rows), dtype=np.int64)
    inertia = np.zeros(len(fits))

    def run(f):
        t, j, _ = fits[f]
        inertia[f] = _fit(tables[t], ks[j], uniforms[f], tolerance[t], max_iter, centers[f], labels[f])

    _map(run, range(len(fits)))
    inertia = inertia.reshape(n_tables, len(ks), restarts)
    best = inertia.argmin(axis=2)
    pick = np.arange(n_tables * len(ks)) * restarts + best.ravel()
    return BatchedFits(
        ks=ks,
        inertia=torch.from_numpy(np.take_along_axis(inertia, best[..., None], axis=2)[..., 0]),
        centers=torch.from_numpy(centers[pick].reshape(n_tables, len(ks), k_max, n_features)),
        labels=torch.from_numpy(labels[pick].reshape(n_tables, len(ks), n_rows)),
    )


_POOL = None


def _map(function, items) -> None:
    """``function`` over ``items`` on a thread pool of ``torch.get_num_threads()`` threads."""
    global _POOL
    threads = max(1, torch.get_num_threads())
    items = list(items)
    if threads == 1 or len(items) == 1:
        for item in items:
            function(item)
        return
    if _POOL is None or _POOL._max_workers < threads:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gpukmeans-batched")
    list(_POOL.map(function, items))


@numba.njit(cache=True, nogil=True)
def _sq_distance(a, b):
    total = 0.0
    for i in range(a.shape[0]):
        diff = a[i] - b[i]
        total += diff * diff
    return total


@numba.njit(cache=True, nogil=True)
def _nearest(row, centers, k):
    """(index, squared distance) of the first of ``centers[:k]`` nearest to ``row``."""
    nearest, nearest_distance = 0, np.inf
    for c in range(k):
        distance = _sq_distance(row, centers[c])
        if distance < nearest_distance:
            nearest, nearest_distance = c, distance
    return nearest, nearest_distance


@numba.njit(cache=True, nogil=True)
def _draw(cumulative, target):
    """The first index whose cumulative value reaches ``target`` (binary search)."""
    low, high = 0, cumulative.shape[0] - 1
    while low < high:
        middle = (low + high) // 2
        if cumulative[middle] < target:
            low = middle + 1
        else:
            high = middle
    return low


@numba.njit(cache=True, nogil=True)
def _fit(rows, k, uniforms, tolerance, max_iter, centers, labels):
    """One fit of ``rows`` with ``k`` centres (written to ``centers[:k]``, labels to
    ``labels``); returns its inertia."""
    n_rows, n_features = rows.shape
    n_trials = 2 + int(math.log(k))
    closest = np.empty(n_rows)
    cumulative = np.empty(n_rows)
    trial = np.empty(n_rows)
    best_trial = np.empty(n_rows)
    used = 0

    first = min(int(uniforms[used] * n_rows), n_rows - 1)
    used += 1
    centers[0] = rows[first]
    for i in range(n_rows):
        closest[i] = _sq_distance(rows[i], centers[0])
    for c in range(1, k):
        total = 0.0
        for i in range(n_rows):
            total += closest[i]
            cumulative[i] = total
        best_potential = np.inf
        best_row = 0
        for _ in range(n_trials):
            if total > 0.0:
                row = _draw(cumulative, uniforms[used] * total)
            else:  # every row is a centre already: any row will do
                row = min(int(uniforms[used] * n_rows), n_rows - 1)
            used += 1
            potential = 0.0
            for i in range(n_rows):
                trial[i] = min(closest[i], _sq_distance(rows[i], rows[row]))
                potential += trial[i]
            if potential < best_potential:
                best_potential = potential
                best_row = row
                best_trial[:] = trial
        centers[c] = rows[best_row]
        closest[:] = best_trial

    sums = np.zeros((k, n_features))
    counts = np.zeros(k)
    for iteration in range(max_iter):
        changed = 0
        for i in range(n_rows):
            nearest, _ = _nearest(rows[i], centers, k)
            if iteration == 0 or labels[i] != nearest:
                changed += 1
            labels[i] = nearest
        if changed == 0:
            break
        sums[:] = 0.0
        counts[:] = 0.0
        for i in range(n_rows):
            sums[labels[i]] += rows[i]
            counts[labels[i]] += 1.0
        shift = 0.0
        for c in range(k):
            if counts[c] > 0:
                moved = sums[c] / counts[c]
                shift += _sq_distance(moved, centers[c])
                centers[c] = moved
        if shift <= tolerance:
            break

    inertia = 0.0
    for i in range(n_rows):
        labels[i], nearest_distance = _nearest(rows[i], centers, k)
        inertia += nearest_distance
    return inertia
