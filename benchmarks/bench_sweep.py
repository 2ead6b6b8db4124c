"""Choosing k on 1,000,000 x 16 float32: gpukmeans.sweep vs the usual scikit-learn loop.

The usual loop is what tutorials do: for k = 2..15, ``KMeans(n_clusters=k,
n_init=1).fit(X)`` then ``silhouette_score(X, labels, sample_size=10000)``.
gpukmeans.sweep does the same job in one call: all k share each Lloyd pass and
the sampled silhouettes (stratified, with intervals) share one pool of rows.
Each contender runs in a fresh process; they alternate; the best of
``--repeats`` counts. The sweep's phases (initialisation, Lloyd, scores) are
recorded too, and so is each k's iteration count on both sides.

    python benchmarks/bench_sweep.py           # writes benchmarks/results/sweep_*.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workers import cpu_idle_fraction, measure, run_worker  # noqa: E402
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
K_RANGE = range(2, 16)


def _data(n, d):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=n, n_features=d, centers=8, cluster_std=2.0, random_state=0)
    return X.astype(np.float32)


def worker(job: str, params: dict) -> None:
    X = _data(params["n"], params["d"])
    sample_size = params["sample_size"]
    details = {}
    if job == "gpukmeans":
        from gpukmeans._sweep import sweep

        sweep(X[:5000], k=range(2, 4), random_state=0, device="cpu")  # load libraries first

        def job_fn():
            result = sweep(X, k=K_RANGE, random_state=0, silhouette="sampled",
                           sample_size=sample_size, device="cpu")
            details["timings"] = result.timings
            details["table"] = result.table.to_dict(orient="list")
            details["recommended_k"] = result.recommended_k
            details["reason"] = result.reason
            return result.recommended_k
    elif job == "sklearn":
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        KMeans(2, n_init=1, random_state=0).fit(X[:5000])

        def job_fn():
            fit_seconds = silhouette_seconds = 0.0
            rows = []
            for k in K_RANGE:
                start = time.perf_counter()
                model = KMeans(n_clusters=k, n_init=1, random_state=0).fit(X)
                middle = time.perf_counter()
                score = silhouette_score(X, model.labels_, sample_size=sample_size, random_state=0)
                end = time.perf_counter()
                fit_seconds += middle - start
                silhouette_seconds += end - middle
                rows.append({"k": k, "inertia": float(model.inertia_), "n_iter": int(model.n_iter_),
                             "silhouette": float(score)})
            details["timings"] = {"fits": fit_seconds, "silhouettes": silhouette_seconds}
            details["table"] = rows
            return int(max(rows, key=lambda r: r["silhouette"])["k"])
    else:
        raise ValueError(job)
    result = measure(job_fn)
    result.update(details)
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker")
    parser.add_argument("--params")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--sample-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, json.loads(args.params))
        return

    info = machine_info()
    idle_before = cpu_idle_fraction()
    print(f"load average {info['load_average_1m']:.2f}, idle CPU share {idle_before:.2f}")
    runs = {"gpukmeans": [], "sklearn": []}
    for _ in range(args.repeats):
        for job in runs:
            result = run_worker("bench_sweep.py", job, n=args.n, d=args.d, sample_size=args.sample_size)
            runs[job].append(result)
            print(f"  {job:9s}: {result['seconds']:7.2f} s, extra peak "
                  f"{result['extra_peak_rss_bytes'] / 2**20:7.1f} MiB, cpu share {result['cpu_share']:.2f}, "
                  f"timings {json.dumps({k: round(v, 2) for k, v in result['timings'].items()})}", flush=True)
    best = {job: min(results, key=lambda r: r["seconds"]) for job, results in runs.items()}
    ratio = best["gpukmeans"]["seconds"] / best["sklearn"]["seconds"]
    RESULTS.mkdir(exist_ok=True)
    payload = {"machine": info, "idle_fraction_before": idle_before, "n": args.n, "d": args.d,
               "k": list(K_RANGE), "sample_size": args.sample_size, "ratio": ratio, "runs": runs}
    (RESULTS / "sweep_vs_sklearn_loop.json").write_text(json.dumps(payload, indent=2) + "\n")

    ours, theirs = best["gpukmeans"], best["sklearn"]
    iterations_ours = ours["table"]["n_iter"]
    iterations_theirs = [row["n_iter"] for row in theirs["table"]]
    lines = [
        f"# Choosing k on {args.n:,} x {args.d} float32: gpukmeans.sweep vs the scikit-learn loop", "",
        markdown_header(info) + f" Idle CPU share just before: {idle_before:.2f}.", "",
        f"k = {K_RANGE.start}..{K_RANGE.stop - 1}; silhouette on {args.sample_size:,} sampled rows. The loop is "
        "`KMeans(n_clusters=k, n_init=1).fit(X)` + `silhouette_score(X, labels, sample_size=...)` per k; "
        "the sweep is `gpukmeans.sweep(X, k=range(2, 16), silhouette='sampled')` (stratified sample, 95% "
        "intervals). Fresh process per run, alternated, best of the repeats.", "",
        "| contender | best seconds | ratio | extra peak MiB | cpu share | phases (s) |",
        "|---|---|---|---|---|---|",
        f"| gpukmeans.sweep | {ours['seconds']:.2f} | {ratio:.2f}x | "
        f"{ours['extra_peak_rss_bytes'] / 2**20:.0f} | {ours['cpu_share']:.2f} | "
        + ", ".join(f"{k} {v:.2f}" for k, v in ours["timings"].items()) + " |",
        f"| scikit-learn loop | {theirs['seconds']:.2f} | 1.00x | "
        f"{theirs['extra_peak_rss_bytes'] / 2**20:.0f} | {theirs['cpu_share']:.2f} | "
        + ", ".join(f"{k} {v:.2f}" for k, v in theirs["timings"].items()) + " |",
        "", "All runs (seconds): " + "; ".join(
            f"{job}: " + ", ".join(f"{r['seconds']:.2f}" for r in results) for job, results in runs.items()),
        "", f"Lloyd iterations per k, sweep: {iterations_ours}; scikit-learn: {iterations_theirs} "
        "(different k-means++ draws, so different starting centres).",
        "", f"Sweep's recommendation: {ours['reason']}",
    ]
    (RESULTS / "sweep_vs_sklearn_loop.md").write_text("\n".join(lines) + "\n")
    print(f"ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
