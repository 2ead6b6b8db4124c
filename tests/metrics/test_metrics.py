"""gpukmeans.metrics against scikit-learn, plus conventions, errors and the sampled interval."""

import pickle
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm
from sklearn.datasets import make_blobs

from gpukmeans.metrics import (
    SampledSilhouetteScore,
    SilhouetteEstimate,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_samples,
    silhouette_score,
    silhouette_score_sampled,
    simplified_silhouette_samples,
    simplified_silhouette_score,
)
from gpukmeans.metrics._sampled import allocate_stratified, estimate_silhouettes, make_generator, stratified_sample
from gpukmeans.segmentation.pipeline import _silhouette_fields

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def six_blobs():
    X, y = make_blobs(
        n_samples=1500, n_features=5, centers=6, cluster_std=[1, 2, 0.5, 1.5, 1, 3],
        random_state=7,
    )
    return X, y


@pytest.fixture(scope="module")
def mall():
    """Mall customers' income and spending, labelled by a 3 x 3 grid on them
    (integer data: four rows are exact duplicates of others)."""
    frame = pd.read_csv(MALL)
    X = frame[["Annual Income (k$)", "Spending Score (1-100)"]]
    income = pd.cut(frame["Annual Income (k$)"], 3, labels=False)
    spending = pd.cut(frame["Spending Score (1-100)"], 3, labels=False)
    return X, (income * 3 + spending).to_numpy()


# --------------------------------------------------------------------------- silhouette


@pytest.mark.parametrize("block_size", [97, 512, "auto"])
def test_silhouette_samples_matches_sklearn_float64(six_blobs, block_size):
    X, y = six_blobs
    ours = silhouette_samples(X, y, block_size=block_size, device="cpu")
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, skm.silhouette_samples(X, y), rtol=1e-6, atol=1e-12)


def test_silhouette_score_matches_sklearn_float64(six_blobs):
    X, y = six_blobs
    ours = silhouette_score(X, y, block_size=200)
    assert isinstance(ours, float)
    assert ours == pytest.approx(skm.silhouette_score(X, y), rel=1e-6)


def test_silhouette_matches_sklearn_on_mall_customers(mall):
    X, y = mall
    assert X.duplicated().any()  # the case where the diagonal must be exactly 0
    np.testing.assert_allclose(
        silhouette_samples(X, y, block_size=64), skm.silhouette_samples(X, y),
        rtol=1e-6, atol=1e-12,
    )
    assert silhouette_score(X, y) == pytest.approx(skm.silhouette_score(X, y), rel=1e-6)


def test_silhouette_float32_close_to_sklearn(six_blobs):
    X, y = six_blobs
    ours = silhouette_samples(X.astype(np.float32), y, block_size=300)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, skm.silhouette_samples(X, y), atol=2e-5)


def test_single_member_cluster_scores_zero(six_blobs):
    X, y = six_blobs
    y = y.copy()
    y[3] = 99
    ours = silhouette_samples(X, y, block_size=100)
    assert ours[3] == 0.0
    np.testing.assert_allclose(ours, skm.silhouette_samples(X, y), rtol=1e-6, atol=1e-12)


def test_coincident_points_score_zero():
    # a = b = 0 for every point: scikit-learn's nan_to_num gives 0.
    X = np.zeros((6, 2))
    assert np.all(silhouette_samples(X, [0, 0, 0, 1, 1, 1]) == 0.0)


def test_labels_of_any_type_and_pandas_input(six_blobs):
    X, y = six_blobs
    names = np.array(["north", "south", "east", "west", "up", "down"])[y]
    frame = pd.DataFrame(X, columns=list("abcde"))
    ours = silhouette_samples(frame, pd.Series(names))
    assert isinstance(ours, np.ndarray)
    np.testing.assert_allclose(ours, skm.silhouette_samples(X, names), rtol=1e-6, atol=1e-12)


def test_torch_in_torch_out(six_blobs):
    X, y = six_blobs
    ours = silhouette_samples(torch.from_numpy(X), torch.from_numpy(y))
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), skm.silhouette_samples(X, y), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("n_labels", [1, 10])
def test_number_of_labels_checked_like_sklearn(n_labels):
    X = np.arange(20.0).reshape(10, 2)
    labels = np.arange(10) % n_labels
    with pytest.raises(ValueError, match="Number of labels is"):
        silhouette_score(X, labels)
    with pytest.raises(ValueError, match=rf"^Number of labels is {n_labels}\. Valid values are 2 to "
                                         r"n_samples - 1 \(inclusive\), here 2 to 9$"):
        silhouette_samples(X, labels)


@pytest.mark.parametrize(
    "X, labels, message",
    [
        (np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 2.0]]), [0, 0, 1], "NaN"),
        (np.zeros((4, 2)), [0, 1, 0], "labels has 3 entries but X has 4 rows"),
        (np.zeros(5), [0, 1, 0, 1, 0], "Expected 2D array"),
        (np.array([["a", "b"], ["c", "d"]]), [0, 1], "could not convert string to float"),
        (pd.DataFrame({"x": [1.0, 2, 3], "city": ["a", "b", "c"]}), [0, 1, 0], "non-numeric column"),
    ],
)
def test_bad_input_is_a_clear_value_error(X, labels, message):
    with pytest.raises(ValueError, match=message):
        silhouette_score(X, labels)


@pytest.mark.parametrize("labels, message", [
    (np.array([0.0, np.nan, 1.0, 1.0]), r"^labels contain NaN$"),
    (torch.tensor([0.0, float("nan"), 1.0, 1.0]), r"^labels contain NaN$"),
    (np.array([[0], [0], [1], [1]]), r"^labels must be 1-D, got an array of shape \(4, 1\)$"),
    (torch.tensor([[0], [0], [1], [1]]), r"^labels must be 1-D, got a tensor of shape \(4, 1\)$"),
    (torch.tensor([0, 1, 1]), r"^labels has 3 entries but X has 4 rows$"),
    (np.array([0, "a", 0, "a"], dtype=object), r"^labels could not be sorted: "),
], ids=["nan", "nan-tensor", "2-d", "2-d-tensor", "short-tensor", "unsortable"])
def test_bad_labels_are_a_clear_value_error(labels, message):
    X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    with pytest.raises(ValueError, match=message):
        silhouette_score(X, labels)


@pytest.mark.parametrize("values", [
    [0, 2, 5, 9],  # gaps
    [-3, 0, 4, 1],  # negative
    [7, 70_000, 65_536, 3],  # beyond the labels counted rather than sorted, and the last counted
    [0.25, 0.75, 1.5, 3.0],  # fractions (two of them in one unit)
], ids=["gaps", "negative", "large", "fractions"])
def test_labels_as_tensors_are_scored_as_sklearn_scores_the_same_labels(values):
    # three clusters and one single-row cluster, under labels of every kind
    X, y = make_blobs(n_samples=300, centers=3, n_features=3, random_state=4)
    y[7] = 3
    labels = np.array(values)[y]
    ours = silhouette_samples(X, torch.from_numpy(labels))
    np.testing.assert_allclose(ours, skm.silhouette_samples(X, labels), rtol=1e-9, atol=1e-12)


def test_boolean_labels_as_a_tensor_are_two_clusters():
    X, y = make_blobs(n_samples=200, centers=2, n_features=2, random_state=6)
    labels = y.astype(bool)
    np.testing.assert_allclose(silhouette_samples(X, torch.from_numpy(labels)), skm.silhouette_samples(X, labels),
                               rtol=1e-9, atol=1e-12)


def test_unsupported_metric_and_block_size(six_blobs):
    X, y = six_blobs
    with pytest.raises(ValueError, match="Euclidean silhouette only"):
        silhouette_score(X, y, metric="cosine")
    with pytest.raises(ValueError, match="block_size"):
        silhouette_samples(X, y, block_size=0)


@pytest.mark.parametrize("block_size", [-3, True, 2.5, "big"])
def test_block_size_is_a_positive_int_or_auto(six_blobs, block_size):
    X, y = six_blobs
    with pytest.raises(ValueError, match=r"^block_size must be a positive int or 'auto', got "):
        silhouette_samples(X, y, block_size=block_size)


def test_a_block_of_one_row_gives_scikit_learns_silhouettes(six_blobs):
    X, y = six_blobs[0][:60], six_blobs[1][:60]
    np.testing.assert_allclose(silhouette_samples(X, y, block_size=1), skm.silhouette_samples(X, y), rtol=1e-9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
@pytest.mark.parametrize("score, kwargs", [
    (silhouette_score, {}),
    (silhouette_score, {"sample_size": 100}),
    (silhouette_samples, {}),
], ids=["exact", "sampled", "samples"])
def test_cuda_without_gpu_is_a_value_error(six_blobs, score, kwargs):
    X, y = six_blobs
    with pytest.raises(ValueError, match="CUDA is not available"):
        score(X, y, device="cuda", **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"sample_size": 100}], ids=["exact", "sampled"])
def test_the_score_checks_its_block_size(six_blobs, kwargs):
    X, y = six_blobs
    with pytest.raises(ValueError, match=r"^block_size must be a positive int or 'auto', got 0"):
        silhouette_score(X, y, block_size=0, **kwargs)


@pytest.fixture(scope="module")
def three_blobs():
    X, y = make_blobs(n_samples=600, centers=3, n_features=4, random_state=5)
    return X, y


def _rounded_to_bfloat16(X):
    return torch.as_tensor(X).to(torch.bfloat16).double().numpy()


def test_rows_stored_in_16_bits_give_the_silhouettes_of_the_rounded_rows(three_blobs):
    # the rounding moves the silhouette by about 1e-3, far more than float32 arithmetic
    X, y = three_blobs
    rounded = _rounded_to_bfloat16(X)
    expected = skm.silhouette_samples(rounded, y)
    assert np.abs(expected - skm.silhouette_samples(X, y)).max() > 1e-4
    np.testing.assert_allclose(silhouette_samples(X, y, dtype="bfloat16"), expected, atol=2e-5)
    # a sample of every row is the exact score, of the stored rows
    full = silhouette_score(X, y, sample_size=len(y), dtype="bfloat16")
    assert full.method == "exact" and full == pytest.approx(expected.mean(), abs=2e-6)


def test_the_silhouettes_of_a_file_use_the_columns_asked_for(three_blobs, tmp_path):
    X, y = three_blobs
    path = tmp_path / "table.parquet"
    noise = np.random.default_rng(0).normal(scale=50, size=len(y))
    pd.DataFrame(X, columns=list("abcd")).assign(noise=noise).to_parquet(path)
    columns = list("abcd")
    expected = skm.silhouette_samples(X, y)
    np.testing.assert_allclose(silhouette_samples(path, y, columns=columns), expected, rtol=1e-6, atol=1e-12)
    assert silhouette_score(path, y, columns=columns) == pytest.approx(expected.mean(), rel=1e-9)
    full = silhouette_score(path, y, sample_size=len(y), columns=columns)
    assert full.method == "exact" and full == pytest.approx(expected.mean(), rel=1e-9)


def test_the_sampled_score_takes_the_confidence_asked_for(overlapping):
    X, y = overlapping
    wide = silhouette_score(X, y, sample_size=300, random_state=4)
    narrow = silhouette_score(X, y, sample_size=300, random_state=4, confidence=0.5)
    assert wide.confidence == 0.95 and narrow.confidence == 0.5 and narrow == wide
    ratio = NormalDist().inv_cdf(0.75) / NormalDist().inv_cdf(0.975)
    assert narrow.half_width == pytest.approx(wide.half_width * ratio, rel=1e-9)


@pytest.mark.gpu
@needs_cuda
def test_cuda_matches_cpu(six_blobs):
    X, y = six_blobs
    cpu = silhouette_samples(X, y, device="cpu")
    gpu = silhouette_samples(X, y, device="cuda")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-6, atol=1e-12)
    Xt = torch.from_numpy(X).cuda()
    assert silhouette_samples(Xt, y).device.type == "cuda"


# ---------------------------------------------------------------- sampled silhouette


@pytest.fixture(scope="module")
def overlapping():
    """Overlapping clusters of unequal size and spread (silhouette well below 1)."""
    X, y = make_blobs(
        n_samples=[2500, 1000, 400, 100], n_features=4, cluster_std=[1.0, 2.0, 1.5, 0.5],
        centers=[[0, 0, 0, 0], [3, 3, 0, 0], [0, 4, 2, 0], [5, 0, 0, 1]], random_state=3,
    )
    return X, y


def test_sample_size_returns_a_float_carrying_the_estimate(overlapping):
    X, y = overlapping
    score = silhouette_score(X, y, sample_size=800, random_state=0)
    assert isinstance(score, float) and isinstance(score, SampledSilhouetteScore)
    estimate = silhouette_score_sampled(X, y, sample_size=800, random_state=0)
    assert score.estimate == estimate  # same seed, same estimate
    assert float(score) == estimate.value and score == estimate.value and f"{score:.6f}" == f"{estimate.value:.6f}"
    assert (score.low, score.high, score.half_width) == (estimate.low, estimate.high, estimate.half_width)
    assert score.method == "sampled" and not score.is_exact and score.sample_size == 800
    assert score.n_samples == 4000 and score.confidence == 0.95
    assert np.isclose(score, skm.silhouette_score(X, y), atol=0.05)  # numpy takes it as a number
    assert pickle.loads(pickle.dumps(score)).estimate == estimate


def test_the_full_estimate_is_not_a_float(overlapping):
    X, y = overlapping
    estimate = silhouette_score_sampled(X, y, sample_size=800, random_state=0)
    assert isinstance(estimate, SilhouetteEstimate)
    with pytest.raises(TypeError):
        float(estimate)
    assert "CI" in repr(estimate) and "800 of 4000" in repr(estimate)


def test_a_report_keeps_a_sampled_silhouettes_interval(overlapping):
    X, y = overlapping
    fields = _silhouette_fields(silhouette_score(X, y, sample_size=800, random_state=0))
    assert fields["silhouette_method"] == "sampled" and fields["silhouette_sample_size"] == 800
    assert fields["silhouette_low"] < fields["silhouette"] < fields["silhouette_high"]
    assert _silhouette_fields(silhouette_score(X[:500], y[:500])) == {
        "silhouette": pytest.approx(skm.silhouette_score(X[:500], y[:500]), rel=1e-9), "silhouette_method": "exact"}


def test_seeded_interval_contains_the_exact_value(overlapping):
    X, y = overlapping
    exact = silhouette_score(X, y)
    estimate = silhouette_score_sampled(X, y, sample_size=1000, random_state=11)
    assert estimate.low < exact < estimate.high
    assert estimate.low < estimate.value < estimate.high


def test_interval_counts_the_sampled_reference_points(overlapping):
    # Each sampled row's score is itself an estimate (a and b are means over sampled
    # rows); the interval counts that spread too, which widens it by a factor of about
    # 1.65 here over the naive interval of the same sample (1.4-1.7 in
    # benchmarks/results/metrics_sampled_coverage.md). The next test checks the width
    # against the real spread of the estimates.
    X, y = overlapping
    honest = [silhouette_score_sampled(X, y, sample_size=200, random_state=seed) for seed in range(8)]
    naive = [estimate_silhouettes(torch.from_numpy(X), [torch.from_numpy(y)], [4], 200, make_generator(seed),
                                  reference_term=False)[0] for seed in range(8)]
    for h, n in zip(honest, naive):
        assert h.value == pytest.approx(n.value, abs=1e-9)  # the same sample
    widening = np.mean([h.half_width for h in honest]) / np.mean([n.half_width for n in naive])
    assert 1.3 < widening < 2.0


def _plain_estimate(distances, labels, kept, cluster_shares):
    """The stratified mean of the silhouettes of the kept sampled rows, each scored against
    the kept rows only (the estimate before its bias correction)."""
    rows = np.nonzero(kept)[0]
    D, codes = distances[np.ix_(rows, rows)], labels[rows]
    k = len(cluster_shares)
    sums = np.stack([D[:, codes == c].sum(axis=1) for c in range(k)], axis=1)
    counts = np.bincount(codes, minlength=k).astype(float)
    a = sums[np.arange(len(rows)), codes] / (counts[codes] - 1)
    means = sums / counts
    means[np.arange(len(rows)), codes] = np.inf
    b = means.min(axis=1)
    s = (b - a) / np.maximum(a, b)
    return sum(cluster_shares[c] * s[codes == c].mean() for c in range(k))


def test_interval_width_matches_a_stratified_jackknife_of_the_same_sample(overlapping):
    # An independent reference for the interval's variance: leave each sampled row out
    # (as a scored row and as a reference point), recompute the estimate, and combine
    # the spread per cluster with the finite-population correction. The linearised
    # variance the interval uses agrees with it to within 0.5% here; the naive one is
    # 0.56-0.62 of it.
    X, y = overlapping
    cluster_shares = np.bincount(y) / len(y)
    for seed in range(3):
        ((estimate, rows, _),) = estimate_silhouettes(torch.from_numpy(X), [torch.from_numpy(y)], [4], 200,
                                                      make_generator(seed), keep_values=True)
        rows = rows.numpy()
        labels, points = y[rows], X[rows]
        distances = np.sqrt(((points[:, None] - points[None]) ** 2).sum(axis=2))
        variance = 0.0
        for c in range(4):
            members = np.nonzero(labels == c)[0]
            left_out = []
            for row in members:
                kept = np.ones(len(rows), dtype=bool)
                kept[row] = False
                left_out.append(_plain_estimate(distances, labels, kept, cluster_shares))
            m = len(members)
            spread = (m - 1) / m * np.sum((np.array(left_out) - np.mean(left_out)) ** 2)
            variance += (1 - m / np.sum(y == c)) * spread
        standard_error = estimate.half_width / NormalDist().inv_cdf(0.975)
        assert standard_error == pytest.approx(np.sqrt(variance), rel=0.02)


def _weighted_estimate(distances, codes, weights, cluster_shares):
    """The plain estimate with a weight on every sampled row, as a scored row and as a
    reference point (all weights 1: the estimate itself); a row is not its own reference,
    and scores 0 alone in its cluster or where a = b = 0."""
    one_hot = np.eye(len(cluster_shares))[codes]
    sums = distances @ (one_hot * weights[:, None])
    weight_in = one_hot.T @ weights
    rows = np.arange(len(codes))
    own_weight = weight_in[codes] - weights
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sums[rows, codes] / own_weight
        means = sums / weight_in
        means[rows, codes] = np.inf
        b = means.min(axis=1)
        s = np.where((own_weight <= 0) | ((a == 0) & (b == 0)), 0.0, (b - a) / np.maximum(a, b))
    return float(cluster_shares @ ((one_hot * (weights * s)[:, None]).sum(axis=0) / weight_in))


def _infinitesimal_jackknife_standard_error(X, y, rows, step=1e-6):
    """The standard error of the estimate on the sampled ``rows`` from its definition:
    each row's influence is m_c times the estimate's derivative by that row's weight
    (central differences), combined per cluster with the finite-population correction."""
    codes, points = y[rows], X[rows]
    distances = np.sqrt(((points[:, None] - points[None]) ** 2).sum(axis=2))
    sizes = np.bincount(y)
    counts = np.bincount(codes, minlength=len(sizes))
    influence = np.empty(len(rows))
    for row in range(len(rows)):
        weights = np.ones(len(rows))
        weights[row] += step
        up = _weighted_estimate(distances, codes, weights, sizes / len(y))
        weights[row] -= 2 * step
        down = _weighted_estimate(distances, codes, weights, sizes / len(y))
        influence[row] = counts[codes[row]] * (up - down) / (2 * step)
    variance = sum((1 - counts[c] / sizes[c]) * influence[codes == c].var(ddof=1) / counts[c]
                   for c in range(len(sizes)) if counts[c] > 1)
    return np.sqrt(variance)


def _awkward_table():
    """Rows that reach every branch of the influence values: half the labels shuffled
    (negative silhouettes, a > b), 40 duplicated rows, and a two-row cluster far away."""
    rng = np.random.default_rng(0)
    X, y = make_blobs(n_samples=[600, 300, 100], n_features=3, centers=[[0, 0, 0], [4, 0, 0], [0, 4, 0]],
                      random_state=1)
    y = np.where(rng.random(len(y)) < 0.5, rng.integers(0, 3, len(y)), y)
    X = np.vstack([X, X[:40], [[10, 10, 10], [10.5, 10, 10]]])
    return X, np.concatenate([y, y[:40], [3, 3]])


@pytest.mark.parametrize("table, sample_size", [
    ("overlapping", 200),
    ("awkward", 120),
    ("awkward", 16),  # two rows per cluster and the proportional rest; the two-row cluster whole
])
def test_interval_is_the_infinitesimal_jackknife_of_the_estimate(overlapping, table, sample_size):
    # The interval's linearised variance is exactly the infinitesimal jackknife's: the
    # spread of each sampled row's derivative of the estimate (as a scored row and as a
    # reference point), computed here by differentiating the estimate's definition
    # numerically. Unlike the leave-one-out jackknife, it is exact at any sample size.
    X, y = overlapping if table == "overlapping" else _awkward_table()
    n_labels = len(np.unique(y))
    for seed in range(2):
        ((estimate, rows, _),) = estimate_silhouettes(torch.from_numpy(X), [torch.from_numpy(y)], [n_labels],
                                                      sample_size, make_generator(seed), keep_values=True)
        standard_error = estimate.half_width / NormalDist().inv_cdf(0.975)
        assert standard_error == pytest.approx(_infinitesimal_jackknife_standard_error(X, y, rows.numpy()),
                                               rel=1e-6)


def test_the_influence_weights_are_the_derivatives_of_the_silhouette():
    from gpukmeans.metrics._sampled import _influence_weights

    # rows with a < b, a > b, a = 0 (duplicates), b = 0, a = b = 0 and one alone in its
    # cluster (both pinned to 0), then squares that underflow to 0
    intra = torch.tensor([1.0, 3.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1e-200, 0.0], dtype=torch.float64)
    inter = torch.tensor([4.0, 2.0, 1.0, 0.0, 0.5, 0.0, 5.0, 0.0, 1e-200], dtype=torch.float64)
    singleton = torch.tensor([False] * 6 + [True, False, False])
    d_intra, d_inter = _influence_weights(torch.zeros(9, dtype=torch.float64), intra, inter, singleton)

    def silhouette(a, b):
        return (b - a) / max(a, b)

    step = 1e-6
    for row in range(5):
        a, b = float(intra[row]), float(inter[row])
        assert float(d_intra[row]) == pytest.approx((silhouette(a + step, b) - silhouette(a - step, b)) / (2 * step),
                                                    rel=1e-6)
        assert float(d_inter[row]) == pytest.approx((silhouette(a, b + step) - silhouette(a, b - step)) / (2 * step),
                                                    rel=1e-6)
    assert d_intra[5:7].tolist() == [0.0, 0.0] and d_inter[5:7].tolist() == [0.0, 0.0]
    # b = 0 < a: ds/da = -b / a^2 = 0, ds/db = 1 / a; a = 0 < b: ds/da = -1 / b, ds/db = a / b^2 = 0
    assert d_intra[7:].tolist() == [0.0, -1e200] and d_inter[7:].tolist() == [1e200, 0.0]


def _far_tight_blobs():
    """Two far apart blobs, most rows on their centre and 5% spread out: a silhouette
    within a few hundredths of 1."""
    rng = np.random.default_rng(0)
    X = np.zeros((800, 2))
    X[400:, 0] = 100.0
    spread = rng.random(800) < 0.05
    X[spread] += rng.normal(scale=5.0, size=(spread.sum(), 2))
    return X, np.repeat([0, 1], 400)


def _wrong_way_round():
    """Cluster 0 spread over four far corners, each corner also holding a tight two-row
    cluster: most rows lie much nearer another cluster than their own (silhouette near -1)."""
    rng = np.random.default_rng(0)
    parts, labels = [], []
    for corner, centre in enumerate([[0, 0], [100, 0], [0, 100], [100, 100]]):
        parts += [np.asarray(centre) + 3 * rng.standard_t(1, size=(200, 2)),
                  np.asarray(centre) + rng.normal(scale=0.1, size=(2, 2))]
        labels += [0] * 200 + [corner + 1] * 2
    return np.vstack(parts), np.array(labels)


@pytest.mark.parametrize("make_table, n_labels, sample_size, seed", [
    (_far_tight_blobs, 2, 10, 1),
    (_wrong_way_round, 5, 16, 0),
])
def test_an_interval_reaching_past_a_bound_of_the_silhouette_ends_there(make_table, n_labels, sample_size, seed):
    # A silhouette lies in [-1, 1]: the side of value +/- z * standard error (the
    # infinitesimal jackknife's) that passes a bound ends on it, the other side is kept.
    X, y = make_table()
    ((estimate, rows, _),) = estimate_silhouettes(torch.from_numpy(X), [torch.from_numpy(y)], [n_labels],
                                                  sample_size, make_generator(seed), keep_values=True)
    half = NormalDist().inv_cdf(0.975) * _infinitesimal_jackknife_standard_error(X, y, rows.numpy())
    low, high = estimate.value - half, estimate.value + half
    assert low < -1 or high > 1
    assert estimate.low == pytest.approx(max(-1.0, low), abs=1e-9)
    assert estimate.high == pytest.approx(min(1.0, high), abs=1e-9)


def _a_cluster_in_two_places():
    """A round cluster of 2,000 rows, and a cluster of 20: 12 rows just beside the first,
    8 far away. When one half of the small cluster's sample holds only its near rows,
    the first cluster's rows score far lower against that half (b shrinks): the split-half
    correction then passes 1."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(2000, 2)), rng.normal(loc=[3, 0], scale=0.1, size=(12, 2)),
                   rng.normal(loc=[1000, 0], size=(8, 2))])
    return X, np.repeat([0, 1], [2000, 20])


@pytest.mark.parametrize("make_table, n_labels, sample_size, seed, bound", [
    (_wrong_way_round, 5, 16, 0, -1.0),
    (_a_cluster_in_two_places, 2, 32, 1, 1.0),
])
def test_a_bias_correction_past_a_bound_stops_there(make_table, n_labels, sample_size, seed, bound):
    X, y = make_table()
    estimate, corrected, _ = _split_half_reference(X, y, n_labels, sample_size, seed)
    assert abs(corrected) > 1 and np.sign(corrected) == bound
    assert estimate.value == bound


def _estimate_against(distances, codes, reference, cluster_shares):
    """The stratified mean of every sampled row's silhouette against the ``reference`` rows
    (0/1 per sampled row), a row never its own reference."""
    k, m = len(cluster_shares), len(codes)
    sums = np.stack([(distances * reference[None, :])[:, codes == c].sum(axis=1) for c in range(k)], axis=1)
    counts = np.array([reference[codes == c].sum() for c in range(k)])
    a = sums[np.arange(m), codes] / (counts[codes] - reference)
    means = sums / counts
    means[np.arange(m), codes] = np.inf
    b = means.min(axis=1)
    s = (b - a) / np.maximum(a, b)
    return sum(cluster_shares[c] * s[codes == c].mean() for c in range(k))


def _split_half_reference(X, y, n_labels, sample_size, seed):
    """The estimate of ``seed``'s sample, the same sample's split-half corrected estimate
    recomputed from its definition (unclamped), and the sample's counts per cluster.

    ``estimate - (H - estimate) * (1 - m / n)``, H the mean of the estimates against each
    half of every cluster's sample; a cluster sampled whole or of fewer than 8 sampled
    rows keeps its whole sample in both halves."""
    (estimate,) = estimate_silhouettes(torch.from_numpy(X), [torch.from_numpy(y)], [n_labels], sample_size,
                                       make_generator(seed))
    permutation = torch.randperm(len(y), generator=make_generator(seed))  # as the estimate draws it
    rows, _, counts, halves = stratified_sample(torch.from_numpy(y), n_labels, sample_size, permutation)
    rows, halves = rows.numpy(), halves.numpy()
    sizes = np.bincount(y)
    codes, points = y[rows], X[rows]
    distances = np.sqrt(((points[:, None] - points[None]) ** 2).sum(axis=2))
    split = (counts < sizes) & (counts >= 8)
    whole = _estimate_against(distances, codes, np.ones(len(rows)), sizes / len(y))
    half_estimates = [
        _estimate_against(distances, codes, np.where(split[codes], halves == half, True).astype(float),
                          sizes / len(y))
        for half in (0, 1)
    ]
    corrected = whole - (np.mean(half_estimates) - whole) * (1 - counts.sum() / len(y))
    return estimate, corrected, counts


@pytest.mark.parametrize("extra_rows, sample_size, extra_sampled", [
    (10, 200, 10),  # the extra cluster is sampled whole: never split
    (30, 80, 8),  # the extra cluster has exactly the 8 sampled rows that are split
])
def test_the_bias_correction_is_the_split_half_formula(overlapping, extra_rows, sample_size, extra_sampled):
    X, y = overlapping
    extra = np.random.default_rng(0).normal(loc=[2, -3, 1, 0], scale=0.7, size=(extra_rows, 4))
    X, y = np.vstack([X, extra]), np.concatenate([y, np.full(extra_rows, 4)])
    for seed in range(2):
        estimate, corrected, counts = _split_half_reference(X, y, 5, sample_size, seed)
        assert counts[4] == extra_sampled
        assert estimate.value == pytest.approx(corrected, rel=1e-12)


@pytest.mark.slow
def test_interval_is_as_wide_as_the_estimate_really_varies(overlapping):
    # Over 200 seeds, the honest interval's standard error matches the estimate's
    # real spread around the exact value (ratio 0.93-1.03 in five such sets of
    # seeds) and covers 0.91-0.96 of the time; the naive one (no reference term)
    # has a ratio of 0.56-0.63 and covers 0.73-0.77. The bounds sit well outside
    # the spread of 200 seeds: the ratio's relative spread is about
    # 1 / sqrt(2 * 200) = 5%, and the binomial spread of a 0.95 coverage is
    # sqrt(0.95 * 0.05 / 200) = 0.015 (0.03 for a 0.75 coverage).
    X, y = overlapping
    exact = silhouette_score(X, y)
    estimates = [silhouette_score_sampled(X, y, sample_size=200, random_state=seed)
                 for seed in range(200)]
    values = np.array([e.value for e in estimates])
    standard_errors = np.array([e.half_width for e in estimates]) / NormalDist().inv_cdf(0.975)
    spread = np.sqrt(np.mean((values - exact) ** 2))
    assert 0.8 < np.sqrt(np.mean(standard_errors**2)) / spread < 1.25
    assert np.mean([e.low <= exact <= e.high for e in estimates]) >= 0.88


def test_interval_stays_honest_on_many_overlapping_clusters():
    # Uniform data cut into 12 Voronoi cells: many rows have two nearly
    # equidistant clusters, where b (a minimum of noisy means) is biased low.
    # Without the split-half correction the mean estimate sits ~0.35 half-widths
    # below the exact value here; with it, within 0.1.
    X = np.random.default_rng(0).random((4000, 4))
    y = np.argmin(((X[:, None, :] - X[:12][None]) ** 2).sum(axis=2), axis=1)
    exact = silhouette_score(X, y)
    estimates = [silhouette_score_sampled(X, y, sample_size=400, random_state=seed)
                 for seed in range(40)]
    mean_half_width = np.mean([e.half_width for e in estimates])
    assert abs(np.mean([e.value for e in estimates]) - exact) < 0.2 * mean_half_width
    assert np.mean([e.low <= exact <= e.high for e in estimates]) >= 0.85


def test_interval_narrows_as_the_sample_grows(overlapping):
    X, y = overlapping
    widths = [
        np.mean([
            silhouette_score_sampled(X, y, sample_size=m, random_state=s).half_width
            for s in range(5)
        ])
        for m in (300, 1200, 3600)
    ]
    assert widths[0] > widths[1] > widths[2] > 0


def test_full_sample_is_exact(overlapping):
    X, y = overlapping
    estimate = silhouette_score(X, y, sample_size=10_000)
    assert estimate.method == "exact" and estimate.is_exact
    assert estimate.low == estimate.value == estimate.high
    assert estimate.sample_size == estimate.n_samples == 4000 and estimate.confidence == 0.95
    assert estimate.value == pytest.approx(skm.silhouette_score(X, y), rel=1e-6)


def test_an_exact_result_keeps_the_confidence_asked_for():
    X, y = make_blobs(n_samples=300, n_features=2, centers=3, random_state=0)
    assert silhouette_score_sampled(X, y, sample_size=300, confidence=0.9).confidence == 0.9
    (estimate,) = estimate_silhouettes(torch.from_numpy(X), [torch.from_numpy(y)], [3], 300, make_generator(0),
                                       confidence=0.9)
    assert estimate.method == "exact" and estimate.confidence == 0.9


@pytest.mark.slow
def test_the_default_sample_is_10000_rows():
    # one row more than the default sample: sampled, not exact
    X, y = make_blobs(n_samples=10_001, n_features=2, centers=3, random_state=0)
    estimate = silhouette_score_sampled(X, y, random_state=0)
    assert estimate.method == "sampled" and estimate.sample_size == 10_000


def test_a_sampled_score_stores_and_selects_the_rows_it_is_asked_to(overlapping, tmp_path):
    # dtype: the estimate of the rows rounded to bfloat16 (computed in float32);
    # columns of a file: the estimate of those columns alone, whatever the others hold
    X, y = overlapping
    rounded = torch.as_tensor(X).to(torch.bfloat16).float().numpy()
    stored = silhouette_score_sampled(X, y, sample_size=300, random_state=0, dtype="bfloat16")
    assert stored.value == pytest.approx(silhouette_score_sampled(rounded, y, sample_size=300, random_state=0).value,
                                         rel=1e-5)
    assert stored.value != pytest.approx(silhouette_score_sampled(X, y, sample_size=300, random_state=0).value,
                                         rel=1e-5)
    path = tmp_path / "table.parquet"
    noise = np.random.default_rng(0).normal(scale=50, size=len(y))
    pd.DataFrame(X, columns=list("abcd")).assign(noise=noise).to_parquet(path)
    selected = silhouette_score_sampled(path, y, sample_size=300, random_state=0, columns=list("abcd"))
    assert selected.value == pytest.approx(silhouette_score_sampled(X, y, sample_size=300, random_state=0).value,
                                           rel=1e-12)


def test_stratified_sample_includes_a_tiny_cluster():
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(np.concatenate([np.zeros(9_997), np.ones(3)]).astype(np.int64))
    permutation = torch.from_numpy(rng.permutation(10_000))
    indices, sizes, counts, halves = stratified_sample(labels, 2, 200, permutation)
    assert indices.shape[0] == 200 and counts.tolist() == [197, 3]
    # Each cluster's sample alternates between the two halves of the bias correction.
    assert halves[:197].tolist() == [0, 1] * 98 + [0] and halves[197:].tolist() == [0, 1, 0]
    assert set(indices.tolist()) >= {9_997, 9_998, 9_999}
    # A uniform sample of the same size would usually miss it (P(hit) ~ 6%).
    assert not set(permutation[:200].tolist()) & {9_997, 9_998, 9_999}


def test_allocation_floor_proportional_and_capped():
    counts = allocate_stratified([9000, 900, 90, 9, 1], 1000)
    assert counts.sum() == 1000
    assert counts[3] == 9 and counts[4] == 1  # small clusters whole
    assert counts[2] >= 50  # the floor
    assert counts[0] > counts[1] > counts[2]
    assert allocate_stratified([5, 5], 100).tolist() == [5, 5]


def test_sampled_estimate_includes_a_tiny_cluster_in_the_score():
    X, y = make_blobs(n_samples=[5000, 4000, 5], centers=[[0, 0], [6, 0], [0, 9]],
                      random_state=1)
    estimate = silhouette_score_sampled(X, y, sample_size=500, random_state=2)
    assert estimate.low <= silhouette_score(X, y) <= estimate.high


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sample_size": 7}, r"too small for 4 clusters: need at least 2 rows per cluster \(8\)"),
        ({"sample_size": 2.5}, "sample_size must be an int"),
        ({"sample_size": 100, "confidence": 1.5}, "confidence must be between 0 and 1"),
        ({"sample_size": 100, "confidence": 1.0}, "confidence must be between 0 and 1"),
        ({"sample_size": 100, "confidence": 0.0}, "confidence must be between 0 and 1"),
        ({"sample_size": 100, "random_state": "seed"}, "random_state must be None, an int, or a numpy/torch generator, got str"),
        ({"sample_size": 100, "random_state": True}, "random_state must be an int or a generator, got True"),
        ({"sample_size": 100, "random_state": -1}, "random_state must be non-negative, got -1"),
    ],
)
def test_sampled_bad_arguments(overlapping, kwargs, message):
    X, y = overlapping
    with pytest.raises(ValueError, match=message):
        silhouette_score_sampled(X, y, **kwargs)


def test_two_rows_per_cluster_is_enough(overlapping):
    X, y = overlapping
    estimate = silhouette_score_sampled(X, y, sample_size=8, random_state=0)
    assert estimate.method == "sampled" and estimate.sample_size == 8


def test_the_confidence_sets_the_interval(overlapping):
    X, y = overlapping
    wide = silhouette_score_sampled(X, y, sample_size=300, random_state=4)
    narrow = silhouette_score_sampled(X, y, sample_size=300, random_state=4, confidence=0.5)
    assert narrow.confidence == 0.5 and narrow.value == wide.value
    # the same standard error times z(0.75) instead of z(0.975)
    ratio = NormalDist().inv_cdf(0.75) / NormalDist().inv_cdf(0.975)
    assert narrow.half_width == pytest.approx(wide.half_width * ratio, rel=1e-9)


def test_a_sampled_score_on_cuda_without_one_is_an_error(overlapping):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    X, y = overlapping
    with pytest.raises(ValueError, match="CUDA is not available"):
        silhouette_score_sampled(X, y, sample_size=100, device="cuda")


@pytest.mark.parametrize("make_state", [
    lambda: np.random.RandomState(5),
    lambda: np.random.default_rng(5),
    lambda: torch.Generator().manual_seed(5),
], ids=["RandomState", "Generator", "torch.Generator"])
def test_a_generator_as_random_state_draws_the_seed_from_it(overlapping, make_state):
    # the same state gives the same estimate; the generator moves on, so the next call
    # draws another sample; the global generators take no part
    X, y = overlapping
    first_state, same_state = make_state(), make_state()
    torch.manual_seed(1)
    first = silhouette_score_sampled(X, y, sample_size=100, random_state=first_state)
    torch.manual_seed(2)
    assert silhouette_score_sampled(X, y, sample_size=100, random_state=same_state) == first
    assert silhouette_score_sampled(X, y, sample_size=100, random_state=first_state).value != first.value


def test_a_stratified_sample_is_each_clusters_first_rows_in_the_permutation():
    labels = torch.tensor([2, 0, 1, 0, 2, 2, 1, 0, 0, 2, 1, 2, 0, 2, 1, 0, 2, 2, 0, 1])
    permutation = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    indices, sizes, counts, halves = stratified_sample(labels, 3, 9, permutation)
    assert sizes.tolist() == [7, 5, 8] and counts.sum() == 9
    expected = []
    for cluster, wanted in enumerate(counts.tolist()):
        expected += [int(row) for row in permutation if labels[row] == cluster][:wanted]
    assert indices.tolist() == expected
    assert halves.tolist() == sum(([i % 2 for i in range(c)] for c in counts.tolist()), [])


@pytest.mark.parametrize("sizes, sample_size, expected", [
    # the floor is max(2, min(50, budget // 2k)): here 2; the rest in proportion to size,
    # a cluster whose share is under one row keeping its floor
    ([1000, 10, 10, 10, 10], 20, [12, 2, 2, 2, 2]),
    # floor 50; then 900 rows: shares 900 * n_c / 1450 = 558.6, 248.3, 93.1 (largest remainder: the first)
    ([900, 400, 150], 1050, [609, 298, 143]),
    # a cluster smaller than its share is taken whole, its share going to the others
    ([500, 500, 30], 700, [335, 335, 30]),
    # floor 50; shares of 350: 71.43, 238.10, 40.48: the last row to the largest remainder
    ([300, 1000, 170], 500, [121, 288, 91]),
    # floor 25; shares of 100: 76.92 and three of 7.69: ties go to the first
    ([1000, 100, 100, 100], 200, [102, 33, 33, 32]),
    # floor 2; shares of 16: 7.46, 1.52, 0.80, 0.22: the two rows left to the largest
    # remainders (0.80, 0.52); the last cluster, one row from full, is still in the shares
    ([103, 21, 11, 3], 18, [9, 4, 3, 2]),
    # floor 36; shares of 112: 18.53 (capped at the first cluster's 8 rows of room), 44.63,
    # 48.84; two rows to the remainders; the 10 left go to the open clusters alone:
    # 4.77 and 5.23 of 106 : 116, the last to the larger remainder
    ([44, 106, 116], 220, [44, 86, 90]),
    # floor 20; shares of 89: 43.40, 27.47, 18.13 (capped at 13); 6 left: one each to the
    # first two; then 4 of 79 : 50 are 2.45 and 1.55, the last row to the second cluster's
    # larger remainder although it has one row of room left
    ([79, 50, 33, 11], 160, [66, 50, 33, 11]),
])
def test_the_allocation_is_the_floor_then_largest_remainders(sizes, sample_size, expected):
    counts = allocate_stratified(sizes, sample_size)
    assert counts.tolist() == expected and counts.sum() == min(sample_size, sum(sizes))


def test_the_stratified_variance_is_the_textbook_formula():
    from gpukmeans.metrics._sampled import _stratified_variance

    rng = np.random.default_rng(1)
    labels = np.array([0] * 6 + [1] * 4 + [2] * 5 + [3] * 2)  # a cluster of two sampled rows too
    influence = rng.normal(size=labels.size)
    counts, sizes = np.array([6.0, 4.0, 5.0, 2.0]), np.array([40.0, 9.0, 5.0, 7.0])
    expected = sum((1 - counts[c] / sizes[c]) * influence[labels == c].var(ddof=1) / counts[c] for c in range(4))
    ours = _stratified_variance(torch.from_numpy(influence), torch.from_numpy(labels), torch.from_numpy(counts),
                                torch.from_numpy(sizes))
    assert ours == pytest.approx(expected, rel=1e-12)


def test_estimates_of_several_labellings_with_every_row_scored_are_exact(overlapping):
    # what a sweep asks for when its sample covers the table: every labelling exact
    X, y = overlapping
    other = (X[:, 0] > 1).astype(np.int64)
    results = estimate_silhouettes(torch.from_numpy(X), [torch.from_numpy(y), torch.from_numpy(other)], [4, 2],
                                   10_000, make_generator(0), keep_values=True)
    for (estimate, rows, values), labels in zip(results, (y, other)):
        exact = skm.silhouette_samples(X, labels)
        assert estimate.method == "exact" and estimate.sample_size == estimate.n_samples == 4000
        assert estimate.low == estimate.value == estimate.high and estimate.confidence == 0.95
        assert estimate.value == pytest.approx(exact.mean(), rel=1e-9)
        np.testing.assert_allclose(values.numpy(), exact[rows.numpy()], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------ CH and DB


@pytest.mark.parametrize("score, reference", [
    (calinski_harabasz_score, skm.calinski_harabasz_score),
    (davies_bouldin_score, skm.davies_bouldin_score),
])
def test_ch_db_match_sklearn(six_blobs, mall, score, reference):
    for X, y in (six_blobs, mall):
        assert score(X, y) == pytest.approx(reference(X, y), rel=1e-6)
    X, y = six_blobs
    assert score(torch.from_numpy(X.astype(np.float32)), y) == pytest.approx(
        reference(X.astype(np.float32), y), rel=1e-5
    )


@pytest.mark.parametrize("score, reference", [
    (calinski_harabasz_score, skm.calinski_harabasz_score),
    (davies_bouldin_score, skm.davies_bouldin_score),
])
def test_sample_weight_is_a_frequency_weight(mall, score, reference):
    X, y = mall
    X = X.to_numpy().astype(np.float64)
    weights = np.random.default_rng(0).integers(0, 4, size=len(y))
    expected = reference(np.repeat(X, weights, axis=0), np.repeat(y, weights))
    assert score(X, y, sample_weight=weights) == pytest.approx(expected, rel=1e-9)
    assert score(X, y, sample_weight=np.ones(len(y))) == pytest.approx(reference(X, y), rel=1e-9)


def test_ch_db_edge_cases_follow_sklearn():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    labels = [0, 0, 1, 1]
    assert calinski_harabasz_score(X, labels) == skm.calinski_harabasz_score(X, labels) == 1.0
    assert davies_bouldin_score(X, labels) == skm.davies_bouldin_score(X, labels) == 0.0
    with pytest.raises(ValueError, match="Number of labels is 1"):
        davies_bouldin_score(X, [0, 0, 0, 0])


def test_zero_within_dispersion_even_when_centroids_round():
    # Each cluster is one repeated point whose mean is not exactly representable
    # (3 * 0.1 / 3 != 0.1): the within-cluster dispersion is still exactly zero.
    X = np.array([[0.1, 0.3]] * 3 + [[0.7, 0.9]] * 3)
    labels = [0, 0, 0, 1, 1, 1]
    assert calinski_harabasz_score(X, labels) == 1.0
    assert davies_bouldin_score(X, labels) == 0.0


def test_bad_sample_weight():
    X, labels = np.arange(12.0).reshape(6, 2), [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="non-negative"):
        calinski_harabasz_score(X, labels, sample_weight=[1, 1, 1, 1, 1, -1])
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        davies_bouldin_score(X, labels, sample_weight=[1, 1])
    with pytest.raises(ValueError, match="Number of labels is 1"):
        calinski_harabasz_score(X, labels, sample_weight=[1, 1, 1, 0, 0, 0])


# ------------------------------------------------------------- simplified silhouette


def _simplified_reference(X, labels, centers):
    """Straight from the definition, in numpy."""
    distances = np.linalg.norm(X[:, None, :] - centers[None], axis=2)
    own = distances[np.arange(len(X)), labels]
    distances[np.arange(len(X)), labels] = np.inf
    other = distances.min(axis=1)
    return (other - own) / np.maximum(own, other)


def test_simplified_silhouette_matches_its_definition(six_blobs):
    X, y = six_blobs
    centers = np.stack([X[y == c].mean(axis=0) for c in range(6)])
    expected = _simplified_reference(X, y, centers)
    np.testing.assert_allclose(simplified_silhouette_samples(X, y), expected, rtol=1e-10)
    assert simplified_silhouette_score(X, y) == pytest.approx(expected.mean(), rel=1e-10)
    shifted = centers + 0.3
    np.testing.assert_allclose(
        simplified_silhouette_samples(X, y, centers=shifted),
        _simplified_reference(X, y, shifted), rtol=1e-10,
    )
    weights = np.arange(len(y)) % 3
    assert simplified_silhouette_score(X, y, sample_weight=weights) == pytest.approx(
        np.average(expected, weights=weights), rel=1e-10
    )
    # It is a different index from the silhouette.
    assert abs(simplified_silhouette_score(X, y) - silhouette_score(X, y)) > 1e-3


def test_simplified_silhouette_conventions_and_errors(six_blobs):
    X, y = six_blobs
    y = y.copy()
    y[0] = 6
    assert simplified_silhouette_samples(X, y)[0] == 0.0
    with pytest.raises(ValueError, match="integers in 0..1"):
        simplified_silhouette_score(X, y, centers=np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"shape \(n_clusters, 5\)"):
        simplified_silhouette_score(X, y, centers=np.zeros((7, 3)))


def _reference_with_zero_for_ties(X, labels, centers):
    """The definition with scikit-learn's conventions: 0 where a = b = 0, and 0 in a
    single-member cluster."""
    with np.errstate(invalid="ignore"):
        values = np.nan_to_num(_simplified_reference(X, labels, centers), nan=0.0)
    sizes = np.bincount(labels)
    return np.where(sizes[labels] == 1, 0.0, values)


def _means(X, labels):
    return np.stack([X[labels == c].mean(axis=0) for c in range(labels.max() + 1)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
@pytest.mark.parametrize("score", [simplified_silhouette_samples, simplified_silhouette_score])
@pytest.mark.parametrize("given_centers", [False, True], ids=["means", "centers"])
def test_the_simplified_silhouette_refuses_cuda_without_a_gpu(six_blobs, score, given_centers):
    X, y = six_blobs
    centers = _means(X, y) if given_centers else None
    with pytest.raises(ValueError, match="CUDA is not available"):
        score(X, y, centers=centers, device="cuda")


@pytest.mark.parametrize("given_centers", [False, True], ids=["means", "centers"])
def test_the_simplified_silhouette_of_a_file_uses_the_columns_asked_for(six_blobs, given_centers, tmp_path):
    X, y = six_blobs
    path = tmp_path / "table.parquet"
    noise = np.random.default_rng(0).normal(scale=50, size=len(y))
    pd.DataFrame(X, columns=list("abcde")).assign(noise=noise).to_parquet(path)
    centers = _means(X, y) + (0.3 if given_centers else 0.0)
    expected = _simplified_reference(X, y, centers).mean()
    score = simplified_silhouette_score(path, y, centers=centers if given_centers else None, columns=list("abcde"))
    assert score == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("given_centers", [False, True], ids=["means", "centers"])
def test_the_simplified_silhouette_of_rows_stored_in_16_bits_is_that_of_the_rounded_rows(six_blobs, given_centers):
    X, y = six_blobs
    rounded = torch.as_tensor(X).to(torch.bfloat16).double().numpy()
    centers = _means(X, y) + 0.3 if given_centers else _means(rounded, y)
    expected = _simplified_reference(rounded, y, centers).mean()
    assert abs(expected - _simplified_reference(X, y, centers).mean()) > 1e-5
    score = simplified_silhouette_score(X, y, centers=centers if given_centers else None, dtype="bfloat16")
    assert score == pytest.approx(expected, rel=1e-6)


def test_the_simplified_silhouette_weights_rows_with_given_centers(six_blobs):
    X, y = six_blobs
    centers = _means(X, y) + 0.3
    weights = np.arange(len(y)) % 3
    assert simplified_silhouette_score(X, y, centers=centers, sample_weight=weights) == pytest.approx(
        np.average(_simplified_reference(X, y, centers), weights=weights), rel=1e-10)


def _real_weights(n_rows):
    """Weights of no short binary form: float32 rounds each by up to 6e-8 of itself."""
    return np.random.default_rng(1).uniform(0.05, 3.0, n_rows)


def test_float32_rows_stored_in_float64_keep_their_weights_in_float64(six_blobs):
    X, y = six_blobs
    X32, centers, weights = X.astype(np.float32), _means(X, y) + 0.3, _real_weights(len(y))
    values = _simplified_reference(X32.astype(np.float64), y, centers)
    expected = np.average(values, weights=weights)
    rounded = np.average(values, weights=weights.astype(np.float32))
    assert abs(rounded - expected) > 1e-10 * abs(expected)
    assert simplified_silhouette_score(X32, y, centers=centers, sample_weight=weights, dtype=torch.float64,
                                       device="cpu") == pytest.approx(expected, rel=1e-12)


def test_float32_weights_are_summed_in_float64(six_blobs):
    # float32 rows keep float32 weights; their total still takes float64's digits
    X, y = six_blobs
    X32, centers = X.astype(np.float32), _means(X, y) + 0.3
    weights = _real_weights(len(y)).astype(np.float32)
    values = _simplified_reference(X32.astype(np.float64), y, centers)
    total = weights.astype(np.float64).sum()
    assert abs(float(torch.from_numpy(weights).sum()) - total) > 1e-10 * total
    assert simplified_silhouette_score(X32, y, centers=centers, sample_weight=weights, device="cpu") == pytest.approx(
        (values * weights).sum() / total, rel=1e-12)


def test_float32_centers_far_from_the_origin_are_used_as_given(six_blobs):
    # the rows are moved near the origin; the centres move with them in float64
    X, y = six_blobs
    X = X + 1000.0
    centers = (_means(X, y) + 0.3).astype(np.float32)
    np.testing.assert_allclose(simplified_silhouette_samples(X, y, centers=centers),
                               _simplified_reference(X, y, centers.astype(np.float64)), rtol=1e-10)


def test_the_simplified_silhouette_in_chunks_counts_each_cluster_over_every_chunk(six_blobs, monkeypatch):
    # chunks of 100 rows; cluster 6 has one row in each of two chunks: not a single-member cluster
    import gpukmeans.sources.factory

    monkeypatch.setattr(gpukmeans.sources.factory, "auto_chunk_size", lambda *args: 100)
    X, y = six_blobs
    y = y.copy()
    y[[50, 450]] = 6
    weights = np.arange(len(y)) % 3
    expected = _reference_with_zero_for_ties(X, y, _means(X, y))
    assert expected[50] != 0.0 and expected[450] != 0.0
    np.testing.assert_allclose(simplified_silhouette_samples(X, y), expected, rtol=1e-10)
    assert simplified_silhouette_score(X, y) == pytest.approx(expected.mean(), rel=1e-10)
    assert simplified_silhouette_score(X, y, sample_weight=weights) == pytest.approx(
        np.average(expected, weights=weights), rel=1e-10)


def test_a_row_as_near_its_centre_as_the_nearest_other_scores_zero():
    # the two clusters share their centroid 0; the rows at 0 have a = b = 0
    X = np.array([[-1.0], [0.0], [1.0], [-2.0], [0.0], [2.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    expected = _reference_with_zero_for_ties(X, labels, np.zeros((2, 1)))
    np.testing.assert_array_equal(simplified_silhouette_samples(X, labels), expected)


def test_labels_given_with_centers_as_a_series_and_with_a_single_member_cluster(six_blobs):
    X, y = six_blobs
    y = y.copy()
    y[0] = 6
    centers = _means(X, y) + 0.3
    expected = _reference_with_zero_for_ties(X, y, centers)
    np.testing.assert_allclose(simplified_silhouette_samples(X, pd.Series(y), centers=centers), expected,
                               rtol=1e-10)
    # labels as a tensor, with the rows
    np.testing.assert_allclose(
        simplified_silhouette_samples(torch.from_numpy(X), torch.from_numpy(y), centers=centers).numpy(), expected,
        rtol=1e-10)
    # two clusters, one of a single row, are two clusters
    X, y, centers = np.array([[0.0], [1.0], [2.0], [9.0]]), np.array([0, 0, 0, 1]), np.array([[1.0], [8.0]])
    assert simplified_silhouette_score(X, y, centers=centers) == pytest.approx(
        _reference_with_zero_for_ties(X, y, centers).mean(), rel=1e-12)


@pytest.mark.parametrize("labels, message", [
    (np.array([0.0, 1.0, 0.0, 1.0]), r"integers in 0\.\.1"),  # floats, though whole numbers
    (np.array([0, 1, 2, 1]), r"integers in 0\.\.1"),  # one past the last centre
    (np.array([5, 5, 5, 5]), r"integers in 0\.\.1"),  # out of range before too few clusters
    (np.array([0, 0, 0, 0]), "Number of labels is 1"),  # a centre no row is labelled with
], ids=["floats", "one-past-the-end", "out-of-range", "one-cluster-present"])
def test_labels_given_with_centers_are_checked(labels, message):
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError, match=message):
        simplified_silhouette_score(X, labels, centers=np.zeros((2, 2)))


# ------------------------------------------------------- what fit takes, the scores take
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scores_of_a_file_equal_the_scores_in_memory(tmp_path, suffix):
    from sklearn.datasets import make_blobs

    X, labels = make_blobs(n_samples=900, centers=3, n_features=4, random_state=5)
    path = tmp_path / f"table{suffix}"
    frame = pd.DataFrame(X, columns=list("abcd"))
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, row_group_size=250)
    assert calinski_harabasz_score(path, labels, device="cpu") == pytest.approx(
        calinski_harabasz_score(X, labels, device="cpu"), rel=1e-12)
    assert davies_bouldin_score(path, labels, device="cpu") == pytest.approx(
        davies_bouldin_score(X, labels, device="cpu"), rel=1e-12)
    assert silhouette_score(path, labels, device="cpu") == pytest.approx(
        silhouette_score(X, labels, device="cpu"), rel=1e-12)
    np.testing.assert_allclose(silhouette_samples(path, labels, device="cpu"),
                               silhouette_samples(X, labels, device="cpu"), rtol=1e-12)
    sampled_file = silhouette_score_sampled(path, labels, sample_size=300, random_state=0, device="cpu")
    sampled_memory = silhouette_score_sampled(X, labels, sample_size=300, random_state=0, device="cpu")
    assert sampled_file.value == pytest.approx(sampled_memory.value, rel=1e-12)
    assert simplified_silhouette_score(path, labels, device="cpu", columns=["a", "b", "c", "d"]) == pytest.approx(
        simplified_silhouette_score(X, labels, device="cpu"), rel=1e-12)


def test_scores_of_rows_stored_in_16_bits_are_the_scores_of_the_rounded_rows():
    import torch
    from sklearn.datasets import make_blobs

    X, labels = make_blobs(n_samples=600, centers=3, n_features=4, random_state=5)
    rounded = torch.as_tensor(X).to(torch.bfloat16).double().numpy()
    assert calinski_harabasz_score(X, labels, device="cpu", dtype="bfloat16") == pytest.approx(
        calinski_harabasz_score(rounded, labels, device="cpu"), rel=1e-6)
    assert silhouette_score(X, labels, device="cpu", dtype="bfloat16") == pytest.approx(
        silhouette_score(rounded, labels, device="cpu"), rel=1e-5)
