"""The CUDA path: the same engine with device="cuda" (skipped without a GPU)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from gpukmeans import KMeans
from gpukmeans.sources.chunking import auto_chunk_size
from _engine_checks import assert_same_lloyd_result

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


def _lloyd_on_cuda(X, starts, monkeypatch, *, graphs, weights=None):
    from gpukmeans.engine.lloyd import lloyd
    from gpukmeans.sources import InMemorySource

    monkeypatch.setenv("GPUKMEANS_CUDA_GRAPHS", "1" if graphs else "0")
    return lloyd(InMemorySource(X, weights, chunk_size=50_000), starts, max_iter=40, tol=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("weighted", [False, True])
def test_cuda_graph_replays_give_the_launch_by_launch_result(monkeypatch, dtype, weighted):
    generator = torch.Generator(device="cuda").manual_seed(5)
    X = torch.randn(300_000, 16, device="cuda", generator=generator).to(dtype)
    weights = torch.rand(X.shape[0], device="cuda", generator=generator) if weighted else None
    # restarts of several k, which converge at different iterations
    starts = [X[:4].float(), X[4:12].float(), X[12:20].float()]
    plain = _lloyd_on_cuda(X, starts, monkeypatch, graphs=False, weights=weights)
    replayed = _lloyd_on_cuda(X, starts, monkeypatch, graphs=True, weights=weights)
    assert_same_lloyd_result(plain, replayed)
    assert plain.n_replayed == 0
    assert replayed.n_replayed == min(replayed.n_iter) - 1 >= 3


def test_cuda_graph_replay_relocates_an_empty_cluster_as_launch_by_launch(monkeypatch):
    from gpukmeans.engine import lloyd as _lloyd

    X = torch.randn(100_000, 8, device="cuda", generator=torch.Generator(device="cuda").manual_seed(6))
    starts = [torch.cat([X[:5], torch.full((1, 8), 1e3, device="cuda")])]
    _lloyd_on_cuda(X, starts, monkeypatch, graphs=False)  # compiles the kernels before any recording
    monkeypatch.setattr(_lloyd, "_FIRST_RECORDED_ITERATION", 0)  # the emptying iteration is a replay
    plain = _lloyd_on_cuda(X, starts, monkeypatch, graphs=False)
    replayed = _lloyd_on_cuda(X, starts, monkeypatch, graphs=True)
    assert_same_lloyd_result(plain, replayed)
    assert replayed.n_replayed == replayed.n_iter[0]
    assert torch.all(replayed.centers[0].abs() < 1e2)


def test_cuda_fit_is_the_same_with_and_without_graphs(monkeypatch, data):
    X = torch.as_tensor(data, dtype=torch.float32, device="cuda")
    monkeypatch.setenv("GPUKMEANS_CUDA_GRAPHS", "0")
    plain = KMeans(8, random_state=3, n_init=4, device="cuda").fit(X)
    monkeypatch.setenv("GPUKMEANS_CUDA_GRAPHS", "1")
    replayed = KMeans(8, random_state=3, n_init=4, device="cuda").fit(X)
    assert torch.equal(plain.labels_, replayed.labels_)
    assert torch.equal(plain.cluster_centers_, replayed.cluster_centers_)
    assert plain.inertia_ == replayed.inertia_ and plain.n_iter_ == replayed.n_iter_


def test_a_cuda_lloyd_pass_is_one_launch_over_the_whole_table(data):
    from gpukmeans.sources import InMemorySource

    X = torch.as_tensor(data, dtype=torch.float32, device="cuda")
    chunks = list(InMemorySource(X, None, chunk_size=1000).lloyd_pass_chunks())
    assert len(chunks) == 1 and chunks[0][1].shape == X.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kmeans_plusplus_on_cuda_picks_the_same_centres_with_the_fused_potentials(monkeypatch, data, dtype):
    """k-means++ on CUDA takes the candidates' potentials in one Triton pass; the
    assignment kernel's blocks it replaced pick the same centres (same distances, the
    potentials summed in another order)."""
    from gpukmeans import kernels
    from gpukmeans.engine.initialisation import kmeans_plusplus_tensor
    from gpukmeans.sources import InMemorySource

    X = torch.as_tensor(data, dtype=torch.float32, device="cuda").to(dtype)
    chosen = {}
    for fused in ("1", "0"):
        source = InMemorySource(X, None, auto_chunk_size(12, 8, X.dtype, X.device))
        source.backend = kernels.new_backend("cuda", X.dtype)
        source.backend.fused_potentials = fused == "1"
        chosen[fused] = kmeans_plusplus_tensor(source, 8, torch.Generator().manual_seed(3))[1]
    assert torch.equal(chosen["1"], chosen["0"])
