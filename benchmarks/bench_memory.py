"""Peak memory of k-means fits: in memory (gpukmeans vs scikit-learn) and streamed from Parquet.

Every measurement runs in a fresh process: it loads the libraries and warms them up,
notes its resident set (the baseline), makes the data, resets the peak resident set
(``echo 5 > /proc/self/clear_refs``), fits, and reads the peak (``VmHWM``).

- A fit's own memory: ``peak - baseline - data`` against one chunk's working set
  (the bound a fit keeps: data plus one chunk's working set).
- In memory: ``peak - baseline`` (the data plus whatever the fit adds) against the
  data's bytes; the target is at most 1.25x the data.
- Streamed: a 100,000,000 x 16 float32 Parquet table (6.4 GB, written in row groups
  of 1,000,000 rows under --tmp, deleted afterwards) fitted from its path; the target
  is a peak resident set under 2 GB for the whole process.

    python benchmarks/bench_memory.py                 # both parts
    python benchmarks/bench_memory.py --skip-streamed # in-memory parts only
    python benchmarks/bench_memory.py --only-working-set  # a fit against one chunk's working set
    python benchmarks/bench_memory.py --only-streamed     # the streamed fit alone (memory_streamed.*)
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header, reset_peak_rss, rss_bytes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
IN_MEMORY_SHAPES = [(4_000_000, 16, 8), (2_000_000, 32, 8)]
# (n, d, k, n_init): a customer table's shape, with one restart and with ten
WORKING_SET_FITS = [(1_000_000, 16, 8, 1), (1_000_000, 16, 8, 10), (4_000_000, 16, 8, 1)]
WORKING_SET_REPEATS = 3
# What a fit keeps per row besides X, whatever the chunk: labels_ (int32) and
# k-means++'s distance to the nearest centre so far (float32).
PER_ROW_STATE_BYTES = 8
STREAMED_ROWS, STREAMED_FEATURES, ROW_GROUP_ROWS = 100_000_000, 16, 1_000_000



def _estimator(library, k, max_iter, init="k-means++", n_init=1):
    if library == "gpukmeans":
        from gpukmeans import KMeans

        return KMeans(k, init=init, n_init=n_init, max_iter=max_iter, random_state=0, device="cpu")
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=n_init, max_iter=max_iter, random_state=0, algorithm="lloyd")


def _chunk_working_set_bytes(n, d, k, n_init):
    """What gpukmeans budgets for one chunk of this fit: auto chunk rows x bytes per row."""
    import torch

    from gpukmeans.sources.chunking import auto_chunk_size, chunk_bytes_per_row

    cpu = torch.device("cpu")
    rows = min(n, auto_chunk_size(d, k * n_init, torch.float32, cpu))
    return rows * chunk_bytes_per_row(d, k * n_init, torch.float32, cpu)


def in_memory_child(library, n, d, k, n_init=1):
    """In a fresh process: peak resident set of one in-memory fit, over the baseline."""
    import numpy as np

    _estimator(library, k, 2).fit(np.random.default_rng(1).random((2000, d), dtype=np.float32))
    baseline = rss_bytes("VmRSS")
    X = np.random.default_rng(0).random((n, d), dtype=np.float32)
    reset_peak_rss()
    start = time.perf_counter()
    estimator = _estimator(library, k, 20, n_init=n_init).fit(X)
    seconds = time.perf_counter() - start
    peak = rss_bytes("VmHWM")
    print(json.dumps({
        "library": library, "n": n, "d": d, "k": k, "n_init": n_init, "data_bytes": X.nbytes,
        "peak_over_baseline_bytes": peak - baseline, "ratio_to_data": (peak - baseline) / X.nbytes,
        "n_iter": int(estimator.n_iter_), "seconds": seconds,
        "chunk_working_set_bytes": _chunk_working_set_bytes(n, d, k, n_init) if library == "gpukmeans" else None,
    }))


def write_parquet(folder: Path, n_rows, n_features, group_rows):
    """A blob-shaped float32 table in row groups (one group in memory at a time)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "customers.parquet"
    rng = np.random.default_rng(0)
    centres = rng.uniform(-10, 10, size=(8, n_features)).astype(np.float32)
    schema = pa.schema([(f"f{j}", pa.float32()) for j in range(n_features)])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, n_rows, group_rows):
            m = min(group_rows, n_rows - start)
            block = centres[rng.integers(0, 8, size=m)] + rng.standard_normal((m, n_features), dtype=np.float32)
            writer.write_table(pa.Table.from_arrays([block[:, j] for j in range(n_features)], schema=schema),
                               row_group_size=group_rows)
    return path


def streamed_child(path, k, max_iter, init):
    """In a fresh process: peak resident set of a fit streamed from ``path``."""
    import numpy as np
    import pyarrow.parquet as pq

    from gpukmeans import KMeans

    KMeans(k, max_iter=2, device="cpu").fit(np.random.default_rng(1).random((2000, 16), dtype=np.float32))
    baseline = rss_bytes("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    km = KMeans(k, init=init, max_iter=max_iter, random_state=0, device="cpu").fit(path)
    seconds = time.perf_counter() - start
    peak = rss_bytes("VmHWM")
    n_rows = pq.ParquetFile(path).metadata.num_rows
    print(json.dumps({
        "n": n_rows, "d": km.n_features_in_, "k": k, "init": init, "max_iter": max_iter,
        "n_iter": int(km.n_iter_), "file_bytes": Path(path).stat().st_size, "peak_rss_bytes": peak,
        "baseline_rss_bytes": baseline, "seconds": seconds, "inertia": km.inertia_,
    }))


def _child(call):
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import bench_memory; bench_memory.{call}")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-streamed", action="store_true")
    parser.add_argument("--only-working-set", action="store_true",
                        help="only the fit-working-set part (about a minute)")
    parser.add_argument("--only-streamed", action="store_true",
                        help="only the streamed fit; writes memory_streamed.{json,md}")
    parser.add_argument("--tmp", default="/tmp/gpukmeans_bench_memory")
    parser.add_argument("--rows", type=int, default=STREAMED_ROWS)
    parser.add_argument("--max-iter", type=int, default=5, help="Lloyd iterations of the streamed fit")
    parser.add_argument("--init", default="k-means||")
    args = parser.parse_args()
    info = machine_info()
    info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent).stdout.strip() or None
    info["uptime_at_start"] = _uptime()

    working_set = []
    for n, d, k, n_init in [] if args.only_streamed else WORKING_SET_FITS:
        runs = [_child(f"in_memory_child('gpukmeans', {n}, {d}, {k}, {n_init})") for _ in range(WORKING_SET_REPEATS)]
        row = max(runs, key=lambda r: r["peak_over_baseline_bytes"])
        row["fit_extra_bytes"] = [r["peak_over_baseline_bytes"] - r["data_bytes"] for r in runs]
        row["per_row_state_bytes"] = n * PER_ROW_STATE_BYTES
        row["met_strict"] = max(row["fit_extra_bytes"]) <= row["chunk_working_set_bytes"]
        row["met"] = max(row["fit_extra_bytes"]) <= row["chunk_working_set_bytes"] + row["per_row_state_bytes"]
        print(f"working set {n:,} x {d}, k={k}, n_init={n_init}: fit's own peak "
              f"{[round(b / 2**20, 1) for b in row['fit_extra_bytes']]} MiB, one chunk's working set "
              f"{row['chunk_working_set_bytes'] / 2**20:.1f} MiB (strictly {'met' if row['met_strict'] else 'missed'}), "
              f"plus per-row state {row['per_row_state_bytes'] / 2**20:.1f} MiB: {'met' if row['met'] else 'MISSED'}")
        working_set.append(row)
    if args.only_working_set:
        args.skip_streamed = True

    in_memory = []
    for n, d, k in [] if args.only_working_set or args.only_streamed else IN_MEMORY_SHAPES:
        for library in ("gpukmeans", "sklearn"):
            row = _child(f"in_memory_child({library!r}, {n}, {d}, {k})")
            print(f"in memory {library:9s} {n:,} x {d}: data {row['data_bytes'] / 2**20:.0f} MiB, "
                  f"peak over baseline {row['peak_over_baseline_bytes'] / 2**20:.0f} MiB ({row['ratio_to_data']:.2f}x)")
            in_memory.append(row)

    streamed = None
    if not args.skip_streamed:
        folder = Path(args.tmp)
        need = args.rows * STREAMED_FEATURES * 4 * 1.1
        free = shutil.disk_usage(folder.parent).free
        if free < need:
            raise SystemExit(f"{folder.parent}: {free / 1e9:.1f} GB free, {need / 1e9:.1f} GB needed")
        try:
            start = time.perf_counter()
            path = write_parquet(folder, args.rows, STREAMED_FEATURES, ROW_GROUP_ROWS)
            print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s")
            streamed = _child(f"streamed_child({str(path)!r}, 8, {args.max_iter}, {args.init!r})")
            print(f"streamed {streamed['n']:,} x {streamed['d']}: peak RSS {streamed['peak_rss_bytes'] / 2**30:.2f} GiB "
                  f"in {streamed['seconds']:.0f} s")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    info["uptime_at_end"] = _uptime()

    RESULTS.mkdir(exist_ok=True)
    if args.only_working_set:
        name = "memory_working_set"
    elif args.only_streamed:
        name = "memory_streamed"
    elif streamed is not None or not (RESULTS / "memory.json").exists():
        name = "memory"
    else:
        name = "memory_in_memory_only"
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"machine": info, "working_set": working_set, "in_memory": in_memory, "streamed": streamed},
                   indent=2) + "\n"
    )
    lines = ["# Peak memory of k-means fits (CPU, float32)", "", markdown_header(info), "",
             f"`uptime` at start: `{info['uptime_at_start']}`; at end: `{info['uptime_at_end']}`."]
    if working_set:
        lines += ["", "## A fit's own memory against one chunk's working set (target: below it)", "",
                 f"Peak resident set over the baseline, minus the data's bytes, in {WORKING_SET_REPEATS} fresh "
                 "processes each (the C library keeps some freed pages, so runs differ); one chunk's working set "
                 "is the auto chunk's rows times the bytes a row of a chunk may use "
                 "(`gpukmeans.sources.chunking.chunk_bytes_per_row`). Per-row state is what a fit must keep per row "
                 f"whatever the chunk ({PER_ROW_STATE_BYTES} bytes: `labels_` as int32 and k-means++'s nearest "
                 "distance as float32). k-means++, 20 iterations at most.", "",
                 "| n | d | k | n_init | data MiB | fit's own peak MiB (each run) | one chunk's working set MiB "
                 "| within it alone | per-row state MiB | within both |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
    for r in working_set:
        runs = ", ".join(f"{b / 2**20:.1f}" for b in r["fit_extra_bytes"])
        lines.append(f"| {r['n']:,} | {r['d']} | {r['k']} | {r['n_init']} | {r['data_bytes'] / 2**20:.0f} | {runs} | "
                     f"{r['chunk_working_set_bytes'] / 2**20:.1f} | {'yes' if r['met_strict'] else '**no**'} | "
                     f"{r['per_row_state_bytes'] / 2**20:.1f} | {'yes' if r['met'] else '**no**'} |")
    if in_memory:
        lines += ["", "## In memory: peak resident set over the baseline, against the data's bytes "
                  "(target: at most 1.25x)", "",
                  "Fresh process per fit, k-means++, n_init=1, 20 iterations at most.", "",
                  "| library | n | d | k | data MiB | peak over baseline MiB | x data | seconds |",
                  "|---|---|---|---|---|---|---|---|"]
    for r in in_memory:
        lines.append(f"| {r['library']} | {r['n']:,} | {r['d']} | {r['k']} | {r['data_bytes'] / 2**20:.0f} | "
                     f"{r['peak_over_baseline_bytes'] / 2**20:.0f} | {r['ratio_to_data']:.2f} | {r['seconds']:.1f} |")
    if streamed is not None:
        lines += ["", "## Streamed from Parquet (target: peak resident set under 2 GB)", "",
                  f"{streamed['n']:,} x {streamed['d']} float32 in one Parquet file of "
                  f"{streamed['file_bytes'] / 1e9:.2f} GB (row groups of {ROW_GROUP_ROWS:,} rows, uncompressed), "
                  f"k={streamed['k']}, init={streamed['init']}, max_iter={streamed['max_iter']} "
                  f"({streamed['n_iter']} run): peak resident set of the whole process "
                  f"**{streamed['peak_rss_bytes'] / 2**30:.2f} GiB** ({streamed['peak_rss_bytes'] / 1e9:.2f} GB; "
                  f"baseline {streamed['baseline_rss_bytes'] / 2**20:.0f} MiB), fit in {streamed['seconds']:.0f} s."]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
