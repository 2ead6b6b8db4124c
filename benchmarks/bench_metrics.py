"""Exact silhouette vs scikit-learn, and how honest the sampled interval is.

1. Exact Euclidean silhouette of a 50,000 x 16 blobs table (8 clusters) on the
   CPU: gpukmeans.metrics.silhouette_score vs sklearn.metrics.silhouette_score,
   time and extra peak memory, each run in a fresh process, alternated, best of
   ``--repeats``. float64 (sklearn's usual dtype) and float32 for gpukmeans.
   With CUDA, also the exact silhouette of 1,000,000 x 16 float32 on the GPU.
2. Coverage of the 95% interval of silhouette_score_sampled: over many seeds,
   how often it contains the exact value, its mean half-width against the
   spread of the estimates (1.96 x their standard deviation), and the bias.

    python benchmarks/bench_metrics.py                 # writes benchmarks/results/metrics_*.{json,md}
    python benchmarks/bench_metrics.py --no-coverage   # timings only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workers import cpu_idle_fraction, measure, run_worker  # noqa: E402
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _blobs(n, d, dtype):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=n, n_features=d, centers=8, cluster_std=2.0, random_state=0)
    return X.astype(dtype), y


def worker(job: str, params: dict) -> None:
    X, y = _blobs(params["n"], params["d"], params["dtype"])
    if job == "gpukmeans":
        from gpukmeans.metrics import silhouette_score

        device = params.get("device", "cpu")
        silhouette_score(X[:2000], y[:2000], device=device)  # load kernels before the baseline
        if device == "cuda":
            import torch

            def job_fn():
                value = silhouette_score(X, y, device=device)
                torch.cuda.synchronize()
                return value
        else:
            def job_fn():
                return silhouette_score(X, y, device=device)
    elif job == "sklearn":
        from sklearn.metrics import silhouette_score

        silhouette_score(X[:2000], y[:2000])
        def job_fn():
            return float(silhouette_score(X, y))
    else:
        raise ValueError(job)
    print(json.dumps(measure(job_fn)))


def time_exact(n, d, repeats, sklearn_float32):
    contenders = [("gpukmeans", "float64"), ("sklearn", "float64"), ("gpukmeans", "float32")]
    if sklearn_float32:
        contenders.append(("sklearn", "float32"))
    runs = {c: [] for c in contenders}
    for repeat in range(repeats):
        for job, dtype in contenders:
            result = run_worker("bench_metrics.py", job, n=n, d=d, dtype=dtype)
            runs[(job, dtype)].append(result)
            print(f"  {job:9s} {dtype}: {result['seconds']:7.2f} s, extra peak "
                  f"{result['extra_peak_rss_bytes'] / 2**20:7.1f} MiB, cpu share "
                  f"{result['cpu_share']:.2f}, value {result['value']:.12f}", flush=True)
    rows = []
    for (job, dtype), results in runs.items():
        best = min(results, key=lambda r: r["seconds"])
        rows.append({
            "library": job, "dtype": dtype, "n": n, "d": d,
            "best_seconds": best["seconds"],
            "all_seconds": [r["seconds"] for r in results],
            "extra_peak_rss_mib": max(r["extra_peak_rss_bytes"] for r in results) / 2**20,
            "peak_rss_mib": max(r["peak_rss_bytes"] for r in results) / 2**20,
            "cpu_share_of_best": best["cpu_share"],
            "value": best["value"],
        })
    return rows


def time_gpu(n, d):
    import torch

    if not torch.cuda.is_available():
        return None
    result = run_worker("bench_metrics.py", "gpukmeans", n=n, d=d, dtype="float32", device="cuda")
    return {"n": n, "d": d, "dtype": "float32", "device": torch.cuda.get_device_name(0), **result}


def _naive_estimate(X, y, sample_size, seed):
    """The same estimate with the interval that ignores the reference-sample term."""
    from gpukmeans.metrics._inputs import validate
    from gpukmeans.metrics._sampled import estimate_silhouettes, make_generator

    data = validate(X, y, "cpu")
    (estimate,) = estimate_silhouettes(data.X, [data.labels], [data.n_labels], sample_size,
                                       make_generator(seed), reference_term=False)
    return estimate


def coverage_study(n_seeds):
    """Empirical coverage of the sampled interval on two tables with known exact values."""
    from sklearn.datasets import make_blobs

    from gpukmeans import KMeans
    from gpukmeans.metrics import silhouette_score, silhouette_score_sampled

    overlapping, y1 = make_blobs(
        n_samples=[8000, 6000, 3000, 2000, 1000], n_features=6, centers=None,
        cluster_std=[1.0, 2.0, 1.5, 1.0, 0.5], random_state=4,
    )
    uniform = np.random.default_rng(1).random((15_000, 6))
    y2 = KMeans(10, random_state=0, device="cpu").fit(uniform).labels_
    rows = []
    for name, X, y in [("overlapping blobs 20,000 x 6, k=5", overlapping, y1),
                       ("uniform 15,000 x 6, k-means k=10", uniform, y2)]:
        exact = silhouette_score(X, y)
        for sample_size in (500, 2000):
            estimates = [silhouette_score_sampled(X, y, sample_size=sample_size, random_state=s)
                         for s in range(n_seeds)]
            naive = [_naive_estimate(X, y, sample_size, s) for s in range(n_seeds)]
            values = np.array([e.value for e in estimates])
            rows.append({
                "data": name, "exact": exact, "sample_size": sample_size, "seeds": n_seeds,
                "coverage": float(np.mean([e.low <= exact <= e.high for e in estimates])),
                "naive_coverage": float(np.mean([e.low <= exact <= e.high for e in naive])),
                "mean_half_width": float(np.mean([e.half_width for e in estimates])),
                "spread_1_96_sd": float(1.96 * values.std(ddof=1)),
                "bias": float(values.mean() - exact),
            })
            print(f"  {name}, m={sample_size}: coverage {rows[-1]['coverage']:.3f}", flush=True)
    return rows


def write_timings(info, idle_before, exact_rows, gpu):
    RESULTS.mkdir(exist_ok=True)
    payload = {"machine": info, "idle_fraction_before": idle_before, "exact_silhouette": exact_rows,
               "gpu_exact_silhouette": gpu}
    (RESULTS / "metrics_silhouette.json").write_text(json.dumps(payload, indent=2) + "\n")
    by = {(r["library"], r["dtype"]): r for r in exact_rows}
    reference = by[("sklearn", "float64")]
    lines = [
        "# Exact silhouette: gpukmeans.metrics vs scikit-learn (CPU)", "",
        markdown_header(info) + f" Idle CPU share just before: {idle_before:.2f}.", "",
        f"Data: make_blobs, {reference['n']:,} x {reference['d']}, 8 clusters. Each run in a fresh "
        "process, contenders alternated, best time of the repeats. 'extra peak' is the rise of "
        "the peak resident set during the call (data already loaded). 'cpu share' near 1.0 means "
        "the run had both cores to itself.", "",
        "| library | dtype | best seconds | vs sklearn float64 | extra peak MiB | cpu share | silhouette |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in exact_rows:
        lines.append(
            f"| {r['library']} | {r['dtype']} | {r['best_seconds']:.2f} | "
            f"{r['best_seconds'] / reference['best_seconds']:.3f}x | {r['extra_peak_rss_mib']:.0f} | "
            f"{r['cpu_share_of_best']:.2f} | {r['value']:.10f} |"
        )
    lines += ["", "All runs (seconds): " + "; ".join(
        f"{r['library']} {r['dtype']}: " + ", ".join(f"{s:.2f}" for s in r["all_seconds"]) for r in exact_rows)]
    if gpu is None:
        lines += ["", "GPU: no CUDA device on this machine; the 1,000,000 x 16 GPU figure is still owed."]
    else:
        lines += ["", f"GPU ({gpu['device']}): exact silhouette of {gpu['n']:,} x {gpu['d']} float32 in "
                  f"{gpu['seconds']:.2f} s (value {gpu['value']:.6f})."]
    (RESULTS / "metrics_silhouette.md").write_text("\n".join(lines) + "\n")


def write_coverage(info, coverage):
    RESULTS.mkdir(exist_ok=True)
    payload = {"machine": info, "sampled_interval_coverage": coverage}
    (RESULTS / "metrics_sampled_coverage.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Sampled silhouette: is the 95% interval honest?", "", markdown_header(info), "",
        "Over many seeds: how often `silhouette_score_sampled`'s interval contains the exact "
        "silhouette; its mean half-width next to 1.96 x the standard deviation of the estimates "
        "(they should match); and the bias of the estimate. 'naive' is the interval that treats "
        "each sampled row's score as exact (no reference-sample term), shown for contrast.", "",
        "| data | exact | sample | seeds | coverage | naive coverage | mean half-width | 1.96 sd | bias |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['data']} | {r['exact']:.4f} | {r['sample_size']:,} | {r['seeds']} | {r['coverage']:.3f} | "
        f"{r['naive_coverage']:.3f} | {r['mean_half_width']:.4f} | {r['spread_1_96_sd']:.4f} | {r['bias']:+.4f} |"
        for r in coverage
    ]
    (RESULTS / "metrics_sampled_coverage.md").write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker")
    parser.add_argument("--params")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sklearn-float32", action="store_true", help="also time sklearn on float32 (slow)")
    parser.add_argument("--no-coverage", action="store_true")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--coverage-seeds", type=int, default=200)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, json.loads(args.params))
        return
    info = machine_info()
    if not args.no_timing:
        idle_before = cpu_idle_fraction()
        print(f"load average {info['load_average_1m']:.2f}, idle CPU share {idle_before:.2f}")
        exact_rows = time_exact(args.n, args.d, args.repeats, args.sklearn_float32)
        gpu = time_gpu(1_000_000, args.d)
        write_timings(info, idle_before, exact_rows, gpu)
    if not args.no_coverage:
        write_coverage(info, coverage_study(args.coverage_seeds))


if __name__ == "__main__":
    main()
