"""The behaviours scikit-learn's own KMeans tests pin down, checked on ours."""

import numpy as np
import pytest
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.metrics import pairwise_distances

from gpukmeans import KMeans


def test_hand_computed_weighted_toy_case():
    X = np.array([[0, 0], [0.5, 0], [0.5, 1], [1, 1]])
    km = KMeans(2, init=np.array([[0.0, 0], [1, 1]]), device="cpu").fit(X, sample_weight=[3, 1, 1, 3])
    np.testing.assert_array_equal(km.labels_, [0, 0, 1, 1])
    np.testing.assert_allclose(km.inertia_, 0.375)
    np.testing.assert_allclose(km.cluster_centers_, [[0.125, 0], [0.875, 1]])
    assert km.n_iter_ == 2


def test_empty_clusters_move_to_the_farthest_points():
    # All rows tie to the first centre; the two others are empty and must take the two
    # rows farthest from it (10 and 9.5), leaving the first the mean of the other eight.
    X = np.array([-10.0, -9.5, -9, -8.5, -8, -1, 1, 9, 9.5, 10]).reshape(-1, 1)
    km = KMeans(3, init=np.full((3, 1), -10.0), max_iter=1, device="cpu").fit(X)
    np.testing.assert_allclose(km.cluster_centers_, [[-4.5], [10], [9.5]])
    assert np.isfinite(km.cluster_centers_).all()


def test_a_cluster_empty_at_first_iteration_is_relocated():
    X = np.array([[0, 0], [0.5, 0], [0.5, 1], [1, 1]])
    km = KMeans(2, init=np.array([[0.5, 0.5], [3, 3]]), device="cpu").fit(X)
    assert km.n_iter_ == 3
    np.testing.assert_allclose(km.inertia_, 0.25)
    centers_by_label = sorted(map(tuple, km.cluster_centers_.round(12)))
    assert centers_by_label == [(0.25, 0.0), (0.75, 1.0)]
    assert km.labels_[0] == km.labels_[1] != km.labels_[2] == km.labels_[3]


def test_relocation_never_empties_a_singleton_cluster():
    # Three far singletons and two empty centres: moving a singleton would only move the
    # hole, so the empty centres take points from the big cluster instead.
    X = np.array([[0.0], [0.1], [0.2], [0.3], [100.0], [200.0]])
    init = np.array([[0.15], [100.0], [200.0], [500.0], [600.0]])
    km = KMeans(5, init=init, max_iter=1, device="cpu").fit(X)
    assert np.isfinite(km.cluster_centers_).all()
    assert {100.0, 200.0} <= set(km.cluster_centers_.ravel().round(6))
    assert len(np.unique(km.labels_)) == 5


def test_fewer_distinct_points_than_clusters_warns():
    from sklearn.exceptions import ConvergenceWarning

    X = np.array([[0.0, 0], [0, 0], [1, 1], [1, 1], [1, 1]])
    with pytest.warns(ConvergenceWarning, match="Number of distinct clusters"):
        km = KMeans(3, random_state=0, device="cpu").fit(X)
    assert np.isfinite(km.cluster_centers_).all()


@pytest.mark.parametrize("init", ["k-means++", "random", "k-means||"])
def test_float32_and_float64_agree(blobs, init):
    X, _ = blobs
    km64 = KMeans(5, init=init, random_state=0, device="cpu").fit(X)
    km32 = KMeans(5, init=init, random_state=0, device="cpu").fit(X.astype(np.float32))
    assert km32.cluster_centers_.dtype == np.float32
    assert km64.cluster_centers_.dtype == np.float64
    np.testing.assert_array_equal(km32.labels_, km64.labels_)
    np.testing.assert_allclose(km32.cluster_centers_, km64.cluster_centers_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(km32.inertia_, km64.inertia_, rtol=1e-5)


def test_integer_weights_equal_repeated_rows(blobs):
    X, _ = blobs
    rng = np.random.RandomState(0)
    weights = rng.randint(0, 4, size=X.shape[0])
    init = X[np.flatnonzero(weights)[:5]]
    weighted = KMeans(5, init=init, device="cpu").fit(X, sample_weight=weights)
    repeated = KMeans(5, init=init, device="cpu").fit(np.repeat(X, weights, axis=0))
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-10)
    np.testing.assert_allclose(weighted.inertia_, repeated.inertia_, rtol=1e-10)
    np.testing.assert_array_equal(np.repeat(weighted.labels_, weights), repeated.labels_)


def test_scaling_all_weights_changes_nothing_but_inertia(blobs):
    X, _ = blobs
    weights = np.random.RandomState(1).uniform(0.5, 2.0, size=X.shape[0])
    base = KMeans(5, random_state=0, device="cpu").fit(X, sample_weight=weights)
    scaled = KMeans(5, random_state=0, device="cpu").fit(X, sample_weight=weights * 7.5)
    np.testing.assert_array_equal(base.labels_, scaled.labels_)
    np.testing.assert_allclose(base.cluster_centers_, scaled.cluster_centers_, rtol=1e-10)
    np.testing.assert_allclose(scaled.inertia_, 7.5 * base.inertia_, rtol=1e-10)


def test_unit_weights_equal_no_weights(blobs):
    X, _ = blobs
    a = KMeans(5, random_state=0, device="cpu").fit(X)
    b = KMeans(5, random_state=0, device="cpu").fit(X, sample_weight=np.ones(len(X)))
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_)


def test_weights_count_in_score(blobs):
    X, _ = blobs
    km = KMeans(5, random_state=0, device="cpu").fit(X)
    weights = np.random.RandomState(2).uniform(0, 3, size=len(X))
    distances = km.transform(X)[np.arange(len(X)), km.predict(X)] ** 2
    np.testing.assert_allclose(km.score(X, sample_weight=weights), -(weights * distances).sum(), rtol=1e-10)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_more_restarts_are_never_worse(blobs, init):
    X, _ = blobs
    one = KMeans(8, init=init, n_init=1, random_state=4, device="cpu").fit(X)
    many = KMeans(8, init=init, n_init=6, random_state=4, device="cpu").fit(X)
    assert many.inertia_ <= one.inertia_


def test_n_init_auto_follows_scikit_learn(blobs):
    X, _ = blobs
    auto_random = KMeans(7, init="random", random_state=5, device="cpu").fit(X)
    ten_random = KMeans(7, init="random", n_init=10, random_state=5, device="cpu").fit(X)
    assert auto_random.inertia_ == ten_random.inertia_
    auto_pp = KMeans(7, random_state=5, device="cpu").fit(X)
    one_pp = KMeans(7, n_init=1, random_state=5, device="cpu").fit(X)
    assert auto_pp.inertia_ == one_pp.inertia_


def _first_rows(X, n_clusters, random_state):
    return X[:n_clusters]


@pytest.mark.parametrize("init", ["k-means++", "random", "array", "callable"])
def test_n_init_auto_counts_the_restarts_scikit_learn_counts(blobs, init):
    X, _ = blobs
    init_value = {"array": X[:4], "callable": _first_rows}.get(init, init)
    ours = KMeans(4, init=init_value, random_state=0, max_iter=2, device="cpu")
    theirs = SklearnKMeans(4, init=init_value, random_state=0, max_iter=2).fit(X)
    assert ours._resolve_n_init() == theirs._n_init == (10 if init in ("random", "callable") else 1)


def test_refitting_from_fitted_centres_is_a_fixed_point(blobs):
    X, _ = blobs
    first = KMeans(5, random_state=0, device="cpu").fit(X)
    again = KMeans(5, init=first.cluster_centers_, device="cpu").fit(X)
    np.testing.assert_array_equal(first.labels_, again.labels_)
    np.testing.assert_allclose(first.cluster_centers_, again.cluster_centers_, rtol=1e-12)
    assert again.n_iter_ == 1


def test_predicting_the_centres_gives_their_own_index(blobs):
    X, _ = blobs
    km = KMeans(5, random_state=0, device="cpu").fit(X)
    np.testing.assert_array_equal(km.predict(km.cluster_centers_), np.arange(5))


def test_labels_equal_predict_on_training_rows(blobs):
    X, _ = blobs
    km = KMeans(5, random_state=0, max_iter=2, device="cpu").fit(X)  # stopped early on purpose
    np.testing.assert_array_equal(km.labels_, km.predict(X))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_equals_pairwise_distances(blobs, dtype):
    X, _ = blobs
    X = X.astype(dtype)
    km = KMeans(5, random_state=0, device="cpu").fit(X)
    distances = km.transform(X)
    assert distances.dtype == dtype
    np.testing.assert_allclose(distances, pairwise_distances(X, km.cluster_centers_), rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_fortran_and_c_ordered_inputs_agree(blobs):
    X, _ = blobs
    c_fit = KMeans(5, random_state=0, device="cpu").fit(np.ascontiguousarray(X))
    f_fit = KMeans(5, random_state=0, device="cpu").fit(np.asfortranarray(X))
    np.testing.assert_array_equal(c_fit.labels_, f_fit.labels_)
    np.testing.assert_allclose(c_fit.cluster_centers_, f_fit.cluster_centers_)


def test_the_callers_arrays_are_not_modified(blobs):
    X, _ = blobs
    init = X[:5].copy()
    weights = np.random.RandomState(0).uniform(0.1, 1, size=len(X))
    X_before, init_before, weights_before = X.copy(), init.copy(), weights.copy()
    KMeans(5, init=init, device="cpu").fit(X, sample_weight=weights)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(init, init_before)
    np.testing.assert_array_equal(weights, weights_before)


@pytest.mark.parametrize("chunk_size", ["auto", 7])
def test_weighted_relocation_follows_scikit_learns_sums(chunk_size):
    # Two centres far from every row are empty at the first iteration; each takes one of
    # the rows farthest from its centre, by weight: the row's weighted value leaves its
    # cluster's sum and becomes the empty cluster's (scikit-learn's relocation). In
    # chunks of 7 rows, the farthest rows are found block by block.
    rng = np.random.RandomState(3)
    X = np.concatenate([rng.randn(40, 2), rng.randn(40, 2) + [6, 0]])
    weights = rng.uniform(0.2, 3.0, len(X))
    init = np.array([[0.0, 0.0], [6.0, 0.0], [50.0, 50.0], [-50.0, 50.0]])
    ours = KMeans(4, init=init, max_iter=1, chunk_size=chunk_size, device="cpu").fit(X, sample_weight=weights)
    theirs = SklearnKMeans(4, init=init, n_init=1, max_iter=1, algorithm="lloyd").fit(X, sample_weight=weights)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-12)


def test_relocation_passes_over_zero_weight_rows():
    # The farthest rows weigh nothing: an empty centre takes the farthest row that weighs.
    X = np.array([[0.0], [0.2], [0.4], [0.6], [40.0], [30.0]])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 2.0])
    km = KMeans(2, init=np.array([[0.3], [-100.0]]), max_iter=1, device="cpu").fit(X, sample_weight=weights)
    np.testing.assert_allclose(sorted(km.cluster_centers_.ravel()), [0.3, 30.0])
    # Every row that weighs is closer than 1 to its centre; the one that weighs nothing is far.
    X = np.array([[0.0], [0.1], [0.2], [0.35], [5.0]])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    km = KMeans(2, init=np.array([[0.15], [-100.0]]), max_iter=1, device="cpu").fit(X, sample_weight=weights)
    np.testing.assert_allclose(sorted(km.cluster_centers_.ravel()), [0.1, 0.35])


def test_the_best_of_several_weighted_restarts_reports_its_own_inertia():
    rng = np.random.RandomState(4)
    X = np.concatenate([rng.randn(60, 2), rng.randn(60, 2) + [5, 0], rng.randn(60, 2) + [0, 5]])
    weights = rng.uniform(0.1, 4.0, len(X))
    km = KMeans(3, n_init=4, random_state=0, device="cpu").fit(X, sample_weight=weights)
    distances = ((X[:, None, :] - km.cluster_centers_[None]) ** 2).sum(axis=2)
    np.testing.assert_allclose(km.inertia_, (weights * distances.min(axis=1)).sum(), rtol=1e-10)


def test_rows_that_all_start_in_one_cluster_still_iterate_to_scikit_learns_fit():
    # Every row is nearest the second centre at first: the first labels are all 1.
    rng = np.random.RandomState(5)
    X = np.concatenate([rng.randn(30, 1), rng.randn(30, 1) + 10])
    init = np.array([[100.0], [1.0]])
    ours = KMeans(2, init=init, device="cpu").fit(X)
    theirs = SklearnKMeans(2, init=init, n_init=1, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-12)
    assert ours.n_iter_ == theirs.n_iter_
