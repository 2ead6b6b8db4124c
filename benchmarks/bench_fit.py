"""Whole fits as a user runs them: gpukmeans against scikit-learn, one restart and ten.

A Lloyd iteration is not all of a fit: k-means++ and the restarts are too. Each
library fits the suite's data (`gpukmeans_cli.benchmarking.make_data`: 8 planted blobs)
with its defaults (k-means++, tol=1e-4), ``n_init=1`` and ``n_init=10``, the same
seed; the runs are interleaved (gpukmeans, scikit-learn, gpukmeans, ...) so that a
busy spell of the shared machine hits both alike. Reported: every run's seconds,
the best, and the ratios. Then greedy k-means++ alone, each library's public
``kmeans_plusplus`` (the same default of ``2 + int(log k)`` candidates a step), at k
and at 4k, interleaved the same way.

    python benchmarks/bench_fit.py             # writes benchmarks/results/fit-cpu.{json,md}
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _estimators(n_clusters, n_init, seed):
    from sklearn.cluster import KMeans as SklearnKMeans

    from gpukmeans import KMeans

    return {
        "gpukmeans": lambda: KMeans(n_clusters, n_init=n_init, random_state=seed, device="cpu"),
        "scikit-learn": lambda: SklearnKMeans(n_clusters, n_init=n_init, random_state=seed),
    }


def fit_seconds(X, n_clusters, n_init, repeats, seed=0) -> dict:
    """Seconds of each run per library, interleaved, and the fits' inertias."""
    runs = {name: [] for name in _estimators(n_clusters, n_init, seed)}
    inertia = {}
    for repeat in range(repeats):
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for name in order:
            estimator = _estimators(n_clusters, n_init, seed)[name]()
            start = time.perf_counter()
            estimator.fit(X)
            runs[name].append(time.perf_counter() - start)
            inertia[name] = float(estimator.inertia_)
    return {"runs": runs, "inertia": inertia}


def kmeans_plusplus_seconds(X, n_clusters, repeats, seed=0) -> dict:
    """Seconds of each library's ``kmeans_plusplus`` on ``X``, interleaved runs."""
    from sklearn.cluster import kmeans_plusplus as sklearn_kmeans_plusplus

    from gpukmeans import kmeans_plusplus

    seeders = {"gpukmeans": lambda: kmeans_plusplus(X, n_clusters, random_state=seed, device="cpu"),
               "scikit-learn": lambda: sklearn_kmeans_plusplus(X, n_clusters, random_state=seed)}
    runs = {name: [] for name in seeders}
    for repeat in range(repeats):
        for name in (list(seeders) if repeat % 2 == 0 else list(reversed(seeders))):
            start = time.perf_counter()
            seeders[name]()
            runs[name].append(time.perf_counter() - start)
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from gpukmeans import KMeans
    from gpukmeans_cli.benchmarking import make_data

    warnings.simplefilter("ignore")  # convergence chatter of either library
    X = make_data(args.rows, args.features, args.clusters, "cpu")[0].numpy()
    KMeans(args.clusters, random_state=0, device="cpu").fit(X[:10_000])  # the CPU kernel's compilation
    info = machine_info()
    results = []
    for n_init in (1, 10):
        measured = fit_seconds(X, args.clusters, n_init, args.repeats)
        best = {name: min(seconds) for name, seconds in measured["runs"].items()}
        results.append({"n_init": n_init, **measured, "best": best})
        print(f"n_init={n_init}: " + ", ".join(
            f"{name} {[round(s, 2) for s in seconds]} s" for name, seconds in measured["runs"].items()), flush=True)
    ours = {r["n_init"]: r["best"]["gpukmeans"] for r in results}
    summary = {"restarts_cost_gpukmeans": ours[10] / ours[1],
               "restarts_cost_sklearn": results[1]["best"]["scikit-learn"] / results[0]["best"]["scikit-learn"]}
    print(f"n_init=10 against n_init=1: gpukmeans {summary['restarts_cost_gpukmeans']:.2f}x, "
          f"scikit-learn {summary['restarts_cost_sklearn']:.2f}x")

    seeding = []
    for n_clusters in (args.clusters, 4 * args.clusters):
        runs = kmeans_plusplus_seconds(X, n_clusters, args.repeats)
        seeding.append({"n_clusters": n_clusters, "runs": runs,
                        "best": {name: min(seconds) for name, seconds in runs.items()}})
        print(f"k-means++ alone, k={n_clusters}: " + ", ".join(
            f"{name} {[round(s, 3) for s in seconds]} s" for name, seconds in runs.items()), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    shape = [args.rows, args.features, args.clusters]
    (args.out / "fit-cpu.json").write_text(json.dumps(
        {"machine": info, "shape": shape, "results": results, "summary": summary, "kmeans_plusplus": seeding},
        indent=2) + "\n")
    lines = ["# Whole fits on the CPU: gpukmeans against scikit-learn", "", markdown_header(info), "",
             f"{args.rows:,} x {args.features} float32 (8 planted blobs, `make_data`), k={args.clusters}, "
             f"k-means++, each library's defaults otherwise; {args.repeats} interleaved runs each; "
             f"torch threads {info['torch_threads']}. Seconds per whole fit (the best run in bold).", "",
             "| n_init | library | runs (s) | best (s) | best against scikit-learn | inertia |",
             "|---:|---|---|---:|---:|---:|"]
    for r in results:
        for name, seconds in r["runs"].items():
            ratio = r["best"][name] / r["best"]["scikit-learn"]
            lines.append(f"| {r['n_init']} | {name} | {', '.join(f'{s:.2f}' for s in seconds)} | "
                         f"**{r['best'][name]:.2f}** | {ratio:.2f} | {r['inertia'][name]:.6g} |")
    lines += ["", f"Ten restarts against one, best runs: gpukmeans {summary['restarts_cost_gpukmeans']:.2f}x, "
              f"scikit-learn {summary['restarts_cost_sklearn']:.2f}x.", "",
              "Greedy k-means++ alone on the same rows (`kmeans_plusplus` of each library, "
              f"{args.repeats} interleaved runs):", "",
              "| k | library | runs (s) | best (s) | best against scikit-learn |", "|---:|---|---|---:|---:|"]
    for r in seeding:
        for name, seconds in r["runs"].items():
            ratio = r["best"][name] / r["best"]["scikit-learn"]
            lines.append(f"| {r['n_clusters']} | {name} | {', '.join(f'{s:.3f}' for s in seconds)} | "
                         f"**{r['best'][name]:.3f}** | {ratio:.2f} |")
    (args.out / "fit-cpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'fit-cpu.md'}")


if __name__ == "__main__":
    main()
