"""Initialisations: k-means++, random rows and k-means||."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans

from _engine_checks import TakeRecordingSource
from gpukmeans import KMeans, kmeans_plusplus


def test_kmeans_plusplus_returns_rows_of_X(blobs):
    X, _ = blobs
    centers, indices = kmeans_plusplus(X, 5, random_state=0, device="cpu")
    assert centers.shape == (5, 4) and indices.shape == (5,)
    assert len(set(indices.tolist())) == 5
    np.testing.assert_array_equal(centers, X[indices])


def test_kmeans_plusplus_keeps_tensor_inputs_as_tensors(blobs):
    X, _ = blobs
    centers, indices = kmeans_plusplus(torch.as_tensor(X), 5, random_state=0, device="cpu")
    assert isinstance(centers, torch.Tensor) and isinstance(indices, torch.Tensor)


@pytest.mark.parametrize("seed", range(10))
def test_zero_weight_rows_are_never_chosen(blobs, seed):
    X, _ = blobs
    weights = np.zeros(len(X))
    allowed = np.random.RandomState(seed).choice(len(X), 40, replace=False)
    weights[allowed] = 1.0
    _, indices = kmeans_plusplus(X, 8, sample_weight=weights, random_state=seed, device="cpu")
    assert set(indices.tolist()) <= set(allowed.tolist())
    from gpukmeans.engine import initialisation as _init

    source = TakeRecordingSource(torch.as_tensor(X), torch.as_tensor(weights), chunk_size=64)
    _, rows = _init.random_rows_init(source, 8, seed)
    _init.kmeans_parallel(source, 8, seed, torch.Generator().manual_seed(seed))
    # every row k-means|| reads is a centre or a candidate: its first centre, each
    # round's sampled rows, and the candidates it weighs
    read = torch.cat(source.taken).tolist()
    assert set(rows.tolist()) | set(read) <= set(allowed.tolist())


def test_random_init_picks_distinct_weighted_rows(blobs):
    X, _ = blobs
    weights = np.zeros(len(X))
    weights[:30] = 1.0
    km = KMeans(6, init="random", n_init=1, max_iter=1, tol=0, random_state=0, device="cpu")
    # After one iteration with tol=0 the centres moved; check the seeds through max_iter=1
    # on data where the weighted rows are far apart from the rest is enough to see them.
    from gpukmeans.engine.initialisation import random_rows_init
    from gpukmeans.sources import InMemorySource

    source = InMemorySource(torch.as_tensor(X), torch.as_tensor(weights), chunk_size=64)
    _, rows = random_rows_init(source, 6, seed=123)
    assert len(set(rows.tolist())) == 6 and set(rows.tolist()) <= set(range(30))
    km.fit(X, sample_weight=weights)
    assert np.isfinite(km.cluster_centers_).all()


def test_kmeans_plusplus_spreads_seeds_over_the_blobs(blobs):
    X, y = blobs
    _, indices = kmeans_plusplus(X, 5, random_state=0, device="cpu")
    # Well-separated blobs: k-means++ almost surely seeds each blob once.
    assert len(set(y[indices].tolist())) >= 4


@pytest.mark.parametrize("init", ["k-means++", "k-means||"])
def test_initialisation_quality_matches_scikit_learn(init):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=3000, centers=12, n_features=6, cluster_std=1.0, random_state=5)
    ours = np.mean([KMeans(12, init=init, random_state=s, device="cpu").fit(X).inertia_ for s in range(5)])
    theirs = np.mean([SklearnKMeans(12, n_init=1, random_state=s).fit(X).inertia_ for s in range(5)])
    assert ours <= 1.05 * theirs


def test_kmeans_parallel_is_deterministic_given_a_seed(blobs):
    X, _ = blobs
    a = KMeans(5, init="k-means||", random_state=3, device="cpu").fit(X)
    b = KMeans(5, init="k-means||", random_state=3, device="cpu").fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_callable_init_is_called_with_numpy_data(blobs):
    X, _ = blobs
    calls = []

    def first_rows(data, n_clusters, random_state):
        calls.append(type(data))
        return data[:n_clusters]

    km = KMeans(5, init=first_rows, n_init=1, device="cpu").fit(X)
    assert calls == [np.ndarray]
    reference = KMeans(5, init=X[:5], device="cpu").fit(X)
    np.testing.assert_array_equal(km.labels_, reference.labels_)


def test_kmeans_parallel_gathers_sampled_rows_the_same_way_on_every_device(monkeypatch):
    # the CPU gathers each round's sampled rows as Python ints, a GPU as one tensor per
    # block; both must pick the same candidates in the same order
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.sources import InMemorySource

    X = torch.from_numpy(np.random.default_rng(3).standard_normal((5_000, 4)).astype(np.float32))
    source = InMemorySource(X, None, chunk_size=700)

    def centres(as_ints):
        monkeypatch.setattr(_init, "_rows_as_python_ints", lambda device: as_ints)
        monkeypatch.setattr(_init, "_BLOCK_ROWS", 512)
        return _init.kmeans_parallel(source, 6, 11, torch.Generator().manual_seed(2), oversampling=4.0)

    assert torch.equal(centres(True), centres(False))


@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_plusplus_picks_the_same_centres_with_the_fused_potentials(monkeypatch, weighted):
    # the CPU kernel's one-pass potentials against the blockwise assignment path:
    # the same distances bit for bit, summed in another order, so the same choices
    from gpukmeans import kernels
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.sources import InMemorySource

    rng = np.random.default_rng(5)
    X = torch.from_numpy(rng.standard_normal((6_000, 5)).astype(np.float32))
    weights = torch.from_numpy(rng.random(6_000).astype(np.float32)) if weighted else None
    def init(fused):
        source = InMemorySource(X, weights, chunk_size=1_000)
        source.backend = kernels.new_backend("cpu", torch.float32)
        source.backend.fused_potentials = fused  # off: the potentials from the assignment's distances
        return _init.kmeans_plusplus_tensor(source, 9, torch.Generator().manual_seed(4))

    (fused_centres, fused_rows), (block_centres, block_rows) = init(True), init(False)
    assert torch.equal(fused_rows, block_rows) and torch.equal(fused_centres, block_centres)


@pytest.mark.parametrize("weighted", [False, True])
def test_draw_block_totals_do_not_depend_on_how_many_blocks_are_summed_at_once(monkeypatch, weighted):
    # The draws' block totals are summed many blocks at a time (one transfer from a GPU
    # instead of one per block); how many must not change them, or the draws.
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.sources import InMemorySource

    rng = np.random.default_rng(8)
    X = torch.from_numpy(rng.standard_normal((3 * 512 + 100, 2)))
    weights = torch.from_numpy(rng.random(X.shape[0])) if weighted else None
    source = InMemorySource(X, weights, chunk_size=300)
    values = torch.from_numpy(rng.random(X.shape[0]))
    monkeypatch.setattr(_init, "_BLOCK_ROWS", 512)
    totals, draws = [], []
    for blocks_at_once in (1, 2, 10):
        monkeypatch.setattr(_init, "work_block_bytes", lambda device, n=blocks_at_once: 8 * 512 * n)
        totals.append(_init._block_totals(source, values))
        draws.append(_init._draw_proportional(source, values, 5, torch.Generator().manual_seed(4)))
    per_block = torch.stack([_init._block_values(source, values, start, stop, w).sum()
                             for start, stop, w in _init._weight_blocks(source)])
    assert totals[0].shape == (4,)
    torch.testing.assert_close(totals[0], per_block, rtol=1e-12, atol=0)
    assert all(torch.equal(t, totals[0]) for t in totals[1:])
    assert all(torch.equal(d, draws[0]) for d in draws[1:])


class _CountingSource:
    """An in-memory source that counts the passes over its rows and the rows read again."""

    def __new__(cls, X, weights, chunk_size):
        from gpukmeans.sources import InMemorySource

        class Counting(InMemorySource):
            passes = 0
            rows_read_again = 0

            def chunks(self):
                type(self).passes += 1
                return super().chunks()

            def stored_rows(self, bounds):
                type(self).rows_read_again += sum(stop - start for start, stop in bounds)
                return super().stored_rows(bounds)

        return Counting(X, weights, chunk_size)


@pytest.mark.parametrize("fused", [True, False])
def test_kmeans_plusplus_reads_the_rows_once_per_centre(monkeypatch, fused):
    # each greedy step's one pass lowers the distances to the last centre chosen and
    # weighs the new candidates; a draw reads again only the blocks it falls in
    from gpukmeans import kernels
    from gpukmeans.engine import initialisation as _init

    X = torch.from_numpy(np.random.default_rng(2).standard_normal((20_000, 3)).astype(np.float32))
    source = _CountingSource(X, None, chunk_size=3_000)
    source.backend = kernels.new_backend("cpu", torch.float32)
    source.backend.fused_potentials = fused
    centres, rows = _init.kmeans_plusplus_tensor(source, 10, torch.Generator().manual_seed(1), n_local_trials=3)
    assert len(set(rows.tolist())) == 10
    assert type(source).passes == 10
    assert 0 < type(source).rows_read_again <= 9 * 3 * _init._PLUSPLUS_BLOCK_ROWS


@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_plusplus_picks_the_same_rows_whatever_the_chunk_size(weighted):
    # chunks that start inside a draw block leave it two partial totals; every other
    # block's totals, the lowered distances and the draws do not depend on the chunks
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.sources import InMemorySource

    rng = np.random.default_rng(6)
    X = torch.from_numpy(rng.standard_normal((9_000, 4)).astype(np.float32))
    weights = torch.from_numpy(rng.random(9_000).astype(np.float32)) if weighted else None
    picks = [_init.kmeans_plusplus_tensor(InMemorySource(X, weights, chunk_size=chunk), 12,
                                          torch.Generator().manual_seed(3))[1]
             for chunk in (9_000, 4_096, 1_000, 333)]
    assert all(torch.equal(p, picks[0]) for p in picks[1:])


def _weighted_lloyd(X, weights, centres, n_iter):
    """Lloyd's iterations from their definition (numpy, float64): each row to its nearest
    centre, each centre to the weighted mean of its rows; stops early once no label
    changes. Returns the centres and whether it stopped early."""
    labels = None
    for _ in range(n_iter):
        new_labels = ((X[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            return centres, True
        labels = new_labels
        totals = np.bincount(labels, weights, minlength=len(centres))
        assert (totals > 0).all()  # no cluster empties here: no relocation to mirror
        sums = np.stack([np.bincount(labels, weights * X[:, j], minlength=len(centres)) for j in range(X.shape[1])], 1)
        centres = sums / totals[:, None]
    return centres, False


def _kmeans_parallel_recording_lloyd(monkeypatch, X, weights, n_clusters, **options):
    """k-means|| on ``X``; returns its centres, the rows it read, and the source and
    seeds its refinement ran Lloyd on."""
    from gpukmeans.engine import initialisation as _init

    refinements = []

    def recording_lloyd(source, initial_centers, **kwargs):
        refinements.append((source, initial_centers[0].clone()))
        return lloyd(source, initial_centers, **kwargs)

    lloyd = _init.lloyd
    monkeypatch.setattr(_init, "lloyd", recording_lloyd)
    source = TakeRecordingSource(torch.from_numpy(X), torch.from_numpy(weights), chunk_size=500)
    centres = _init.kmeans_parallel(source, n_clusters, 3, torch.Generator().manual_seed(1), **options)
    (candidate_source, seeds), = refinements
    return centres.numpy(), source.taken, candidate_source, seeds.numpy()


def test_kmeans_parallel_weighs_each_candidate_by_the_weight_nearest_to_it(monkeypatch):
    # the candidates are the rows the rounds read; each weighs the total sample weight
    # of the rows nearest to it, and Lloyd on them (converged here) gives the centres
    rng = np.random.default_rng(0)
    X = rng.random((2_000, 2))
    weights = rng.uniform(0.5, 2.0, 2_000)
    centres, taken, candidate_source, seeds = _kmeans_parallel_recording_lloyd(monkeypatch, X, weights, 12)
    candidates = np.unique(torch.cat(taken[:-1]).numpy())
    assert 12 < len(candidates) < 500
    np.testing.assert_array_equal(candidate_source.X.numpy(), X[candidates])
    nearest = ((X[:, None, :] - X[candidates][None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    expected_weights = np.bincount(nearest, weights, minlength=len(candidates))
    np.testing.assert_allclose(candidate_source.sample_weight.numpy(), expected_weights, rtol=1e-13)
    expected, converged = _weighted_lloyd(X[candidates], expected_weights, seeds, 30)
    assert converged
    np.testing.assert_allclose(centres, expected, rtol=1e-10)


def test_kmeans_parallel_refines_its_seeds_by_thirty_lloyd_iterations(monkeypatch):
    # Rows on a line at almost even gaps converge slowly: 30 iterations leave the
    # centres still moving. With l = 100k every row is a candidate of its own weight.
    rng = np.random.default_rng(0)
    X = ((np.arange(2_000) + rng.uniform(-0.3, 0.3, 2_000)) / 2_000)[:, None]
    weights = rng.uniform(0.5, 2.0, 2_000)
    centres, _, candidate_source, seeds = _kmeans_parallel_recording_lloyd(monkeypatch, X, weights, 20,
                                                                           oversampling=50.0)
    np.testing.assert_array_equal(candidate_source.X.numpy(), X)
    expected, converged = _weighted_lloyd(X, weights, seeds, 30)
    assert not converged and not np.allclose(_weighted_lloyd(X, weights, expected, 1)[0], expected, rtol=1e-6)
    np.testing.assert_allclose(centres, expected, rtol=1e-10)


def test_kmeans_parallel_on_rows_that_all_coincide_returns_the_row_k_times():
    # every w * D^2 is 0 from the first draw on: no round keeps a row
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.sources import InMemorySource

    X = torch.tensor([[1.5, -2.0]], dtype=torch.float64).repeat(10, 1)
    centres = _init.kmeans_parallel(InMemorySource(X, None, chunk_size=4), 3, 0, torch.Generator().manual_seed(0))
    assert torch.equal(centres, X[:3])


@pytest.mark.parametrize("n_clusters", [1, 3])
def test_kmeans_parallel_with_too_few_candidates_is_kmeans_plusplus_over_every_row(blobs, n_clusters):
    # No round: the first centre is the only candidate, at most k of them, so the
    # centres are greedy k-means++ over every row, from the generator as the first draw
    # left it (the global generator takes no part).
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.sources import InMemorySource

    X, _ = blobs
    source = InMemorySource(torch.as_tensor(X), torch.as_tensor(np.linspace(0.5, 2.0, len(X))), chunk_size=100)
    generator = torch.Generator().manual_seed(7)
    first = _init._draw_proportional(source, None, 1, generator)
    expected, rows = _init.kmeans_plusplus_tensor(source, n_clusters, generator)
    assert int(rows[0]) != int(first[0])  # a second draw, not the first candidate again
    torch.manual_seed(123)
    centres = _init.kmeans_parallel(source, n_clusters, 0, torch.Generator().manual_seed(7), n_rounds=0)
    assert torch.equal(centres, expected)


def test_initial_centers_continues_the_generator_it_is_given(blobs):
    # seed only seeds a generator of its own; a given generator's draws go on from its state
    from gpukmeans.engine.initialisation import initial_centers
    from gpukmeans.sources import InMemorySource

    source = InMemorySource(torch.as_tensor(blobs[0]), None, chunk_size=100)
    given = initial_centers(source, "k-means++", 5, 0, torch.Generator().manual_seed(9))
    assert torch.equal(given, initial_centers(source, "k-means++", 5, 9))
    assert not torch.equal(given, initial_centers(source, "k-means++", 5, 0))


def test_initial_centers_names_the_methods_it_knows():
    from gpukmeans.engine.initialisation import initial_centers
    from gpukmeans.sources import InMemorySource

    source = InMemorySource(torch.zeros(4, 2), None, chunk_size=4)
    with pytest.raises(ValueError, match=r"init must be 'k-means\+\+', 'random' or 'k-means\|\|', got 'kmeans'"):
        initial_centers(source, "kmeans", 2, 0)


def test_kmeans_plusplus_of_one_centre_returns_one_row_index(blobs):
    X, _ = blobs
    centers, indices = kmeans_plusplus(X, 1, random_state=0, device="cpu")
    assert indices.dtype == np.int64 and indices.shape == (1,)
    np.testing.assert_array_equal(centers, X[indices])


def test_kmeans_plusplus_weighs_two_plus_log_k_candidates_a_step(blobs):
    # as scikit-learn: 2 + int(ln k) candidates per greedy step (k = 10: 4)
    from gpukmeans.engine import initialisation as _init

    source = TakeRecordingSource(torch.as_tensor(blobs[0]), None, chunk_size=100)
    _init.kmeans_plusplus_tensor(source, 10, torch.Generator().manual_seed(0))
    assert [taken.numel() for taken in source.taken] == [1] + [4] * 9


def test_random_init_keeps_the_rows_of_largest_key_over_every_block(monkeypatch):
    # Efraimidis and Spirakis from the definition: the k largest log(u_i) / w_i, u_i the
    # row's uniform; blocks of three rows leave every block but the first at an offset
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.engine.uniforms import row_uniforms
    from gpukmeans.sources import InMemorySource

    monkeypatch.setattr(_init, "_BLOCK_ROWS", 3)
    rng = np.random.default_rng(1)
    X = torch.from_numpy(rng.standard_normal((20, 2)))
    weights = torch.from_numpy(rng.uniform(0.1, 3.0, 20))
    for seed in range(5):
        keys = torch.log(row_uniforms(seed, torch.arange(20))) / weights
        _, rows = _init.random_rows_init(InMemorySource(X, weights, chunk_size=7), 4, seed)
        assert rows.tolist() == torch.argsort(keys, descending=True)[:4].tolist()


def test_draw_block_totals_of_a_holder_without_rows_are_empty():
    # a torch.distributed rank may hold no rows: no blocks, float64 as every holder's
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.sources import InMemorySource

    totals = _init._block_totals(InMemorySource(torch.zeros(0, 3), None, chunk_size=4), None)
    assert totals.shape == (0,) and totals.dtype == torch.float64


def test_every_weight_zero_is_an_error_not_a_draw():
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.sources import InMemorySource

    source = InMemorySource(torch.ones(5, 2), torch.zeros(5), chunk_size=2)
    with pytest.raises(ValueError, match=r"^sample_weight must have at least one positive weight; every weight is zero\.$"):
        _init.kmeans_plusplus_tensor(source, 2, torch.Generator().manual_seed(0))


def test_kmeans_plusplus_beyond_the_distinct_rows_draws_by_weight_from_its_generator():
    # Two distinct rows, four centres: after both, every w * D^2 is 0 and the draws
    # fall back to the weights (zero-weight rows never drawn), still from the
    # generator alone (the global generator takes no part).
    from gpukmeans.engine import initialisation as _init
    from gpukmeans.sources import InMemorySource

    X = torch.tensor([[0.0, 0.0], [3.0, 1.0]], dtype=torch.float64).repeat(15, 1)
    weights = torch.ones(30, dtype=torch.float64)
    weights[:10] = 0.0
    source = InMemorySource(X, weights, chunk_size=7)
    picks = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        centres, rows = _init.kmeans_plusplus_tensor(source, 4, torch.Generator().manual_seed(5))
        assert torch.equal(centres, X[rows]) and (rows >= 10).all()
        assert {tuple(row) for row in centres[:2].tolist()} == {(0.0, 0.0), (3.0, 1.0)}
        picks.append(rows.tolist())
    assert picks[0] == picks[1]


def test_nearest_positive_row():
    # the row itself where positive, else the nearest positive row before it, else after
    from gpukmeans.engine.initialisation import _nearest_positive

    values = torch.tensor([0.0, 2.0, 0.0, 3.0, 0.0])
    assert [_nearest_positive(values, index) for index in range(6)] == [1, 1, 1, 3, 3, 3]
