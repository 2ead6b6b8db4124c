"""Rows held in memory (``InMemorySource``): chunks, the whole-table Lloyd pass, and whose
memory conditioning may write."""

import types

import torch

from gpukmeans.sources import InMemorySource
from gpukmeans.sources.conditioning import Conditioning


def _table(n_rows):
    """Row ``i`` is ``[i, -i]``."""
    return torch.stack([torch.arange(n_rows, dtype=torch.float64), -torch.arange(n_rows, dtype=torch.float64)], dim=1)


def test_chunks_of_one_row_and_of_at_least_one_row():
    for chunk_size in (1, 0):
        chunks = list(InMemorySource(_table(3), None, chunk_size).chunks())
        assert [(start, rows.tolist()) for start, rows, _ in chunks] == [
            (0, [[0.0, -0.0]]), (1, [[1.0, -1.0]]), (2, [[2.0, -2.0]])]


def test_a_lloyd_pass_takes_the_whole_table_only_where_the_kernel_allocates_nothing_per_row():
    X, weights = _table(10), torch.linspace(1.0, 2.0, 10, dtype=torch.float64)
    source = InMemorySource(X, weights, chunk_size=4)
    source.backend = types.SimpleNamespace(whole_pass=True)
    [(start, rows, chunk_weights)] = list(source.lloyd_pass_chunks())
    assert start == 0 and rows is X and chunk_weights is weights
    source.backend = types.SimpleNamespace(whole_pass=False)  # e.g. a float32 copy of 16-bit rows per chunk
    assert [(start, rows.shape[0]) for start, rows, _ in source.lloyd_pass_chunks()] == [(0, 4), (4, 4), (8, 2)]


def test_conditioning_writes_only_rows_the_source_owns():
    shift = torch.tensor([1001.0, 2.0], dtype=torch.float64)
    conditioning = Conditioning(shift=shift, exponent=0)
    callers = _table(4) + 1000.0
    given = callers.clone()
    moved = InMemorySource(callers, None, chunk_size=10).conditioned(conditioning)
    assert torch.equal(callers, given)  # a caller's rows are copied, never written
    assert torch.equal(moved.X, given - shift) and moved.owns_rows
    owned = _table(4) + 1000.0
    in_place = InMemorySource(owned, None, chunk_size=10, owns_rows=True).conditioned(conditioning)
    assert in_place.X.data_ptr() == owned.data_ptr()  # a copy made for the fit is reused
    assert torch.equal(owned, given - shift)
