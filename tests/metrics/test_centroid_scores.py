"""``centroid_scores``: Calinski-Harabasz and Davies-Bouldin together, equal to scikit-learn's."""

import numpy as np
import pandas as pd
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
    # on the device "auto" gives: the tensors' own
    X, labels = _labelled("blobs")
    scores = centroid_scores(torch.from_numpy(X), torch.from_numpy(labels))
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


def test_one_pass_scores_several_labellings_in_chunks_as_sklearn_scores_each():
    # what a sweep asks for: the labellings' clusters side by side in one array, the rows
    # visited in chunks that do not divide the table (the last one partial)
    from gpukmeans.metrics._scores import ch_db_many
    from gpukmeans.sources import InMemorySource

    X, three = make_blobs(n_samples=500, n_features=3, centers=3, random_state=2)
    five = np.digitize(X[:, 0], np.quantile(X[:, 0], [0.2, 0.4, 0.6, 0.8]))
    two = (X[:, 1] > np.median(X[:, 1])).astype(np.int64)
    labellings = [three, five, two]
    weights = np.random.default_rng(1).integers(1, 4, size=len(X))
    for sample_weight in (None, weights):
        source = InMemorySource(torch.from_numpy(X), None if sample_weight is None else torch.from_numpy(
            sample_weight.astype(np.float64)), chunk_size=97)
        calinski, davies = ch_db_many(source, [torch.from_numpy(labels) for labels in labellings], [3, 5, 2])
        rows = np.arange(len(X)) if sample_weight is None else np.repeat(np.arange(len(X)), sample_weight)
        for labels, ch, db in zip(labellings, calinski, davies):
            assert (ch, db) == pytest.approx(_sklearn(X[rows], labels[rows]), rel=1e-9)


def _weighted_scores_by_definition(X, labels, weights):
    """Calinski-Harabasz and Davies-Bouldin with real-valued weights, straight from
    the definitions (weighted means, weighted sums of squares), in numpy."""
    clusters = np.unique(labels)
    total = weights.sum()
    grand = (weights[:, None] * X).sum(axis=0) / total
    centroids = np.stack([np.average(X[labels == c], axis=0, weights=weights[labels == c]) for c in clusters])
    sizes = np.array([weights[labels == c].sum() for c in clusters])
    within = sum((weights[labels == c] * ((X[labels == c] - centroids[i]) ** 2).sum(axis=1)).sum()
                 for i, c in enumerate(clusters))
    between = (sizes * ((centroids - grand) ** 2).sum(axis=1)).sum()
    k = len(clusters)
    calinski = between * (total - k) / (within * (k - 1))
    spread = np.array([np.average(np.linalg.norm(X[labels == c] - centroids[i], axis=1), weights=weights[labels == c])
                       for i, c in enumerate(clusters)])
    distances = np.linalg.norm(centroids[:, None] - centroids[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    davies = ((spread[:, None] + spread[None, :]) / distances).max(axis=1).mean()
    return calinski, davies


def test_real_valued_weights_follow_the_weighted_definitions():
    X, labels = _labelled("blobs")
    weights = np.random.default_rng(2).uniform(0.05, 3.0, size=len(labels))
    np.testing.assert_allclose(centroid_scores(X, labels, sample_weight=weights, device="cpu"),
                               _weighted_scores_by_definition(X, labels, weights), rtol=1e-9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
@pytest.mark.parametrize("score", [calinski_harabasz_score, davies_bouldin_score, centroid_scores])
def test_cuda_without_a_gpu_is_refused(score):
    X, labels = _labelled("random-labels")
    with pytest.raises(ValueError, match="CUDA is not available"):
        score(X, labels, device="cuda")


@pytest.mark.parametrize("score, index", [(calinski_harabasz_score, 0), (davies_bouldin_score, 1),
                                          (centroid_scores, slice(None))])
def test_the_scores_of_a_file_use_the_columns_asked_for(score, index, tmp_path):
    X, labels = _labelled("blobs")
    path = tmp_path / "table.parquet"
    noise = np.random.default_rng(0).normal(scale=50, size=len(labels))
    pd.DataFrame(X, columns=list("abcde")).assign(noise=noise).to_parquet(path)
    expected = np.array(_sklearn(X, labels))[index]
    np.testing.assert_allclose(score(path, labels, columns=list("abcde"), device="cpu"), expected, rtol=1e-9)


@pytest.mark.parametrize("score, index", [(calinski_harabasz_score, 0), (davies_bouldin_score, 1),
                                          (centroid_scores, slice(None))])
def test_rows_stored_in_16_bits_are_scored_as_the_rounded_rows(score, index):
    X, labels = _labelled("blobs")
    rounded = torch.as_tensor(X).to(torch.bfloat16).double().numpy()
    expected = np.array(_sklearn(rounded, labels))[index]
    assert not np.allclose(np.array(_sklearn(X, labels))[index], expected, rtol=1e-5)
    np.testing.assert_allclose(score(X, labels, dtype="bfloat16", device="cpu"), expected, rtol=1e-6)


def test_identical_rows_in_every_cluster_score_as_sklearn_does():
    # no spread within or between the clusters: scikit-learn's W == 0 case
    X, labels = np.full((6, 2), 3.0), np.array([0, 0, 0, 1, 1, 1])
    assert _sklearn(X, labels) == (1.0, 0.0)
    assert centroid_scores(X, labels, device="cpu") == (1.0, 0.0)


def test_a_within_spread_far_below_the_between_spread_is_still_a_spread():
    # W / (W + B) about 1e-15: tiny, yet some 10^16 ulps of the squares, not rounding
    X = np.array([[0.0], [3e-8], [1.0], [1.0 + 3e-8]])
    labels = np.array([0, 0, 1, 1])
    calinski, davies = centroid_scores(X, labels, device="cpu")
    assert calinski > 1e15 and calinski == pytest.approx(skm.calinski_harabasz_score(X, labels), rel=1e-6)
    # each cluster's spread is 1.5e-8 and the centroids are 1 apart (scikit-learn's
    # distances by expansion lose three digits of it)
    assert davies == pytest.approx(3e-8, rel=1e-6)


def test_many_close_centroids_are_compared_by_direct_differences():
    # 30 centroids 3e-5 apart near (1, 0), and a large cluster at (-1, 0) that keeps the
    # table's centre near 0: distances by |a|^2 + |b|^2 - 2ab would lose digits there
    # (scikit-learn's lose five); the definition in numpy, by differences
    rng = np.random.default_rng(0)
    centres = np.stack([1.0 + np.linspace(0.0, 1e-3, 30), np.zeros(30)], axis=1)
    X = np.vstack([np.repeat(centres, 2, axis=0), np.tile([-1.0, 0.0], (60, 1))]) + rng.normal(scale=1e-6,
                                                                                               size=(120, 2))
    labels = np.concatenate([np.repeat(np.arange(30), 2), np.full(60, 30)])
    centroids = np.stack([X[labels == c].mean(axis=0) for c in range(31)])
    spread = np.array([np.linalg.norm(X[labels == c] - centroids[c], axis=1).mean() for c in range(31)])
    distances = np.linalg.norm(centroids[:, None] - centroids[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    expected = ((spread[:, None] + spread[None, :]) / distances).max(axis=1).mean()
    assert davies_bouldin_score(X, labels, device="cpu") == pytest.approx(expected, rel=1e-10)


def test_a_within_spread_just_above_the_rounding_bound_is_a_spread():
    # exact arithmetic near 0: W = delta^2 / 2 and W / (W + B) is 21 eps^2, above the
    # 16 eps^2 below which a spread counts as the rounding of rows equal to their centroid
    delta = 6.5 * np.finfo(np.float64).eps
    X, labels = np.array([[0.0], [delta], [1.0], [1.0]]), np.array([0, 0, 1, 1])
    expected = skm.calinski_harabasz_score(X, labels)
    assert expected == pytest.approx(4 / delta**2, rel=1e-9)
    assert calinski_harabasz_score(X, labels, device="cpu") == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("X", [
    np.array([[0.0], [1e-10], [1.0], [1.0 + 1e-10]]),  # spreads below isclose's 1e-8
    np.array([[-1.0], [1.0], [-1.0 + 1e-10], [1.0 + 1e-10]]),  # centroids 1e-10 apart
], ids=["no-spread", "coincident-centroids"])
def test_davies_bouldin_takes_near_zero_as_zero_as_sklearn_does(X):
    labels = np.array([0, 0, 1, 1])
    assert skm.davies_bouldin_score(X, labels) == 0.0
    assert davies_bouldin_score(X, labels, device="cpu") == 0.0


def test_a_weighted_table_needs_more_rows_of_positive_weight_than_clusters():
    # three rows of positive weight in three clusters: scikit-learn refuses the repeated rows
    X, labels = np.arange(8.0).reshape(4, 2), np.array([0, 1, 2, 2])
    weights = np.array([1.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="Number of labels"):
        skm.calinski_harabasz_score(X[:3], labels[:3])
    with pytest.raises(ValueError, match="Number of labels is 3"):
        centroid_scores(X, labels, sample_weight=weights, device="cpu")


def test_a_cluster_of_rows_of_weight_zero_is_absent():
    # cluster 3 (the last) has only rows of weight 0; cluster 1 one row of positive weight
    X, labels = _labelled("random-labels")
    labels = labels % 4
    weights = np.random.default_rng(3).integers(1, 4, size=len(labels)).astype(np.float64)
    weights[labels == 3] = 0.0
    weights[labels == 1] = 0.0
    weights[np.flatnonzero(labels == 1)[0]] = 2.0
    kept = np.repeat(np.arange(len(labels)), weights.astype(int))
    np.testing.assert_allclose(centroid_scores(X, labels, sample_weight=weights, device="cpu"),
                               _sklearn(X[kept], labels[kept]), rtol=1e-9)


@pytest.mark.parametrize("score", [calinski_harabasz_score, davies_bouldin_score, centroid_scores])
def test_weights_that_are_all_zero_are_refused(score):
    X, labels = _labelled("random-labels")
    with pytest.raises(ValueError, match="every weight is zero"):
        score(X, labels, sample_weight=np.zeros(len(labels)), device="cpu")
