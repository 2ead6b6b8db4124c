"""A saved segmentation model: preprocessing plus centres, in safetensors, never pickle.

The file ``model.safetensors`` holds one tensor, ``cluster_centers`` (float64,
in the preprocessed feature space), and string metadata: the fitted
:class:`~gpukmeans.segmentation.Preprocessor` as JSON, the segment names, and
facts about the training run. Loading it executes no code.

Labels are assigned by :func:`nearest_centers`, an exact float64 computation on
the CPU whose result for a row does not depend on which other rows are in the
table, on chunking, or on the device the model was trained on. Because the
training run labels its rows with the same function, predicting on the training
table reproduces the training labels exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .io import atomic_path
from .preprocess import Preprocessor

MODEL_FILE = "model.safetensors"
_FORMAT = "gpukmeans.segmentation-model"
_FORMAT_VERSION = "1"
_CHUNK_ROWS = 16_384


def nearest_centers(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre and Euclidean distance to it for every row, exactly.

    Distances are summed coordinate by coordinate in float64 (not through the
    ``|x|^2 - 2 x.c + |c|^2`` expansion, whose rounding depends on matrix-product
    blocking), so a row's label is the same whatever table it is part of. Ties go
    to the lowest segment number.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    centers : ndarray of shape (n_segments, n_features)

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
    distances : ndarray of shape (n_samples,), float64
    """
    X = np.asarray(X, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    labels = np.empty(len(X), dtype=np.int64)
    best = np.empty(len(X), dtype=np.float64)
    for start in range(0, len(X), _CHUNK_ROWS):
        block = X[start : start + _CHUNK_ROWS]
        sq = np.empty((len(block), len(centers)))
        for c, center in enumerate(centers):
            diff = block - center
            sq[:, c] = np.einsum("ij,ij->i", diff, diff)
        labels[start : start + len(block)] = sq.argmin(axis=1)
        best[start : start + len(block)] = sq[np.arange(len(block)), labels[start : start + len(block)]]
    return labels, np.sqrt(best)


@dataclass
class SegmentModel:
    """Everything needed to put new customers into the segments of a training run.

    Attributes
    ----------
    preprocessor : Preprocessor
        Fitted preprocessing of the training table.
    cluster_centers : ndarray of shape (n_segments, n_features), float64
        Centres in the preprocessed space.
    segment_names : list of str
    info : dict
        Facts about the training run (k, inertia, rows, versions), JSON-ready.
    """

    preprocessor: Preprocessor
    cluster_centers: np.ndarray
    segment_names: list[str]
    info: dict = field(default_factory=dict)

    @property
    def n_segments(self) -> int:
        return len(self.cluster_centers)

    def assign(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and distances of preprocessed rows; see :func:`nearest_centers`."""
        if X.shape[1] != self.cluster_centers.shape[1]:
            raise InputError(
                f"the data has {X.shape[1]} features after preprocessing but the model "
                f"expects {self.cluster_centers.shape[1]}"
            )
        return nearest_centers(X, self.cluster_centers)

    def predict_frame(self, frame: pd.DataFrame, *, source: str = "the table") -> pd.DataFrame:
        """Segment every row of a raw customer table.

        Returns
        -------
        pandas.DataFrame
            The ID column under its own name (or ``row``, the 0-based position in
            ``frame``, when the model has none), ``segment``, ``segment_name`` and
            ``distance``; rows the preprocessing drops (missing values with
            ``missing="drop"``) are left out.
        """
        prepared = self.preprocessor.transform(frame, source=source)
        labels, distances = self.assign(prepared.X)
        return segments_frame(prepared.ids, prepared.rows, labels, distances, self.segment_names,
                              self.preprocessor.id_column_)


def segments_frame(ids, rows, labels, distances, names, id_column) -> pd.DataFrame:
    """The ``segments`` table shared by training and prediction."""
    key = {id_column: ids.to_numpy()} if id_column is not None else {"row": np.asarray(rows)}
    return pd.DataFrame(
        {
            **key,
            "segment": labels,
            "segment_name": np.asarray(names, dtype=object)[labels],
            "distance": distances,
        }
    )


def save_model(model: SegmentModel, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` (a ``.safetensors`` file) atomically."""
    from safetensors.numpy import save

    path = Path(path)
    metadata = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "preprocessing": json.dumps(model.preprocessor.to_dict()),
        "segment_names": json.dumps(list(model.segment_names)),
        "info": json.dumps(model.info, default=str),
    }
    centers = np.ascontiguousarray(model.cluster_centers, dtype=np.float64)
    # Serialised in memory (the model is small) and written by Python, so that a full
    # disk is the OSError that atomic_path reports, not safetensors' own error type.
    data = save({"cluster_centers": centers}, metadata=metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def load_model(path: str | os.PathLike) -> SegmentModel:
    """Read a model written by :func:`save_model`.

    ``path`` may be the file or a ``segment`` output folder holding ``model.safetensors``.

    Raises
    ------
    InputError
        If the file is missing or is not a gpukmeans segmentation model.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="np") as fh:
            metadata = fh.metadata() or {}
            if metadata.get("format") != _FORMAT:
                raise InputError(f"{path} is not a gpukmeans segmentation model")
            centers = fh.get_tensor("cluster_centers")
    except (SafetensorError, OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path} is not a gpukmeans segmentation model ({exc})") from None
    if metadata.get("format_version") != _FORMAT_VERSION:
        raise InputError(
            f"{path} is a model of format version {metadata.get('format_version')}; "
            f"this gpukmeans reads version {_FORMAT_VERSION}"
        )
    return SegmentModel(
        preprocessor=Preprocessor.from_dict(json.loads(metadata["preprocessing"])),
        cluster_centers=centers.astype(np.float64),
        segment_names=json.loads(metadata["segment_names"]),
        info=json.loads(metadata.get("info", "{}")),
    )
