"""How many rows a source hands out at once: the chunk that bounds a pass's working memory."""

import torch

from ..kernels import backend_for

# Bytes of working memory one chunk may use. The CPU figure keeps a chunk's distances
# and products inside the last-level cache of a typical server core pair; the CUDA
# share leaves room for the caller's own tensors.
_CPU_CHUNK_BYTES = 8 * 2**20
# Where no chunk-sized distance matrix exists (the CPU kernel), each chunk costs a
# hand-off to the worker threads: fewer, larger chunks.
_CPU_FUSED_CHUNK_BYTES = 32 * 2**20
_CUDA_FREE_MEMORY_SHARE = 0.25
_CUDA_MAX_CHUNK_BYTES = 2 * 2**30
_MIN_CHUNK_ROWS = 256


def _forms_no_distances(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether a CPU pass over rows of ``dtype`` holds no chunk-sized distance matrix."""
    return device.type == "cpu" and not backend_for(device, dtype).chunk_distances


def chunk_bytes_per_row(n_features: int, n_centers: int, dtype: torch.dtype, device: torch.device) -> int:
    """Working memory one row of a chunk may use: its features, a copy of them, a few
    per-row scalars and, unless the fused CPU kernel runs (it never forms them), its
    distances to every centre. A fit's memory is bounded by the data, per-row state and
    one chunk's rows times this."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    if _forms_no_distances(device, dtype):
        return itemsize * (2 * n_features + 8)
    return itemsize * (2 * n_features + 2 * n_centers + 8)


def auto_chunk_size(n_features: int, n_centers: int, dtype: torch.dtype, device: torch.device) -> int:
    """Rows per chunk so that one chunk's distances and copies fit the memory budget.

    A row of a chunk costs its features, its distances to every centre (the only
    n x k piece that ever exists) and a few per-row scalars.
    """
    bytes_per_row = chunk_bytes_per_row(n_features, n_centers, dtype, device)
    if _forms_no_distances(device, dtype):
        return max(_MIN_CHUNK_ROWS, int(_CPU_FUSED_CHUNK_BYTES // bytes_per_row))
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        budget = min(free_bytes * _CUDA_FREE_MEMORY_SHARE, _CUDA_MAX_CHUNK_BYTES)
    else:
        budget = _CPU_CHUNK_BYTES
    return max(_MIN_CHUNK_ROWS, int(budget // bytes_per_row))
