"""``KMeans.from_centers``: an estimator made from given centres, and
``predict(return_distance=True)``: the nearest centre and the Euclidean distance to it."""

import math

import numpy as np
import pytest
import torch

from gpukmeans import KMeans


def _nearest(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and Euclidean distances by direct difference in float64."""
    difference = X.astype(np.float64)[:, None, :] - centers.astype(np.float64)[None, :, :]
    squared = np.einsum("nkd,nkd->nk", difference, difference)
    labels = squared.argmin(axis=1)
    return labels, np.sqrt(squared[np.arange(X.shape[0]), labels])


def _rows_and_centers(offset: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 5.0, size=(6, 4)) + offset
    X = centers[rng.integers(0, 6, 2000)] + rng.normal(0.0, 2.0, size=(2000, 4))
    return X, centers


@pytest.mark.parametrize("dtype, offset", [
    (np.float64, 0.0), (np.float32, 0.0), (np.float32, 1e6), (np.float64, 1e6),
], ids=["float64-near-zero", "float32-near-zero", "float32-far-from-zero", "float64-far-from-zero"])
def test_predict_gives_the_nearest_centre_and_its_euclidean_distance(dtype, offset):
    X, centers = _rows_and_centers(offset)
    X, centers = X.astype(dtype), centers.astype(dtype)
    model = KMeans.from_centers(centers, device="cpu")

    labels, distances = model.predict(X, return_distance=True)

    expected_labels, expected_distances = _nearest(X, centers)
    np.testing.assert_array_equal(labels, expected_labels)
    assert distances.dtype == np.float64
    # Euclidean, not squared: rows lie about 2 * sqrt(4) from their centre.
    assert 2.0 < float(np.median(distances)) < 6.0
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(model.predict(X), labels)


def _near_ties(offset: float):
    """Rows a millionth or so nearer to one of two centres than to the other."""
    centers = np.array([[offset, offset], [offset + 2.0, offset]])
    rows = np.array([[offset + 1.0 + side * 1e-6 * k, offset + 0.5 * k] for k in range(1, 40) for side in (-1, 1)])
    return rows, centers


# Far from zero, the rows are moved by the centres' mean first, as a fit moves them by theirs:
# otherwise ||x||^2 - 2 x.c + ||c||^2 at 1e6 loses the millionths that decide these ties.
@pytest.mark.parametrize("offset", [0.0, 1e6], ids=["near-zero", "far-from-zero"])
def test_near_ties_go_to_the_nearest_centre(offset):
    rows, centers = _near_ties(offset)
    expected, _ = _nearest(rows, centers)
    assert expected.tolist() == [0, 1] * 39
    np.testing.assert_array_equal(KMeans.from_centers(centers, device="cpu").predict(rows), expected)


def test_the_estimator_holds_the_centres_as_given():
    _, centers = _rows_and_centers(0.0)
    for dtype in (np.float32, np.float64):
        model = KMeans.from_centers(centers.astype(dtype), device="cpu")
        assert model.cluster_centers_.dtype == dtype
        np.testing.assert_array_equal(model.cluster_centers_, centers.astype(dtype))
        assert (model.n_clusters, model.n_features_in_, model.n_iter_) == (6, 4, 0)
        assert math.isnan(model.inertia_)


def test_tensors_give_tensors_back():
    X, centers = _rows_and_centers(0.0, seed=1)
    model = KMeans.from_centers(torch.from_numpy(centers), device="cpu")
    labels, distances = model.predict(torch.from_numpy(X), return_distance=True)
    assert isinstance(labels, torch.Tensor) and isinstance(distances, torch.Tensor)
    expected_labels, expected_distances = _nearest(X, centers)
    np.testing.assert_array_equal(labels.numpy(), expected_labels)
    np.testing.assert_allclose(distances.numpy(), expected_distances, rtol=1e-12)


def test_distances_agree_with_transform_and_score():
    X, centers = _rows_and_centers(0.0, seed=2)
    model = KMeans.from_centers(centers, device="cpu")
    labels, distances = model.predict(X, return_distance=True)
    np.testing.assert_allclose(model.transform(X)[np.arange(X.shape[0]), labels], distances, rtol=1e-12)
    assert model.score(X) == pytest.approx(-float(np.sum(distances**2)), rel=1e-12)


def test_a_row_on_a_centre_is_at_distance_zero():
    centers = np.array([[1.5, -2.0], [10.0, 10.0]])
    labels, distances = KMeans.from_centers(centers, device="cpu").predict(centers[::-1].copy(), return_distance=True)
    assert labels.tolist() == [1, 0] and distances.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("centers, message", [
    (np.array([[0.0, np.nan], [1.0, 1.0]]), "NaN"),
    (np.array([[0.0, np.inf], [1.0, 1.0]]), "infinity"),
    (torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), "NaN or infinity"),
    (np.zeros(3), "2D array"),
    (np.zeros((0, 3)), "n_clusters"),
], ids=["nan", "infinity", "nan-tensor", "one-dimensional", "no-centre"])
def test_unusable_centres_are_refused(centers, message):
    with pytest.raises(ValueError, match=message):
        KMeans.from_centers(centers, device="cpu")


def test_rows_of_another_width_are_refused():
    model = KMeans.from_centers(np.zeros((2, 3)), device="cpu")
    with pytest.raises(ValueError, match="3 features"):
        model.predict(np.zeros((4, 2)))
