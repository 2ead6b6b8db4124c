"""gpukmeans.sweep: per-k equivalence with KMeans, scores, recommendation, plots."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

import gpukmeans
from gpukmeans import KMeans, kmeans_plusplus
from gpukmeans.metrics import (
    SilhouetteEstimate,
    calinski_harabasz_score,
    silhouette_score,
    simplified_silhouette_score,
)
from gpukmeans._k_choice import criteria
from gpukmeans._structure import StructureVerdict
from gpukmeans._sweep import SWEEP_RESTARTS, TABLE_COLUMNS, _initial_centers, find_knee, sweep
from gpukmeans.engine.uniforms import new_seed
from gpukmeans.sources.memory import InMemorySource

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def five_blobs():
    X, _ = make_blobs(n_samples=1200, n_features=4, centers=5, cluster_std=1.0, random_state=0)
    return X


@pytest.fixture(scope="module")
def blob_sweep(five_blobs):
    return sweep(five_blobs, k=range(2, 9), random_state=0, device="cpu")


@pytest.fixture(scope="module")
def mall():
    return pd.read_csv(MALL)[["Annual Income (k$)", "Spending Score (1-100)"]]


# ----------------------------------------------------------------- the fits


def test_each_k_equals_a_separate_kmeans_from_the_same_centres(five_blobs, blob_sweep):
    for k, model in blob_sweep.models.items():
        alone = KMeans(n_clusters=k, init=blob_sweep.initial_centers[k], n_init=1,
                       device="cpu").fit(five_blobs)
        np.testing.assert_array_equal(model.labels_, alone.labels_)
        np.testing.assert_allclose(model.cluster_centers_, alone.cluster_centers_, rtol=1e-10)
        assert model.inertia_ == pytest.approx(alone.inertia_, rel=1e-10)
        assert model.n_iter_ == alone.n_iter_


def test_restarts_start_from_one_nested_kmeans_plusplus_draw(five_blobs):
    source = InMemorySource(torch.as_tensor(five_blobs), None, chunk_size=len(five_blobs))
    seeds = [new_seed(check_random_state(0)), 12345]
    starts = _initial_centers(source, "k-means++", [2, 5, 8], seeds)
    for restart in range(2):
        largest = starts[8][restart]
        for k in (2, 5):
            torch.testing.assert_close(starts[k][restart], largest[:k], rtol=0, atol=0)
    # The first restart starts exactly where kmeans_plusplus with the same seed starts.
    expected, _ = kmeans_plusplus(five_blobs, 8, random_state=0, device="cpu")
    np.testing.assert_array_equal(starts[8][0].numpy(), expected)


def test_models_are_fitted_estimators(five_blobs, blob_sweep):
    model = blob_sweep.models[5]
    np.testing.assert_array_equal(model.predict(five_blobs), model.labels_)
    assert model.cluster_centers_.shape == (5, 4)
    assert model.score(five_blobs) == pytest.approx(-model.inertia_, rel=1e-9)


def test_models_hold_the_state_fit_leaves(five_blobs, blob_sweep):
    # KMeans._fitted_from builds them; if fit gains state, they must gain it too.
    model = blob_sweep.models[5]
    alone = KMeans(**model.get_params()).fit(five_blobs)
    assert sorted(vars(model)) == sorted(vars(alone))
    assert model.get_params()["n_init"] == 1 and model.n_clusters == 5
    assert (model.device_, model.n_features_in_, model._output) == (alone.device_, alone.n_features_in_, alone._output)
    assert model.labels_.dtype == alone.labels_.dtype == np.int32


def test_auto_restarts_are_the_sweeps_default_and_ten_for_random_starts(five_blobs):
    auto = sweep(five_blobs, k=[3, 6], random_state=1, silhouette=None, device="cpu")
    three = sweep(five_blobs, k=[3, 6], random_state=1, n_init=SWEEP_RESTARTS, silhouette=None, device="cpu")
    one = sweep(five_blobs, k=[3, 6], random_state=1, n_init=1, silhouette=None, device="cpu")
    columns = ["inertia", "n_iter", "gap"]
    pd.testing.assert_frame_equal(auto.table[columns], three.table[columns])
    assert SWEEP_RESTARTS == 3 and not one.table[columns].equals(three.table[columns])
    random_auto = sweep(five_blobs, k=[3], init="random", random_state=1, silhouette=None, device="cpu")
    random_ten = sweep(five_blobs, k=[3], init="random", n_init=10, random_state=1, silhouette=None, device="cpu")
    pd.testing.assert_frame_equal(random_auto.table[columns], random_ten.table[columns])


@pytest.fixture(scope="module")
def mall_three():
    return StandardScaler().fit_transform(pd.read_csv(MALL)[["Age", "Annual Income (k$)", "Spending Score (1-100)"]])


def _planted(k, d, n, spread, seed):
    X, _ = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=spread, center_box=(-10, 10),
                      random_state=seed)
    return X


@pytest.mark.parametrize("table", ["mall", "seven in 3-d", "nine in 5-d", "twelve in 2-d"])
def test_every_k_is_within_one_percent_of_scikit_learns_best_of_ten(table, mall_three):
    X = {"mall": mall_three, "seven in 3-d": _planted(7, 3, 1500, 1.5, 0),
         "nine in 5-d": _planted(9, 5, 1500, 2.5, 1), "twelve in 2-d": _planted(12, 2, 1500, 1.0, 2)}[table]
    ks = range(2, 11)
    result = sweep(X, k=ks, random_state=0, silhouette=None, device="cpu")
    with threadpool_limits(1):
        best_of_ten = np.array([SklearnKMeans(k, n_init=10, random_state=0).fit(X).inertia_ for k in ks])
    assert (result.table["inertia"].to_numpy() <= best_of_ten * 1.01).all()


def test_inertia_never_rises_with_k_where_single_starts_do():
    X = _planted(11, 3, 1500, 1.2, 4)
    ks = list(range(2, 14))
    single = [KMeans(k, init="random", n_init=1, random_state=2, device="cpu").fit(X).inertia_ for k in ks]
    assert (np.diff(single) > 0).any(), "single starts are monotone here: the table tests nothing"
    result = sweep(X, k=ks, init="random", n_init=1, random_state=2, silhouette=None, device="cpu")
    assert (np.diff(result.table["inertia"].to_numpy()) <= 0).all()


def test_a_seed_gives_the_same_sweep_whatever_the_chunk_size(five_blobs):
    runs = [sweep(five_blobs, k=range(2, 9), random_state=4, chunk_size=size, device="cpu")
            for size in ("auto", 997, 250)]
    columns = [c for c in TABLE_COLUMNS if c != "seconds"]
    for other in runs[1:]:
        np.testing.assert_allclose(other.table[columns].to_numpy(dtype=float),
                                   runs[0].table[columns].to_numpy(dtype=float), rtol=1e-9)
        for k in range(2, 9):
            np.testing.assert_array_equal(other.models[k].labels_, runs[0].models[k].labels_)
        assert other.recommended_k == runs[0].recommended_k and other.reason == runs[0].reason
        assert other.structure.to_dict() == runs[0].structure.to_dict()


def test_torch_input_gives_tensor_centres(five_blobs):
    result = sweep(torch.from_numpy(five_blobs), k=[3, 4], random_state=0, device="cpu")
    assert isinstance(result.models[3].cluster_centers_, torch.Tensor)
    assert isinstance(result.initial_centers[4], torch.Tensor)


# ---------------------------------------------------------------- the table


def test_table_has_one_row_per_k_and_the_documented_columns(blob_sweep):
    table = blob_sweep.table
    assert list(table.columns) == TABLE_COLUMNS
    assert table["k"].tolist() == list(range(2, 9))
    assert table["n_iter"].dtype.kind == "i" and (table["n_iter"] >= 1).all()
    assert (table["seconds"] > 0).all()
    assert table["seconds"].sum() == pytest.approx(blob_sweep.total_seconds, rel=1e-6)
    assert table["inertia"].is_monotonic_decreasing


def test_scores_equal_the_standalone_metrics(five_blobs, blob_sweep):
    assert blob_sweep.silhouette_method == "exact"
    for row in blob_sweep.table.itertuples():
        labels = blob_sweep.models[row.k].labels_
        assert row.silhouette == pytest.approx(skm.silhouette_score(five_blobs, labels), rel=1e-6)
        assert row.silhouette_low == row.silhouette == row.silhouette_high
        assert row.calinski_harabasz == pytest.approx(
            skm.calinski_harabasz_score(five_blobs, labels), rel=1e-6)
        assert row.davies_bouldin == pytest.approx(
            skm.davies_bouldin_score(five_blobs, labels), rel=1e-6)


def test_large_exact_sweeps_score_one_k_at_a_time(five_blobs, blob_sweep, monkeypatch):
    import gpukmeans._sweep as sweep_module

    monkeypatch.setattr(sweep_module, "_SHARED_EXACT_LIMIT", 0)
    one_at_a_time = sweep(five_blobs, k=range(2, 9), random_state=0, device="cpu")
    np.testing.assert_allclose(one_at_a_time.table["silhouette"], blob_sweep.table["silhouette"],
                               rtol=1e-9)
    values, labels, rows = one_at_a_time.silhouette_values[5]
    np.testing.assert_allclose(values, skm.silhouette_samples(five_blobs, labels), rtol=1e-6,
                               atol=1e-12)


def test_sampled_silhouette_carries_an_interval_around_the_exact_value(five_blobs):
    result = sweep(five_blobs, k=range(2, 9), random_state=0, silhouette="sampled",
                   sample_size=400, device="cpu")
    assert result.silhouette_method == "sampled"
    table = result.table
    assert (table["silhouette_low"] < table["silhouette"]).all()
    assert (table["silhouette"] < table["silhouette_high"]).all()
    covered = [
        row.silhouette_low <= silhouette_score(five_blobs, result.models[row.k].labels_)
        <= row.silhouette_high
        for row in table.itertuples()
    ]
    assert sum(covered) >= len(covered) - 1  # 95% intervals, 7 k's
    estimate = result.silhouette_estimates[5]
    assert isinstance(estimate, SilhouetteEstimate) and estimate.sample_size == 400


def test_auto_is_exact_up_to_sample_size_then_sampled(five_blobs):
    small = sweep(five_blobs, k=[3, 5], random_state=0, sample_size=5000, device="cpu")
    large = sweep(five_blobs, k=[3, 5], random_state=0, sample_size=300, device="cpu")
    assert small.silhouette_method == "exact" and large.silhouette_method == "sampled"


def test_simplified_and_no_silhouette(five_blobs):
    simplified = sweep(five_blobs, k=[3, 5], random_state=0, silhouette="simplified", device="cpu")
    for row in simplified.table.itertuples():
        model = simplified.models[row.k]
        expected = simplified_silhouette_score(five_blobs, model.labels_,
                                               centers=model.cluster_centers_)
        assert row.silhouette == pytest.approx(expected, rel=1e-9)
        assert row.silhouette_low == row.silhouette_high == row.silhouette
    assert "simplified silhouette" in simplified.reason
    none = sweep(five_blobs, k=range(2, 9), random_state=0, silhouette=None, device="cpu")
    assert none.table["silhouette"].isna().all() and none.silhouette_method == "none"
    assert none.best_k["silhouette"] is None
    assert none.recommended_k == 5 and "no silhouette" in none.reason


def test_k_of_one_gets_inertia_but_no_scores(five_blobs):
    result = sweep(five_blobs, k=[1, 2, 3], random_state=0, device="cpu")
    first = result.table.iloc[0]
    total_ss = ((five_blobs - five_blobs.mean(axis=0)) ** 2).sum()
    assert first["inertia"] == pytest.approx(total_ss, rel=1e-9)
    assert math.isnan(first["silhouette"]) and math.isnan(first["calinski_harabasz"])


def test_sample_weight_reaches_the_scores(five_blobs):
    weights = np.random.default_rng(0).integers(0, 3, size=len(five_blobs)).astype(float)
    result = sweep(five_blobs, k=[4, 5], sample_weight=weights, random_state=0, device="cpu")
    labels = result.models[5].labels_
    expected = calinski_harabasz_score(five_blobs, labels, sample_weight=weights)
    assert result.table.set_index("k").loc[5, "calinski_harabasz"] == pytest.approx(expected, rel=1e-9)
    kept = weights > 0
    assert result.table.set_index("k").loc[5, "silhouette"] == pytest.approx(
        skm.silhouette_score(five_blobs[kept], labels[kept]), rel=1e-6)


# ------------------------------------------------------- choosing k and why


def test_clear_blobs_recommend_their_number(blob_sweep):
    assert blob_sweep.best_k["silhouette"] == 5
    assert blob_sweep.recommended_k == 5
    assert blob_sweep.reason.startswith("k=5:")


def test_mall_customers_recommend_five_segments(mall):
    result = sweep(mall, k=range(2, 11), random_state=0, device="cpu")
    assert result.knee_k == 5 and result.best_k["silhouette"] == 5
    assert result.recommended_k == 5 and "chosen by the silhouette" in result.reason
    labels = result.models[5].labels_
    assert result.table.set_index("k").loc[5, "silhouette"] == pytest.approx(
        skm.silhouette_score(mall, labels), rel=1e-6)
    # DataFrame in: the models keep the column names and predict on frames.
    assert list(result.models[5].feature_names_in_) == list(mall.columns)
    np.testing.assert_array_equal(result.models[5].predict(mall), labels)


def test_mall_recommendation_does_not_flip_with_the_seed(mall_three):
    picks = [sweep(mall_three, k=range(2, 11), random_state=seed, device="cpu").recommended_k for seed in range(5)]
    assert picks == [6] * 5


def test_the_reason_names_every_criterion_and_where_they_disagree(mall_three):
    result = sweep(mall_three, k=range(2, 11), random_state=0, device="cpu")
    reason = result.reason
    assert reason.startswith("k=6: chosen by the silhouette and Calinski-Harabasz")
    for criterion in ("silhouette 0.427", "the gap statistic", f"the inertia knee k={result.knee_k}"):
        assert criterion in reason
    assert result.knee_k != 6
    assert result.best_k["gap"] == criteria(result.table, result.knee_k)["gap"]


def test_the_structure_of_the_recommended_k(five_blobs):
    clear = sweep(five_blobs, k=range(2, 8), random_state=0, device="cpu")
    assert isinstance(clear.structure, StructureVerdict) and clear.structure.structure == "strong"
    assert clear.structure.details["silhouette"] == pytest.approx(
        clear.table.set_index("k").loc[clear.recommended_k, "silhouette"])
    noise = np.random.default_rng(0).uniform(size=(2000, 3))
    flat = sweep(noise, k=range(2, 8), random_state=0, device="cpu")
    assert flat.structure.structure == "none"
    json.dumps(flat.structure.to_dict(), allow_nan=False)


def test_kneedle_finds_the_knee_of_a_clear_elbow():
    ks = np.arange(1, 11)
    assert find_knee(ks, np.array([100, 50, 20, 15, 13, 12, 11, 10.5, 10, 9.8])) == 3
    assert find_knee(ks, np.linspace(100, 10, 10)) is None
    assert find_knee(ks[:2], np.array([5.0, 1.0])) is None


# -------------------------------------------------------------------- plots


def _assert_png(path):
    data = Path(path).read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plots_are_written_as_png(tmp_path, five_blobs):
    result = sweep(five_blobs, k=range(2, 8), random_state=0, silhouette="sampled",
                   sample_size=300, device="cpu")
    figure = result.plot_elbow(tmp_path / "elbow.png")
    _assert_png(tmp_path / "elbow.png")
    assert len(figure.axes) == 2  # inertia and the silhouette's second axis
    figure = result.plot_silhouette(path=tmp_path / "plots" / "silhouette.png")
    _assert_png(tmp_path / "plots" / "silhouette.png")
    assert "stratified sample of 300" in figure.axes[0].get_title()


def test_silhouette_plot_needs_per_row_values(five_blobs):
    result = sweep(five_blobs, k=[3, 4], random_state=0, silhouette="simplified", device="cpu")
    with pytest.raises(ValueError, match="no per-row silhouettes"):
        result.plot_silhouette(3)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": []}, "k is empty"),
        ({"k": [0, 2]}, "integer >= 1"),
        ({"k": [2.5]}, "integer >= 1"),
        ({"k": "abc"}, "integer >= 1"),
        ({"k": [2, 5000]}, "more than the 1200 rows"),
        ({"silhouette": "fast"}, "silhouette must be one of"),
        ({"sample_size": 1}, "sample_size must be an int >= 2"),
        ({"init": "kmeans"}, "init must be"),
        ({"device": "cuda"}, "CUDA is not available"),
    ],
)
def test_bad_arguments_are_clear_value_errors(five_blobs, kwargs, message):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match=message):
        sweep(five_blobs, **kwargs)


def test_sweep_and_metrics_are_exported_at_the_top_level():
    assert gpukmeans.sweep is sweep
    assert gpukmeans.metrics.silhouette_score is silhouette_score


@pytest.mark.gpu
def test_cuda_sweep_matches_cpu(five_blobs):
    cpu = sweep(five_blobs, k=range(2, 7), random_state=0, device="cpu")
    gpu = sweep(five_blobs, k=range(2, 7), random_state=0, device="cuda")
    np.testing.assert_allclose(gpu.table["inertia"], cpu.table["inertia"], rtol=1e-6)
    np.testing.assert_allclose(gpu.table["silhouette"], cpu.table["silhouette"], rtol=1e-6)


# ------------------------------------------------------- what fit takes, sweep takes
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_sweep_of_a_file_equals_the_sweep_in_memory(tmp_path, suffix):
    X, _ = make_blobs(n_samples=1500, centers=4, n_features=3, random_state=2)
    path = tmp_path / f"table{suffix}"
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, row_group_size=400)
    in_memory = sweep(X, k=[2, 4, 6], random_state=0, device="cpu", sample_size=500)
    on_file = sweep(path, k=[2, 4, 6], random_state=0, device="cpu", sample_size=500, chunk_size=300)
    columns = ["inertia", "silhouette", "calinski_harabasz", "davies_bouldin", "n_iter"]
    np.testing.assert_allclose(on_file.table[columns].to_numpy(), in_memory.table[columns].to_numpy(), rtol=1e-9)
    model = on_file.models[4]
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    np.testing.assert_array_equal(model.predict(path), model.labels_)
    np.testing.assert_array_equal(model.labels_, in_memory.models[4].labels_)


def test_a_sweep_in_16_bit_storage_agrees_with_float32():
    X, _ = make_blobs(n_samples=1500, centers=4, n_features=3, random_state=2)
    full = sweep(X, k=[3, 4], random_state=0, device="cpu", dtype="float32")
    half = sweep(X, k=[3, 4], random_state=0, device="cpu", dtype="bfloat16")
    np.testing.assert_allclose(half.table["inertia"], full.table["inertia"], rtol=1e-2)
    assert half.models[4].cluster_centers_.dtype == np.float32
    assert half.recommended_k == full.recommended_k
