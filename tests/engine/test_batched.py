"""k-means on many small tables at once (the criteria's fits) against scikit-learn."""

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
