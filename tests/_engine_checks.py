"""Checks and test sources that engine tests (on the CPU and on a GPU) share."""

import torch

from gpukmeans.sources import InMemorySource


def assert_same_lloyd_result(a, b):
    """The same Lloyd result (``gpukmeans.engine.lloyd.LloydResult``), bit for bit."""
    assert a.n_iter == b.n_iter
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.inertia, b.inertia)
    for centers_a, centers_b in zip(a.centers, b.centers):
        assert torch.equal(centers_a, centers_b)


class TakeRecordingSource(InMemorySource):
    """An in-memory source that keeps the global indices of every ``take``, in order:
    the rows an initialisation reads as centres or candidates."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.taken = []

    def take(self, indices):
        self.taken.append(indices.cpu().clone())
        return super().take(indices)
