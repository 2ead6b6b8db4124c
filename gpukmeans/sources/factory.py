"""The one way in: whatever a caller passes becomes a data source.

:func:`open_source` serves every caller (KMeans, MiniBatchKMeans, sweep, the metrics,
kmeans_plusplus): an array, DataFrame, list, torch tensor or CuPy array becomes rows in
memory on the device where the work runs, or rows left in host memory and streamed to
a GPU too small to hold them; a path to a Parquet file, a folder of Parquet files or a
CSV file becomes rows read anew on every pass, this rank's share of them under
torch.distributed. The source holds the rows *as given*; :func:`conditioned_for_fit`
takes their moments and returns the source every pass computes on (see
:mod:`.conditioning`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from .. import _arrays
from .base import DataSource
from .chunking import auto_chunk_size
from .conditioning import RowMoments, check_squares_in_range, fit_conditioning
from .files import FileSource, is_path, open_table, shard_bounds
from .host_stream import HostStreamSource, fits_on_device
from .memory import InMemorySource
from .storage import compute_dtype

__all__ = ["OpenedRows", "conditioned_for_fit", "open_source", "table_dtype", "validate_sample_weight"]


@dataclass
class OpenedRows:
    """What :func:`open_source` found."""

    source: DataSource  # the rows as given (this rank's share of a file)
    output: _arrays.OutputKind  # how results go back to the caller
    columns: Optional[list] = None  # a file's feature columns (None for arrays)
    n_rows: int = 0  # the whole table's rows (every rank's, for a file)


def open_source(
    X,
    *,
    device: torch.device,
    sample_weight=None,
    columns=None,
    storage_dtype: Optional[torch.dtype] = None,
    chunk_size="auto",
    n_centers: int = 8,
    rank: int = 0,
    world_size: int = 1,
    validate: Optional[Callable] = None,
    expected_features: Optional[int] = None,
    require_positive_weights: bool = True,
    verbose: bool = False,
) -> OpenedRows:
    """``X`` as a :class:`DataSource` of its rows as given.

    Parameters
    ----------
    X : array-like, DataFrame, torch tensor, CuPy array, or a path (str or os.PathLike)
    device : where the work runs.
    sample_weight : one weight per row (for a path: per row of the whole table), or None.
    columns : for a path, the feature columns (None: every numeric column).
    storage_dtype : the dtype the rows will be stored in (None: the input's); it decides
        the weights' dtype and whether 16-bit tensors stay 16-bit.
    chunk_size : rows per chunk, or "auto" to size chunks for ``n_centers`` centres.
    rank, world_size : this process's share of a file under torch.distributed.
    validate : ``validate(X, device, keep_half) -> (tensor, output)`` for array inputs;
        an estimator passes its own (scikit-learn's feature-name bookkeeping). By
        default :func:`validated_rows`.
    expected_features : a path must have this many feature columns (a fitted model's).
    """
    if is_path(X):
        return _file_source(X, device, sample_weight, columns, storage_dtype, chunk_size, n_centers, rank,
                            world_size, expected_features, require_positive_weights)
    if columns is not None:
        raise ValueError("columns= selects the columns of a Parquet or CSV file; for a DataFrame pass df[columns].")
    on_host = device.type == "cuda" and _is_host_input(X)
    data, output = (validate or validated_rows)(X, torch.device("cpu") if on_host else device,
                                                keep_half=storage_dtype is None)
    owns_rows = _arrays.is_private_copy(data, X)
    streamed = on_host and not fits_on_device(data.numel() * data.element_size(), device)
    if on_host and not streamed:
        data, owns_rows = data.to(device), True
    dtype = compute_dtype(storage_dtype or data.dtype)
    weights = validate_sample_weight(sample_weight, data.shape[0], dtype, device,
                                     require_positive=require_positive_weights)
    rows_per_chunk = resolve_chunk_size(chunk_size, data.shape[1], n_centers, dtype, device)
    if streamed:
        if verbose:
            print("gpukmeans: the data does not fit on the GPU; streaming it from host memory")
        source = HostStreamSource(data, weights, rows_per_chunk, device)
    else:
        source = InMemorySource(data, weights, rows_per_chunk, owns_rows=owns_rows)
    return OpenedRows(source, output, None, data.shape[0])


def _file_source(path, device, sample_weight, columns, storage_dtype, chunk_size, n_centers, rank, world_size,
                 expected_features, require_positive_weights) -> OpenedRows:
    table = open_table(path, columns)
    if table.n_rows == 0:
        raise ValueError(f"{path}: Found array with 0 sample(s) while a minimum of 1 is required.")
    if expected_features is not None and len(table.columns) != expected_features:
        raise ValueError(
            f"{path}: {len(table.columns)} numeric column(s), but the model is expecting "
            f"{expected_features} features as input."
        )
    dtype = compute_dtype(storage_dtype or table_dtype(table))
    start, stop = shard_bounds(table.n_rows, rank, world_size)
    weights = validate_sample_weight(sample_weight, table.n_rows, dtype, device,
                                     require_positive=require_positive_weights)
    if weights is not None:
        weights = weights[start:stop]
    rows_per_chunk = resolve_chunk_size(chunk_size, len(table.columns), n_centers, dtype, device)
    # the rows as read: ``conditioned`` sets the storage dtype
    source = FileSource(table, (start, stop), rows_per_chunk, device, weights)
    return OpenedRows(source, _arrays.NUMPY_OUTPUT, list(table.columns), table.n_rows)


def conditioned_for_fit(source: DataSource, storage_dtype: Optional[torch.dtype] = None,
                        local: Optional[RowMoments] = None) -> tuple[DataSource, RowMoments]:
    """The source a fit computes on (conditioned, stored in ``storage_dtype``), and the
    table's moments. ``local``: this holder's moments when already taken. Every rank
    of a distributed source gets the same conditioning."""
    conditioning, moments = fit_conditioning(source, storage_dtype or source.storage_dtype, local)
    check_squares_in_range(moments)
    return source.conditioned(conditioning, storage_dtype), moments


def resolve_chunk_size(chunk_size, n_features: int, n_centers: int, dtype: torch.dtype, device) -> int:
    """``chunk_size`` as rows: as given, or "auto" sized for ``n_centers`` centres."""
    if chunk_size != "auto":
        return int(chunk_size)
    return auto_chunk_size(n_features, n_centers, dtype, device)


def table_dtype(table) -> torch.dtype:
    """The dtype a file's rows are read in: float32 when every column is float32."""
    return torch.float32 if np.dtype(table.dtype) == np.float32 else torch.float64


def validated_rows(X, device, *, keep_half=False):
    """``X`` as a finite 2-D float tensor on ``device``, and how results go back.

    Tensors and CuPy arrays stay tensors (16-bit ones 16-bit with ``keep_half``); anything
    else goes through scikit-learn's ``check_array`` (float32 and float64 kept, other types
    float64). Estimators pass their own validation instead (feature names).
    """
    from sklearn.utils import check_array

    if _arrays.is_tensor_like(X):
        tensor, output = _arrays.tensor_from_tensor_like(X)
        tensor = _arrays.check_tensor_2d(tensor, keep_half=keep_half)
        return _arrays.to_device(tensor.detach(), device), output
    _arrays.check_dataframe_columns(X)
    array = check_array(X, dtype=[np.float64, np.float32], order="C")
    return _arrays.numpy_to_tensor(array, device), _arrays.NUMPY_OUTPUT


def validate_sample_weight(sample_weight, n_samples: int, dtype, device, *, require_positive: bool = True):
    """Weights as a tensor of ``dtype`` on ``device``, or None for unit weights.

    One value per row, finite, non-negative, and (``require_positive``) at least one
    positive; a scalar applies to every row.
    """
    if sample_weight is None:
        return None
    if _arrays.is_cupy_array(sample_weight):
        sample_weight = torch.from_dlpack(sample_weight)
    if isinstance(sample_weight, torch.Tensor):
        if sample_weight.dim() > 1:
            raise ValueError(f"Sample weights must be 1D array or scalar, got {sample_weight.dim()}D array.")
        weights = sample_weight.detach().to(device=device, dtype=dtype)
        if sample_weight.dim() == 0:
            weights = weights.expand(n_samples).clone()
    else:
        if hasattr(sample_weight, "to_numpy"):
            sample_weight = sample_weight.to_numpy()
        array = np.asarray(sample_weight, dtype=np.float64)
        if array.ndim == 0:
            array = np.full(n_samples, float(array))
        if array.ndim != 1:
            raise ValueError(f"Sample weights must be 1D array or scalar, got {array.ndim}D array.")
        # a pandas Series hands over a read-only view: shared, as X is, without torch's warning
        weights = _arrays.numpy_to_tensor(array, device).to(dtype=dtype)
    if weights.shape[0] != n_samples:
        raise ValueError(f"sample_weight.shape == {tuple(weights.shape)}, expected shape ({n_samples},)!")
    if not bool(torch.isfinite(weights).all()):
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if bool((weights < 0).any()):
        raise ValueError("sample_weight must be non-negative; found negative weights.")
    if require_positive and not bool((weights > 0).any()):
        raise ValueError("sample_weight must have at least one positive weight; every weight is zero.")
    return weights


def _is_host_input(X) -> bool:
    """Inputs whose rows live in host memory (so that a GPU fit may stream them)."""
    if isinstance(X, torch.Tensor):
        return X.device.type == "cpu"
    return not _arrays.is_cupy_array(X)
