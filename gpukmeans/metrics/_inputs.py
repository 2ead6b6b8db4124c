"""Input validation shared by the metrics: device choice, data and labels.

Everything a user can get wrong (device, shape, NaN, too few or too many
clusters) is checked here, once, with a one-line ``ValueError`` that names the
problem. The metric modules then work on validated tensors only.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np
import torch

from .. import _arrays
from .._device import resolve_device
from ..sources import validate_sample_weight as sources_validate_sample_weight
from ..sources import validated_rows
from ..sources.conditioning import Conditioning, local_moments
from ..sources.memory import InMemorySource

__all__ = [
    "ValidatedInput",
    "check_number_of_labels",
    "data_to_tensor",
    "resolve_device",
    "to_output",
    "validate",
    "validate_sample_weight",
]


def _is_cupy(array: Any) -> bool:
    return _arrays.is_cupy_array(array)


def _is_pandas(array: Any) -> bool:
    return type(array).__module__.split(".")[0] == "pandas"


def data_to_tensor(X: Any, device: torch.device) -> tuple[torch.Tensor, _arrays.OutputKind]:
    """X as a finite 2-D float32/float64 tensor on ``device``, and how to hand results back
    (:func:`gpukmeans.sources.validated_rows`, as every fit validates its rows)."""
    return validated_rows(X, device)


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
    X: torch.Tensor  # (n, d) float32/float64 on the compute device, conditioned
    labels: torch.Tensor  # (n,) int64 codes 0..n_labels-1 on the compute device
    n_labels: int
    output: _arrays.OutputKind  # how results go back to the caller
    conditioning: Conditioning  # how X relates to the caller's rows


def validate(
    X: Any, labels: Any, device: Any = "auto", *, check_labels: bool = True
) -> ValidatedInput:
    """Validate ``X`` and ``labels`` and move them to the compute device.

    ``X`` comes back conditioned as a fit's rows are (see ``gpukmeans.sources.conditioning``):
    moved near the origin when it lies far from it, and scaled by a power of two to
    magnitudes near 1. Every score here is unchanged by both, and the distances they
    sum keep their digits at any offset and scale (the Davies-Bouldin test for "no
    spread" compares with an absolute tolerance, as scikit-learn's, which only means
    something at a known scale).
    """
    compute_device = resolve_device(device)
    tensor, output = data_to_tensor(X, compute_device)
    codes, n_labels = _encode_labels(labels, tensor.shape[0], compute_device)
    if check_labels:
        check_number_of_labels(n_labels, tensor.shape[0])
    moments = local_moments(InMemorySource(tensor, None, tensor.shape[0]))
    conditioning = Conditioning.for_moments(moments, tensor.dtype, tensor.dtype)
    return ValidatedInput(conditioning.rows(tensor), codes, n_labels, output, conditioning)


def validate_sample_weight(
    sample_weight: Any, n_samples: int, device: torch.device
) -> Optional[torch.Tensor]:
    """Float64 weights on ``device`` (or None), checked as a fit checks them."""
    return sources_validate_sample_weight(sample_weight, n_samples, torch.float64, device)


def to_output(values: torch.Tensor, output: _arrays.OutputKind):
    """Return ``values`` as the caller's array type: numpy unless X was a torch
    tensor (a tensor on X's device) or a CuPy array."""
    return _arrays.to_output(values, output)
