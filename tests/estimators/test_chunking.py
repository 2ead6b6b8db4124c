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


def test_blocks_beside_the_kernels_are_large_on_cuda_and_cache_sized_on_cpu():
    """A block on CUDA costs launches (host time), not cache: at 1 MiB blocks a pass over
    100M rows of 32 float32 features was some 25,000 blocks. The device needs no GPU to be named."""
    from gpukmeans._device import assign_block_bytes, row_blocks, work_block_bytes

    n_rows, moments_bytes_per_row = 100_000_000, 8 * 32
    on_cuda = list(row_blocks(n_rows, moments_bytes_per_row, work_block_bytes(torch.device("cuda"))))
    on_cpu = list(row_blocks(n_rows, moments_bytes_per_row, work_block_bytes(torch.device("cpu"))))
    assert len(on_cuda) <= 200 < 20_000 <= len(on_cpu)
    assert on_cuda[0][0] == 0 and on_cuda[-1][1] == n_rows
    assigned = list(row_blocks(n_rows, 20, assign_block_bytes(torch.device("cuda"))))
    assert len(assigned) <= 20
    assert assign_block_bytes(torch.device("cpu")) <= 4 * 2**20  # per-row results of a block stay in cache
