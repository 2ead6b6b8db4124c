"""Inputs in, results out: numpy, pandas, lists, torch tensors and CuPy arrays.

Results come back as numpy unless the input was a torch tensor (then a tensor on the
input's device) or a CuPy array (then a CuPy array, shared through DLPack).
"""

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ._device import row_blocks, work_block_bytes

_FLOAT_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class OutputKind:
    """How to hand a result back: ``"numpy"``, ``"torch"`` or ``"cupy"``, and where."""

    kind: str
    device: torch.device


NUMPY_OUTPUT = OutputKind("numpy", torch.device("cpu"))


def is_cupy_array(obj) -> bool:
    return type(obj).__module__.startswith("cupy") and hasattr(obj, "__dlpack__")


def is_tensor_like(obj) -> bool:
    """True for inputs that stay on their device instead of going through numpy."""
    return isinstance(obj, torch.Tensor) or is_cupy_array(obj)


def tensor_from_tensor_like(X, name: str = "X") -> tuple[torch.Tensor, OutputKind]:
    """A torch view of a tensor or CuPy array (no copy), and how to return results."""
    if is_cupy_array(X):
        tensor = torch.from_dlpack(X)
        kind = "cupy"
    else:
        tensor = X
        kind = "torch"
    if tensor.is_sparse or tensor.layout != torch.strided:
        raise TypeError(f"{name}: sparse tensors are not supported; pass a dense tensor.")
    return tensor, OutputKind(kind, tensor.device)


def float_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """float32 and float64 are kept; half precisions widen to float32, others to float64."""
    if dtype in _FLOAT_DTYPES:
        return dtype
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return torch.float64


def check_tensor_2d(
    X: torch.Tensor, *, name: str = "X", n_features: int | None = None, keep_half: bool = False
) -> torch.Tensor:
    """Validate a 2-D tensor as scikit-learn's check_array would, without leaving the device.

    Types other than float32 and float64 are converted (see :func:`float_dtype_for`),
    except float16 and bfloat16 with ``keep_half`` (16-bit storage of the rows).
    """
    if X.dim() != 2:
        raise ValueError(
            f"Expected a 2D array for {name}, got a tensor with {X.dim()} dimension(s) "
            f"and shape {tuple(X.shape)}. Reshape your data with .reshape(-1, 1) for a "
            "single feature or .reshape(1, -1) for a single sample."
        )
    n_samples, n_cols = X.shape
    if n_samples == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is required.")
    if n_cols == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is required.")
    if n_features is not None and n_cols != n_features:
        raise ValueError(
            f"{name} has {n_cols} features, but the model is expecting {n_features} features as input."
        )
    if X.dtype.is_complex:
        raise ValueError(f"Complex data not supported: {name} is a {str(X.dtype).removeprefix('torch.')} tensor.")
    if X.dtype not in _FLOAT_DTYPES and not (keep_half and X.dtype in (torch.float16, torch.bfloat16)):
        X = X.to(float_dtype_for(X.dtype))
    if not all_finite(X):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return X


def all_finite(X: torch.Tensor) -> bool:
    """Whether every value of ``X`` is finite, without a temporary the size of ``X``.

    ``torch.isfinite(X)`` would build a boolean copy and an ``abs`` copy of the whole
    table (it would be the largest allocation of a fit). A NaN or infinity anywhere
    makes the sum NaN or infinite, so a finite sum settles it in one reduction; only a
    sum that overflows, or real non-finite values, take the blockwise look.
    """
    if X.numel() == 0 or bool(torch.isfinite(X.sum())):
        return True
    rows = X.reshape(X.shape[0], -1) if X.dim() else X.reshape(1)
    blocks = row_blocks(rows.shape[0], rows.shape[1] * (rows.element_size() + 1), work_block_bytes(rows.device))
    return all(bool(torch.isfinite(rows[start:stop]).all()) for start, stop in blocks)


def to_device(X: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move to ``device`` only when needed (same device and dtype: no copy)."""
    if X.device == device:
        return X
    return X.to(device, non_blocking=False)


def to_output(tensor: torch.Tensor, output: OutputKind):
    """Return ``tensor`` in the caller's array type and on the caller's device."""
    if output.kind == "numpy":
        return tensor.detach().cpu().numpy()
    moved = tensor.detach().to(output.device)
    if output.kind == "cupy":
        import cupy  # only reachable when the caller handed us a CuPy array

        return cupy.from_dlpack(moved)
    return moved


def check_dataframe_columns(X) -> None:
    """Name the non-numeric columns of a DataFrame (scikit-learn's check_array would only
    say that some string could not be converted)."""
    dtypes = getattr(X, "dtypes", None)
    if type(X).__module__.split(".")[0] == "pandas" and hasattr(dtypes, "items"):
        bad = [str(c) for c, t in dtypes.items() if not _is_numeric_dtype(t)]
        if bad:
            raise ValueError(f"X has non-numeric column(s) {bad}; select or encode them first")


def _is_numeric_dtype(dtype) -> bool:
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:  # pandas extension dtypes (nullable Int64, Float64, string, ...)
        return getattr(dtype, "kind", "O") in "biuf"


def is_private_copy(tensor: torch.Tensor, original) -> bool:
    """Whether ``tensor`` is certainly a copy made from ``original`` (so that the engine may
    write to it), never memory the caller can see. Unsure means no."""
    if is_tensor_like(original):
        source, _ = tensor_from_tensor_like(original)
        if source.device != tensor.device:
            return True
        return source.untyped_storage().data_ptr() != tensor.untyped_storage().data_ptr()
    if tensor.device.type != "cpu":
        return True  # host data uploaded
    try:
        return not np.may_share_memory(tensor.numpy(), np.asarray(original))
    except Exception:  # noqa: BLE001 - anything that cannot be compared is treated as shared
        return False


def numpy_to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor sharing ``array``'s memory on the CPU, or a copy on another device.

    Read-only arrays are shared too: the engine never writes to its input, so torch's
    warning about non-writable memory would only be noise.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    return to_device(tensor, device)
