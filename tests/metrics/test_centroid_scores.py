"""``centroid_scores``: Calinski-Harabasz and Davies-Bouldin together, equal to scikit-learn's."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from sklearn.datasets import make_blobs

from gpukmeans.metrics import CentroidScores, calinski_harabasz_score, centroid_scores, davies_bouldin_score


def _sklearn(X, labels) -> tuple[float, float]:
    return skm.calinski_harabasz_score(X, labels), skm.davies_bouldin_score(X, labels)


def _labelled(case: str):
    rng = np.random.default_rng(9)
    if case == "blobs":
        X, labels = make_blobs(n_samples=1200, n_features=5, centers=6, cluster_std=[1, 2, 0.5, 1.5, 1, 3],
                               random_state=7)
        return X, labels
    if case == "random-labels":
        return rng.normal(size=(900, 3)), rng.integers(0, 7, 900)
    if case == "sparse-label-values":  # labels need not be 0..k-1
        X, labels = make_blobs(n_samples=500, n_features=2, centers=3, random_state=1)
        return X, np.array([-4, 10, 7])[labels]
    if case == "integers-with-duplicates":
        X = rng.integers(0, 6, size=(300, 2)).astype(np.float64)
        return X, (X[:, 0] > 2).astype(int) + 2 * (X[:, 1] > 3)
    if case == "far-from-zero":
        X, labels = make_blobs(n_samples=800, n_features=4, centers=4, random_state=3)
        return X + 1e6, labels
    if case == "one-feature-many-clusters":
        X = rng.gamma(2.0, 3.0, size=(1000, 1))
        return X, np.digitize(X[:, 0], np.quantile(X[:, 0], np.linspace(0, 1, 13)[1:-1]))
    raise ValueError(case)


CASES = ["blobs", "random-labels", "sparse-label-values", "integers-with-duplicates", "far-from-zero",
         "one-feature-many-clusters"]


@pytest.mark.parametrize("case", CASES)
def test_centroid_scores_equal_sklearn(case):
    X, labels = _labelled(case)
    scores = centroid_scores(X, labels, device="cpu")
    assert isinstance(scores, CentroidScores)
    assert isinstance(scores.calinski_harabasz, float) and isinstance(scores.davies_bouldin, float)
    # scikit-learn's distances lose digits far from zero (to 1e-5 at 1e6); the same rows
    # brought near zero, exactly (the difference of two close floats is exact), do not.
    offset = 1e6 if case == "far-from-zero" else 0.0
    np.testing.assert_allclose(scores, _sklearn(X - offset, labels), rtol=1e-9)


@pytest.mark.parametrize("case", ["blobs", "sparse-label-values"])
def test_centroid_scores_equal_the_two_scores_alone(case):
    X, labels = _labelled(case)
    scores = centroid_scores(X, labels, device="cpu")
    assert scores == (calinski_harabasz_score(X, labels, device="cpu"), davies_bouldin_score(X, labels, device="cpu"))


def test_tensors_are_scored_like_arrays():
    X, labels = _labelled("blobs")
    scores = centroid_scores(torch.from_numpy(X), torch.from_numpy(labels), device="cpu")
    np.testing.assert_allclose(scores, _sklearn(X, labels), rtol=1e-9)


def test_float32_rows_are_scored_to_float32_accuracy():
    # Rows are conditioned and stored as a fit stores them: float32 rows stay float32.
    X, labels = _labelled("blobs")
    X32 = X.astype(np.float32)
    expected = _sklearn(X32.astype(np.float64), labels)
    np.testing.assert_allclose(centroid_scores(X32, labels, device="cpu"), expected, rtol=1e-6)
    np.testing.assert_allclose(centroid_scores(X32, labels, device="cpu", dtype=torch.float64), expected, rtol=1e-9)


def test_whole_number_weights_equal_repeated_rows():
    X, labels = _labelled("random-labels")
    weights = np.random.default_rng(0).integers(0, 4, X.shape[0])
    weights[:7] = 1  # every cluster keeps a row
    kept = np.repeat(np.arange(X.shape[0]), weights)
    scores = centroid_scores(X, labels, sample_weight=weights.astype(np.float64), device="cpu")
    np.testing.assert_allclose(scores, _sklearn(X[kept], labels[kept]), rtol=1e-9)


def _identical_rows(first_row):
    return np.array([first_row, first_row, [3.0, 4.0], [3.0, 4.0], [3.0, 4.0]]), np.array([0, 0, 1, 1, 1])


def test_clusters_of_identical_rows_score_as_sklearn_does():
    X, labels = _identical_rows([1.0, 2.0])
    assert centroid_scores(X, labels, device="cpu") == _sklearn(X, labels) == (1.0, 0.0)


def test_clusters_of_identical_rows_have_no_within_spread():
    X, labels = _identical_rows([0.0, 0.0])
    assert _sklearn(X, labels) == (1.0, 0.0)
    assert centroid_scores(X, labels, device="cpu") == (1.0, 0.0)


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]], ids=["one-cluster", "one-row-each"])
def test_too_few_or_too_many_clusters_are_refused_like_sklearn(labels):
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError):
        skm.calinski_harabasz_score(X, labels)
    with pytest.raises(ValueError, match="Number of labels"):
        centroid_scores(X, labels, device="cpu")
