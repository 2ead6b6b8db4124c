"""Same data, seed and device: the same fit whatever the chunk size."""

import numpy as np
import pytest
import torch

from gpukmeans import KMeans


@pytest.fixture
def customers32():
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=5000, centers=6, n_features=5, cluster_std=2.0, random_state=11)
    return X.astype(np.float32)


@pytest.mark.parametrize("init", ["k-means++", "random", "k-means||"])
def test_chunk_size_does_not_change_the_fit(customers32, init):
    fits = [
        KMeans(6, init=init, random_state=3, chunk_size=size, device="cpu").fit(customers32)
        for size in ("auto", 997, 250)
    ]
    for other in fits[1:]:
        np.testing.assert_array_equal(fits[0].labels_, other.labels_)
        np.testing.assert_allclose(fits[0].cluster_centers_, other.cluster_centers_, rtol=1e-5)
        assert fits[0].n_iter_ == other.n_iter_


def test_chunk_size_does_not_change_a_weighted_float64_fit(customers32):
    X = customers32.astype(np.float64)
    weights = np.random.RandomState(0).uniform(0, 2, size=len(X))
    a = KMeans(6, random_state=1, chunk_size=128, device="cpu").fit(X, sample_weight=weights)
    b = KMeans(6, random_state=1, chunk_size=100000, device="cpu").fit(X, sample_weight=weights)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)


def test_same_seed_same_answer(customers32):
    a = KMeans(6, random_state=9, device="cpu").fit(customers32)
    b = KMeans(6, random_state=9, device="cpu").fit(customers32)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


@pytest.mark.slow
def test_indexing_is_64_bit_beyond_2_to_the_31_distances():
    # 2**26 rows x 33 centres = 2.2e9 row-centre pairs: past int32 indexing.
    k = 33
    n = 2**26
    X = (torch.arange(n, dtype=torch.int64) % k).to(torch.float32)[:, None]
    init = torch.arange(k, dtype=torch.float32)[:, None]
    km = KMeans(k, init=init, max_iter=1, tol=0.0, chunk_size=2**22, device="cpu").fit(X)
    labels = km.labels_
    assert labels.shape == (n,)
    assert torch.equal(labels[-k:], torch.arange(n - k, n) % k)
    counts = torch.bincount(labels, minlength=k)
    assert int(counts.sum()) == n and int(counts.max() - counts.min()) <= 1
    assert km.inertia_ == 0.0
