"""Input validation shared by the metrics: device choice, data and labels.

Everything a user can get wrong (device, shape, NaN, too few or too many
clusters) is checked here, once, with a one-line ``ValueError`` that names the
problem. The metric modules then work on validated tensors only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from .. import _arrays
from .._device import resolve_device
from ..sources import (
    Conditioning,
    InMemorySource,
    RowsByIndex,
    conditioned_for_fit,
    is_path,
    open_source,
    validated_rows,
)
from ..sources.distributed import Exchange, active_group, join_ranks
from ..sources.storage import resolve_storage_dtype

__all__ = [
    "ValidatedInput",
    "check_number_of_labels",
    "compact_labels",
    "data_to_tensor",
    "resolve_device",
    "to_output",
    "validate",
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
        small = _small_integer_codes(flat.to(device))
        if small is not None:
            return small
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


#: Largest label that :func:`_small_integer_codes` counts instead of sorting.
_COUNTED_LABELS = 1 << 16


def _small_integer_codes(labels: torch.Tensor):
    """Codes of integer labels in ``0.._COUNTED_LABELS``, by counting rather than sorting
    (a cluster fit's labels, in one pass); the same codes as ``torch.unique``. None for
    other labels."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool or labels.numel() == 0:
        return None
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > _COUNTED_LABELS:
        return None
    labels = labels.to(torch.int64)
    present = torch.bincount(labels, minlength=high + 1) > 0
    if bool(present.all()):
        return labels, high + 1
    mapping = torch.cumsum(present, dim=0) - 1
    return mapping[labels], int(present.sum())


def compact_labels(source, labels: torch.Tensor, n_clusters: int) -> tuple[torch.Tensor, int]:
    """Codes 0..m-1 of the clusters that have members of positive weight on any holder
    (rows of weight 0 count as absent, and duplicates can leave a cluster empty); a row of
    weight 0 keeps a valid code (0): it adds nothing."""
    present = None if source.sample_weight is None else source.sample_weight > 0
    members = labels if present is None else labels[present.to(labels.device)]
    counts = source.reduce_sum(torch.bincount(members, minlength=n_clusters))
    if bool((counts > 0).all()):
        return labels, n_clusters  # the usual case: no copy
    kept = torch.nonzero(counts > 0).flatten()
    mapping = torch.zeros(n_clusters, dtype=torch.int64, device=labels.device)
    mapping[kept.to(labels.device)] = torch.arange(kept.shape[0], device=labels.device)
    return mapping[labels], int(kept.shape[0])


def check_number_of_labels(n_labels: int, n_samples: int) -> None:
    """scikit-learn's rule: 2 <= n_labels <= n_samples - 1, else ``ValueError``."""
    if not 1 < n_labels < n_samples:
        raise ValueError(
            f"Number of labels is {n_labels}. Valid values are 2 to "
            f"n_samples - 1 (inclusive), here 2 to {n_samples - 1}"
        )


class ValidatedInput(NamedTuple):
    """What a score works on: every row (in memory, or read by index), this holder's
    rows as a data source, and the labels' codes."""

    X: Any  # (n, d): all rows, conditioned; a tensor, or RowsByIndex where they are not in memory
    labels: torch.Tensor  # (n,) int64 codes 0..n_labels-1 of every row (every holder's)
    n_labels: int
    output: _arrays.OutputKind  # how results go back to the caller
    conditioning: Conditioning  # how X relates to the caller's rows
    source: Any  # this holder's rows (conditioned) as a data source: the streamed scores' passes
    local_labels: torch.Tensor  # this holder's rows' codes

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    def all_rows(self) -> torch.Tensor:
        """Every row as one tensor (read from the source when it is not in memory)."""
        if isinstance(self.X, torch.Tensor):
            return self.X
        return self.X[torch.arange(self.X.shape[0])]

    def local_part(self, values: torch.Tensor) -> torch.Tensor:
        """Of per-row values of every row, this holder's rows' (the caller's ``X``)."""
        start = self.source.row_offset
        return values[start : start + self.source.n_samples]


def validate(
    X: Any, labels: Any, device: Any = "auto", *, check_labels: bool = True, sample_weight: Any = None,
    dtype: Any = None, columns: Any = None, distributed: bool = True,
) -> ValidatedInput:
    """Validate ``X`` and ``labels`` and open the rows where the score runs.

    ``X`` is anything :meth:`gpukmeans.KMeans.fit` takes: an array, tensor, CuPy array,
    or a path to a Parquet file, a folder of Parquet files or a CSV file (``columns``:
    which); ``dtype`` stores the rows as a fit would. Under torch.distributed (2+ ranks,
    ``distributed``), each rank passes its rows and their labels (integers) and gets
    the score of the table they form together.

    The rows are conditioned as a fit's are (see ``gpukmeans.sources.conditioning``):
    moved near the origin when they lie far from it, and scaled by a power of two to
    magnitudes near 1. Every score here is unchanged by both, and the distances they sum
    keep their digits at any offset and scale (the Davies-Bouldin test for "no spread"
    compares with an absolute tolerance, as scikit-learn's, which only means something
    at a known scale).
    """
    compute_device = resolve_device(device)
    group = active_group(distributed)
    exchange = None if group is None else Exchange(group)
    rank, world_size = (0, 1) if exchange is None else (exchange.rank, exchange.world_size)
    storage = resolve_storage_dtype(dtype)
    opened = open_source(X, device=compute_device, sample_weight=sample_weight, columns=columns,
                         storage_dtype=storage, rank=rank, world_size=world_size,
                         require_positive_weights=exchange is None)
    source = opened.source
    if exchange is not None:
        source = join_ranks(source, exchange, storage or source.storage_dtype, shared_table=is_path(X))
    local_labels = _label_values(labels, source.n_samples, compute_device, exchange is not None)
    every_label = source.concat(local_labels) if exchange is not None else local_labels
    n_rows = every_label.shape[0]
    codes, n_labels = _encode_labels(every_label, n_rows, compute_device)
    if check_labels:
        check_number_of_labels(n_labels, n_rows)
    source, _ = conditioned_for_fit(source, storage)
    rows = source.X.to(source.dtype) if isinstance(source, InMemorySource) else RowsByIndex(source, n_rows)
    local = codes[source.row_offset : source.row_offset + source.n_samples] if exchange is not None else codes
    return ValidatedInput(rows, codes, n_labels, opened.output, source.conditioning, source, local)


def _label_values(labels: Any, n_samples: int, device: torch.device, numeric_only: bool):
    """The labels of this holder's rows, checked: a tensor, or (for arbitrary labels in
    one process) a numpy array; under torch.distributed they must be numbers, which ranks
    exchange."""
    if _is_cupy(labels):
        labels = torch.from_dlpack(labels)
    if _is_pandas(labels):
        labels = labels.to_numpy()
    if not isinstance(labels, torch.Tensor):
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got an array of shape {labels.shape}")
        if numeric_only:
            if labels.dtype.kind not in "biuf":
                raise ValueError("under torch.distributed, labels must be numbers (the ranks exchange them)")
            labels = torch.from_numpy(labels.astype(np.float64 if labels.dtype.kind == "f" else np.int64))
    if isinstance(labels, torch.Tensor):
        if labels.dim() != 1:
            raise ValueError(f"labels must be 1-D, got a tensor of shape {tuple(labels.shape)}")
        labels = labels.detach().to(device)
    if labels.shape[0] != n_samples:
        raise ValueError(f"labels has {labels.shape[0]} entries but X has {n_samples} rows")
    return labels


def to_output(values: torch.Tensor, output: _arrays.OutputKind):
    """Return ``values`` as the caller's array type: numpy unless X was a torch
    tensor (a tensor on X's device) or a CuPy array."""
    return _arrays.to_output(values, output)
