"""Every k of a sweep: restarts that share each pass, then each k started from its neighbours.

:func:`fit_every_k` runs group Lloyd (:func:`.lloyd.lloyd`) in rounds. The first runs
every k from each restart's starting centres, all as groups of one run. Each later round
runs, again as groups of one run:

- *growths*: a k from the best solution of the k before it in the sweep, plus the centres
  greedy k-means++ adds to it (:func:`.initialisation.extend_kmeans_plusplus`), from
  ``GROWTHS`` independent draws;
- *merges*: a k from the best solution of the k after it, less one centre: two clusters
  whose merging raises the inertia least (Ward's criterion) become one, ``MERGES`` ways.

Each k keeps its lowest-inertia run. A growth or a merge is tried again wherever the
solution it starts from improved in the round before; rounds stop when nothing improved
(usually after two or three). Starting from a neighbour's solution escapes the local
minima a random start falls into, which restarts alone escape only by luck. The ends of
the range are approached from both sides too: one cluster grows into the smallest k, and
one k above the largest, grown from it, merges back into it.

On a table of more than ``SEARCH_ROWS`` rows the growths and merges search a sample of
that many rows instead, starting from the restarts' solutions; each k the search improves
is run again on the whole table from the sample's centres and kept there if better, and
growths on the whole table then bring down any k left above the one before it. The
search costs a sample's passes, not the table's: at a million rows the sweep's fits take
about what its restarts alone take.

Adding a centre never raises a row's distance to its nearest centre and a Lloyd iteration
never raises the inertia, so a grown k ends at most at its predecessor's inertia: after
the last round, the sweep's inertia never rises with k.

Inertias within a relative ``TIE`` of each other count as equal, and the run already kept
stays: two runs that reach the same partition differ only by the rounding of their sums,
which depends on how the rows are chunked, so the kept run (and the numbering of its
labels) does not.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..sources.memory import InMemorySource
from .initialisation import extend_kmeans_plusplus, random_rows_init
from .lloyd import lloyd

__all__ = ["GROWTHS", "KFit", "MERGES", "SEARCH_ROWS", "fit_every_k"]

# Relative difference of inertia below which two runs count as equally good.
TIE = 1e-9

# Merges that start a k from the k after it, per round: the cheapest pairs by Ward's
# criterion. The cheapest alone often leads back to the basin the restarts found.
MERGES = 3

# Relative improvement of a k's solution for which its neighbours start again from it:
# smaller gains, on k's that only split clusters further, go on for many rounds and move
# no inertia by a measurable amount.
RETRY = 1e-4

# Greedy k-means++ draws that grow a k from the k before it, per round. One draw often
# lands in the same local minimum as the restarts; three rarely all do
# (benchmarks/bench_k_choice.py compares the sweep's inertia with scikit-learn's).
GROWTHS = 3


@dataclass
class KFit:
    """The kept run of one k."""

    centers: torch.Tensor  # (k, d) in the source's dtype
    labels: torch.Tensor  # (n,) this holder's labels, a narrow integer type
    inertia: float  # in the source's (conditioned) units
    n_iter: int
    start: torch.Tensor  # (k, d): the centres the run started from
    origin: str  # "restart", "growth" or "merge"
    work: int = 0  # k * Lloyd iterations over every run of this k


def fit_every_k(source, starts, *, seed, max_iter, tol, verbose=0) -> dict:
    """The best run of every k, ``{k: KFit}``.

    ``starts`` maps each k to its restarts' starting centres (a list of (k, d) tensors);
    ``seed`` seeds the draws of the growths and of the search's sample (the same on every
    holder of rows); ``tol`` is absolute, as in :func:`.lloyd.lloyd`.
    """
    asked = sorted(starts)
    # The smallest k grows from one cluster too (the rows' mean, whatever row it starts at).
    ks = asked if asked[0] == 1 else [1, *asked]
    starts = {1: [source.take(torch.zeros(1, dtype=torch.int64))], **starts}
    n_rows = getattr(source, "total_samples", source.n_samples)
    work = dict.fromkeys(ks, 0)
    kept = {}
    runs = _run(source, [(k, start, "restart") for k in ks for start in starts[k]], max_iter, tol, verbose)
    _keep_better(kept, work, runs)
    if n_rows > SEARCH_ROWS:
        _search_a_sample(source, kept, work, ks, seed=seed, max_iter=max_iter, tol=tol, verbose=verbose)
        below = dict(zip(ks[1:], ks[:-1]))
        rising = [k for k in below if kept[k].inertia > kept[below[k]].inertia]
        _neighbour_rounds(source, kept, work, ks, rising, merging=False, seed=seed, max_iter=max_iter, tol=tol,
                          verbose=verbose)
    else:
        # the largest k takes merges from one k more, grown from it
        ks = ks if asked[-1] >= n_rows else [*ks, asked[-1] + 1]
        _neighbour_rounds(source, kept, work, ks, ks[1:], merging=True, seed=seed, max_iter=max_iter, tol=tol,
                          verbose=verbose)
    for k in asked:
        kept[k].work = work[k]
    return {k: kept[k] for k in asked}


#: Above this many rows, the growths and merges search a sample of this many rows, and
#: only what they find better is refined on the whole table. At 200,000 rows every k stays
#: within 1% of scikit-learn's best of ten (benchmarks/bench_k_choice.py); at 1M x 12 the
#: fits take less than half the time the same search over the whole table takes.
SEARCH_ROWS = 50_000


def _search_a_sample(source, kept, work, ks, *, seed, max_iter, tol, verbose) -> None:
    """Growths and merges on ``SEARCH_ROWS`` rows drawn by weight, from each k's kept run;
    each k the sample improves is run again on the whole table from the sample's centres,
    and kept there if better."""
    rows, _ = random_rows_init(source, SEARCH_ROWS, seed)
    # one chunk, whatever the table's: the search does not depend on how the table is chunked
    sample = InMemorySource(rows, None, chunk_size=rows.shape[0])
    found, scratch = {}, {}
    _keep_better(found, scratch, _run(sample, [(k, kept[k].centers, "restart") for k in ks], max_iter, tol, verbose))
    searched = [*ks, ks[-1] + 1]
    _neighbour_rounds(sample, found, scratch, searched, searched[1:], merging=True, seed=seed, max_iter=max_iter,
                      tol=tol, verbose=verbose)
    moved = [k for k in ks if found[k].origin != "restart"]
    if moved:
        runs = _run(source, [(k, found[k].centers, found[k].origin) for k in moved], max_iter, tol, verbose)
        _keep_better(kept, work, runs)


def _neighbour_rounds(source, kept, work, ks, to_grow, *, merging, seed, max_iter, tol, verbose) -> None:
    """Rounds of growths (of the ks in ``to_grow`` first) and, if ``merging``, merges, until
    nothing improves; ``kept`` holds a run of every k of ``ks`` but perhaps the last."""
    below = dict(zip(ks[1:], ks[:-1]))
    above = dict(zip(ks[:-1], ks[1:]))
    to_merge = [k for k in above if above[k] in kept] if merging else []
    for attempt in range(_MAX_ROUNDS):
        if not to_grow and not to_merge:
            break
        starts = [(k, start, "growth") for k in to_grow
                  for start in _grown(source, kept[below[k]].centers, k, seed, attempt)]
        starts += [(k, start, "merge") for k in to_merge for start in _merged(source, kept[above[k]], k)]
        runs = _run(source, starts, max_iter, tol, verbose)
        improved = _keep_better(kept, work, runs)
        # A k above the k before it takes its best growth, which is not (exact arithmetic
        # guarantees it): a tie of rounding must never leave the curve rising.
        for k in to_grow:
            if kept[k].inertia > kept[below[k]].inertia:
                kept[k] = min((run for run in runs if run.k == k and run.origin == "growth"),
                              key=lambda run: run.inertia).kfit()
        # Neighbours start again from a solution that improved by more than RETRY, and a k
        # above the k before it always does. Merges stop after a few rounds; growths go on
        # to the end, and end: once only growths run, a k changes only where it was grown,
        # so the lowest k grown rises from round to round.
        to_grow = [k for k in below if below[k] in improved or kept[k].inertia > kept[below[k]].inertia]
        to_merge = [k for k in above if above[k] in improved] if merging and attempt < _MERGE_ROUNDS else []


# Rounds with merges, and a bound on all rounds, far above what any table has needed.
_MERGE_ROUNDS = 8
_MAX_ROUNDS = 1000


@dataclass
class _Run:
    """One group of a Lloyd result, made a :class:`KFit` only when kept."""

    k: int
    start: torch.Tensor
    origin: str
    result: object
    group: int

    @property
    def inertia(self) -> float:
        return float(self.result.inertia[self.group])

    @property
    def n_iter(self) -> int:
        return int(self.result.n_iter[self.group])

    def kfit(self) -> KFit:
        return KFit(centers=self.result.centers[self.group], labels=self.result.labels[:, self.group].clone(),
                    inertia=self.inertia, n_iter=self.n_iter, start=self.start, origin=self.origin)


def _run(source, starts, max_iter, tol, verbose) -> list:
    """Lloyd from every ``(k, start, origin)`` of ``starts``, as groups of one run."""
    result = lloyd(source, [start for _, start, _ in starts], max_iter=max_iter, tol=tol, verbose=verbose)
    return [_Run(k, start, origin, result, g) for g, (k, start, origin) in enumerate(starts)]


def _keep_better(kept, work, runs) -> set:
    """Keep each run that beats ``kept[k]`` by more than a tie; the ks whose kept run
    improved by more than ``RETRY``."""
    improved = set()
    for run in runs:
        work[run.k] = work.get(run.k, 0) + run.k * max(1, run.n_iter)
        if run.k not in kept:
            kept[run.k] = run.kfit()
            improved.add(run.k)
            continue
        before = kept[run.k].inertia
        if run.inertia < before - TIE * abs(before):
            kept[run.k] = run.kfit()
            if run.inertia < before - RETRY * abs(before):
                improved.add(run.k)
    return improved


def _grown(source, centers, n_clusters, seed, attempt) -> list:
    """``GROWTHS`` extensions of ``centers`` to ``n_clusters`` centres by greedy k-means++, from
    draws that depend only on (seed, k, attempt)."""
    generators = []
    for draw in range(GROWTHS):
        state = np.random.SeedSequence([seed, n_clusters, attempt, draw]).generate_state(2, dtype=np.uint32)
        generators.append(torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1))
    return [start for start, _ in extend_kmeans_plusplus(source, centers, n_clusters, generators)]


def _merged(source, fit: KFit, n_clusters: int) -> list:
    """``fit``'s centres merged down to ``n_clusters``, ``MERGES`` ways. Merging two clusters
    raises the inertia by Ward's ``w_i w_j / (w_i + w_j) |c_i - c_j|^2`` and puts their
    weighted mean in their place; the cheapest merges are made until one is left to make,
    and the ``MERGES`` cheapest of those are the ways."""
    centers = fit.centers.double()
    weights = None if source.sample_weight is None else source.sample_weight.double()
    sizes = torch.bincount(fit.labels.long(), weights=weights, minlength=centers.shape[0]).double()
    sizes = source.reduce_sum(sizes.to(source.device)).to(centers.device)
    while centers.shape[0] > n_clusters + 1:
        centers, sizes = _merge(centers, sizes, *_cheapest_pairs(centers, sizes)[0])
    return [_merge(centers, sizes, i, j)[0].to(fit.centers.dtype) for i, j in _cheapest_pairs(centers, sizes)]


def _cheapest_pairs(centers, sizes) -> list:
    """The ``MERGES`` pairs of centres whose merging raises the inertia least."""
    n_centers = centers.shape[0]
    pair_sizes = sizes[:, None] + sizes[None, :]
    cost = sizes[:, None] * sizes[None, :] / pair_sizes.clamp_min(1e-300) * torch.cdist(centers, centers).square()
    pairs = torch.triu_indices(n_centers, n_centers, offset=1, device=centers.device)
    cheapest = torch.argsort(cost[pairs[0], pairs[1]], stable=True)[:MERGES]
    return pairs[:, cheapest].T.tolist()


def _merge(centers, sizes, i, j):
    """``centers`` and ``sizes`` with ``i`` and ``j`` replaced by their weighted mean, last."""
    total = sizes[i] + sizes[j]
    mean = (centers[i] * sizes[i] + centers[j] * sizes[j]) / total if total > 0 else centers[i]
    others = [c for c in range(centers.shape[0]) if c not in (i, j)]
    return torch.cat([centers[others], mean[None]]), torch.cat([sizes[others], total[None]])
