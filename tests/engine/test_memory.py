"""A fit's memory: the data, per-row state and one chunk's working set, nothing X-sized.

Measured with torch's profiler, which records every allocation of torch's CPU
allocator: deterministic (unlike the resident set, which depends on how the C
library keeps freed pages), so the bound can be tight. The resident-set figures at
scale are in ``benchmarks/bench_memory.py``.
"""

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from gpukmeans import KMeans, MiniBatchKMeans
from gpukmeans.engine import initialisation as _init
from gpukmeans._arrays import all_finite
from gpukmeans.sources.chunking import chunk_bytes_per_row
from gpukmeans.sources import InMemorySource

N_ROWS, N_FEATURES, CHUNK_ROWS = 60_000, 32, 6_000
# Per-row state a fit may keep besides X: the Lloyd label table (1 byte per restart),
# the nearest distance of k-means++ (4), labels_ (int32, and int64 on the way out), and
# the float64 keys and cumulative sums of a draw (in blocks of 2**16 rows).
PER_ROW_STATE_BYTES = 48


def _allocation_changes(work) -> list:
    """Signed byte counts of torch's CPU allocations (+) and frees (-) while ``work()`` runs, in order."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        work()
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    return [change for _, change in events]


def _peak_allocated_bytes(work) -> int:
    """Peak of torch's live CPU allocations while ``work()`` runs, over what lived before."""
    live = peak = 0
    for change in _allocation_changes(work):
        live += change
        peak = max(peak, live)
    return peak


def _peak_live_allocations(work) -> int:
    """Most torch CPU allocations alive at once while ``work()`` runs, over what lived before."""
    live = peak = 0
    for change in _allocation_changes(work):
        live += 1 if change > 0 else -1
        peak = max(peak, live)
    return peak


@pytest.fixture(scope="module")
def table():
    return torch.from_numpy(np.random.default_rng(0).standard_normal((N_ROWS, N_FEATURES)).astype(np.float32))


def _bound(n_rows, chunk_rows, n_features):
    working_set = chunk_rows * chunk_bytes_per_row(n_features, 8, torch.float32, torch.device("cpu"))
    return working_set + n_rows * PER_ROW_STATE_BYTES


@pytest.mark.parametrize(
    "params",
    [
        {"init": "k-means++", "n_init": 3},
        {"init": "k-means||", "n_init": 1},
        {"init": "random", "n_init": 2},
    ],
    ids=lambda p: f"{p['init']}-n_init{p['n_init']}",
)
def test_fit_allocates_no_copy_of_the_data(table, params):
    data_bytes = table.numel() * table.element_size()
    bound = _bound(N_ROWS, CHUNK_ROWS, N_FEATURES)
    assert bound < data_bytes  # else the check could not tell a copy of X from the working set
    model = KMeans(8, max_iter=10, random_state=0, device="cpu", chunk_size=CHUNK_ROWS, **params)
    peak = _peak_allocated_bytes(lambda: model.fit(table))
    assert peak <= bound, f"peak {peak / 2**20:.2f} MiB over the bound {bound / 2**20:.2f} MiB"


def test_kmeans_parallel_keeps_nothing_per_block(table, monkeypatch):
    # A round of k-means|| visits the rows in blocks of float64 temporaries. Anything
    # it keeps from each block (it once kept a tensor of the block's sampled rows, most
    # of them empty) lands in the C heap between freed temporaries, and glibc's heap
    # then grew by a block's temporaries per block (about 8 bytes a row; the streamed
    # 100,000,000-row fit had 0.9 GB in the C heap).
    # So the number of allocations alive at once must not grow with the number of
    # blocks. A high oversampling makes most blocks sample rows (an empty tensor owns
    # no storage, so the profiler would not see it); kept per block, the count went
    # from 47 with 4,096-row blocks to 82 with 256-row blocks.
    source = InMemorySource(table[:20_000, :2].contiguous(), None, chunk_size=4_096)

    def peak_with_blocks_of(block_rows):
        monkeypatch.setattr(_init, "_BLOCK_ROWS", block_rows)
        generator = torch.Generator().manual_seed(1)
        return _peak_live_allocations(lambda: _init.kmeans_parallel(source, 8, 7, generator, oversampling=20.0))

    few_blocks, many_blocks = peak_with_blocks_of(4_096), peak_with_blocks_of(256)
    assert many_blocks <= few_blocks, f"{many_blocks} allocations alive at once in 79 blocks, {few_blocks} in 5"


def test_inference_allocates_no_copy_of_the_data(table):
    model = KMeans(8, max_iter=5, random_state=0, device="cpu", chunk_size=CHUNK_ROWS).fit(table)
    bound = _bound(N_ROWS, CHUNK_ROWS, N_FEATURES)
    for work in (lambda: model.predict(table), lambda: model.score(table)):
        peak = _peak_allocated_bytes(work)
        assert peak <= bound, f"peak {peak / 2**20:.2f} MiB over the bound {bound / 2**20:.2f} MiB"


def test_minibatch_final_pass_allocates_no_copy_of_the_data(table):
    model = MiniBatchKMeans(8, batch_size=1024, max_iter=2, random_state=0, device="cpu", chunk_size=CHUNK_ROWS)
    peak = _peak_allocated_bytes(lambda: model.fit(table))
    bound = _bound(N_ROWS, CHUNK_ROWS, N_FEATURES)
    assert peak <= bound, f"peak {peak / 2**20:.2f} MiB over the bound {bound / 2**20:.2f} MiB"


def test_a_non_finite_value_is_still_found(table):
    # all_finite's one-reduction shortcut must not hide a NaN (the blockwise look finds it)
    broken = table.clone()
    broken[N_ROWS - 1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(8, device="cpu").fit(broken)
    overflowing = torch.linspace(1e38, 3e38, 20).reshape(10, 2)  # finite values, infinite sum
    assert all_finite(overflowing)
    overflowing[4, 1] = float("inf")
    assert not all_finite(overflowing)
