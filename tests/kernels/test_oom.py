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


class FailingBackend(kernels.ReferenceBackend):
    """The reference kernels, out of memory for every call of more than ``limit`` rows and
    for the first call of exactly ``once`` rows; each call's row count in ``calls``."""

    def __init__(self, limit, once=None):
        self.limit, self.once, self.calls = limit, once, []

    def _check(self, X):
        self.calls.append(X.shape[0])
        if X.shape[0] > self.limit or X.shape[0] == self.once:
            self.once = None
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")

    def assign(self, X, *args, **kwargs):
        self._check(X)
        return assign_accumulate_reference(X, *args, **kwargs)

    def lloyd_step(self, X, *args, **kwargs):
        self._check(X)
        return lloyd_step_reference(X, *args, **kwargs)

    def candidate_potentials(self, *args, **kwargs):  # k-means++'s potentials keep fitting
        return kernels.ReferenceBackend().candidate_potentials(*args, **kwargs)


@pytest.fixture
def kernel_that_fits(monkeypatch):
    """Every source's kernels: a :class:`FailingBackend` of ``limit`` rows; returns its calls."""

    def install(limit):
        backend = FailingBackend(limit)
        monkeypatch.setattr(sources_base, "backend_for", lambda device, dtype: backend)
        return backend.calls

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
    warnings = [r.getMessage() for r in caplog.records if "out of device memory" in r.getMessage()]
    # logged once, however many chunks were split
    assert warnings == ["gpukmeans: out of device memory assigning 600 rows; retrying in chunks of 300 rows "
                        "(further reductions are not logged)."]


def test_a_single_row_that_does_not_fit_is_raised(blobs, kernel_that_fits):
    X, _ = blobs
    kernel_that_fits(limit=0)
    with pytest.raises(torch.OutOfMemoryError, match=r"^gpukmeans: out of memory assigning a single row; "
                                                    r"free device memory or use fewer clusters\.$"):
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

def _problem(n=20):
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    weights = torch.rand(n, generator=generator, dtype=torch.float64)
    centers = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64)
    return X, weights, centers, (centers * centers).sum(dim=2)


def test_an_assignment_split_by_an_oom_is_the_whole_assignment():
    X, _, centers, norms = _problem()
    whole = assign_accumulate_reference(X, centers, norms, None, accumulate=False)
    backend = FailingBackend(limit=3)
    assigner = _oom.ResilientAssigner(backend)
    pieces = assigner(X, centers, norms)
    assert backend.calls == [20, 10, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]  # halved to 2, then every piece fits
    assert assigner.max_rows == 2
    assert torch.equal(pieces.labels, whole.labels)
    torch.testing.assert_close(pieces.min_sq_distances, whole.min_sq_distances)
    assert pieces.sums is None and pieces.weight_sums is None
    # one piece: the backend's own result, nearest centres only
    alone = _oom.ResilientAssigner(FailingBackend(limit=20))(X, centers, norms)
    assert torch.equal(alone.labels, whole.labels) and alone.sums is None and alone.weight_sums is None


@pytest.mark.parametrize("step", ["assign", "lloyd_step"])
def test_the_piece_that_failed_is_the_one_halved(step):
    # pieces of 8 over 20 rows: 8, 8 and the last 4, which runs out of memory once; the
    # size that failed is 4, so the rest goes in pieces of 2 (not of 8 // 2)
    X, weights, centers, norms = _problem()
    backend = FailingBackend(limit=20, once=4)
    assigner = _oom.ResilientAssigner(backend)
    assigner.max_rows = 8
    if step == "assign":
        assigner(X, centers, norms)
    else:
        labels = torch.zeros(20, 2, dtype=torch.int64)
        assigner.lloyd_step(X, centers, norms, weights, labels, torch.tensor([0, 1]), compute_inertia=True)
    assert backend.calls == [8, 8, 4, 2, 2]
    assert assigner.max_rows == 2


def test_two_rows_that_do_not_fit_go_one_at_a_time():
    X, _, centers, norms = _problem(n=2)
    backend = FailingBackend(limit=1)
    assigner = _oom.ResilientAssigner(backend)
    pieces = assigner(X, centers, norms)
    assert backend.calls == [2, 1, 1] and assigner.max_rows == 1
    assert torch.equal(pieces.labels, assign_accumulate_reference(X, centers, norms, None, accumulate=False).labels)


@pytest.mark.parametrize("compute_inertia", [True, False])
@pytest.mark.parametrize("limit, calls", [(10, [20, 10, 10]), (7, [20, 10, 5, 5, 5, 5])])
def test_a_lloyd_step_split_by_an_oom_is_the_whole_step(compute_inertia, limit, calls):
    X, weights, centers, norms = _problem()
    columns = torch.tensor([1, 0])
    start = torch.arange(40, dtype=torch.int64).reshape(20, 2) % 4
    whole_labels, piece_labels = start.clone(), start.clone()
    whole = lloyd_step_reference(X, centers, norms, weights, whole_labels, columns, compute_inertia=compute_inertia)
    backend = FailingBackend(limit=limit)
    pieces = _oom.ResilientAssigner(backend).lloyd_step(X, centers, norms, weights, piece_labels, columns,
                                                        compute_inertia=compute_inertia)
    assert backend.calls == calls
    assert torch.equal(piece_labels, whole_labels)
    torch.testing.assert_close(pieces.sums, whole.sums)
    torch.testing.assert_close(pieces.weight_sums, whole.weight_sums)  # the weights of each piece's rows
    assert torch.equal(pieces.n_changed, whole.n_changed)
    if compute_inertia:
        torch.testing.assert_close(pieces.inertia, whole.inertia)
    else:
        assert pieces.inertia is None
