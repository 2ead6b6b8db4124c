"""Beyond GPU memory on a real CUDA device: host streaming, a real OOM, files, mini-batch.

Skipped without a GPU.
"""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_blobs

import gpukmeans.sources.factory as factory
from gpukmeans import KMeans
from gpukmeans._minibatch import MiniBatchKMeans
from gpukmeans.sources.host_stream import HostStreamSource

pytestmark = pytest.mark.gpu


@pytest.fixture
def data():
    X, _ = make_blobs(n_samples=50000, centers=8, n_features=12, cluster_std=2.0, random_state=0)
    return X.astype(np.float32)


def test_data_too_large_for_the_gpu_streams_from_host_memory(data, monkeypatch):
    on_device = KMeans(8, random_state=0, chunk_size=4096, device="cuda").fit(data)
    used = []
    monkeypatch.setattr(factory, "fits_on_device", lambda n_bytes, device: False)
    original_chunks = HostStreamSource.chunks

    def spy(self):
        used.append(self)
        return original_chunks(self)

    monkeypatch.setattr(HostStreamSource, "chunks", spy)
    streamed = KMeans(8, random_state=0, chunk_size=4096, device="cuda").fit(data)
    assert used, "the host-streamed source was used"
    np.testing.assert_array_equal(streamed.labels_, on_device.labels_)
    np.testing.assert_allclose(streamed.cluster_centers_, on_device.cluster_centers_, rtol=1e-5, atol=1e-5)


def test_a_pinned_tensor_streams_without_staging(data, monkeypatch):
    monkeypatch.setattr(factory, "fits_on_device", lambda n_bytes, device: False)
    pinned = torch.from_numpy(data).pin_memory()
    km = KMeans(8, random_state=0, chunk_size=4096, device="cuda").fit(pinned)
    reference = KMeans(8, random_state=0, device="cpu").fit(data)
    assert torch.equal(km.labels_.cpu(), torch.from_numpy(reference.labels_).long())


def test_a_real_cuda_oom_halves_the_chunk_and_the_fit_survives(caplog, monkeypatch):
    # 2M rows x 2000 centres: one chunk of every row needs 32 GB of float64 distances. The
    # Triton kernel never forms them (on an H200 this fit ran in the ~6 GB left, no OOM), so
    # the plain-PyTorch kernel, which does, is the one that meets the OOM here. Float64:
    # in float32, cuBLAS's products for the two chunk sizes rounded differently and flipped
    # near-tied labels among 2000 centres in 4 dimensions (H200, 2026-11-26).
    monkeypatch.setenv("GPUKMEANS_KERNEL", "reference")
    X = torch.randn(2_000_000, 4, device="cuda", dtype=torch.float64)
    reference = KMeans(2000, init=X[:2000], max_iter=2, chunk_size=50_000, device="cuda").fit(X)
    free, _ = torch.cuda.mem_get_info()
    ballast = torch.empty(int(free - 6 * 2**30), dtype=torch.uint8, device="cuda")  # leave ~6 GB
    try:
        with caplog.at_level(logging.WARNING, logger="gpukmeans"):
            km = KMeans(2000, init=X[:2000], max_iter=2, chunk_size=2_000_000, device="cuda").fit(X)
    finally:
        del ballast
    assert sum("out of device memory" in r.getMessage() for r in caplog.records) == 1
    assert torch.equal(km.labels_, reference.labels_)


def test_a_parquet_file_on_cuda_equals_the_cpu_fit(data, tmp_path):
    pd.DataFrame(data).rename(columns=str).to_parquet(tmp_path / "t.parquet", row_group_size=7000)
    gpu = KMeans(8, random_state=0, chunk_size=5000, device="cuda").fit(tmp_path / "t.parquet")
    cpu = KMeans(8, random_state=0, device="cpu").fit(data)
    np.testing.assert_array_equal(gpu.labels_, cpu.labels_)
    np.testing.assert_allclose(gpu.cluster_centers_, cpu.cluster_centers_, rtol=1e-5, atol=1e-5)


def test_minibatch_on_cuda_equals_the_cpu_fit(data):
    X = data.astype(np.float64)
    params = dict(n_clusters=8, init=X[:8], random_state=0, batch_size=512)
    gpu = MiniBatchKMeans(device="cuda", **params).fit(X)
    cpu = MiniBatchKMeans(device="cpu", **params).fit(X)
    assert gpu.n_steps_ == cpu.n_steps_
    np.testing.assert_allclose(gpu.cluster_centers_, cpu.cluster_centers_, rtol=1e-7)
