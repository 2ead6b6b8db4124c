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
from gpukmeans.engine.uniforms import row_uniforms
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


@pytest.mark.parametrize("scale", [1.0, 0.01])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_plusplus_draws_candidates_by_weight_times_squared_distance(monkeypatch, fused, weighted, scale):
    # Three centres, 5,000 candidates a step: the second step's candidates follow
    # weight * D^2 to the first centre, the third's weight * D^2 to the nearer of the
    # first two. Blocks of three rows: a draw picks a block by its total, then a row.
    # At a scale of 0.01 every total of w * D^2 is below 1.
    monkeypatch.setattr(_init, "_PLUSPLUS_BLOCK_ROWS", 3)
    weights = WEIGHTS if weighted else None
    source = TakeRecordingSource(_table() * scale, weights, chunk_size=5)
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



@pytest.mark.parametrize("given", [[0, 7], [0, 4, 7]])
def test_extensions_draw_candidates_by_weight_times_squared_distance_to_every_given_centre(monkeypatch, given):
    # A sweep's growth from two or three centres: the first added centre's candidates
    # follow weight * D^2 to the nearest of all the given centres, not of the last alone.
    monkeypatch.setattr(_init, "_PLUSPLUS_BLOCK_ROWS", 3)
    source = TakeRecordingSource(_table(), WEIGHTS, chunk_size=5)
    (_, added), = _init.extend_kmeans_plusplus(source, _table()[given], len(given) + 2,
                                                [torch.Generator().manual_seed(2)], n_local_trials=5_000)
    step_candidates = [taken for taken in source.taken if taken.numel() == 5_000]
    assert len(step_candidates) == 2
    for step, candidates in enumerate(step_candidates):
        counts = np.bincount(candidates.numpy(), minlength=8)
        sq_distances = _sq_distances_to(given + added[:step].tolist())
        assert _p_value(counts, WEIGHTS * sq_distances) >= ACCEPT
        if step == 0:
            assert _p_value(counts, WEIGHTS * _sq_distances_to(given[-1:])) < REJECT
            assert _p_value(counts, WEIGHTS * _sq_distances_to(given[:1])) < REJECT


@pytest.mark.parametrize("fused", [True, False])
def test_kmeans_plusplus_pass_sums_weight_times_lowered_distance_per_block_in_float64(monkeypatch, fused):
    # one pass: each row's distance lowered to the first point, then every point's
    # potential sum(w * min(D^2, |x - p|^2)) over each block of rows, against numpy;
    # unfused, each chunk of 700 rows in pieces of 256 (the smallest)
    monkeypatch.setattr(_init, "assign_block_bytes", lambda device: 1)
    rng = np.random.default_rng(9)
    X = torch.from_numpy(rng.standard_normal((2_500, 3)))
    weights = torch.from_numpy(rng.uniform(0.1, 2.0, 2_500))
    source = InMemorySource(X, weights, chunk_size=700)
    source.backend = kernels.new_backend("cpu", torch.float64)
    source.backend.fused_potentials = fused
    points = X[[5, 900, 2_000]]
    closest = torch.from_numpy(rng.uniform(0.0, 20.0, 2_500))
    expected_closest = np.minimum(closest.numpy(), ((X - points[0]) ** 2).sum(dim=1).numpy())
    totals = _init._lower_and_weigh(source, closest, points)
    assert totals.dtype == torch.float64 and totals.shape == (3, 3)
    np.testing.assert_allclose(closest.numpy(), expected_closest, rtol=1e-12, atol=1e-12)
    to_points = ((X[:, None, :] - points[None, :, :]) ** 2).sum(dim=2).numpy()
    potentials = weights.numpy()[:, None] * np.minimum(expected_closest[:, None], to_points)
    per_block = np.stack([potentials[start : start + 1024].sum(axis=0) for start in (0, 1024, 2048)])
    np.testing.assert_allclose(totals.numpy(), per_block, rtol=1e-12)

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


def _kept_by_rounds(X, weights, first, seed, n_clusters, oversampling, n_rounds):
    """k-means||'s sampling rounds from their definition: round r keeps row i when its
    uniform ``row_uniforms(seed + r, i)`` is at most ``min(1, l * w_i * D_i^2 / phi)``,
    D being the distance to the nearest row chosen so far (``first`` and every earlier
    round's rows), ``l = oversampling * k`` and ``phi`` the sum of ``w * D^2``; the rounds
    stop when ``phi`` is 0. Returns each round's kept rows (empty rounds included)."""
    X, weights = X.numpy(), weights.numpy()
    closest = ((X - X[first]) ** 2).sum(axis=1)
    rounds = []
    for round_number in range(n_rounds):
        total = (weights * closest).sum()
        if total <= 0:
            break
        probability = np.minimum(1.0, oversampling * n_clusters * weights * closest / total)
        uniforms = row_uniforms(seed + round_number, torch.arange(len(X))).numpy()
        kept = np.flatnonzero(uniforms <= probability)
        rounds.append(kept)
        for row in kept:
            closest = np.minimum(closest, ((X - X[row]) ** 2).sum(axis=1))
    return rounds


def _check_rounds(X, weights, seed, n_clusters, **options):
    """Runs k-means|| on ``X`` and checks the rows each round read against the
    definition; returns the rounds' kept rows."""
    source = TakeRecordingSource(X, weights, chunk_size=150)
    _init.kmeans_parallel(source, n_clusters, seed, torch.Generator().manual_seed(seed), **options)
    defaults = {"oversampling": 2.0, "n_rounds": 5}  # the documented defaults
    rounds = _kept_by_rounds(X, weights, int(source.taken[0]), seed, n_clusters, **{**defaults, **options})
    nonempty = [kept for kept in rounds if kept.size]
    # the first centre, then one read per round that kept rows, then the candidates
    read_by_rounds = source.taken[1 : 1 + len(nonempty)]
    assert [kept.tolist() for kept in read_by_rounds] == [kept.tolist() for kept in nonempty]
    candidates = np.unique(np.concatenate([source.taken[0].numpy(), *nonempty]))
    assert source.taken[1 + len(nonempty)].tolist() == candidates.tolist()
    return rounds


def test_kmeans_parallel_rounds_keep_the_rows_their_definition_keeps(monkeypatch):
    # The default five rounds of l = 2k, over blocks of 64 rows, on one feature: a sum
    # of w * D^2 below 1 (rows within 0.01 of each other) must not stop the rounds.
    monkeypatch.setattr(_init, "_BLOCK_ROWS", 64)
    rng = np.random.default_rng(4)
    X = torch.from_numpy(rng.uniform(0.0, 0.01, (600, 1)))
    weights = torch.from_numpy(rng.uniform(0.5, 1.5, 600))
    rounds = _check_rounds(X, weights, 11, 10)
    assert len(rounds) == 5 and all(kept.size > 1 for kept in rounds)


@pytest.mark.parametrize("rows_as_ints", [True, False])
def test_kmeans_parallel_rounds_that_keep_no_row_or_one_row(monkeypatch, rows_as_ints):
    # About one row a round (l = 1): rounds that keep no row, one row or two, and a
    # round that keeps rows after one that kept none. The CPU gathers the kept rows as
    # Python ints; a GPU as tensors, which this runs on the CPU too.
    monkeypatch.setattr(_init, "_rows_as_python_ints", lambda device: rows_as_ints)
    monkeypatch.setattr(_init, "_BLOCK_ROWS", 64)
    rng = np.random.default_rng(2)
    X = torch.from_numpy(rng.standard_normal((300, 2)))
    weights = torch.from_numpy(rng.uniform(0.5, 1.5, 300))
    rounds = _check_rounds(X, weights, 5, 2, oversampling=0.5, n_rounds=8)
    sizes = [kept.size for kept in rounds]
    assert {0, 1, 2} <= set(sizes) and any(a == 0 and b > 0 for a, b in zip(sizes, sizes[1:])), sizes


def _seed_whose_uniform_is_one(row: int) -> int:
    """The seed that gives ``row`` the uniform 1 exactly (the top 53 bits of its hash
    all ones): splitmix64's finaliser run backwards from the hash 2**64 - 1."""
    mask = (1 << 64) - 1

    def undo_xor_shift(y, bits):
        x = y
        for _ in range(64 // bits + 1):
            x = y ^ (x >> bits)
        return x

    x = undo_xor_shift(mask, 31) * pow(0x94D049BB133111EB, -1, 1 << 64) & mask
    x = undo_xor_shift(x, 27) * pow(0xBF58476D1CE4E5B9, -1, 1 << 64) & mask
    x = undo_xor_shift(x, 30)
    return (x - row * 0x9E3779B97F4A7C15 - 1) * pow(0x632BE59BD9B4E019, -1, 1 << 64) & mask


def test_a_zero_weight_row_is_never_drawn_even_at_a_uniform_of_one():
    # Its key log(1) / 0 is 0 / 0: the zero weight must rule it out, not the division.
    seed = _seed_whose_uniform_is_one(3)
    assert float(row_uniforms(seed, torch.tensor([3]))[0]) == 1.0
    weights = WEIGHTS.clone()
    weights[3] = 0.0
    _, rows = _init.random_rows_init(InMemorySource(_table(), weights, chunk_size=3), 7, seed)
    assert sorted(rows.tolist()) == [0, 1, 2, 4, 5, 6, 7]
    # with a positive weight its key, 0, is the largest a key can be
    _, rows = _init.random_rows_init(InMemorySource(_table(), WEIGHTS, chunk_size=3), 1, seed)
    assert rows.tolist() == [3]


def test_kmeans_parallel_keeps_a_row_of_probability_one_even_at_a_uniform_of_one():
    # l = 400 over eight rows: every row but the first centre has min(1, l w D^2 / phi) = 1.
    seed = _seed_whose_uniform_is_one(6)
    source = TakeRecordingSource(_table(), WEIGHTS, chunk_size=3)
    _init.kmeans_parallel(source, 2, seed, torch.Generator().manual_seed(0), oversampling=200.0, n_rounds=1)
    first = int(source.taken[0])
    potentials = WEIGHTS * _sq_distances_to([first])
    assert first != 6 and float((400.0 * potentials / potentials.sum())[potentials > 0].min()) >= 1.0
    assert source.taken[1].tolist() == [row for row in range(8) if row != first]
