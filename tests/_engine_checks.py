"""Checks that engine tests on the CPU and on a GPU share."""

import torch


def assert_same_lloyd_result(a, b):
    """The same Lloyd result (``gpukmeans.engine.lloyd.LloydResult``), bit for bit."""
    assert a.n_iter == b.n_iter
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.inertia, b.inertia)
    for centers_a, centers_b in zip(a.centers, b.centers):
        assert torch.equal(centers_a, centers_b)
