"""One rank of the multi-process tests (started by tests/test_distributed.py, not by pytest).

    python tests/distributed_worker.py RANK WORLD_SIZE INIT_METHOD OUT_DIR [PARQUET_PATH]

Joins a gloo process group, runs every scenario of ``SCENARIOS`` with this rank's rows,
and saves what it got to ``OUT_DIR/<scenario>_rank<RANK>.npz`` for the test to compare
with a single-process fit of the whole table.
"""

import gc
import os
import sys
import traceback
from pathlib import Path

import numpy as np


def table(dtype=np.float64, n=2400, seed=0):
    """The whole table every scenario splits between ranks (and the reference fits)."""
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=n, centers=6, n_features=5, cluster_std=1.8, random_state=seed)
    return X.astype(dtype)


def weights(n=2400):
    return np.random.RandomState(7).uniform(0.0, 3.0, size=n)


def thread_names():
    """The names of this process's threads, C++ ones included (gloo's are ``gloo_*`` and ``pt_gloo_*``)."""
    return sorted(Path(f"/proc/self/task/{task}/comm").read_text().strip() for task in os.listdir("/proc/self/task"))


def rank_rows(n, rank, world_size):
    """Rank ``rank``'s contiguous, deliberately uneven share of ``n`` rows."""
    bounds = np.linspace(0, n, world_size + 1).astype(int)
    bounds[1:-1] -= np.arange(1, world_size) * 37  # uneven on purpose
    return slice(bounds[rank], bounds[rank + 1])


def duplicate_init(X):
    """Initial centres with two copies of one row: a cluster is empty at once and relocates."""
    init = X[[0, 1, 2, 3, 4, 5]].copy()
    init[5] = init[4]
    return init


# name -> (estimator parameters, dtype, weighted)
SCENARIOS = {
    "kmeans_plusplus": (dict(n_clusters=6, random_state=3), np.float64, False),
    "kmeans_parallel_float32": (dict(n_clusters=6, init="k-means||", random_state=5), np.float32, False),
    "random_restarts": (dict(n_clusters=6, init="random", n_init=3, random_state=2), np.float64, False),
    "weighted": (dict(n_clusters=6, random_state=4), np.float64, True),
    "empty_cluster_relocation": (dict(n_clusters=6, init="duplicate", max_iter=50), np.float64, False),
    "bfloat16_storage": (dict(n_clusters=6, random_state=3, dtype="bfloat16"), np.float64, True),
    "far_from_the_origin_float32": (dict(n_clusters=6, random_state=3), np.float32, False),
}

# Scenarios whose table lies far from the origin: every rank must move it by the same
# shift, the mean of the whole table (see gpukmeans.sources.conditioning).
OFFSETS = {"far_from_the_origin_float32": 1e4}


#: Fewer rows than the whole table (2400), more than a rank's share among two ranks (at most
#: 1237): a sweep searches a sample only if it counts every rank's rows.
SEARCH_ROWS_BETWEEN = 1300


def scenario_table(name, dtype):
    """The whole table of one scenario."""
    return table(dtype) + dtype(OFFSETS.get(name, 0.0))


def estimator_params(params, X):
    params = dict(params)
    if isinstance(params.get("init"), str) and params["init"] == "duplicate":
        params["init"] = duplicate_init(X)
    return params


def _error_of(call) -> str:
    """The message of the ValueError ``call`` raises (on every rank alike), or "no error"."""
    try:
        call()
    except ValueError as error:
        return str(error)
    return "no error"


def exchanges(rank, world_size):
    """What the exchanges of one process group give on this rank, on small tensors whose
    answers the test knows by hand, and what they leave of the caller's tensors."""
    import torch
    import torch.distributed as dist

    from gpukmeans.sources.distributed import Exchange, join_ranks
    from gpukmeans.sources.memory import InMemorySource

    exchange = Exchange(dist.group.WORLD)
    mine = torch.tensor([rank + 1.0], dtype=torch.float64)
    results = dict(summed=exchange.reduce_sum(mine), sent=mine.clone(),
                   broadcast=exchange.broadcast(torch.tensor([rank + 10.0])),
                   ragged=exchange.concat(torch.full((rank + 1, 2), rank + 0.1, dtype=torch.float64)))
    X, w = table(), weights()
    rows = rank_rows(len(X), rank, world_size)
    edges = np.array(sorted({0, len(X) - 1, *(rank_rows(len(X), r, world_size).start + d
                                              for r in range(1, world_size) for d in (-1, 0))}))
    indices = torch.from_numpy(edges)
    unweighted = join_ranks(InMemorySource(torch.from_numpy(X[rows]), None, 100), exchange, torch.float64,
                            shared_table=False)
    weighted = join_ranks(InMemorySource(torch.from_numpy(X[rows]), torch.from_numpy(w[rows]), 100), exchange,
                          torch.float64, shared_table=False)
    # only rank 0 passes weights: the others' rows weigh 1
    mixed = join_ranks(InMemorySource(torch.from_numpy(X[rows]), torch.from_numpy(w[rows]) if rank == 0 else None, 100),
                       exchange, torch.float64, shared_table=False)
    results.update(edges=edges, rows=unweighted.take(indices), unit_weights=unweighted.weights_of(indices),
                   weights=weighted.weights_of(indices), mixed_weights=mixed.weights_of(indices))
    # rank 0's rows weigh nothing: the table's weights are the other ranks'
    light = torch.full((rows.stop - rows.start,), 0.0 if rank == 0 else 1e-6, dtype=torch.float64)
    results["light_total"] = join_ranks(InMemorySource(torch.from_numpy(X[rows]), light, 100), exchange,
                                        torch.float64, shared_table=False).reduce_sum(light.sum())
    try:
        join_ranks(InMemorySource(torch.from_numpy(X[rows]), light * 0, 100), exchange, torch.float64,
                   shared_table=False)
        results["weightless"] = "no error"
    except ValueError as error:
        results["weightless"] = str(error)
    try:  # the last rank rejects its data; every rank raises, the last its own error
        try:
            if rank == world_size - 1:
                raise ValueError("bad rows")
        except ValueError:
            exchange.all_ok(failed=True)
            raise
        exchange.all_ok(failed=False)
        results["rejected"] = "no error"
    except ValueError as error:
        results["rejected"] = str(error)
    exchange.all_ok(failed=False)
    return {name: np.asarray(value) for name, value in results.items()}


def main():
    rank, world_size, init_method, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    parquet_path = sys.argv[5] if len(sys.argv) > 5 else None
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    # Only reference counts free what the run leaves, so that a reference cycle holding the
    # process group keeps gloo's threads alive past destroy_process_group every time, not
    # only when the collector happens not to run (the threads then abort the exit).
    gc.disable()
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    from gpukmeans import KMeans

    def save(name, **arrays):
        np.savez(out_dir / f"{name}_rank{rank}.npz", **arrays)

    for name, (params, dtype, weighted) in SCENARIOS.items():
        X = scenario_table(name, dtype)
        rows = rank_rows(len(X), rank, world_size)
        w = weights()[rows] if weighted else None
        km = KMeans(device="cpu", **estimator_params(params, X)).fit(X[rows], sample_weight=w)
        save(name, labels=km.labels_, centers=km.cluster_centers_, inertia=km.inertia_, n_iter=km.n_iter_)

    # distributed=False: each rank fits its own rows alone.
    X = table()
    rows = rank_rows(len(X), rank, world_size)
    km = KMeans(6, random_state=3, device="cpu", distributed=False).fit(X[rows])
    save("opt_out", labels=km.labels_, centers=km.cluster_centers_)

    # verbose: every rank prints the inertia of every rank's rows at each iteration.
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        KMeans(6, random_state=3, max_iter=5, verbose=1, device="cpu").fit(X[rows])
    save("verbose", lines=np.array(printed.getvalue().splitlines()))

    # A file: every rank names the whole table and reads its own share of the rows.
    if parquet_path is not None:
        km = KMeans(6, random_state=3, device="cpu", chunk_size=256).fit(parquet_path)
        save("parquet", labels=km.labels_, centers=km.cluster_centers_, inertia=km.inertia_)

    # sweep and the metrics over every rank's rows (and over the shared file).
    from gpukmeans import metrics, sweep

    X = table()
    rows = rank_rows(len(X), rank, world_size)
    result = sweep(X[rows], k=[3, 6], random_state=0, device="cpu", sample_size=500)
    labels = result.models[6].labels_
    save("sweep", table=result.table.drop(columns="seconds").to_numpy(), labels=labels,
         recommended=np.array(result.recommended_k))
    # A search threshold between a rank's share and the whole table: the sweep searches a
    # sample because every rank's rows together pass it, though no rank's own rows do.
    from gpukmeans.engine import every_k

    search, searches = every_k._search_a_sample, []
    every_k._search_a_sample = lambda *args, **kwargs: (searches.append(1), search(*args, **kwargs))
    threshold, every_k.SEARCH_ROWS = every_k.SEARCH_ROWS, SEARCH_ROWS_BETWEEN
    searched = sweep(X[rows], k=[3, 6], random_state=0, device="cpu", sample_size=500)
    every_k.SEARCH_ROWS, every_k._search_a_sample = threshold, search
    save("sweep_searched", table=searched.table.drop(columns="seconds").to_numpy(),
         labels=searched.models[6].labels_, searches=np.array(len(searches)))
    save("metrics", silhouette=np.array(float(metrics.silhouette_score(X[rows], labels, device="cpu"))),
         sampled=np.array(metrics.silhouette_score(X[rows], labels, sample_size=600, random_state=1,
                                                   device="cpu").value),
         samples=metrics.silhouette_samples(X[rows], labels, device="cpu"),
         calinski=np.array(metrics.calinski_harabasz_score(X[rows], labels, device="cpu")),
         davies=np.array(metrics.davies_bouldin_score(X[rows], labels, device="cpu")),
         simplified=np.array(metrics.simplified_silhouette_score(X[rows], labels, device="cpu")),
         centroid=np.array(metrics.centroid_scores(X[rows], labels, device="cpu")),
         halved_labels=np.array(metrics.centroid_scores(X[rows], labels * 0.5, device="cpu")),
         # integers beyond float64's 2**53 (2**53 + 1 rounds to 2**53): the same clusters
         large_labels=np.array(metrics.centroid_scores(X[rows], labels.astype(np.int64) + 2**53, device="cpu")),
         named_labels=np.array(_error_of(lambda: metrics.centroid_scores(X[rows], labels.astype(str), device="cpu"))),
         simplified_samples=metrics.simplified_silhouette_samples(X[rows], labels, device="cpu"),
         simplified_centers=np.array(metrics.simplified_silhouette_score(X[rows], labels, centers=X[:6],
                                                                         device="cpu")))
    # distributed=False: each rank scores its own rows alone.
    alone = dict(device="cpu", distributed=False)
    save("metrics_alone", silhouette=np.array(metrics.silhouette_score(X[rows], labels, **alone)),
         sampled=np.array(metrics.silhouette_score(X[rows], labels, sample_size=300, random_state=1, **alone).value),
         samples=metrics.silhouette_samples(X[rows], labels, **alone),
         centroid=np.array(metrics.centroid_scores(X[rows], labels, **alone)),
         simplified=np.array(metrics.simplified_silhouette_score(X[rows], labels, **alone)),
         simplified_centers=np.array(metrics.simplified_silhouette_score(X[rows], labels, centers=X[:6], **alone)))
    if parquet_path is not None:
        on_file = sweep(parquet_path, k=[3, 6], random_state=0, device="cpu", sample_size=500)
        save("sweep_parquet", table=on_file.table.drop(columns="seconds").to_numpy())

    save("exchanges", **exchanges(rank, world_size))

    # A rank whose rows hold NaN rejects them; the other ranks raise too (none waits forever).
    X = table()
    X = X[rank_rows(len(X), rank, world_size)]
    if rank == world_size - 1:
        X[3, 2] = np.nan
    try:
        KMeans(3, random_state=0, device="cpu").fit(X)
        save("rejected_rows", message=np.array("no error"))
    except ValueError as error:
        save("rejected_rows", message=np.array(str(error)))

    # Ranks that disagree on the number of features all raise (none waits forever).
    X = table()[:, : 5 - (rank % 2)]
    try:
        KMeans(3, random_state=0, device="cpu").fit(X[rank_rows(len(X), rank, world_size)])
        save("mismatch", message=np.array("no error"))
    except ValueError as error:
        save("mismatch", message=np.array(str(error)))

    # Ranks that disagree on the storage dtype all raise too.
    X = table()
    try:
        dtype = "bfloat16" if rank == 0 else "float32"
        KMeans(3, random_state=0, device="cpu", dtype=dtype).fit(X[rank_rows(len(X), rank, world_size)])
        save("dtype_mismatch", message=np.array("no error"))
    except ValueError as error:
        save("dtype_mismatch", message=np.array(str(error)))

    dist.destroy_process_group()
    save("threads", names=np.array(thread_names()))


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
