"""The CPU kernel's two layouts side by side: where rows in lanes beats centres in lanes.

One Lloyd pass (assign, count changes, add the sums) over ``--rows`` rows for each
number of features and centres, in both layouts, one thread, process CPU time (robust
to other processes on a shared machine), best of ``--repeats`` passes, the layouts
alternated. The ratio column is what :func:`gpukmeans.kernels.cpu.layout_for`'s
threshold (``ROWS_IN_LANES_MAX_FEATURES``) is read from.

    python benchmarks/bench_cpu_layouts.py [--rows 250000] [--repeats 12]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FEATURES = (2, 4, 8, 16, 24, 32, 48, 64)
CENTRES = (2, 4, 8, 16, 32, 64)
LAYOUTS = ("rows", "centres")


def time_pass(X, centers, layout, repeats) -> float:
    """Best process CPU time of one Lloyd pass of the CPU kernel, in seconds."""
    import torch

    from gpukmeans.kernels import cpu

    norms = (centers * centers).sum(2)
    labels = torch.zeros((X.shape[0], 1), dtype=torch.int64)
    run = (lambda: cpu.lloyd_step_cpu(X, centers, norms, None, labels, torch.arange(1),
                                      compute_inertia=False, layout=layout))
    run()  # compile (or load from numba's cache) outside the clock
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from gpukmeans.kernels import cpu

    torch.set_num_threads(1)
    info = machine_info()
    generator = torch.Generator().manual_seed(0)
    records = []
    for n_features in FEATURES:
        X = torch.randn(args.rows, n_features, generator=generator)
        for n_clusters in CENTRES:
            centers = X[torch.randperm(args.rows, generator=generator)[:n_clusters]][None].clone()
            seconds = {layout: float("inf") for layout in LAYOUTS}
            for _ in range(2):  # alternate, so that a busy spell does not hit one layout only
                for layout in LAYOUTS:
                    seconds[layout] = min(seconds[layout], time_pass(X, centers, layout, args.repeats // 2))
            record = {"n_features": n_features, "n_clusters": n_clusters,
                      **{f"{layout}_ms": seconds[layout] * 1e3 for layout in LAYOUTS},
                      "rows_over_centres": seconds["rows"] / seconds["centres"],
                      "chosen": cpu.layout_for(n_features, n_clusters)}
            records.append(record)
            print(f"d={n_features:3d} k={n_clusters:3d}: rows {record['rows_ms']:7.2f} ms, centres "
                  f"{record['centres_ms']:7.2f} ms, ratio {record['rows_over_centres']:.2f}", flush=True)
    info["load_average_1m_end"] = __import__("os").getloadavg()[0]

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_layouts.json").write_text(json.dumps(
        {"machine": info, "rows": args.rows, "clock": "process CPU time, 1 thread", "results": records},
        indent=2) + "\n")
    header = "| d | " + " | ".join(f"k={k}" for k in CENTRES) + " |\n|---:|" + "---:|" * len(CENTRES) + "\n"
    lines = []
    for n_features in FEATURES:
        cells = []
        for record in (r for r in records if r["n_features"] == n_features):
            mark = "**" if record["chosen"] == "rows" else ""
            cells.append(f"{mark}{record['rows_over_centres']:.2f}{mark}")
        lines.append(f"| {n_features} | " + " | ".join(cells) + " |")
    (args.out / "cpu_layouts.md").write_text(
        "# The CPU kernel's layouts: rows in lanes over centres in lanes\n\n"
        + markdown_header(info)
        + f" Load average at the end {info['load_average_1m_end']:.2f}.\n\n"
        + f"One Lloyd pass over {args.rows:,} rows, one thread, process CPU time, best of "
        + f"{args.repeats} passes per layout (alternated). Each cell is rows-in-lanes time over "
        + "centres-in-lanes time (below 1: rows in lanes is faster); bold where "
        + f"`layout_for` picks rows in lanes.\n\n"
        + header + "\n".join(lines) + "\n")
    print(f"wrote {args.out / 'cpu_layouts.md'}")


if __name__ == "__main__":
    main()
