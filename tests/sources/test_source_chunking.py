"""Rows per chunk: a chunk's working memory within the budget of its device, hand-computed."""

from types import SimpleNamespace

import pytest
import torch

from gpukmeans.sources import chunking
from gpukmeans.sources.chunking import auto_chunk_size, chunk_bytes_per_row

CPU = torch.device("cpu")


@pytest.mark.parametrize("dtype, expected", [
    (torch.float32, 4 * (2 * 10 + 8)),
    (torch.float64, 8 * (2 * 10 + 8)),
    (torch.bfloat16, 2 * (2 * 10 + 8)),
])
def test_a_cpu_row_costs_its_features_twice_and_eight_scalars(dtype, expected):
    # the CPU kernels are fused: no row of distances to the 5 centres
    assert chunk_bytes_per_row(10, 5, dtype, CPU) == expected


def test_cpu_chunks_fill_32_mib_and_hold_at_least_256_rows():
    assert auto_chunk_size(10, 5, torch.float32, CPU) == 32 * 2**20 // 112
    # 100,000 float64 features: 1,600,064 bytes a row, 20 rows in 32 MiB, raised to 256
    assert auto_chunk_size(100_000, 5, torch.float64, CPU) == 256


def _forms_distances(monkeypatch):
    monkeypatch.setattr(chunking, "backend_for", lambda device, dtype: SimpleNamespace(chunk_distances=True))


def test_a_kernel_that_forms_distances_adds_two_per_centre_and_uses_8_mib_on_the_cpu(monkeypatch):
    _forms_distances(monkeypatch)
    assert chunk_bytes_per_row(10, 5, torch.float32, CPU) == 4 * (2 * 10 + 2 * 5 + 8)
    assert auto_chunk_size(10, 5, torch.float32, CPU) == 8 * 2**20 // 152


@pytest.mark.parametrize("free_bytes, budget", [
    (2**30, 2**30 // 4),  # a quarter of the free memory
    (16 * 2**30, 2 * 2**30),  # at most 2 GiB
])
def test_cuda_chunks_take_a_quarter_of_the_free_memory_up_to_2_gib(monkeypatch, free_bytes, budget):
    _forms_distances(monkeypatch)
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: asked.append(device) or (free_bytes, 80 * 2**30))
    cuda = torch.device("cuda", 1)
    assert auto_chunk_size(10, 5, torch.float32, cuda) == budget // 152
    assert asked == [cuda]  # the free memory of the device the chunks go to
