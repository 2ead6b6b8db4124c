"""A fit in the forms other tools read: plain state for pickle and skops, and scikit-learn's estimator.

An estimator computes with torch objects: the conditioned centres on the fit's device,
the counts of a mini-batch fit, how the rows were conditioned, how results go back,
the storage dtype. None of them is needed to describe the fit, so its saved state
holds them as numpy arrays, strings and numbers (:func:`portable_state`) and loading
rebuilds them (:func:`restored_state`). The state of a fit on numpy data then holds no
torch object: ``skops.io`` loads it trusting only the estimator's own class. The
public attributes stay as the fit left them: a fit on torch tensors keeps tensors.

:func:`sklearn_estimator` builds the scikit-learn estimator a fit stands for, with
the fitted attributes scikit-learn's ``predict``, ``transform`` and ``score`` read,
which opens every tool written for scikit-learn (ONNX converters, say).
"""

import os

import numpy as np
import torch

from ._arrays import OutputKind, is_cupy_array
from .sources import Conditioning

# Private attributes that hold a tensor during the estimator's life.
_TENSOR_STATE = ("_centers", "_counts")
# dtypes a tensor keeps through numpy.
_NUMPY_DTYPES = (torch.float32, torch.float64, torch.int32, torch.int64)


def portable_state(state: dict) -> dict:
    """``state`` (an estimator's ``__dict__``) with its torch objects as numpy arrays,
    strings and numbers."""
    state = dict(state)
    for name in _TENSOR_STATE:
        value = state.get(name)
        if isinstance(value, torch.Tensor) and value.dtype in _NUMPY_DTYPES:
            state[name] = value.detach().cpu().numpy()
    conditioning = state.get("_conditioning")
    if isinstance(conditioning, Conditioning):
        shift = None if conditioning.shift is None else conditioning.shift.cpu().numpy()
        state["_conditioning"] = {"shift": shift, "exponent": int(conditioning.exponent)}
    output = state.get("_output")
    if isinstance(output, OutputKind):
        state["_output"] = {"kind": output.kind, "device": str(output.device)}
    dtype = state.get("_storage_dtype")
    if isinstance(dtype, torch.dtype):
        state["_storage_dtype"] = str(dtype).removeprefix("torch.")
    return state


def restored_state(state: dict) -> dict:
    """The inverse of :func:`portable_state`: tensors on the fit's device (the CPU when
    that device is absent here); a state that holds torch objects is returned as it is."""
    state = dict(state)
    device = _usable_device(state.get("device_", "cpu"))
    for name in _TENSOR_STATE:
        if isinstance(state.get(name), np.ndarray):
            state[name] = torch.from_numpy(state[name]).to(device)
    conditioning = state.get("_conditioning")
    if isinstance(conditioning, dict):
        shift = conditioning["shift"]
        shift = None if shift is None else torch.as_tensor(np.asarray(shift, dtype=np.float64))
        state["_conditioning"] = Conditioning(shift, int(conditioning["exponent"]))
    output = state.get("_output")
    if isinstance(output, dict):
        state["_output"] = OutputKind(output["kind"], torch.device(output["device"]))
    dtype = state.get("_storage_dtype")
    if isinstance(dtype, str):
        state["_storage_dtype"] = getattr(torch, dtype)
    return state


def _usable_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return device


def sklearn_estimator(model, sklearn_class, private_attributes=()):
    """A fitted ``sklearn_class`` equal to ``model``: its parameters (those scikit-learn
    has), its fitted attributes as numpy, and the private ones scikit-learn's methods
    read. ``private_attributes`` names more private attributes to copy where ``model``
    has them (a mini-batch fit's step counters, say)."""
    known = sklearn_class().get_params(deep=False)
    params = {name: value for name, value in model.get_params(deep=False).items() if name in known}
    params["init"] = _sklearn_init(params.get("init", "k-means++"))
    estimator = sklearn_class(**params)
    for name, value in vars(model).items():
        if name.endswith("_") and not name.startswith("_") and name != "device_":
            setattr(estimator, name, _as_numpy(value))
    if hasattr(estimator, "labels_"):
        estimator.labels_ = np.asarray(estimator.labels_, dtype=np.int32)  # scikit-learn's dtype
    estimator._n_threads = _n_threads()
    estimator._n_features_out = estimator.cluster_centers_.shape[0]
    for name in private_attributes:
        if hasattr(model, name):
            setattr(estimator, name, _as_numpy(getattr(model, name)))
    return estimator


def _sklearn_init(init):
    """``init`` as scikit-learn takes it: "k-means||" (a faster start to the same
    seeding) is "k-means++"; centres given as a tensor become numpy."""
    if isinstance(init, str):
        return "k-means++" if init == "k-means||" else init
    if callable(init):
        return init
    return _as_numpy(init)


def _as_numpy(value):
    """A tensor or CuPy array as a numpy array on the host; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if is_cupy_array(value):
        return value.get()
    return value


def _n_threads() -> int:
    """The threads scikit-learn's kernels may use: the CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
