"""Relocation of empty clusters in Lloyd's loop, against hand-computed centres.

An empty centre takes the row farthest from its own centre, unless taking it would empty
that row's cluster; then the next farthest. Groups (restarts, or the k of a sweep) share
each pass but relocate independently.
"""

import numpy as np
import pytest
import torch

from gpukmeans.engine import lloyd as _lloyd
from gpukmeans.sources import InMemorySource


def _one_iteration(X, *initial_centers):
    source = InMemorySource(torch.as_tensor(X, dtype=torch.float64), None, chunk_size=1000)
    starts = [torch.as_tensor(c, dtype=torch.float64) for c in initial_centers]
    return _lloyd.lloyd(source, starts, max_iter=1)


def _sorted_centres(result, group):
    return sorted(result.centers[group].ravel().tolist())


def test_rows_at_their_centre_still_fill_an_empty_cluster():
    # Every row lies on its centre (distance 0): the empty centre still takes one of them.
    result = _one_iteration([[0.0], [0.0], [0.0], [5.0]], [[0.0], [5.0], [100.0]])
    assert _sorted_centres(result, 0) == [0.0, 0.0, 5.0]


def test_rows_alone_in_their_cluster_are_passed_over():
    # 10 and -10 are each alone and farthest from their centres; taking either would empty
    # its cluster, so the empty centre takes 0.3, the next farthest.
    result = _one_iteration([[0.0], [0.3], [10.0], [-10.0]], [[0.1], [5.0], [-5.0], [100.0]])
    assert _sorted_centres(result, 0) == pytest.approx([-10.0, 0.0, 0.3, 10.0])


def test_groups_sharing_a_pass_relocate_as_each_would_alone():
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.randn(30, 2) * 0.3, rng.randn(30, 2) * 0.3 + [4, 4], rng.randn(30, 2) * 0.3 + [-4, 4]])
    # k=2, one centre empty, padded to k=4 beside the other group: no row may count as owned
    # by a padding slot, though the rows at the origin lie closer to its zeros than to (4, 4)
    small = [[4.0, 4.0], [50.0, 50.0]]
    large = [[0.0, 0.0], [4.0, 4.0], [-50.0, -50.0], [60.0, -60.0]]  # k=4, two centres empty
    together = _one_iteration(X, small, large)
    for group, start in enumerate([small, large]):
        alone = _one_iteration(X, start)
        np.testing.assert_array_equal(together.centers[group].numpy(), alone.centers[0].numpy())
        np.testing.assert_array_equal(together.labels[:, group].numpy(), alone.labels[:, 0].numpy())


def test_groups_that_converge_at_different_iterations_end_as_each_would_alone():
    rng = np.random.RandomState(1)
    X = np.concatenate([rng.randn(50, 2) * 0.5 + offset for offset in ([0, 0], [3, 0], [0, 3], [3, 3])])
    starts = [X[[0, 50, 100, 150]], X[[0, 1, 2, 3]], X[[0, 100]]]  # one iteration, many, a few
    source = InMemorySource(torch.as_tensor(X), None, chunk_size=1000)
    together = _lloyd.lloyd(source, [torch.as_tensor(s) for s in starts], max_iter=100)
    assert len(set(together.n_iter)) > 1
    for group, start in enumerate(starts):
        alone = _lloyd.lloyd(InMemorySource(torch.as_tensor(X), None, chunk_size=1000), [torch.as_tensor(start)],
                             max_iter=100)
        assert together.n_iter[group] == alone.n_iter[0]
        np.testing.assert_array_equal(together.centers[group].numpy(), alone.centers[0].numpy())
