"""The initialisations draw rows with the probabilities they promise: chi-square tests.

Each test draws many times from a small table through the function that draws and
compares the counts with the promised probabilities (weight for the first centre and
"random", weight x D^2 for k-means++ and for k-means||'s sampling rounds). The seeds are
fixed, so each result is fixed too; the thresholds say how far from the promise the
counts may be (p >= 0.001) and each test also shows that a plausible wrong rule (D
instead of D^2, the weights left out) would be rejected by the same counts.
"""

import numpy as np
import pytest
import torch
from scipy import stats

from _engine_checks import TakeRecordingSource
from gpukmeans import kernels
from gpukmeans.engine import initialisation as _init
from gpukmeans.sources import InMemorySource

# Eight rows on a line at uneven gaps, so that D and D^2 give very different odds.
POSITIONS = torch.tensor([0.0, 1.0, 1.5, 4.0, 4.2, 7.0, 9.0, 12.0], dtype=torch.float64)
WEIGHTS = torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0, 4.0, 1.5, 0.25], dtype=torch.float64)
ACCEPT = 1e-3  # the p-value a right rule's counts must reach
REJECT = 1e-12  # the p-value a wrong rule's counts must fall below


def _table():
    return torch.stack([POSITIONS, torch.zeros_like(POSITIONS)], dim=1)


def _p_value(counts, probabilities) -> float:
    """Pearson's chi-square p-value of ``counts`` against ``probabilities`` (rows with
    probability zero must have no count, and take no part in the test)."""
    counts, probabilities = np.asarray(counts, dtype=float), np.asarray(probabilities, dtype=float)
    possible = probabilities > 0
    assert counts[~possible].sum() == 0, "a row of probability zero was drawn"
    expected = counts.sum() * probabilities[possible] / probabilities[possible].sum()
    return float(stats.chisquare(counts[possible], expected).pvalue)


def _sq_distances_to(rows):
    """(n,) squared distance from each row of the table to the nearest of ``rows``."""
    return ((POSITIONS[:, None] - POSITIONS[rows][None, :]) ** 2).min(dim=1).values


@pytest.mark.parametrize("weighted", [False, True])
def test_the_first_centre_is_drawn_by_weight(weighted):
    # k-means++'s and k-means||'s first centre
    weights = WEIGHTS if weighted else None
    source = InMemorySource(_table(), weights, chunk_size=3)
    drawn = _init._draw_proportional(source, None, 4_000, torch.Generator().manual_seed(0))
    counts = np.bincount(drawn.numpy(), minlength=8)
    truth = WEIGHTS if weighted else torch.ones(8, dtype=torch.float64)
    assert _p_value(counts, truth) >= ACCEPT
    if weighted:
        assert _p_value(counts, torch.ones(8)) < REJECT


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_plusplus_draws_candidates_by_weight_times_squared_distance(monkeypatch, fused, weighted):
    # Three centres, 5,000 candidates a step: the second step's candidates follow
    # weight * D^2 to the first centre, the third's weight * D^2 to the nearer of the
    # first two. Blocks of three rows: a draw picks a block by its total, then a row.
    monkeypatch.setattr(_init, "_PLUSPLUS_BLOCK_ROWS", 3)
    weights = WEIGHTS if weighted else None
    source = TakeRecordingSource(_table(), weights, chunk_size=5)
    source.backend = kernels.new_backend("cpu", torch.float64)
    source.backend.fused_potentials = fused  # off: the potentials from the assignment's distances
    _, chosen = _init.kmeans_plusplus_tensor(source, 3, torch.Generator().manual_seed(1), n_local_trials=5_000)
    step_candidates = [taken for taken in source.taken if taken.numel() == 5_000]
    assert len(step_candidates) == 2
    unit = torch.ones(8, dtype=torch.float64)
    row_weights = WEIGHTS if weighted else unit
    for step, candidates in enumerate(step_candidates, start=1):
        counts = np.bincount(candidates.numpy(), minlength=8)
        sq_distances = _sq_distances_to(chosen[:step])
        assert _p_value(counts, row_weights * sq_distances) >= ACCEPT
        assert _p_value(counts, row_weights * sq_distances.sqrt()) < REJECT
        if weighted:
            assert _p_value(counts, sq_distances) < REJECT


def test_kmeans_parallel_keeps_rows_by_weight_times_squared_distance():
    # One sampling round over 16,000 rows: 2,000 copies of each of the eight rows, every
    # other copy with the weight of the row and the rest with weight 1, so the same
    # distance comes with two weights. Each row is kept on its own with probability
    # l * w * D^2 / phi (all below 1 here), so the kept count of each (position, weight)
    # group is a sum of independent draws with a known mean and variance.
    copies = 2_000
    X = _table().repeat_interleave(copies, dim=0)
    position = torch.arange(8).repeat_interleave(copies)
    doubled = torch.arange(X.shape[0]) % 2 == 0
    weights = torch.where(doubled, WEIGHTS[position], torch.ones(X.shape[0], dtype=torch.float64))
    source = TakeRecordingSource(X, weights, chunk_size=5_000)
    n_clusters, oversampling = 4, 400.0  # about 1,600 rows kept of 16,000
    _init.kmeans_parallel(source, n_clusters, 7, torch.Generator().manual_seed(3),
                          oversampling=oversampling, n_rounds=1)
    first, kept = source.taken[0], source.taken[1]
    assert first.numel() == 1 and 1_000 < kept.numel() < 2_200

    def chi_square(row_values):
        probability = (oversampling * n_clusters * row_values / row_values.sum()).clamp(max=1.0)
        group = 2 * position + doubled.long()  # 16 groups: a position, with or without its weight
        was_kept = torch.zeros(X.shape[0], dtype=torch.float64)
        was_kept[kept] = 1.0
        observed = torch.zeros(16, dtype=torch.float64).index_add_(0, group, was_kept)
        mean = torch.zeros(16, dtype=torch.float64).index_add_(0, group, probability)
        variance = torch.zeros(16, dtype=torch.float64).index_add_(0, group, probability * (1 - probability))
        possible = variance > 0
        assert torch.equal(observed[~possible], mean[~possible])  # the first centre's copies: never kept
        statistic = float((((observed - mean) ** 2)[possible] / variance[possible]).sum())
        return float(stats.chi2.sf(statistic, int(possible.sum())))

    sq_distances = ((X[:, 0] - X[first, 0]) ** 2)
    assert (weights * sq_distances).max() * oversampling * n_clusters < (weights * sq_distances).sum()
    assert chi_square(weights * sq_distances) >= ACCEPT
    assert chi_square(sq_distances) < REJECT  # the weights left out
    assert chi_square(weights * sq_distances.sqrt()) < REJECT


@pytest.mark.parametrize("weighted", [False, True])
def test_random_init_draws_rows_by_weight(weighted):
    # One centre from each of 2,000 seeds: row i wins with probability w_i / sum(w).
    weights = WEIGHTS if weighted else None
    source = InMemorySource(_table(), weights, chunk_size=3)
    wins = [int(_init.random_rows_init(source, 1, seed)[1][0]) for seed in range(2_000)]
    counts = np.bincount(wins, minlength=8)
    assert _p_value(counts, WEIGHTS if weighted else torch.ones(8)) >= ACCEPT
    if weighted:
        assert _p_value(counts, torch.ones(8)) < REJECT
