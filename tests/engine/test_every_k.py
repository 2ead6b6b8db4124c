"""Every k of a sweep: restarts, growths from the k before, merges from the k after."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from gpukmeans.engine import every_k
from gpukmeans.engine.every_k import fit_every_k
from gpukmeans.engine.initialisation import extend_kmeans_plusplus, kmeans_plusplus_tensor
from gpukmeans.engine.lloyd import lloyd
from gpukmeans.sources.memory import InMemorySource


def _source(X, chunk_size=None):
    X = torch.as_tensor(X, dtype=torch.float64)
    return InMemorySource(X, None, chunk_size=chunk_size or X.shape[0])


def _nested_starts(source, ks, restarts, seed):
    generator = torch.Generator().manual_seed(seed)
    starts = {k: [] for k in ks}
    for _ in range(restarts):
        draw = kmeans_plusplus_tensor(source, max(ks), generator)[0]
        for k in ks:
            starts[k].append(draw[:k].clone())
    return starts


@pytest.fixture(scope="module")
def crowded():
    # eleven clusters of varied size and spread, some touching: single starts end in
    # different local minima at different k
    X, _ = make_blobs(n_samples=1500, n_features=3, centers=11, cluster_std=[0.6, 1.4] * 5 + [1.0],
                      center_box=(-8, 8), random_state=4)
    return X


def test_each_k_keeps_a_run_at_least_as_good_as_every_restart(crowded):
    source = _source(crowded)
    ks = list(range(2, 12))
    starts = _nested_starts(source, ks, restarts=2, seed=0)
    kept = fit_every_k(source, starts, seed=1, max_iter=300, tol=0.0)
    alone = lloyd(source, [start for k in ks for start in starts[k]], max_iter=300, tol=0.0)
    for position, k in enumerate(ks):
        restarts = alone.inertia[2 * position : 2 * position + 2]
        assert kept[k].inertia <= float(restarts.min()) * (1 + 1e-12)
        assert kept[k].centers.shape == (k, 3) and kept[k].labels.shape == (len(crowded),)
        assert kept[k].origin in ("restart", "growth", "merge")
    assert any(fit.origin != "restart" for fit in kept.values()), "neighbours never helped on this table"


def _random_starts(X, ks, seed):
    """One start per k of random rows, drawn for each k apart: single runs from these end
    in local minima of any depth, so their curve rises in places."""
    rng = np.random.default_rng(seed)
    return {k: [torch.as_tensor(X[rng.choice(len(X), k, replace=False)])] for k in ks}


def test_inertia_never_rises_with_k_even_where_single_starts_do(crowded):
    source = _source(crowded)
    ks = list(range(2, 16))
    starts = _random_starts(crowded, ks, seed=0)
    single = lloyd(source, [starts[k][0] for k in ks], max_iter=300, tol=0.0).inertia.numpy()
    assert (np.diff(single) > 0).any(), "single starts are monotone here: the table tests nothing"
    kept = fit_every_k(source, starts, seed=3, max_iter=300, tol=0.0)
    inertia = np.array([kept[k].inertia for k in ks])
    assert (np.diff(inertia) <= 0).all()
    assert (inertia <= single).all()


def test_a_k_above_its_predecessor_takes_its_growth(crowded, monkeypatch):
    # With no run kept for being better (every gain counts as a tie), the rule that keeps
    # the curve from rising is all that lowers it.
    monkeypatch.setattr(every_k, "TIE", 1.0)
    source = _source(crowded)
    ks = list(range(2, 16))
    starts = _random_starts(crowded, ks, seed=0)
    kept = fit_every_k(source, starts, seed=3, max_iter=300, tol=0.0)
    inertia = np.array([kept[k].inertia for k in ks])
    assert (np.diff(inertia) <= 0).all()
    assert {kept[k].origin for k in ks} == {"restart", "growth"}


def test_gaps_in_the_ks_grow_by_several_centres(crowded):
    source = _source(crowded)
    ks = [2, 5, 9]
    kept = fit_every_k(source, _nested_starts(source, ks, 1, seed=2), seed=2, max_iter=300, tol=0.0)
    assert [kept[k].centers.shape[0] for k in ks] == ks
    assert kept[2].inertia >= kept[5].inertia >= kept[9].inertia


def test_the_result_does_not_depend_on_the_chunk_size(crowded):
    ks = list(range(2, 10))
    results = []
    for chunk_size in (None, 997, 250):
        source = _source(crowded, chunk_size)
        results.append(fit_every_k(source, _nested_starts(source, ks, 2, seed=5), seed=5, max_iter=300, tol=1e-8))
    for other in results[1:]:
        for k in ks:
            torch.testing.assert_close(other[k].labels, results[0][k].labels, rtol=0, atol=0)
            assert other[k].inertia == pytest.approx(results[0][k].inertia, rel=1e-12)
            assert other[k].origin == results[0][k].origin


def test_extensions_keep_the_given_centres_and_add_rows_of_the_table(crowded):
    source = _source(crowded)
    given = torch.as_tensor(crowded[[3, 500]])
    generators = [torch.Generator().manual_seed(seed) for seed in range(3)]
    extensions = extend_kmeans_plusplus(source, given, 6, generators)
    assert len(extensions) == 3
    for centers, indices in extensions:
        assert centers.shape == (6, 3) and indices.shape == (4,)
        torch.testing.assert_close(centers[:2], given)
        torch.testing.assert_close(centers[2:], torch.as_tensor(crowded[indices.numpy()]))
    assert len({tuple(indices.tolist()) for _, indices in extensions}) > 1, "independent draws differ"
    one = lloyd(source, [given], max_iter=0).inertia
    every = lloyd(source, [centers for centers, _ in extensions], max_iter=0).inertia
    assert (every <= one).all()



@pytest.mark.parametrize("n_clusters", [4, 6])
def test_each_extension_is_the_one_its_generator_makes_alone(crowded, n_clusters):
    # the extensions share passes (and the distances to the given centres), never
    # what one extension's own steps lower
    source = _source(crowded)
    given = torch.as_tensor(crowded[[3, 500]])
    together = extend_kmeans_plusplus(source, given, n_clusters, [torch.Generator().manual_seed(s) for s in range(3)])
    for seed, (centers, indices) in enumerate(together):
        (alone, alone_indices), = extend_kmeans_plusplus(source, given, n_clusters, [torch.Generator().manual_seed(seed)])
        assert indices.tolist() == alone_indices.tolist()
        assert torch.equal(centers, alone)

def test_extending_one_draw_continues_kmeans_plusplus(crowded):
    source = _source(crowded)
    whole, indices = kmeans_plusplus_tensor(source, 5, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    first, _ = kmeans_plusplus_tensor(source, 1, generator)
    (extended, added), = extend_kmeans_plusplus(source, first, 5, [generator])
    torch.testing.assert_close(extended, whole)
    assert added.tolist() == indices[1:].tolist()


@pytest.fixture
def search_a_sample(monkeypatch):
    """Tables above 600 rows search a sample of 600 for growths and merges."""
    monkeypatch.setattr(every_k, "SEARCH_ROWS", 600)


def test_a_large_table_searches_a_sample_and_keeps_what_the_table_confirms(crowded, search_a_sample):
    source = _source(crowded)
    ks = list(range(2, 16))
    starts = _random_starts(crowded, ks, seed=0)
    alone = lloyd(source, [starts[k][0] for k in ks], max_iter=300, tol=0.0).inertia.numpy()
    kept = fit_every_k(source, starts, seed=3, max_iter=300, tol=0.0)
    inertia = np.array([kept[k].inertia for k in ks])
    assert (np.diff(inertia) <= 0).all() and (inertia <= alone).all()
    assert (inertia < alone * 0.99).any(), "the search found nothing better on this table"
    for k in ks:  # every kept run is the table's own Lloyd from its start
        again = lloyd(source, [kept[k].start], max_iter=300, tol=0.0)
        assert float(again.inertia[0]) == pytest.approx(kept[k].inertia, rel=1e-12)


def test_the_sample_search_does_not_depend_on_the_chunk_size(crowded, search_a_sample):
    ks = list(range(2, 10))
    results = []
    for chunk_size in (None, 250):
        source = _source(crowded, chunk_size)
        results.append(fit_every_k(source, _nested_starts(source, ks, 2, seed=5), seed=5, max_iter=300, tol=1e-8))
    for k in ks:
        torch.testing.assert_close(results[1][k].labels, results[0][k].labels, rtol=0, atol=0)
        assert results[1][k].origin == results[0][k].origin
