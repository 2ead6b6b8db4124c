"""torch.distributed with real processes: 2 and 3 gloo ranks on the CPU.

Each rank runs tests/distributed_worker.py with its share of the rows; the union of
their labels must be the labels of a single-process fit of the whole table, and every
rank must end with the same centres.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpukmeans import KMeans, sweep

sys.path.insert(0, str(Path(__file__).parent))
import distributed_worker as worker  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def run_ranks(world_size, tmp_path):
    out = tmp_path / f"world{world_size}"
    out.mkdir()
    parquet = tmp_path / "table.parquet"
    if not parquet.exists():
        frame = pd.DataFrame(worker.table(np.float32), columns=[f"f{i}" for i in range(5)])
        frame.insert(0, "customer", [f"c{i}" for i in range(len(frame))])  # skipped: not numeric
        frame.to_parquet(parquet, row_group_size=300)
    init_method = f"file://{tmp_path / f'rendezvous{world_size}'}"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    processes = [
        subprocess.Popen(
            [sys.executable, str(Path(worker.__file__)), str(rank), str(world_size), init_method, str(out), str(parquet)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world_size)
    ]
    for rank, process in enumerate(processes):
        output, _ = process.communicate(timeout=180)
        assert process.returncode == 0, f"rank {rank} failed:\n{output}"
    return lambda name, rank: np.load(out / f"{name}_rank{rank}.npz")


# Three ranks (a rank between two others) in the slow tier: the fast one starts two.
@pytest.fixture(scope="module", params=[2, pytest.param(3, marks=pytest.mark.slow)], ids=["2-ranks", "3-ranks"])
def ranks(request, tmp_path_factory):
    world_size = request.param
    return world_size, run_ranks(world_size, tmp_path_factory.mktemp(f"dist{world_size}"))


@pytest.mark.parametrize("scenario", list(worker.SCENARIOS))
def test_distributed_fit_equals_the_single_process_fit(ranks, scenario):
    world_size, result = ranks
    params, dtype, weighted = worker.SCENARIOS[scenario]
    X = worker.scenario_table(scenario, dtype)
    w = worker.weights() if weighted else None
    single = KMeans(device="cpu", **worker.estimator_params(params, X)).fit(X, sample_weight=w)
    parts = [result(scenario, rank) for rank in range(world_size)]
    np.testing.assert_array_equal(np.concatenate([p["labels"] for p in parts]), single.labels_)
    for part in parts:
        np.testing.assert_array_equal(part["centers"], parts[0]["centers"])  # every rank: the same centres
        np.testing.assert_allclose(part["centers"], single.cluster_centers_, rtol=1e-5, atol=1e-6)
        assert float(part["inertia"]) == pytest.approx(single.inertia_, rel=1e-6)
        assert int(part["n_iter"]) == single.n_iter_


def test_a_path_is_sharded_by_the_ranks_and_labels_cover_the_file(ranks):
    world_size, result = ranks
    single = KMeans(6, random_state=3, device="cpu").fit(worker.table(np.float32))
    for rank in range(world_size):
        part = result("parquet", rank)
        np.testing.assert_array_equal(part["labels"], single.labels_)
        np.testing.assert_allclose(part["centers"], single.cluster_centers_, rtol=1e-5, atol=1e-5)


def test_distributed_false_fits_each_ranks_rows_alone(ranks):
    world_size, result = ranks
    X = worker.table()
    for rank in range(world_size):
        alone = KMeans(6, random_state=3, device="cpu").fit(X[worker.rank_rows(len(X), rank, world_size)])
        np.testing.assert_array_equal(result("opt_out", rank)["labels"], alone.labels_)
        np.testing.assert_allclose(result("opt_out", rank)["centers"], alone.cluster_centers_)


def test_ranks_that_disagree_on_features_all_raise(ranks):
    world_size, result = ranks
    for rank in range(world_size):
        message = str(result("mismatch", rank)["message"])
        assert "same features and dtype" in message, message


def test_ranks_that_disagree_on_the_storage_dtype_all_raise(ranks):
    world_size, result = ranks
    for rank in range(world_size):
        message = str(result("dtype_mismatch", rank)["message"])
        assert "same features and dtype" in message and "rank 0: 5 features, bfloat16" in message, message
        assert "rank 1: 5 features, float32" in message, message


def test_sweep_over_every_ranks_rows_equals_the_single_process_sweep(ranks):
    world_size, result = ranks
    X = worker.table()
    single = sweep(X, k=[3, 6], random_state=0, device="cpu", sample_size=500)
    expected = single.table.drop(columns="seconds").to_numpy()
    labels = np.concatenate([result("sweep", rank)["labels"] for rank in range(world_size)])
    np.testing.assert_array_equal(labels, single.models[6].labels_)
    for rank in range(world_size):
        part = result("sweep", rank)
        np.testing.assert_allclose(part["table"], expected, rtol=1e-6)
        assert int(part["recommended"]) == single.recommended_k


def test_a_sweep_of_the_shared_file_equals_the_single_process_sweep(ranks):
    world_size, result = ranks
    single = sweep(worker.table(np.float32), k=[3, 6], random_state=0, device="cpu", sample_size=500)
    expected = single.table.drop(columns="seconds").to_numpy()
    for rank in range(world_size):
        np.testing.assert_allclose(result("sweep_parquet", rank)["table"], expected, rtol=1e-5)


def test_scores_over_every_ranks_rows_equal_the_single_process_scores(ranks):
    from gpukmeans import metrics

    world_size, result = ranks
    X = worker.table()
    labels = np.concatenate([result("sweep", rank)["labels"] for rank in range(world_size)])
    expected = {
        "silhouette": float(metrics.silhouette_score(X, labels, device="cpu")),
        "sampled": metrics.silhouette_score(X, labels, sample_size=600, random_state=1, device="cpu").value,
        "calinski": metrics.calinski_harabasz_score(X, labels, device="cpu"),
        "davies": metrics.davies_bouldin_score(X, labels, device="cpu"),
        "simplified": metrics.simplified_silhouette_score(X, labels, device="cpu"),
        "simplified_centers": metrics.simplified_silhouette_score(X, labels, centers=X[:6], device="cpu"),
    }
    samples = metrics.silhouette_samples(X, labels, device="cpu")
    centroid = metrics.centroid_scores(X, labels, device="cpu")
    simplified_samples = metrics.simplified_silhouette_samples(X, labels, device="cpu")
    for rank in range(world_size):
        part = result("metrics", rank)
        for name, value in expected.items():
            assert float(part[name]) == pytest.approx(value, rel=1e-9), name
        np.testing.assert_allclose(part["centroid"], centroid, rtol=1e-9)
        # float labels (0, 0.5, 1, ...): the same clusters under other names
        np.testing.assert_allclose(part["halved_labels"], centroid, rtol=1e-9)
        rows = worker.rank_rows(len(X), rank, world_size)
        np.testing.assert_allclose(part["samples"], samples[rows], rtol=1e-9)
        np.testing.assert_allclose(part["simplified_samples"], simplified_samples[rows], rtol=1e-9)


def test_scores_that_opt_out_are_each_ranks_own(ranks):
    from gpukmeans import metrics

    world_size, result = ranks
    X = worker.table()
    for rank in range(world_size):
        mine, labels = X[worker.rank_rows(len(X), rank, world_size)], result("sweep", rank)["labels"]
        part = result("metrics_alone", rank)
        assert float(part["silhouette"]) == pytest.approx(metrics.silhouette_score(mine, labels), rel=1e-9)
        assert float(part["sampled"]) == pytest.approx(
            metrics.silhouette_score(mine, labels, sample_size=300, random_state=1).value, rel=1e-9)
        np.testing.assert_allclose(part["samples"], metrics.silhouette_samples(mine, labels), rtol=1e-9)
        np.testing.assert_allclose(part["centroid"], metrics.centroid_scores(mine, labels), rtol=1e-9)
        assert float(part["simplified"]) == pytest.approx(metrics.simplified_silhouette_score(mine, labels),
                                                          rel=1e-9)
        assert float(part["simplified_centers"]) == pytest.approx(
            metrics.simplified_silhouette_score(mine, labels, centers=X[:6]), rel=1e-9)
