"""The CUDA path: the same engine with device="cuda" (skipped without a GPU)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from gpukmeans import KMeans
from gpukmeans._device import auto_chunk_size

pytestmark = pytest.mark.gpu


@pytest.fixture
def data():
    X, _ = make_blobs(n_samples=20000, centers=8, n_features=12, cluster_std=2.0, random_state=0)
    return X


def test_cuda_fit_equals_cpu_fit_in_float64(data):
    init = data[:8]
    cpu = KMeans(8, init=init, device="cpu").fit(data)
    gpu = KMeans(8, init=init, device="cuda").fit(data)
    assert gpu.device_.startswith("cuda")
    np.testing.assert_array_equal(cpu.labels_, gpu.labels_)
    np.testing.assert_allclose(cpu.cluster_centers_, gpu.cluster_centers_, rtol=1e-9)


def test_cuda_tensors_stay_on_the_gpu_and_are_not_copied(data):
    X = torch.as_tensor(data, dtype=torch.float32, device="cuda")
    km = KMeans(8, random_state=0, device="cuda").fit(X)
    assert km.cluster_centers_.is_cuda and km.labels_.is_cuda
    assert km.predict(X).is_cuda and km.transform(X).is_cuda


def test_triton_step_totals_are_the_same_from_run_to_run():
    # 2M rows: about a thousand programs per launch, finishing in an order that varies.
    # Their totals go to slots of their own and are added up in a fixed order.
    from gpukmeans.kernels import triton_assign

    generator = torch.Generator(device="cuda").manual_seed(0)
    X = torch.randn(2_000_000, 16, device="cuda", generator=generator)
    centers = X[:8][None].clone()
    norms = (centers * centers).sum(2)
    columns = torch.zeros(1, dtype=torch.int64, device="cuda")
    results = []
    for _ in range(3):
        labels = torch.zeros((X.shape[0], 1), dtype=torch.int8, device="cuda")
        results.append(triton_assign.lloyd_step_triton(X, centers, norms, None, labels, columns))
    for other in results[1:]:
        assert torch.equal(other.sums, results[0].sums)
        assert torch.equal(other.weight_sums, results[0].weight_sums)
        assert torch.equal(other.inertia, results[0].inertia)


def test_cuda_fits_are_the_same_from_run_to_run():
    X = torch.randn(1_000_000, 8, device="cuda", generator=torch.Generator(device="cuda").manual_seed(2))
    first = KMeans(16, random_state=0, n_init=3, device="cuda").fit(X)
    again = KMeans(16, random_state=0, n_init=3, device="cuda").fit(X)
    assert torch.equal(first.cluster_centers_, again.cluster_centers_)
    assert torch.equal(first.labels_, again.labels_)


def test_cuda_fit_does_not_depend_on_chunk_size(data):
    X = torch.as_tensor(data, dtype=torch.float32, device="cuda")
    a = KMeans(8, random_state=1, chunk_size=1000, device="cuda").fit(X)
    b = KMeans(8, random_state=1, chunk_size="auto", device="cuda").fit(X)
    assert torch.equal(a.labels_, b.labels_)
    torch.testing.assert_close(a.cluster_centers_, b.cluster_centers_, rtol=1e-5, atol=1e-5)


def test_auto_chunk_size_follows_free_gpu_memory():
    rows = auto_chunk_size(16, 8, torch.float32, torch.device("cuda"))
    free, _ = torch.cuda.mem_get_info()
    assert 256 <= rows and rows * 4 * (2 * 16 + 2 * 8) <= free


def test_kmeans_parallel_on_cuda(data):
    km = KMeans(8, init="k-means||", random_state=0, device="cuda").fit(data)
    ref = KMeans(8, random_state=0, device="cpu").fit(data)
    assert km.inertia_ <= 1.05 * ref.inertia_
