"""Points per second per rank of distributed Lloyd iterations, on CPU ranks (gloo).

Weak scaling: every rank holds ``--rows`` rows of its own (float32, ``--features``
columns) and uses one torch thread; the ranks fit the table they form together.
The time of one iteration is the difference between a fit of ``--long`` and one of
``--short`` iterations, over the difference in iterations (initialisation, the
tolerance pass and the final assignment cancel out). Perfect scaling keeps the
points per second per rank constant as ranks are added; the all-reduce of k x d
sums and k counts per iteration is what it costs to share the work.

    python benchmarks/bench_distributed.py               # 1 and 2 ranks
    python benchmarks/bench_distributed.py --ranks 1 2 4 # on a machine with 4+ cores
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def rank_main(rank, world_size, init_method, rows, features, k, short, long, repeats):
    """One rank: time fits of ``short`` and ``long`` iterations; rank 0 prints the result."""
    import numpy as np
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    from gpukmeans import KMeans

    X = np.random.default_rng(rank).random((rows, features), dtype=np.float32)
    init = np.random.default_rng(1000).random((k, features), dtype=np.float32)

    def timed(max_iter):
        dist.barrier()
        start = time.perf_counter()
        km = KMeans(k, init=init, max_iter=max_iter, tol=0.0, device="cpu").fit(X)
        dist.barrier()
        return time.perf_counter() - start, km.n_iter_

    timed(1)  # warm up
    t_short, it_short = min(timed(short) for _ in range(repeats))
    t_long, it_long = min(timed(long) for _ in range(repeats))
    if it_long <= it_short:
        raise RuntimeError("the fit converged early; use more rows or fewer iterations")
    seconds = (t_long - t_short) / (it_long - it_short)
    if rank == 0:
        print(json.dumps({
            "ranks": world_size, "rows_per_rank": rows, "features": features, "k": k,
            "seconds_per_iteration": seconds, "points_per_second_per_rank": rows / seconds,
            "points_per_second_total": world_size * rows / seconds,
        }))
    dist.destroy_process_group()


def run(world_size, args):
    with tempfile.TemporaryDirectory() as scratch:
        init_method = f"file://{scratch}/rendezvous"
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_distributed as b; "
                f"b.rank_main({{rank}}, {world_size}, {init_method!r}, {args.rows}, {args.features}, {args.k}, "
                f"{args.short}, {args.long}, {args.repeats})")
        processes = [
            subprocess.Popen([sys.executable, "-c", code.format(rank=rank)], env=env, stdout=subprocess.PIPE, text=True)
            for rank in range(world_size)
        ]
        outputs = [p.communicate()[0] for p in processes]
        if any(p.returncode for p in processes):
            raise RuntimeError(f"a rank failed with {world_size} ranks")
    return json.loads(outputs[0].strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per rank")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--short", type=int, default=2)
    parser.add_argument("--long", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    info = machine_info()
    info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent).stdout.strip() or None
    info["uptime_at_start"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    for world_size in args.ranks:
        row = run(world_size, args)
        print(f"{world_size} rank(s): {row['points_per_second_per_rank'] / 1e6:.2f} M points/s per rank, "
              f"{row['points_per_second_total'] / 1e6:.2f} M points/s in all")
        rows.append(row)
    info["uptime_at_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distributed_cpu.json").write_text(json.dumps({"machine": info, "runs": rows}, indent=2) + "\n")
    lines = [
        "# Distributed Lloyd iterations on CPU ranks (gloo), weak scaling", "", markdown_header(info), "",
        f"`uptime` at start: `{info['uptime_at_start']}`; at end: `{info['uptime_at_end']}`.", "",
        f"Each rank: {args.rows:,} rows x {args.features} float32, k={args.k}, one torch thread; time per "
        f"iteration from fits of {args.short} and {args.long} iterations (best of {args.repeats}).", "",
        "| ranks | s / iteration | M points/s per rank | M points/s in all |", "|---|---|---|---|",
    ]
    lines += [f"| {r['ranks']} | {r['seconds_per_iteration']:.3f} | {r['points_per_second_per_rank'] / 1e6:.2f} | "
              f"{r['points_per_second_total'] / 1e6:.2f} |" for r in rows]
    (RESULTS / "distributed_cpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
