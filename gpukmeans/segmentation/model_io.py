"""A saved segmentation model: preprocessing plus centres, in safetensors, never pickle.

The file ``model.safetensors`` holds one tensor, ``cluster_centers`` (float64,
in the preprocessed feature space), and string metadata: the fitted
:class:`~gpukmeans.segmentation.Preprocessor` as JSON, the segment names, and
facts about the training run. Loading it executes no code, and checks every
part of the file before using it (:func:`load_model`): a damaged or edited model
is refused with one line naming the file and the field, never used to put every
customer into one segment.

Format version 2 stores each feature's conditioning (``shift``, ``unit``) beside
its centre and scale (see :mod:`~gpukmeans.segmentation.transform`); a version 1
file, whose centre and scale applied to the raw features, is read as the same
transformation with centre 0 and scale 1 after them.

Labels are assigned by :func:`nearest_centers`: the engine's float64 assignment
(:meth:`gpukmeans.KMeans.predict`), whose result for a row does not depend on
which other rows are in the table or on chunking. Because the training run labels
its rows with the same computation on the same float32 rows, predicting on the
training table reproduces the training labels exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._fields import any_value, json_text, list_of, mapping, read_record, shown, text, whole_number
from .errors import InputError
from .io import atomic_path
from .preprocess import Preprocessor

MODEL_FILE = "model.safetensors"
_FORMAT = "gpukmeans.segmentation-model"
_FORMAT_VERSION = "2"
_READABLE_VERSIONS = ("1", "2")
_CENTERS = "cluster_centers"
_CENTERS_DTYPE = "F64"


def nearest_centers(X, centers, *, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre and Euclidean distance to it for every row, in float64.

    The engine's assignment (:meth:`gpukmeans.KMeans.predict` with
    ``return_distance``) against fixed centres: the rows are widened to float64
    exactly, and a row's label does not depend on the other rows or on chunking.
    Ties go to the lowest segment number.

    Parameters
    ----------
    X : array-like or tensor of shape (n_samples, n_features)
    centers : array-like of shape (n_segments, n_features)
    device : str, default="cpu"

    Returns
    -------
    labels : ndarray of shape (n_samples,), int64
    distances : ndarray of shape (n_samples,), float64
    """
    import torch

    from gpukmeans import KMeans

    assigner = KMeans.from_centers(torch.as_tensor(np.asarray(centers, dtype=np.float64)), device=device)
    rows = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    labels, distances = assigner.predict(rows, return_distance=True)
    return labels.cpu().numpy().astype(np.int64), distances.cpu().numpy()


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

    def assign(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Labels and distances of preprocessed rows; see :func:`nearest_centers`."""
        if X.shape[1] != self.cluster_centers.shape[1]:
            raise InputError(
                f"the data has {X.shape[1]} features after preprocessing but the model "
                f"expects {self.cluster_centers.shape[1]}"
            )
        return nearest_centers(X, self.cluster_centers)

    def predict_frame(self, frame: pd.DataFrame, *, source: str = "the table") -> pd.DataFrame:
        """Segment every row of a raw customer table in memory.

        Returns
        -------
        pandas.DataFrame
            The ID column under its own name (or ``row``, the 0-based position in
            ``frame``, when the model has none), ``segment``, ``segment_name`` and
            ``distance``; rows the preprocessing drops (missing values with
            ``missing="drop"``) are left out. As :func:`~gpukmeans.segmentation.predict`
            gives it for a file.
        """
        from .pipeline import predict

        return predict(self, frame, device="cpu", source=source).segments


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
    data = save({_CENTERS: centers}, metadata=metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def load_model(path: str | os.PathLike) -> SegmentModel:
    """Read a model written by :func:`save_model`, checking every part of the file first.

    ``path`` may be the file or a ``segment`` output folder holding ``model.safetensors``.
    Nothing in the file is executed: the header is JSON, the centres raw float64s.

    Raises
    ------
    InputError
        If the file is missing, is not a gpukmeans segmentation model, is of a
        format version this gpukmeans does not read, or holds a field that is
        missing, unknown, of the wrong type or shape, not finite, or at odds with
        another (a zero scale, inverted clip bounds, more names than centres...).
        The message names the file and the field.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    try:
        metadata, centers = _read_safetensors(path)
        return _model_from_contents(metadata, centers)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


#: The metadata :func:`save_model` writes, as :func:`read_record` checks it. The
#: preprocessing is checked by :meth:`Preprocessor.from_dict`, the info is free.
_METADATA_FIELDS = {
    "format": text,
    "format_version": text,
    "preprocessing": json_text(any_value),
    "segment_names": json_text(list_of(text)),
    "info": json_text(mapping(any_value)),
}


def _read_safetensors(path: Path) -> tuple[dict[str, str], np.ndarray]:
    """The metadata and the centres of a model file.

    The format, its version and the tensors' names, dtypes and shapes are checked
    from the header before any tensor is read, so that no reader meets a dtype
    it cannot hold.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import safe_open

    try:
        with safe_open(str(path), framework="np") as fh:
            metadata = fh.metadata() or {}
            if metadata.get("format") != _FORMAT:
                raise InputError("this file is not a gpukmeans segmentation model")
            _check_format_version(metadata.get("format_version"))
            tensors = {name: fh.get_slice(name) for name in fh.keys()}
            _check_tensors({name: (t.get_dtype(), t.get_shape()) for name, t in tensors.items()})
            centers = fh.get_tensor(_CENTERS)
    except SafetensorError as exc:
        reason = str(exc).removeprefix("Error while deserializing header: ")
        raise InputError(
            f"this file is not a gpukmeans segmentation model (not a readable safetensors file: {reason})"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc})") from None
    return metadata, centers


def _check_format_version(version: str | None) -> None:
    # Every gpukmeans release writes a format_version, so a file without one was
    # not written by gpukmeans and is refused rather than read as some version.
    if version is None:
        raise InputError(f"the file has no format_version; this gpukmeans reads {_readable()}")
    if version not in _READABLE_VERSIONS:
        newer = version.isdecimal() and int(version) > int(_FORMAT_VERSION)
        hint = ", written by a newer gpukmeans" if newer else ""
        raise InputError(
            f"the model is of format version {version!r}{hint}; "
            f"this gpukmeans reads {_readable()}"
        )


def _readable() -> str:
    return "format versions " + " and ".join(_READABLE_VERSIONS)


def _check_tensors(tensors: dict[str, tuple[str, list[int]]]) -> None:
    """One tensor, the centres: float64, (segments, features), at least one segment."""
    unknown = [name for name in tensors if name != _CENTERS]
    if unknown:
        raise InputError(f"the file holds an unknown tensor {unknown[0]!r}")
    if _CENTERS not in tensors:
        raise InputError(f"the file holds no {_CENTERS} tensor")
    dtype, shape = tensors[_CENTERS]
    if dtype != _CENTERS_DTYPE:
        raise InputError(f"the centres are stored as {dtype}; a model stores {_CENTERS_DTYPE}")
    if len(shape) != 2:
        raise InputError(f"the centres have shape {list(shape)}; a model stores (segments, features)")
    if shape[0] == 0:
        raise InputError("the file holds no centres")


def _model_from_contents(metadata: dict[str, str], centers: np.ndarray) -> SegmentModel:
    """The model in the metadata and centres, once each is valid and they agree with each other."""
    if not np.isfinite(centers).all():
        raise InputError("centres hold NaN or infinity")
    fields = read_record(metadata, _METADATA_FIELDS, "metadata")
    preprocessing = fields["preprocessing"]
    if metadata.get("format_version") == "1":
        preprocessing = _from_version_1(preprocessing)
    preprocessor = Preprocessor.from_dict(preprocessing)
    n_segments, width = centers.shape
    n_features = len(preprocessor.feature_names_out_)
    if width != n_features:
        raise InputError(f"the centres have {width} columns for {n_features} features after preprocessing")
    names = fields["segment_names"]
    if len(names) != n_segments:
        raise InputError(f"{len(names)} segment names for {n_segments} centres")
    info = fields["info"]
    if "k" in info and whole_number(info["k"], "metadata.info.k") != n_segments:
        raise InputError(f"metadata.info.k is {shown(info['k'])} for {n_segments} centres")
    # the training table's decimal separator: how predict reads numbers written as text
    if info.get("decimal") not in (None, ".", ","):
        raise InputError(f"metadata.info.decimal is {shown(info['decimal'])}; expected '.' or ','")
    return SegmentModel(
        preprocessor=preprocessor,
        cluster_centers=centers.astype(np.float64),
        segment_names=names,
        info=info,
    )


def _from_version_1(preprocessing):
    """A version 1 preprocessing (centre and scale of the raw features) as version 2:
    the same transformation, as the conditioning, with centre 0 and scale 1 after it."""
    if not isinstance(preprocessing, dict) or "shift" in preprocessing or "unit" in preprocessing:
        return preprocessing
    upgraded = dict(preprocessing)
    center, scale = preprocessing.get("center"), preprocessing.get("scale_values")
    upgraded["shift"], upgraded["unit"] = center, scale
    if isinstance(center, list) and isinstance(scale, list):
        upgraded["center"], upgraded["scale_values"] = [0.0] * len(center), [1.0] * len(scale)
    return upgraded
