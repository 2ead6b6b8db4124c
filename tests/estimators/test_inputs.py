"""Every input type the estimator accepts, and what comes back for each."""

import numpy as np
import pandas as pd
import pytest
import torch

from gpukmeans import KMeans
from gpukmeans import _arrays


def test_lists_become_float64_numpy_results():
    X = [[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]]
    km = KMeans(2, random_state=0, device="cpu").fit(X)
    assert isinstance(km.cluster_centers_, np.ndarray) and km.cluster_centers_.dtype == np.float64
    assert isinstance(km.labels_, np.ndarray) and km.labels_.shape == (6,)
    assert sorted(km.cluster_centers_[:, 0].tolist()) == [1.0, 10.0]


def test_dataframe_records_feature_names(blobs):
    X, _ = blobs
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    km = KMeans(5, random_state=0, device="cpu").fit(frame)
    assert list(km.feature_names_in_) == list(frame.columns)
    assert km.n_features_in_ == 4
    np.testing.assert_array_equal(km.predict(frame), km.labels_)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_input_gives_tensors_back_in_its_dtype(blobs, dtype):
    X, _ = blobs
    tensor = torch.as_tensor(X, dtype=dtype)
    km = KMeans(5, random_state=0, device="cpu").fit(tensor)
    assert isinstance(km.cluster_centers_, torch.Tensor) and km.cluster_centers_.dtype == dtype
    assert isinstance(km.labels_, torch.Tensor) and km.labels_.device == tensor.device
    assert isinstance(km.predict(tensor), torch.Tensor)
    assert isinstance(km.transform(tensor), torch.Tensor)
    assert isinstance(km.predict(X), np.ndarray)  # a numpy caller still gets numpy
    reference = KMeans(5, random_state=0, device="cpu").fit(X.astype(tensor.numpy().dtype))
    np.testing.assert_array_equal(km.labels_.numpy(), reference.labels_)


def test_torch_integer_tensors_become_float64():
    tensor = torch.tensor([[0, 0], [0, 1], [10, 10], [10, 11]])
    km = KMeans(2, random_state=0, device="cpu").fit(tensor)
    assert km.cluster_centers_.dtype == torch.float64


def test_a_tensor_already_on_the_device_in_a_float_dtype_is_not_copied():
    tensor = torch.randn(50, 3)
    checked = _arrays.check_tensor_2d(tensor)
    moved = _arrays.to_device(checked, torch.device("cpu"))
    assert moved is tensor


def test_a_numpy_array_is_shared_not_copied():
    array = np.random.RandomState(0).randn(40, 3)
    tensor = _arrays.numpy_to_tensor(array, torch.device("cpu"))
    assert tensor.data_ptr() == array.ctypes.data


def test_read_only_arrays_are_accepted_without_warnings(blobs, recwarn):
    X, _ = blobs
    X = X.copy()
    X.setflags(write=False)
    KMeans(5, random_state=0, device="cpu").fit(X)
    assert not [w for w in recwarn if "writable" in str(w.message)]


@pytest.mark.gpu
def test_cupy_arrays_round_trip_through_dlpack():
    cupy = pytest.importorskip("cupy")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    X = cupy.random.standard_normal((500, 4), dtype=cupy.float32)
    km = KMeans(3, random_state=0, device="cuda").fit(X)
    assert isinstance(km.cluster_centers_, cupy.ndarray)
    assert isinstance(km.predict(X), cupy.ndarray)
    shared = torch.from_dlpack(X)
    assert shared.data_ptr() == X.data.ptr
