"""The out-of-memory retry logic, exercised on the CPU with an injected OOM-raising kernel.

These tests check the halving-and-retry mechanism, not a real CUDA OOM: the kernel is
replaced by one that raises ``torch.OutOfMemoryError`` above a row count. The real
CUDA path is tested in tests/test_gpu_scale.py (skipped without a GPU).
"""

import logging

import numpy as np
import pytest
import torch

from gpukmeans import KMeans, kernels
from gpukmeans.kernels import assign_accumulate_reference
from gpukmeans.kernels import resilient as _oom
from gpukmeans.sources import base as sources_base
from gpukmeans.kernels.reference import lloyd_step_reference


@pytest.fixture
def kernel_that_fits(monkeypatch):
    """Every source's kernels: the reference, whose assignment and Lloyd step run out of
    memory above ``limit`` rows (k-means++'s potentials keep fitting)."""
    calls = []

    def install(limit):
        class TightBackend(kernels.ReferenceBackend):
            def assign(self, X, *args, **kwargs):
                calls.append(X.shape[0])
                if X.shape[0] > limit:
                    raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
                return assign_accumulate_reference(X, *args, **kwargs)

            def lloyd_step(self, X, *args, **kwargs):
                calls.append(X.shape[0])
                if X.shape[0] > limit:
                    raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
                return lloyd_step_reference(X, *args, **kwargs)

            def candidate_potentials(self, *args, **kwargs):
                return kernels.ReferenceBackend().candidate_potentials(*args, **kwargs)

        monkeypatch.setattr(sources_base, "backend_for", lambda device, dtype: TightBackend())
        return calls

    return install


@pytest.mark.parametrize("init", ["k-means++", "array"])
def test_injected_oom_halves_the_chunk_and_the_fit_is_not_lost(blobs, kernel_that_fits, caplog, init):
    X, _ = blobs
    init = X[:5] if init == "array" else init  # an array: the first OOM is in a Lloyd step
    reference = KMeans(5, init=init, random_state=0, chunk_size=600, device="cpu").fit(X)
    calls = kernel_that_fits(limit=160)
    with caplog.at_level(logging.WARNING, logger="gpukmeans"):
        km = KMeans(5, init=init, random_state=0, chunk_size=600, device="cpu").fit(X)
    np.testing.assert_array_equal(km.labels_, reference.labels_)
    np.testing.assert_allclose(km.cluster_centers_, reference.cluster_centers_, rtol=1e-10)
    assert calls[:3] == [600, 300, 150]  # halved twice, then it fits
    assert max(calls[3:]) <= 150  # and later calls start from the size that worked
    warnings = [r for r in caplog.records if "out of device memory" in r.getMessage()]
    assert len(warnings) == 1  # logged once, however many chunks were split


def test_a_single_row_that_does_not_fit_is_raised(blobs, kernel_that_fits):
    X, _ = blobs
    kernel_that_fits(limit=0)
    with pytest.raises(torch.OutOfMemoryError, match="single row"):
        KMeans(5, random_state=0, device="cpu").fit(X)


def test_pieces_combine_into_the_whole_result():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(101, 3, generator=generator, dtype=torch.float64)
    centers = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    norms = (centers * centers).sum(dim=2)
    whole = assign_accumulate_reference(X, centers, norms, None, accumulate=False)
    assigner = _oom.ResilientAssigner(kernels.ReferenceBackend())
    assigner.max_rows = 7
    pieces = assigner(X, centers, norms)
    assert torch.equal(pieces.labels, whole.labels)
    torch.testing.assert_close(pieces.min_sq_distances, whole.min_sq_distances)
    assert pieces.sums is None and pieces.weight_sums is None