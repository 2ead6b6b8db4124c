"""Where work runs, and the blocks the per-row arithmetic beside the kernels goes by."""

import torch

# Bytes per block of the per-row arithmetic done beside the kernels (moments, exact
# distances, init potentials): every such temporary is a copy of a block, never of a
# chunk, so it stays out of the fit's memory peak whatever the chunk size.
WORK_BLOCK_BYTES = 2**20
_MIN_BLOCK_ROWS = 256
# Per-row results of one assignment outside Lloyd's pass (see DataSource.assigned_blocks).
ASSIGN_BLOCK_BYTES = 4 * 2**20
# On CUDA a block costs a few kernel launches, microseconds of host time each whatever
# its size, so there blocks are large: at 1 MiB, a pass over 100M rows of 32 float32
# features (the moments for ``tol``, the final exact distances) was some 25,000 blocks of
# about eight launches each, seconds of a fit. 128 MiB is a small part of the chunk budget.
_CUDA_BLOCK_BYTES = 128 * 2**20


def work_block_bytes(device: torch.device) -> int:
    """Bytes of temporaries per block of the per-row arithmetic beside the kernels."""
    return _CUDA_BLOCK_BYTES if torch.device(device).type == "cuda" else WORK_BLOCK_BYTES


def widened_block_bytes(device: torch.device) -> int:
    """Bytes per block of an assignment in float64 (rows widened, see
    ``DataSource.exactly_assigned_blocks``): larger than :func:`assign_block_bytes` on the
    CPU, where each block is a hand-off to the worker threads and the widened rows are
    the block's largest part."""
    return _CUDA_BLOCK_BYTES if torch.device(device).type == "cuda" else 4 * ASSIGN_BLOCK_BYTES


def assign_block_bytes(device: torch.device) -> int:
    """Bytes of per-row results per block of an assignment outside Lloyd's pass."""
    return _CUDA_BLOCK_BYTES if torch.device(device).type == "cuda" else ASSIGN_BLOCK_BYTES


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


def row_blocks(n_rows: int, bytes_per_row: int, block_bytes: int = WORK_BLOCK_BYTES):
    """``(start, stop)`` over ``n_rows`` rows, in blocks whose temporaries (``bytes_per_row``
    each) come to about ``block_bytes``."""
    block_rows = max(_MIN_BLOCK_ROWS, block_bytes // max(1, bytes_per_row))
    for start in range(0, n_rows, block_rows):
        yield start, min(start + block_rows, n_rows)
