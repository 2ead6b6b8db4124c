"""Where the core engine lands: one Lloyd iteration, gpukmeans vs scikit-learn, and peak memory.

Same data (uniform float32, so that labels keep changing), same initial centres.
The time per iteration is the difference between a fit of ``--long`` and a fit of
``--short`` iterations, divided by the difference in iterations: the one-off
costs (tolerance pass, final assignment, inertia) cancel out.

    python benchmarks/bench_core.py            # writes benchmarks/results/core_*.{json,md}
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header, reset_peak_rss, rss_bytes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = [(1_000_000, 16, 8), (1_000_000, 32, 32)]


def _fit_seconds(make_estimator, X, max_iter):
    estimator = make_estimator(max_iter)
    start = time.perf_counter()
    estimator.fit(X)
    return time.perf_counter() - start, estimator.n_iter_


def ms_per_iteration(make_estimator, X, short, long, repeats):
    """Best-of-``repeats`` times of both fits, so that load from other processes cancels."""
    short_runs = [_fit_seconds(make_estimator, X, short) for _ in range(repeats)]
    long_runs = [_fit_seconds(make_estimator, X, long) for _ in range(repeats)]
    (t_short, it_short), (t_long, it_long) = min(short_runs), min(long_runs)
    if it_long <= it_short:
        raise RuntimeError(f"the fit converged before {long} iterations; use more rows or fewer iterations")
    return 1e3 * (t_long - t_short) / (it_long - it_short)


def time_shapes(short, long, repeats):
    from sklearn.cluster import KMeans as SklearnKMeans

    from gpukmeans import KMeans

    rows = []
    for n, d, k in SHAPES:
        X = np.random.default_rng(0).random((n, d), dtype=np.float32)
        init = X[:k].copy()
        ours = ms_per_iteration(
            lambda it: KMeans(k, init=init, max_iter=it, tol=0.0, device="cpu"), X, short, long, repeats
        )
        theirs = ms_per_iteration(
            lambda it: SklearnKMeans(k, init=init, n_init=1, max_iter=it, tol=0.0, algorithm="lloyd"),
            X, short, long, repeats,
        )
        rows.append({"n": n, "d": d, "k": k, "gpukmeans_ms": ours, "sklearn_lloyd_ms": theirs,
                     "ratio": ours / theirs})
        print(f"({n}, {d}, {k}): gpukmeans {ours:.1f} ms/iter, scikit-learn {theirs:.1f} ms/iter, ratio {ours / theirs:.2f}")
    return rows


def _peak_memory_child(n, d, k):
    """Run in a fresh process: extra peak RSS of a fit beyond the data already in memory."""
    from gpukmeans import KMeans
    from gpukmeans.sources.chunking import auto_chunk_size, chunk_bytes_per_row

    import torch

    X = np.random.default_rng(0).random((n, d), dtype=np.float32)
    KMeans(k, max_iter=1, device="cpu").fit(X[:1000])  # load libraries before the baseline
    reset_peak_rss()
    before = rss_bytes("VmRSS")
    KMeans(k, random_state=0, max_iter=20, device="cpu").fit(X)
    after = rss_bytes("VmHWM")
    cpu = torch.device("cpu")
    chunk_rows = auto_chunk_size(d, k, torch.float32, cpu)
    print(json.dumps({
        "n": n, "d": d, "k": k, "data_bytes": X.nbytes, "fit_extra_peak_bytes": after - before,
        "chunk_rows": chunk_rows, "chunk_working_set_bytes": min(n, chunk_rows) * chunk_bytes_per_row(d, k, torch.float32, cpu),
        "labels_bytes": n * 1,  # Lloyd's label table: int8 for k < 128
    }))



def peak_memory(n, d, k):
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_core; bench_core._peak_memory_child({n}, {d}, {k})"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, default=2)
    parser.add_argument("--long", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    info = machine_info()
    rows = time_shapes(args.short, args.long, args.repeats)
    memory = peak_memory(1_000_000, 16, 8)
    print(f"peak memory: data {memory['data_bytes'] / 2**20:.0f} MiB, fit's extra peak {memory['fit_extra_peak_bytes'] / 2**20:.0f} MiB")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core_vs_sklearn.json").write_text(json.dumps({"machine": info, "lloyd": rows, "memory": memory}, indent=2) + "\n")
    lines = [
        "# Core engine: one Lloyd iteration vs scikit-learn (CPU, float32)", "", markdown_header(info), "",
        "| n | d | k | gpukmeans ms/iter | scikit-learn lloyd ms/iter | ratio |", "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['n']:,} | {r['d']} | {r['k']} | {r['gpukmeans_ms']:.1f} | {r['sklearn_lloyd_ms']:.1f} | {r['ratio']:.2f} |" for r in rows]
    lines += ["", f"Peak memory of a fit of {memory['n']:,} x {memory['d']} float32 (k={memory['k']}): data "
              f"{memory['data_bytes'] / 2**20:.0f} MiB; the fit's extra peak RSS {memory['fit_extra_peak_bytes'] / 2**20:.0f} MiB "
              f"(Lloyd's label table {memory['labels_bytes'] / 2**20:.0f} MiB; a chunk of {memory['chunk_rows']:,} rows, "
              f"whose working set is {memory['chunk_working_set_bytes'] / 2**20:.0f} MiB)."]
    (RESULTS / "core_vs_sklearn.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
