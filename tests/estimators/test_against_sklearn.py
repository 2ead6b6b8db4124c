"""Same init, same data, float64: the same answer as scikit-learn's Lloyd."""

import numpy as np
import pytest
from sklearn.cluster import KMeans as SklearnKMeans

from gpukmeans import KMeans


def _assert_same_fit(ours, theirs):
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-6)
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-6)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_fit_as_scikit_learn_on_blobs(blobs, seed):
    X, _ = blobs
    init = X[np.random.RandomState(seed).choice(len(X), 6, replace=False)]
    ours = KMeans(6, init=init, device="cpu").fit(X)
    theirs = SklearnKMeans(6, init=init, n_init=1, algorithm="lloyd").fit(X)
    _assert_same_fit(ours, theirs)


@pytest.mark.parametrize("k", [3, 5, 8])
def test_same_fit_as_scikit_learn_on_mall_customers(mall_income_spending, k):
    X = mall_income_spending
    init = X[np.random.RandomState(k).choice(len(X), k, replace=False)]
    ours = KMeans(k, init=init, device="cpu").fit(X)
    theirs = SklearnKMeans(k, init=init, n_init=1, algorithm="lloyd").fit(X)
    _assert_same_fit(ours, theirs)


def test_weighted_fit_matches_scikit_learn(blobs):
    X, _ = blobs
    weights = np.random.RandomState(7).uniform(0.1, 5.0, size=len(X))
    init = X[:6]
    ours = KMeans(6, init=init, device="cpu").fit(X, sample_weight=weights)
    theirs = SklearnKMeans(6, init=init, n_init=1).fit(X, sample_weight=weights)
    _assert_same_fit(ours, theirs)


def test_mall_customers_reach_the_published_optimum(mall_income_spending):
    # The textbook five segments of Annual Income x Spending Score: inertia 44448.46.
    km = KMeans(5, n_init=10, random_state=0, device="cpu").fit(mall_income_spending)
    assert round(km.inertia_, 2) == 44448.46
    sizes = sorted(np.bincount(km.labels_).tolist())
    assert sizes == [22, 23, 35, 39, 81]
