"""Mistakes a user can make get a ValueError that names the problem."""

import numpy as np
import pytest
import torch

from gpukmeans import KMeans


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad):
    X = np.random.RandomState(0).randn(20, 3)
    X[4, 1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        KMeans(2, device="cpu").fit(X)


def test_non_finite_values_in_a_tensor_are_rejected():
    X = torch.randn(20, 3)
    X[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(2, device="cpu").fit(X)


def test_more_clusters_than_rows():
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=4"):
        KMeans(4, device="cpu").fit(np.zeros((3, 2)))


@pytest.mark.parametrize("k", [0, -1])
def test_fewer_than_one_cluster(k):
    with pytest.raises(ValueError, match="n_clusters"):
        KMeans(k, device="cpu").fit(np.zeros((3, 2)))


@pytest.mark.parametrize("empty", [np.zeros((0, 2)), torch.zeros(0, 2)])
def test_empty_input(empty):
    with pytest.raises(ValueError, match="0 sample"):
        KMeans(1, device="cpu").fit(empty)


def test_wrong_number_of_features_at_predict():
    km = KMeans(2, random_state=0, device="cpu").fit(np.random.RandomState(0).randn(20, 3))
    with pytest.raises(ValueError, match="3 features"):
        km.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="expecting 3 features"):
        km.predict(torch.zeros(2, 4))


@pytest.mark.parametrize("shape", [(3, 3), (2, 2), (2,)])
def test_wrong_init_shape(shape):
    with pytest.raises(ValueError, match="shape of the initial centers"):
        KMeans(2, init=np.zeros(shape), device="cpu").fit(np.random.RandomState(0).randn(20, 3))


def test_negative_weights():
    with pytest.raises(ValueError, match="non-negative"):
        KMeans(2, device="cpu").fit(np.random.RandomState(0).randn(20, 3), sample_weight=-np.ones(20))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_a_gpu_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="CUDA is not available"):
        KMeans(2, device="cuda").fit(np.zeros((4, 2)))


def test_unknown_device():
    with pytest.raises(ValueError, match="device"):
        KMeans(2, device="tpu").fit(np.zeros((4, 2)))


def test_auto_device_is_said_once_at_verbose(capsys):
    KMeans(2, random_state=0, device="auto", verbose=1).fit(np.random.RandomState(0).randn(20, 2))
    out = capsys.readouterr().out
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert out.count("gpukmeans: fitting on") == 1 and f"fitting on {expected}" in out
