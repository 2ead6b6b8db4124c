"""Lloyd's loop around a recorded iteration (a CUDA graph), checked on the CPU.

A CUDA graph replays the recorded kernels on the same input tensors and rewrites the
same output tensors. ``ReplayedOnCpu`` does the same with PyTorch on the CPU: each
replay runs the work again and copies its results into the first replay's tensors.
With it, the loop's bookkeeping around a recording is checked without a GPU: the
inputs rewritten in place after each replay, relocation after a replay, the recording
dropped when a group converges. The real recording is compared with the
launch-by-launch loop on a GPU in tests/test_gpu.py.
"""

import pytest
import torch

from gpukmeans.engine import lloyd as _lloyd
from gpukmeans.engine.cuda_graph import cuda_graphs_enabled
from gpukmeans.sources import InMemorySource

from _engine_checks import assert_same_lloyd_result


class ReplayedOnCpu:
    def __init__(self, work, device):
        assert device.type == "cpu"
        self._work = work
        self.outputs = None

    def replay(self):
        results = self._work()
        if self.outputs is None:
            self.outputs = results
        else:
            for recorded, result in zip(self.outputs, results):
                recorded.copy_(result)
        return self.outputs


def _fit(X, initial_centers, *, weights=None, recorded, max_iter=50, tol=0.0, monkeypatch=None):
    if recorded:
        monkeypatch.setattr(_lloyd, "_recorder_for", lambda source: ReplayedOnCpu)
    else:
        monkeypatch.setattr(_lloyd, "_recorder_for", lambda source: None)
    source = InMemorySource(X, weights, chunk_size=700)
    return _lloyd.lloyd(source, initial_centers, max_iter=max_iter, tol=tol)


def _blobs(n=3000, d=5, seed=0):
    """Overlapping blobs; row i is in blob i % 6, so rows 0, 6, 12... start in one blob
    (a start that takes Lloyd many iterations)."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(6, d, generator=generator, dtype=torch.float64) * 2
    return means[torch.arange(n) % 6] + torch.randn(n, d, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("weighted", [False, True])
def test_replayed_iterations_give_the_launch_by_launch_result(monkeypatch, weighted):
    X = _blobs()
    weights = torch.rand(X.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64) if weighted else None
    starts = [X[0:36:6].clone()]
    plain = _fit(X, starts, weights=weights, recorded=False, monkeypatch=monkeypatch)
    replayed = _fit(X, starts, weights=weights, recorded=True, monkeypatch=monkeypatch)
    assert_same_lloyd_result(plain, replayed)
    assert plain.n_replayed == 0
    # every iteration after the first (which compiles the kernels on a GPU) is a replay
    assert replayed.n_replayed == replayed.n_iter[0] - 1 >= 3


def test_groups_that_converge_at_different_iterations_drop_the_recording(monkeypatch):
    X = _blobs(seed=2)
    # restarts of several k: they converge at different iterations
    starts = [X[0:12:6].clone(), X[0:36:6].clone(), X[0:54:6].clone()]
    plain = _fit(X, starts, recorded=False, monkeypatch=monkeypatch)
    replayed = _fit(X, starts, recorded=True, monkeypatch=monkeypatch)
    assert len(set(plain.n_iter)) > 1
    assert_same_lloyd_result(plain, replayed)
    assert replayed.n_replayed == min(replayed.n_iter) - 1


def test_relocation_after_a_replay_gives_the_launch_by_launch_result(monkeypatch):
    X = _blobs(seed=3)
    # a centre far from every row empties in the first iteration and is relocated
    starts = [torch.cat([X[0:24:6], torch.full((1, X.shape[1]), 1e3, dtype=X.dtype)])]
    monkeypatch.setattr(_lloyd, "_FIRST_RECORDED_ITERATION", 0)
    plain = _fit(X, starts, recorded=False, monkeypatch=monkeypatch)
    replayed = _fit(X, starts, recorded=True, monkeypatch=monkeypatch)
    assert_same_lloyd_result(plain, replayed)
    assert replayed.n_replayed == replayed.n_iter[0]
    assert torch.all(replayed.centers[0].abs() < 1e2)  # the far centre was moved onto the rows


def test_a_failed_recording_warns_and_the_fit_runs_launch_by_launch(monkeypatch):
    def fails(work, device):
        raise RuntimeError("operation not permitted when stream is capturing")

    X = _blobs(seed=4)
    starts = [X[0:36:6].clone()]
    plain = _fit(X, starts, recorded=False, monkeypatch=monkeypatch)
    monkeypatch.setattr(_lloyd, "_recorder_for", lambda source: fails)
    with pytest.warns(RuntimeWarning, match="could not be recorded as a CUDA graph.*not permitted") as caught:
        fallen_back = _lloyd.lloyd(InMemorySource(X, None, chunk_size=700), starts, max_iter=50, tol=0.0)
    (warning,) = caught
    assert str(warning.message).endswith("; it runs launch by launch, with the same result.")
    assert_same_lloyd_result(plain, fallen_back)
    assert fallen_back.n_replayed == 0


def test_only_rows_held_on_a_gpu_by_one_process_are_recorded(monkeypatch):
    X = _blobs(n=100)
    assert _lloyd._recorder_for(InMemorySource(X, None, chunk_size=10)) is None  # CPU rows
    assert not InMemorySource(X, None, chunk_size=10).recordable_pass


def test_the_environment_switch_turns_recording_off(monkeypatch):
    monkeypatch.delenv("GPUKMEANS_CUDA_GRAPHS", raising=False)
    assert cuda_graphs_enabled()
    monkeypatch.setenv("GPUKMEANS_CUDA_GRAPHS", "0")
    assert not cuda_graphs_enabled()
