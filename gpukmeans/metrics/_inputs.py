"""Input validation shared by the metrics: device choice, data and labels.

Everything a user can get wrong (device, shape, NaN, too few or too many
clusters) is checked here, once, with a one-line ``ValueError`` that names the
problem. The metric modules then work on validated tensors only.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np
import torch

__all__ = [
    "ValidatedInput",
    "check_number_of_labels",
    "resolve_device",
    "to_output",
    "validate",
    "validate_sample_weight",
]


def resolve_device(device: Any, data: Any = None) -> torch.device:
    """Turn ``device`` into a :class:`torch.device`, checking that it exists.

    ``"auto"`` keeps a torch tensor where it already lives (no copy), and
    otherwise picks CUDA when it is available, else the CPU.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        if isinstance(data, torch.Tensor):
            return data.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda'"
        ) from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available; "
                "use device='auto' or 'cpu'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return resolved


def _is_cupy(array: Any) -> bool:
    return type(array).__module__.split(".")[0] == "cupy"


def _is_pandas(array: Any) -> bool:
    return type(array).__module__.split(".")[0] == "pandas"


def _data_to_tensor(X: Any) -> torch.Tensor:
    """Convert numpy / pandas / torch / CuPy / nested lists to a 2-D tensor."""
    if isinstance(X, torch.Tensor):
        tensor = X
    elif _is_cupy(X):
        # DLPack shares the GPU buffer with torch: no copy through the host.
        tensor = torch.from_dlpack(X)
    else:
        if _is_pandas(X) and hasattr(X, "dtypes"):
            dtypes = getattr(X, "dtypes")
            if hasattr(dtypes, "items"):
                bad = [str(c) for c, t in dtypes.items() if not _is_numeric_dtype(t)]
                if bad:
                    raise ValueError(
                        f"X has non-numeric column(s) {bad}; select or encode them first"
                    )
            X = X.to_numpy()
        try:
            array = np.asarray(X)
        except (TypeError, ValueError) as error:
            raise ValueError(f"X could not be read as a numeric array: {error}") from error
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise ValueError(
                f"X must be numeric, got an array of dtype {array.dtype}"
            )
        if array.dtype.kind != "f":
            array = array.astype(np.float64)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dtype not in (torch.float32, torch.float64):
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float32)  # float16 / bfloat16: too coarse to sum in
        elif tensor.is_complex():
            raise ValueError("X must be real-valued, got a complex tensor")
        else:
            tensor = tensor.to(torch.float64)
    return tensor


def _is_numeric_dtype(dtype: Any) -> bool:
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:
        # pandas extension dtypes (nullable Int64, Float64, ...)
        return getattr(dtype, "kind", "O") in "biuf"


def _encode_labels(labels: Any, n_samples: int, device: torch.device):
    """Map arbitrary labels to 0..n_labels-1 (sorted like ``np.unique``)."""
    if isinstance(labels, torch.Tensor):
        if labels.dim() != 1:
            raise ValueError(
                f"labels must be 1-D, got a tensor of shape {tuple(labels.shape)}"
            )
        if labels.is_floating_point() and bool(torch.isnan(labels).any()):
            raise ValueError("labels contain NaN")
        flat = labels
        if flat.shape[0] != n_samples:
            raise ValueError(
                f"labels has {flat.shape[0]} entries but X has {n_samples} rows"
            )
        classes, codes = torch.unique(flat.to(device), return_inverse=True)
        return codes.to(torch.int64), int(classes.shape[0])
    if _is_cupy(labels):
        return _encode_labels(torch.from_dlpack(labels), n_samples, device)
    if _is_pandas(labels):
        labels = labels.to_numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got an array of shape {array.shape}")
    if array.shape[0] != n_samples:
        raise ValueError(
            f"labels has {array.shape[0]} entries but X has {n_samples} rows"
        )
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError("labels contain NaN")
    try:
        classes, codes = np.unique(array, return_inverse=True)
    except TypeError as error:
        raise ValueError(f"labels could not be sorted: {error}") from error
    codes = torch.from_numpy(codes.reshape(-1).astype(np.int64)).to(device)
    return codes, int(classes.shape[0])


def check_number_of_labels(n_labels: int, n_samples: int) -> None:
    """scikit-learn's rule: 2 <= n_labels <= n_samples - 1, else ``ValueError``."""
    if not 1 < n_labels < n_samples:
        raise ValueError(
            f"Number of labels is {n_labels}. Valid values are 2 to "
            f"n_samples - 1 (inclusive), here 2 to {n_samples - 1}"
        )


class ValidatedInput(NamedTuple):
    X: torch.Tensor  # (n, d) float32/float64 on the compute device
    labels: torch.Tensor  # (n,) int64 codes 0..n_labels-1 on the compute device
    n_labels: int
    like: Any  # the caller's X, to shape outputs after it


def validate(
    X: Any, labels: Any, device: Any = "auto", *, check_labels: bool = True
) -> ValidatedInput:
    """Validate ``X`` and ``labels`` and move them to the compute device."""
    compute_device = resolve_device(device, X)
    tensor = _data_to_tensor(X)
    if tensor.dim() != 2:
        raise ValueError(
            f"X must be 2-D (n_samples, n_features), got shape {tuple(tensor.shape)}"
        )
    n_samples, n_features = tensor.shape
    if n_samples == 0 or n_features == 0:
        raise ValueError(f"X is empty: shape {tuple(tensor.shape)}")
    tensor = tensor.to(compute_device)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError("X contains NaN or infinity")
    codes, n_labels = _encode_labels(labels, n_samples, compute_device)
    if check_labels:
        check_number_of_labels(n_labels, n_samples)
    return ValidatedInput(tensor, codes, n_labels, X)


def validate_sample_weight(
    sample_weight: Any, n_samples: int, device: torch.device
) -> Optional[torch.Tensor]:
    """Return float64 weights on ``device`` (or None), rejecting bad values."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, torch.Tensor):
        weights = sample_weight.detach().to(device=device, dtype=torch.float64)
    elif _is_cupy(sample_weight):
        weights = torch.from_dlpack(sample_weight).to(device=device, dtype=torch.float64)
    else:
        if _is_pandas(sample_weight):
            sample_weight = sample_weight.to_numpy()
        array = np.asarray(sample_weight, dtype=np.float64)
        if array.ndim == 0:
            array = np.full(n_samples, float(array))
        weights = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    if weights.dim() != 1 or weights.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), got {tuple(weights.shape)}"
        )
    if not bool(torch.isfinite(weights).all()):
        raise ValueError("sample_weight contains NaN or infinity")
    if bool((weights < 0).any()):
        raise ValueError("sample_weight must be non-negative")
    if not bool((weights > 0).any()):
        raise ValueError("sample_weight sums to zero")
    return weights


def to_output(values: torch.Tensor, like: Any):
    """Return ``values`` in the caller's array type: torch in, torch out; CuPy in,
    CuPy out; anything else gives numpy."""
    if isinstance(like, torch.Tensor):
        return values.to(like.device)
    if _is_cupy(like):
        import cupy  # only reachable when the caller passed a CuPy array

        return cupy.from_dlpack(values.contiguous())
    return values.cpu().numpy()
