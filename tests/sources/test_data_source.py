"""What every data source shares (``DataSource``): assignments in blocks, the rows k-means++
reads again, mini-batch draws, the kernels a source calls, and ``RowsByIndex``."""

import numpy as np
import pandas as pd
import torch

from gpukmeans import _device
from gpukmeans.kernels import backend_for
from gpukmeans.sources import InMemorySource, RowsByIndex
from gpukmeans.sources.files import FileSource, open_table


def _table(n_rows, dtype=torch.float64):
    """Row ``i`` is ``[i, (i * 7) % 11]``."""
    index = torch.arange(n_rows, dtype=dtype)
    return torch.stack([index, (index * 7) % 11], dim=1)


def _nearest(rows, centers, valid=None):
    """Labels and squared distances by numpy, in float64: (m, G) each."""
    rows, centers = np.asarray(rows, np.float64), np.asarray(centers, np.float64)
    distances = ((rows[None, :, None, :] - centers[:, None, :, :]) ** 2).sum(axis=3)  # (G, m, k)
    if valid is not None:
        distances = np.where(np.asarray(valid)[:, None, :], distances, np.inf)
    return distances.argmin(axis=2).T, distances.min(axis=2).T


def test_assignments_in_blocks_cover_each_chunk_with_its_rows_and_weights(monkeypatch):
    # blocks of the fewest rows a block holds (256), within chunks of 600: a chunk of
    # several blocks, and a last block that a chunk's end cuts short
    monkeypatch.setattr(_device, "ASSIGN_BLOCK_BYTES", 1)
    X = _table(1000)
    weights = torch.linspace(0.5, 2.0, 1000, dtype=torch.float64)
    source = InMemorySource(X, weights, chunk_size=600)
    centers = torch.tensor([[[0.0, 0.0], [500.0, 5.0], [999.0, 10.0]],
                            [[250.0, 2.0], [750.0, 8.0], [0.0, 0.0]]], dtype=torch.float64)
    valid = torch.tensor([[True, True, True], [True, True, False]])  # group 1 has two centres

    plain = list(source.assigned_blocks(centers))
    exact = list(source.exactly_assigned_blocks(centers, valid))
    for blocks, mask in ((plain, None), (exact, valid)):
        starts = [start for start, *_ in blocks]
        sizes = [rows.shape[0] for _, rows, _, _ in blocks]
        assert len(blocks) > 2 and starts == list(np.cumsum([0, *sizes[:-1]])) and sum(sizes) == 1000
        for start, rows, block_weights, result in blocks:
            stop = start + rows.shape[0]
            assert torch.equal(rows, X[start:stop]) and torch.equal(block_weights, weights[start:stop])
            labels, distances = _nearest(X[start:stop], centers, mask)
            np.testing.assert_array_equal(result.labels.numpy(), labels)
            np.testing.assert_allclose(result.min_sq_distances.numpy(), distances, rtol=1e-12, atol=1e-9)
    # without weights, every block says so
    assert all(w is None for _, _, w, _ in InMemorySource(X, None, chunk_size=600).assigned_blocks(centers))


class _Recording:
    """A backend that counts the calls it serves (and hands them to the CPU's)."""

    def __init__(self):
        self.inner = backend_for("cpu", torch.float64)
        self.calls = 0

    def assign(self, *args, **kwargs):
        self.calls += 1
        return self.inner.assign(*args, **kwargs)

    def lloyd_step(self, *args, **kwargs):
        self.calls += 1
        return self.inner.lloyd_step(*args, **kwargs)


def test_a_backend_set_on_a_source_serves_its_kernels_from_then_on():
    # a benchmark sets another backend, before or after the source's first assignment
    source = InMemorySource(_table(20), None, chunk_size=20)
    centers = torch.tensor([[[0.0, 0.0], [19.0, 5.0]]], dtype=torch.float64)
    norms = (centers * centers).sum(dim=2)
    source.assign(source.X, centers, norms)
    for _ in range(2):
        recording = _Recording()
        source.backend = recording
        result = source.assign(source.X, centers, norms)
        labels = torch.zeros((20, 1), dtype=torch.int64)
        source.lloyd_step(source.X, centers, norms, None, labels, torch.zeros(1, dtype=torch.int64))
        assert recording.calls == 2
        np.testing.assert_array_equal(result.labels.numpy(), _nearest(source.X, centers)[0])


def test_minibatches_draw_rows_as_numpy_choice_by_weight():
    # scikit-learn's MiniBatchKMeans draws random_state.choice(n, b, p=w / w.sum()); row i
    # of the table is [i, ...], so each drawn row names its index
    X = _table(7)
    weights = torch.tensor([0.0, 1.0, 2.0, 0.0, 0.5, 1.0, 3.0], dtype=torch.float64)  # the last row the heaviest
    for sample_weight, p in ((weights, weights.numpy() / weights.numpy().sum()), (None, np.full(7, 1 / 7))):
        batches = InMemorySource(X, sample_weight, chunk_size=7).minibatches(40, np.random.RandomState(3))
        expected = np.random.RandomState(3)
        for _ in range(3):
            rows, batch_weights = next(batches)
            assert batch_weights is None
            np.testing.assert_array_equal(rows[:, 0].numpy(), expected.choice(7, 40, p=p))


def test_stored_rows_are_the_rows_of_each_range_as_stored(tmp_path):
    X = np.array([[0.5, 1.0], [1.5, 2.0], [2.5, 3.0], [3.5, 4.0], [4.5, 5.0], [5.5, 6.0]])
    pd.DataFrame(X, columns=["a", "b"]).to_parquet(tmp_path / "six.parquet")
    for storage in (torch.float64, torch.float16):
        source = FileSource(open_table(tmp_path / "six.parquet"), (0, 6), chunk_size=4, device=torch.device("cpu"),
                            storage_dtype=storage)
        rows = source.stored_rows([(1, 3), (4, 5)])
        assert rows.dtype == storage  # 16-bit rows stay 16-bit: the kernels read them so
        np.testing.assert_array_equal(rows.double().numpy(), X[[1, 2, 4]])


def test_rows_by_index_of_a_subset_name_the_subsets_rows():
    source = InMemorySource(_table(10, torch.float32), None, chunk_size=4)
    subset = torch.tensor([7, 2, 5])
    rows = RowsByIndex(source, 10, subset)
    assert rows.shape == (3, 2) and rows.dtype == torch.float32 and rows.device == torch.device("cpu")
    np.testing.assert_array_equal(rows[torch.tensor([2, 0])].numpy(), [[5.0, 2.0], [7.0, 5.0]])
    whole = RowsByIndex(source, 10)
    assert whole.shape == (10, 2)
    np.testing.assert_array_equal(whole[np.array([9, 1], dtype=np.int32)].numpy(), [[9.0, 8.0], [1.0, 7.0]])
