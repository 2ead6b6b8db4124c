"""Lloyd iterations of gpukmeans against every peer, side by side, in one run.

Usage (from the repository root, with the peers of requirements-peers.txt installed)::

    python benchmarks/bench_lloyd.py              # CPU, and CUDA when present
    python benchmarks/bench_lloyd.py --device cpu --iterations 10 --repeats 3
    python benchmarks/bench_lloyd.py --device cpu --shape 20000,16,8 \
        --libraries gpukmeans "gpukmeans (bfloat16 storage)" --skip-restarts --out /tmp/bench   # a quick check

On a GPU, ``gpukmeans (bfloat16 storage)`` times the same float32 data stored as
bfloat16 (``KMeans(dtype="bfloat16")``) at every shape, and the results add its
speed-up over float32 storage (the target: at least 1.7x).

Writes ``benchmarks/results/lloyd-<device>.json`` (every figure, the machine, its load
and the library versions), ``lloyd-<device>.md`` (the table) and ``lloyd-<device>.png``
(the chart). The protocol is described in :mod:`gpukmeans_cli.benchmarking.protocol`: same data, same
initial centres, same iteration count, float32, warm-up excluded but reported.
"""

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import torch

from gpukmeans_cli import benchmarking as bench

RESULTS = Path(__file__).parent / "results"


def chart(records, path, title):
    """Grouped bars of ms per iteration (log scale), one group per shape; missing peers
    are named under the axis rather than silently left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys((r.n_samples, r.n_features, r.n_clusters) for r in records))
    libraries = list(dict.fromkeys(r.library for r in records))
    width = 0.8 / max(1, len(libraries))
    figure, axis = plt.subplots(figsize=(max(9, 2.2 * len(shapes) + 5), 5.5))
    for position, library in enumerate(libraries):
        heights, xs = [], []
        for index, shape in enumerate(shapes):
            match = [r for r in records if r.library == library
                     and (r.n_samples, r.n_features, r.n_clusters) == shape and r.ms_per_iter]
            if match:
                xs.append(index + position * width)
                heights.append(match[0].ms_per_iter)
        if heights:
            axis.bar(xs, heights, width, label=library)
    floors = []
    for index, shape in enumerate(shapes):
        match = [r for r in records if (r.n_samples, r.n_features, r.n_clusters) == shape and r.floor_ms]
        if match:
            floors.append(match[0].floor_ms)
            axis.hlines(match[0].floor_ms, index - width / 2, index + 0.8 - width / 2,
                        colors="black", linestyles="dashed", linewidth=1,
                        label="bandwidth floor" if index == 0 else None)
    axis.set_yscale("log")
    axis.set_ylabel("ms per Lloyd iteration (log scale, lower is better)")
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(shapes))])
    axis.set_xticklabels([f"n={n:,}\nd={d}, k={k}" for n, d, k in shapes])
    missing = sorted({f"{r.library}: {r.status}" for r in records if not r.status.startswith("ok")})
    caption = ("Not measured: " + "; ".join(missing)) if missing else ""
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if caption:
        figure.text(0.01, 0.01, caption[:400], fontsize=6, wrap=True)
    figure.tight_layout(rect=(0, 0.06 if caption else 0, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--iterations", type=int, default=10, help="iterations timed per fit (after 2)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per iteration count; the best counts")
    parser.add_argument("--libraries", nargs="*", help="only these (names as in the table)")
    parser.add_argument("--shape", action="append", metavar="N,D,K",
                        help="measure this shape instead of the device's list (repeatable)")
    parser.add_argument("--skip-restarts", action="store_true", help="skip the n_init=10 measurement")
    parser.add_argument("--restarts-only", action="store_true", help="only the n_init=10 measurement")
    parser.add_argument("--single-thread-cpu-time", action="store_true",
                        help="CPU only: every library on one thread, timed by the process CPU clock "
                             "(robust on a shared, busy machine); writes lloyd-cpu-1thread.*")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    devices = []
    if args.device in ("cpu", "all"):
        devices.append("cpu")
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append("cuda")
    if args.device == "cuda" and not devices:
        sys.exit("--device cuda: no CUDA device on this machine")
    args.out.mkdir(parents=True, exist_ok=True)

    if args.single_thread_cpu_time:
        devices = ["cpu"]
    for device in devices:
        shapes = bench.CPU_SHAPES if device == "cpu" else bench.GPU_SHAPES
        if args.shape:
            shapes = [tuple(int(part) for part in shape.split(",")) for shape in args.shape]
        libraries = bench.CPU_PEERS if device == "cpu" else bench.GPU_PEERS
        if args.libraries:
            unknown = [name for name in args.libraries if name not in bench.PEERS]
            if unknown:
                sys.exit(f"--libraries: unknown {', '.join(unknown)}; known: {', '.join(bench.PEERS)}")
            # any known library, on any device (the bfloat16 row on a CPU, for instance)
            libraries = list(args.libraries)
        env = bench.environment([device])
        if args.single_thread_cpu_time:
            env["torch_threads"] = 1  # every measurement below runs under bench.single_thread()
        if device == "cpu":
            env["cpu_kernel_first_call"] = bench.cpu_kernel_first_call()
            print(f"CPU kernel, first call in a fresh process: {env['cpu_kernel_first_call']}", flush=True)

        def progress(record):
            figure = f"{record.ms_per_iter:9.2f} ms/iter" if record.ms_per_iter else " " * 17
            print(f"{record.device} ({record.n_samples:,}, {record.n_features}, {record.n_clusters}) "
                  f"{record.library:34s} {figure}  {record.status}", flush=True)

        records = [] if args.restarts_only else bench.run_comparison(
            {device: shapes}, libraries_by_device={device: libraries}, n_iter=args.iterations,
            repeats=args.repeats, progress=progress, cpu_time=args.single_thread_cpu_time)
        speedups = bench.storage_speedups(records)
        for s in speedups:
            print(f"bfloat16 storage at {tuple(s['shape'])}: {s['speedup']:.2f}x faster than float32 "
                  f"(target >= {bench.HALF_STORAGE_TARGET}x)", flush=True)
        restarts = None
        if not args.skip_restarts:
            try:
                restarts = bench.n_init_cost(device=device, n_iter=args.iterations, repeats=args.repeats,
                                             cpu_time=args.single_thread_cpu_time)
                print(f"n_init=10 batched vs one restart, per iteration: {restarts['ratio']:.2f}x "
                      f"(the distances alone: {restarts['arithmetic_floor_ratio']:.2f}x)", flush=True)
            except RuntimeError as error:
                print(f"n_init=10 measurement failed: {error}", flush=True)
        env["load_average_at_end"] = list(os.getloadavg())
        stem = args.out / ((f"restarts-{device}" if args.restarts_only else f"lloyd-{device}")
                           + ("-1thread" if args.single_thread_cpu_time else ""))
        payload = {"environment": env, "protocol": {"iterations": args.iterations, "repeats": args.repeats,
                                                    "dtype": "float32",
                                                    "clock": "process CPU time, 1 thread" if args.single_thread_cpu_time
                                                    else "wall clock"},
                   "results": [dataclasses.asdict(r) for r in records], "restarts": restarts,
                   "bfloat16_storage_speedup": speedups}
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=2))
        machine = env.get("gpu") or env["cpu"]
        header = (f"Lloyd iterations on {machine} ({env['cpu_count']} CPUs, torch threads "
                  f"{env['torch_threads']}), {env['date']}; load average {env['load_average_at_start'][0]:.2f} "
                  f"at start, {env['load_average_at_end'][0]:.2f} at end. float32, "
                  f"{args.iterations} timed iterations, best of {args.repeats}.\n\n")
        if args.single_thread_cpu_time:
            header += ("**Single thread, process CPU time** per iteration (robust to other processes on a "
                       "shared machine; divide by the core count for an ideal parallel figure). The bandwidth "
                       "floor is one thread's.\n\n")
        if "cpu_kernel_first_call" in env:
            first = env["cpu_kernel_first_call"]
            header += (f"CPU kernel's first call in a fresh process (import included): "
                       f"{first['compile_s']:.2f} s compiling, {first['cached_s']:.2f} s from numba's cache. "
                       "The warm-up column is each library's first fit in this process.\n\n")
        table = bench.markdown_table(records) if records else ""
        if speedups:
            table += ("\n\nbfloat16 storage of X (`KMeans(dtype=\"bfloat16\")`) against float32, "
                      "same data and centres, this run:\n\n" + bench.speedup_table(speedups))
        if restarts:
            batched = restarts[f"ms_per_iter_{restarts['n_init']}"]
            table += (f"\n\nn_init={restarts['n_init']} restarts batched in one pass vs one restart at "
                      f"{tuple(restarts['shape'])}: {batched:.2f} vs {restarts['ms_per_iter_1']:.2f} ms "
                      f"per iteration ({restarts['ratio']:.2f}x). The distances of the {restarts['n_init']} "
                      f"restarts alone, at this machine's best float32 matrix-product rate "
                      f"({restarts['matmul_gflops']:.0f} GFLOP/s, a 2048 x 2048 product), take "
                      f"{restarts['arithmetic_floor_ms']:.2f} ms: {restarts['arithmetic_floor_ratio']:.2f}x one "
                      "restart's whole iteration, before any label or sum is written.\n")
        stem.with_suffix(".md").write_text(header + table + "\n")
        if records:
            clock = ", one thread, process CPU time" if args.single_thread_cpu_time else ""
            chart(records, stem.with_suffix(".png"), f"Lloyd iteration, float32, on {machine}{clock}")
        print(f"wrote {stem}.json, .md" + (", .png" if records else ""))


if __name__ == "__main__":
    main()
