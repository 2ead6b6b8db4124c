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
import torch

from gpukmeans import KMeans, sweep
from gpukmeans.sources import distributed

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


def _iteration_inertias(lines):
    return [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("Iteration")]


def test_a_verbose_fit_prints_the_inertia_of_every_ranks_rows(ranks, capsys):
    world_size, result = ranks
    KMeans(6, random_state=3, max_iter=5, verbose=1, device="cpu").fit(worker.table())
    expected = _iteration_inertias(capsys.readouterr().out.splitlines())
    assert len(expected) == 5
    for rank in range(world_size):
        # printed to 6 significant digits
        np.testing.assert_allclose(_iteration_inertias(result("verbose", rank)["lines"]), expected, rtol=1e-5)


def test_distributed_false_fits_each_ranks_rows_alone(ranks):
    world_size, result = ranks
    X = worker.table()
    for rank in range(world_size):
        alone = KMeans(6, random_state=3, device="cpu").fit(X[worker.rank_rows(len(X), rank, world_size)])
        np.testing.assert_array_equal(result("opt_out", rank)["labels"], alone.labels_)
        np.testing.assert_allclose(result("opt_out", rank)["centers"], alone.cluster_centers_)


def test_exchanges_give_the_answers_known_by_hand(ranks):
    world_size, result = ranks
    X, w = worker.table(), worker.weights()
    expected_concat = np.concatenate([np.full((r + 1, 2), r + 0.1) for r in range(world_size)])
    for rank in range(world_size):
        part = result("exchanges", rank)
        assert float(part["summed"][0]) == world_size * (world_size + 1) / 2  # 1 + 2 + ...
        assert float(part["sent"][0]) == rank + 1  # the caller's tensor is left as it was
        assert float(part["broadcast"][0]) == 10.0  # rank 0's
        np.testing.assert_array_equal(part["ragged"], expected_concat)
        edges = part["edges"]  # each rank's first and last rows, and the table's
        assert len(edges) == 2 * world_size
        np.testing.assert_array_equal(part["rows"], X[edges])
        np.testing.assert_array_equal(part["unit_weights"], np.ones(len(edges)))
        np.testing.assert_array_equal(part["weights"], w[edges])
        rank_0_stop = worker.rank_rows(len(X), 0, world_size).stop
        np.testing.assert_array_equal(part["mixed_weights"], np.where(edges < rank_0_stop, w[edges], 1.0))
        n_light = len(X) - worker.rank_rows(len(X), 0, world_size).stop
        assert float(part["light_total"]) == pytest.approx(1e-6 * n_light, rel=1e-9)
        assert str(part["weightless"]) == (
            "sample_weight must have at least one positive weight; every weight is zero.")
        if rank == world_size - 1:
            assert str(part["rejected"]) == "bad rows"
        else:
            assert str(part["rejected"]) == (
                f"gpukmeans: rank(s) [{world_size - 1}] rejected their data; see their error.")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through Linux's /proc")
def test_destroy_process_group_ends_gloos_threads_on_every_rank(ranks):
    # The worker's last steps raise on every rank; a reference cycle through their errors
    # would keep the process group and its threads alive, and they abort Python's exit.
    world_size, result = ranks
    for rank in range(world_size):
        names = [str(name) for name in result("threads", rank)["names"]]
        assert not [name for name in names if "gloo" in name], names


def test_a_rank_that_rejects_its_rows_makes_every_rank_raise(ranks):
    world_size, result = ranks
    for rank in range(world_size):
        message = str(result("rejected_rows", rank)["message"])
        if rank == world_size - 1:
            assert message.startswith("Input X contains NaN."), message
        else:
            assert message == f"gpukmeans: rank(s) [{world_size - 1}] rejected their data; see their error."


def test_ranks_that_disagree_on_features_all_raise(ranks):
    world_size, result = ranks
    for rank in range(world_size):
        message = str(result("mismatch", rank)["message"])
        assert "same features and dtype" in message, message


def test_ranks_that_disagree_on_the_storage_dtype_all_raise(ranks):
    world_size, result = ranks
    for rank in range(world_size):
        message = str(result("dtype_mismatch", rank)["message"])
        others = "".join(f", rank {r}: 5 features, float32" for r in range(1, world_size))
        assert message == (
            f"Every rank must hold rows with the same features and dtype; got rank 0: 5 features, bfloat16{others}.")


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


def test_a_sweep_searches_a_sample_when_every_ranks_rows_together_pass_the_threshold(ranks, monkeypatch):
    from gpukmeans.engine import every_k

    world_size, result = ranks
    X = worker.table()
    shares = [len(X[worker.rank_rows(len(X), rank, world_size)]) for rank in range(world_size)]
    assert max(shares) < worker.SEARCH_ROWS_BETWEEN < len(X)
    search, searched = every_k._search_a_sample, []
    monkeypatch.setattr(every_k, "_search_a_sample",
                        lambda *args, **kwargs: (searched.append(1), search(*args, **kwargs)))
    monkeypatch.setattr(every_k, "SEARCH_ROWS", worker.SEARCH_ROWS_BETWEEN)
    single = sweep(X, k=[3, 6], random_state=0, device="cpu", sample_size=500)
    assert searched == [1]
    labels = np.concatenate([result("sweep_searched", rank)["labels"] for rank in range(world_size)])
    np.testing.assert_array_equal(labels, single.models[6].labels_)
    for rank in range(world_size):
        part = result("sweep_searched", rank)
        assert int(part["searches"]) == 1  # every rank took the search, as the single process did
        np.testing.assert_allclose(part["table"], single.table.drop(columns="seconds").to_numpy(), rtol=1e-6)


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
        np.testing.assert_allclose(part["large_labels"], centroid, rtol=1e-9)
        assert str(part["named_labels"]) == "under torch.distributed, labels must be numbers (the ranks exchange them)"
        rows = worker.rank_rows(len(X), rank, world_size)
        np.testing.assert_allclose(part["samples"], samples[rows], rtol=1e-9)
        np.testing.assert_allclose(part["simplified_samples"], simplified_samples[rows], rtol=1e-9)


def test_each_torchrun_rank_takes_its_own_gpu(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert distributed.local_cuda_device() is None  # not under torchrun
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.local_cuda_device() is None  # no GPU: the device parameter decides
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.local_cuda_device() == torch.device("cuda", 1)  # local rank 3 on a box of 2 GPUs


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
