"""k-means on many small tables at once (the criteria's fits) against scikit-learn."""

import inspect
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs

from gpukmeans.engine.batched import batched_kmeans


@pytest.fixture(scope="module")
def tables():
    return np.stack([make_blobs(400, 3, centers=4, cluster_std=1.0, random_state=seed)[0] for seed in range(3)])


def test_each_table_and_k_matches_scikit_learns_best_of_ten(tables):
    ks = [1, 2, 4, 6]
    fits = batched_kmeans(tables, ks, restarts=5, seed=0)
    assert fits.inertia.shape == (3, 4) and fits.centers.shape == (3, 4, 6, 3) and fits.labels.shape == (3, 4, 400)
    assert fits.ks == ks
    for t, table in enumerate(tables):
        for j, k in enumerate(ks):
            reference = SklearnKMeans(k, n_init=10, random_state=0).fit(table).inertia_
            assert float(fits.inertia[t, j]) <= reference * 1.02
            # the inertia, labels and centres describe one solution
            centers = fits.centers[t, j, :k].numpy()
            labels = fits.labels[t, j].numpy()
            assert labels.max() < k
            distances = ((table[:, None, :] - centers[None]) ** 2).sum(axis=2)
            np.testing.assert_array_equal(labels, distances.argmin(axis=1))
            assert float(fits.inertia[t, j]) == pytest.approx(distances.min(axis=1).sum(), rel=1e-12)
            np.testing.assert_array_equal(fits.centers[t, j, k:].numpy(), 0.0)


def test_one_cluster_is_the_mean(tables):
    fits = batched_kmeans(tables, [1], restarts=1, seed=3)
    for t, table in enumerate(tables):
        np.testing.assert_allclose(fits.centers[t, 0, 0].numpy(), table.mean(axis=0), rtol=1e-12)


def test_a_seed_gives_the_same_fits_whatever_the_threads(tables):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = batched_kmeans(tables, [2, 3, 5], restarts=2, seed=11)
        torch.set_num_threads(2)
        two = batched_kmeans(tables, [2, 3, 5], restarts=2, seed=11)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one.inertia, two.inertia, rtol=0, atol=0)
    torch.testing.assert_close(one.labels, two.labels, rtol=0, atol=0)
    other = batched_kmeans(tables, [2, 3, 5], restarts=2, seed=12)
    assert not torch.equal(other.labels, one.labels)


def test_identical_rows_and_too_many_clusters():
    same = np.ones((1, 10, 2))
    fits = batched_kmeans(same, [1, 3], restarts=2, seed=0)
    assert fits.inertia.tolist() == [[0.0, 0.0]]
    with pytest.raises(ValueError, match="more than the 10 rows"):
        batched_kmeans(same, [11], restarts=1, seed=0)


def test_as_many_clusters_as_rows_put_each_row_alone():
    rows = np.array([[[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [5.0, 5.0]]])
    fits = batched_kmeans(rows, [4], restarts=1, seed=0)
    assert fits.inertia.tolist() == [[0.0]]
    assert sorted(map(tuple, fits.centers[0, 0].tolist())) == sorted(map(tuple, rows[0].tolist()))


def test_the_default_iterations_are_scikit_learns():
    assert inspect.signature(batched_kmeans).parameters["max_iter"].default == SklearnKMeans().max_iter


def _greedy_kmeans_plusplus(rows, k, uniforms):
    """Greedy k-means++ from the definition: the first centre is the row at ``u * n``; each
    next one the best (lowest potential) of ``2 + int(ln k)`` rows drawn by squared distance
    to the nearest centre so far, the first row whose cumulative distance reaches ``u * total``."""
    n_rows = len(rows)
    first = min(int(uniforms[0] * n_rows), n_rows - 1)
    used, chosen = 1, [first]
    closest = ((rows - rows[first]) ** 2).sum(axis=1)
    for _ in range(1, k):
        cumulative = np.cumsum(closest)
        best = (np.inf, None, None)
        for _ in range(2 + int(math.log(k))):
            row = min(int(np.searchsorted(cumulative, uniforms[used] * cumulative[-1])), n_rows - 1)
            used += 1
            trial = np.minimum(closest, ((rows - rows[row]) ** 2).sum(axis=1))
            if trial.sum() < best[0]:
                best = (trial.sum(), row, trial)
        chosen.append(best[1])
        closest = best[2]
    return rows[chosen]


def test_the_starts_are_greedy_kmeans_plusplus_from_each_fits_own_uniforms():
    # no iteration: each fit returns its start; fit f = (table, k) in order draws from row f
    # of one (fits, 1 + k_max (2 + int(ln k_max))) table of uniforms made from the seed
    rng = np.random.default_rng(5)
    tables = rng.normal(size=(2, 60, 2))
    ks = [2, 3, 5]
    fits = batched_kmeans(tables, ks, restarts=1, seed=7, max_iter=0)
    uniforms = np.random.default_rng(7).random((len(tables) * len(ks), 1 + 5 * (2 + int(math.log(5)))))
    for t, table in enumerate(tables):
        for j, k in enumerate(ks):
            start = _greedy_kmeans_plusplus(table, k, uniforms[t * len(ks) + j])
            np.testing.assert_array_equal(fits.centers[t, j, :k].numpy(), start)
            distances = ((table[:, None, :] - start[None]) ** 2).sum(axis=2)
            np.testing.assert_array_equal(fits.labels[t, j].numpy(), distances.argmin(axis=1))


def test_the_tolerance_is_relative_to_each_tables_own_variance():
    # Lloyd stops where the centres move by at most 1e-4 of the table's mean variance per
    # feature: scaling a table by a power of two (exact) or moving it changes no label,
    # and neither does a table of another scale fitted beside it
    rng = np.random.default_rng(0)
    table = np.round(rng.random((300, 2)) * 1024) / 1024  # uniform rows: Lloyd creeps, the tolerance stops it
    ks = [5, 8]
    alone = batched_kmeans(table[None], ks, restarts=2, seed=3)
    scaled = batched_kmeans(table[None] * 1024, ks, restarts=2, seed=3)
    moved = batched_kmeans(table[None] + [0.0, 1024.0], ks, restarts=2, seed=3)
    beside = batched_kmeans(np.stack([table, table * 1024]), ks, restarts=2, seed=3)
    for other in (scaled, moved, beside):
        np.testing.assert_array_equal(other.labels[0].numpy(), alone.labels[0].numpy())
