"""MiniBatchKMeans: scikit-learn's semantics, step for step, on its own estimator checks."""

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from sklearn.cluster import MiniBatchKMeans as SklearnMiniBatchKMeans
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from gpukmeans import KMeans
from gpukmeans._minibatch import MiniBatchKMeans

# scikit-learn marks exactly these as expected failures for its own MiniBatchKMeans
# (sklearn/utils/_test_common/instance_generator.py).
SKLEARN_MINIBATCH_EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": (
        "sample_weight is not equivalent to removing/repeating samples (as in scikit-learn's MiniBatchKMeans)."
    ),
    "check_sample_weight_equivalence_on_sparse_data": (
        "sample_weight is not equivalent to removing/repeating samples (as in scikit-learn's MiniBatchKMeans)."
    ),
}


@parametrize_with_checks(
    # The parameters scikit-learn's own checks give its MiniBatchKMeans, to keep them fast.
    [MiniBatchKMeans(n_init=2, n_clusters=2, max_iter=5, batch_size=10, device="cpu")],
    expected_failed_checks=lambda _: SKLEARN_MINIBATCH_EXPECTED_FAILURES,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# The comparisons step for step follow scikit-learn 1.9, which draws the mini-batches in
# proportion to the sample weights; older releases draw them uniformly (other random_state
# calls, so other batches) and weight each step instead. The estimator runs on those
# releases too; only their reference fit differs.
compares_with_sklearn_1_9 = pytest.mark.skipif(
    tuple(int(part) for part in sklearn.__version__.split(".")[:2]) < (1, 9),
    reason=f"compares with scikit-learn 1.9's batches; scikit-learn {sklearn.__version__} draws others",
)


def _same_init(X, k, seed):
    return X[np.random.RandomState(seed).choice(len(X), k, replace=False)]


def _assert_same_fit(ours, theirs):
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=0.02)  # the bar
    # Same batches, same steps: the same stopping step and, in float64, the same centres.
    assert ours.n_steps_ == theirs.n_steps_ and ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)


@compares_with_sklearn_1_9
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_fit_as_scikit_learn_on_blobs(blobs, seed):
    X, _ = blobs
    params = dict(n_clusters=5, init=_same_init(X, 5, seed), random_state=seed, batch_size=64)
    _assert_same_fit(MiniBatchKMeans(device="cpu", **params).fit(X), SklearnMiniBatchKMeans(**params).fit(X))


@compares_with_sklearn_1_9
@pytest.mark.parametrize("k", [3, 5, 8])
def test_same_fit_as_scikit_learn_on_mall_customers(mall_income_spending, k):
    X = mall_income_spending
    params = dict(n_clusters=k, init=_same_init(X, k, k), random_state=k, batch_size=32)
    _assert_same_fit(MiniBatchKMeans(device="cpu", **params).fit(X), SklearnMiniBatchKMeans(**params).fit(X))


@compares_with_sklearn_1_9
def test_same_fit_as_scikit_learn_with_weights_and_a_tolerance(blobs):
    X, _ = blobs
    weights = np.random.RandomState(5).uniform(0, 3, len(X))
    params = dict(n_clusters=5, init=X[:5], random_state=0, batch_size=50, tol=1e-3, max_no_improvement=None)
    ours = MiniBatchKMeans(device="cpu", **params).fit(X, sample_weight=weights)
    theirs = SklearnMiniBatchKMeans(**params).fit(X, sample_weight=weights)
    _assert_same_fit(ours, theirs)


def test_float32_stays_float32(blobs):
    X = blobs[0].astype(np.float32)
    km = MiniBatchKMeans(5, init=X[:5], random_state=1, batch_size=64, device="cpu").fit(X)
    assert km.cluster_centers_.dtype == np.float32 and km.transform(X).dtype == np.float32


@compares_with_sklearn_1_9
def test_float32_agrees_with_scikit_learn(blobs):
    X = blobs[0].astype(np.float32)
    params = dict(n_clusters=5, init=X[:5], random_state=1, batch_size=64)
    ours = MiniBatchKMeans(device="cpu", **params).fit(X)
    theirs = SklearnMiniBatchKMeans(**params).fit(X)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-4)


def test_default_init_quality_matches_scikit_learn():
    X, _ = make_blobs(n_samples=3000, centers=8, n_features=6, cluster_std=1.0, random_state=2)
    ours = np.mean([MiniBatchKMeans(8, random_state=s, device="cpu").fit(X).inertia_ for s in range(4)])
    theirs = np.mean([SklearnMiniBatchKMeans(8, random_state=s).fit(X).inertia_ for s in range(4)])
    assert ours <= 1.02 * theirs


def test_partial_fit_follows_scikit_learn_batch_by_batch(mall_income_spending):
    X = mall_income_spending
    params = dict(n_clusters=5, init=X[:5], random_state=0)
    ours, theirs = MiniBatchKMeans(device="cpu", **params), SklearnMiniBatchKMeans(**params)
    for batch in np.array_split(X, 8):
        ours.partial_fit(batch)
        theirs.partial_fit(batch)
        np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-9)
    assert ours.n_steps_ == theirs.n_steps_ == 8
    np.testing.assert_allclose(ours.counts_, theirs._counts)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)


def test_partial_fit_keeps_tensor_batches_as_tensors(blobs):
    X = torch.as_tensor(blobs[0], dtype=torch.float32)
    km = MiniBatchKMeans(5, random_state=0, device="cpu")
    for batch in X.split(100):
        km.partial_fit(batch)
    assert isinstance(km.cluster_centers_, torch.Tensor) and km.cluster_centers_.dtype == torch.float32
    assert km.n_steps_ == 6 and isinstance(km.predict(X), torch.Tensor)


def test_max_no_improvement_stops_early_and_none_runs_every_step(blobs):
    X, _ = blobs
    early = MiniBatchKMeans(5, init=X[:5], random_state=0, batch_size=20, max_iter=50, device="cpu").fit(X)
    full = MiniBatchKMeans(
        5, init=X[:5], random_state=0, batch_size=20, max_iter=50, max_no_improvement=None, device="cpu"
    ).fit(X)
    assert early.n_steps_ < full.n_steps_ == 50 * len(X) // 20
    assert full.n_iter_ == 50


def test_rare_centres_are_reassigned_to_batch_rows(blobs):
    X, _ = blobs
    init = X[:5].copy()
    init[0] = 1e4  # a centre no row will ever choose
    km = MiniBatchKMeans(5, init=init, random_state=0, batch_size=100, max_iter=3, device="cpu").fit(X)
    assert np.abs(km.cluster_centers_).max() < 100
    stuck = MiniBatchKMeans(
        5, init=init, random_state=0, batch_size=100, max_iter=3, reassignment_ratio=0, device="cpu"
    ).fit(X)
    assert np.abs(stuck.cluster_centers_).max() == 1e4


@compares_with_sklearn_1_9
def test_compute_labels_false_reports_the_smoothed_inertia(blobs):
    X, _ = blobs
    params = dict(n_clusters=5, init=X[:5], random_state=0, batch_size=64, compute_labels=False)
    ours = MiniBatchKMeans(device="cpu", **params).fit(X)
    theirs = SklearnMiniBatchKMeans(**params).fit(X)
    assert not hasattr(ours, "labels_")
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-9)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_fit_streams_a_file(tmp_path, suffix):
    X, _ = make_blobs(n_samples=4000, centers=6, n_features=4, cluster_std=1.0, random_state=1)
    frame = pd.DataFrame(X, columns=list("abcd"))
    frame["segment"] = "x"
    path = tmp_path / f"customers{suffix}"
    frame.to_parquet(path, row_group_size=500) if suffix == ".parquet" else frame.to_csv(path, index=False)
    km = MiniBatchKMeans(6, random_state=0, batch_size=256, device="cpu").fit(path, columns=["a", "b", "c", "d"])
    exact = KMeans(6, n_init=3, random_state=0, device="cpu").fit(X)
    assert isinstance(km.labels_, np.ndarray) and km.labels_.shape == (4000,)
    assert list(km.feature_names_in_) == ["a", "b", "c", "d"]
    assert km.inertia_ <= 1.05 * exact.inertia_
    np.testing.assert_array_equal(km.predict(path), km.labels_)


def test_partial_fit_refuses_a_path(tmp_path):
    with pytest.raises(ValueError, match="partial_fit"):
        MiniBatchKMeans(2, device="cpu").partial_fit(tmp_path / "x.parquet")


def test_more_clusters_than_rows():
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=4"):
        MiniBatchKMeans(4, device="cpu").fit(np.zeros((3, 2)))
