"""Where a fit runs, and how many rows it processes at once."""

import torch

from .kernels import fused_cpu_kernel_available

# Bytes of working memory one chunk may use. The CPU figure keeps a chunk's distances
# and products inside the last-level cache of a typical server core pair; the CUDA
# share leaves room for the caller's own tensors.
_CPU_CHUNK_BYTES = 8 * 2**20
# With the fused CPU kernel no chunk-sized distance matrix exists, and each chunk costs
# a hand-off to the worker threads: fewer, larger chunks.
_CPU_FUSED_CHUNK_BYTES = 32 * 2**20
_CUDA_FREE_MEMORY_SHARE = 0.25
_CUDA_MAX_CHUNK_BYTES = 2 * 2**30
_MIN_CHUNK_ROWS = 256


def resolve_device(device) -> torch.device:
    """Turn the ``device`` parameter into a ``torch.device``.

    ``"auto"`` is CUDA when available and the CPU otherwise; asking for CUDA on a
    machine without it is an error, never a silent fallback.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={device!r} is not a device torch knows: {error}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this machine; "
                "use device='cpu' or device='auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type != "cpu":
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'.")
    return resolved


def auto_chunk_size(n_features: int, n_centers: int, dtype: torch.dtype, device: torch.device) -> int:
    """Rows per chunk so that one chunk's distances and copies fit the memory budget.

    A row of a chunk costs its features, its distances to every centre (the only
    n x k piece that ever exists) and a few per-row scalars.
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    bytes_per_row = itemsize * (2 * n_features + 2 * n_centers + 8)
    if device.type == "cpu" and fused_cpu_kernel_available(dtype):
        return max(_MIN_CHUNK_ROWS, int(_CPU_FUSED_CHUNK_BYTES // (itemsize * (2 * n_features + 8))))
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        budget = min(free_bytes * _CUDA_FREE_MEMORY_SHARE, _CUDA_MAX_CHUNK_BYTES)
    else:
        budget = _CPU_CHUNK_BYTES
    return max(_MIN_CHUNK_ROWS, int(budget // bytes_per_row))
