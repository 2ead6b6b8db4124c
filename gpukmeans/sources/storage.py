"""The dtype rows are stored in, and the dtype centres and results are computed in.

A Lloyd iteration on a customer table is bound by reading X, so storing X in a
16-bit float (``dtype="bfloat16"`` or ``"float16"`` on the estimators) halves the
bytes each pass reads. Only the rows are rounded: the kernels load 16-bit rows and
compute in float32, so centres, sums, distances and the inertia are float32 (the
*compute dtype*). float32 and float64 storage compute in their own dtype.
"""

from typing import Optional

import numpy as np
import torch

from .._constraints import Options, StrOptions

HALF_DTYPES = (torch.float16, torch.bfloat16)
STORAGE_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

# The ``dtype`` parameter's constraints, scikit-learn style: a name, the torch dtype,
# or numpy's (numpy has no bfloat16).
DTYPE_CONSTRAINTS = [
    StrOptions(set(STORAGE_DTYPES)),
    Options(torch.dtype, set(STORAGE_DTYPES.values())),
    Options(type, {np.float32, np.float64, np.float16}),
    Options(np.dtype, {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)}),
    None,
]


def resolve_storage_dtype(dtype) -> Optional[torch.dtype]:
    """The torch dtype a validated ``dtype`` parameter names; None keeps the input's."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    try:
        return STORAGE_DTYPES[name]
    except KeyError:
        raise ValueError(
            f"dtype={dtype!r} is not a storage dtype; use None, 'float32', 'float64', 'bfloat16' or 'float16'."
        ) from None


def compute_dtype(storage_dtype: torch.dtype) -> torch.dtype:
    """The dtype of centres, weights and results for rows stored in ``storage_dtype``."""
    return torch.float32 if storage_dtype in HALF_DTYPES else storage_dtype


def to_storage(X: torch.Tensor, storage_dtype: Optional[torch.dtype], name: str = "X") -> torch.Tensor:
    """``X`` in ``storage_dtype`` (no copy when it already is; None: unchanged).

    A narrower range can turn finite values into infinities (float16 ends at 65504,
    below many money columns): that is an error naming the range, not a silent inf.
    """
    if storage_dtype is None or X.dtype == storage_dtype:
        return X
    stored = X.to(storage_dtype)
    narrower = torch.finfo(storage_dtype).max < torch.finfo(X.dtype).max
    if narrower and not bool(torch.isfinite(stored).all()):
        largest = torch.finfo(storage_dtype).max
        raise ValueError(
            f"{name} has values beyond the range of {_name(storage_dtype)} (largest {largest:.6g}); "
            "scale the data, or use dtype='bfloat16' (float32's range) or 'float32'."
        )
    return stored


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
