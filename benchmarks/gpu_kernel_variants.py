"""Times the Triton Lloyd step alone, under several launch settings, on a CUDA device.

The suite (bench_lloyd.py) times whole fits with the shipped settings; this script
chooses those settings. For each shape and stored dtype it runs one Lloyd step over
all of X (one launch, as the engine's pass over rows held on the GPU) under each
variant of ``triton_assign.Tuning`` and reports:

- ms per step (median of CUDA-event timings over rotating label tables), and the
  fraction of the bandwidth floor (bytes of X over a large device-to-device copy's rate);
- labels that differ from float64 arithmetic on a 1M-row sample and are not ties
  (``non-ties``: must be 0 for a precision to ship), and the largest relative error of
  the per-centre sums against float64 sums under the variant's own labels;
- the kernel's registers, spills and shared memory, from the offline compile of
  benchmarks/kernel_sass.py for this GPU's architecture.

    python benchmarks/gpu_kernel_variants.py [--shape N,D,K ...] [--out DIR]

Writes gpu-kernel-variants.{json,md} to --out (default: benchmarks/results).
"""

import argparse
import dataclasses
import functools
import json
import pathlib
import statistics
import sys
import time

import torch

BENCHMARKS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent))
sys.path.insert(0, str(BENCHMARKS))  # kernel_sass, imported where a kernel's resources are read

from gpukmeans.engine import lloyd  # noqa: E402
from gpukmeans.engine.cuda_graph import RecordedWork  # noqa: E402
from gpukmeans.kernels import StepResult, TritonBackend, padded_sq_norms  # noqa: E402
from gpukmeans.kernels import triton_assign  # noqa: E402
from gpukmeans.kernels.triton_assign import DEFAULT_TUNING, Tuning  # noqa: E402
from gpukmeans.sources import InMemorySource  # noqa: E402
from gpukmeans.sources.chunking import auto_chunk_size  # noqa: E402
from gpukmeans_cli.benchmarking import environment, make_data  # noqa: E402

SHAPES = [(100_000_000, 32, 16), (10_000_000, 16, 8), (1_000_000, 32, 32)]
SAMPLE_ROWS = 1_000_000
# The shipped settings (Tuning's defaults) come first: the kernel alone, with and without
# the inertia (a fit's iterations run without it, its last pass with it), the engine's
# pass, and the engine's whole iteration (the pass, then the centres, norms, shift and
# flags, and the one transfer to the host), launch by launch and replayed from a CUDA
# graph, on the host's clock. Then the launch shapes around them (register caps, programs
# per SM, tile sizes) and, per dtype, the settings the defaults are chosen over, so that
# every run checks the choice again on its GPU. The step is bound by instructions issued
# per row, not by memory: benchmarks/kernel_sass.py counts them for any of these settings
# without a GPU. Keys starting with "_" are this script's, not Tuning's.
TF32X3 = {"distance_precision": "tf32x3", "sum_precision": "tf32x3"}
SPLIT_BF16 = {"distance_precision": "split_bf16", "sum_precision": "split_bf16"}
SHIPPED_VARIANTS = [
    ("default", {}),
    ("default, no inertia (as the engine iterates)", {"_inertia": False}),
    ("default, the engine's pass (no inertia)", {"_inertia": False, "_engine_pass": "whole"}),
    ("default, the engine's iteration, launch by launch (host clock)", {"_iteration": "eager"}),
    ("default, the engine's iteration, replayed CUDA graph (host clock)", {"_iteration": "recorded"}),
    ("default, labels only", {"_no_sums": True}),
    ("no inertia, no register cap", {"maxnreg": 0, "_inertia": False}),
    ("no inertia, 168 registers (3 programs per SM)", {"maxnreg": 168, "_inertia": False}),
    ("no inertia, 4 programs per SM", {"programs_per_sm": 4, "_inertia": False}),
    ("no inertia, 128-row tiles of 8 warps", {"block_m": 128, "num_warps": 8, "_inertia": False}),
]
# float32 rows: the products as Triton's tf32x3 instead of split_tf32; the rows read once
# for both products, which keeps Triton from copying them ahead (triton_assign._reads_rows_twice).
# bfloat16 rows: the sums as split_bf16 products instead of a one-hot in bfloat16.
PASSED_OVER = {torch.float32: [("tf32x3, 128-row tiles, no register cap", {**TF32X3, "block_m": 128, "maxnreg": 0}),
                               ("rows read once (no inertia)", {"reload_for_sums": False, "_inertia": False}),
                               ("rows read once, the engine's iteration, replayed CUDA graph (host clock)",
                                {"reload_for_sums": False, "_iteration": "recorded"})],
               torch.bfloat16: [("split_bf16 sums, 128-row tiles, no register cap",
                                 {**SPLIT_BF16, "block_m": 128, "maxnreg": 0})]}
VARIANTS = [(f"{str(dtype).removeprefix('torch.')} {name}", dtype, settings)
            for dtype in (torch.float32, torch.bfloat16)
            for name, settings in SHIPPED_VARIANTS + PASSED_OVER[dtype]]


class TunedTritonBackend(TritonBackend):
    """The Triton backend with its Lloyd step under ``tuning``: set on a source, the
    engine's pass and iteration run the variant."""

    def __init__(self, tuning: Tuning):
        super().__init__(triton_assign)
        self.tuning = tuning

    def lloyd_step(self, X, centers, center_sq_norms, weights, labels, label_columns, *, compute_inertia=True):
        return triton_assign.lloyd_step_triton(X, centers, center_sq_norms, weights, labels, label_columns,
                                               compute_inertia=compute_inertia, tuning=self.tuning)


def tuned(source, tuning: Tuning):
    """``source``, its Lloyd steps under ``tuning`` (its own backend under the defaults)."""
    if tuning != DEFAULT_TUNING:
        source.backend = TunedTritonBackend(tuning)
    return source


def split_settings(overrides):
    """A variant's overrides as (the kernel's Tuning, this script's "_" options)."""
    tuning = Tuning(**{key: value for key, value in overrides.items() if not key.startswith("_")})
    return tuning, {key: value for key, value in overrides.items() if key.startswith("_")}


def sums_inertia(options) -> bool:
    """Whether the variant's steps sum the inertia: the engine's iterations never do."""
    return options.get("_inertia", True) and not options.get("_iteration")


def copy_bandwidth_gbps(nbytes=4 * 2**30, repeats=20):
    """Bytes read plus written per second by a large device-to-device copy (the best run)."""
    source = torch.randn(nbytes // 4, device="cuda")
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(repeats + 2):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(source)
        stop.record()
        stop.synchronize()
        best = min(best, start.elapsed_time(stop) / 1e3)
    del source, target
    return 2 * nbytes / best / 1e9


def compiled_resources(n_features, k_max, dtype, tuning, *, accumulate, inertia, arch):
    """Registers per thread, spilled bytes and shared memory of the Lloyd step at this
    shape and tuning, compiled offline for compute capability ``arch`` (benchmarks/kernel_sass.py);
    empty where that compile fails (the timing stands without it)."""
    # programs per SM size the grid, not the code: variants that differ only there share a compile
    tuning = dataclasses.replace(tuning, programs_per_sm=DEFAULT_TUNING.programs_per_sm)
    return _compiled_resources(n_features, k_max, dtype, tuning, accumulate, inertia, arch)


@functools.lru_cache(maxsize=None)
def _compiled_resources(n_features, k_max, dtype, tuning, accumulate, inertia, arch):
    try:
        import kernel_sass  # Triton's compiler tools, needed here only

        compiled, _ = kernel_sass.compile_step(n_features, k_max, dtype, accumulate=accumulate, inertia=inertia,
                                               arch=arch, tuning=tuning)
        registers, spilled = kernel_sass.resource_usage(compiled)
    except Exception as error:  # noqa: BLE001 - a tool's failure must not cost the timings
        print(f"gpu_kernel_variants: no resources for {tuning}: {type(error).__name__}: {error}", file=sys.stderr)
        return {}
    return {"regs": registers, "spills": spilled, "shared": compiled.metadata.shared}


def float64_check(X, centers, labels, sums, weight_sums):
    """(labels that differ from float64 arithmetic and are not ties, largest relative sum error)."""
    Xs = X[:SAMPLE_ROWS].double()
    c = centers[0].double()
    distances = (Xs * Xs).sum(1, keepdim=True) - 2 * Xs @ c.T + (c * c).sum(1)[None, :]
    exact = distances.argmin(1)
    ours = labels[:SAMPLE_ROWS, 0].long()
    differ = ours != exact
    rows = torch.nonzero(differ).flatten()
    gap = distances[rows, ours[rows]] - distances[rows, exact[rows]]
    scale = (Xs[rows] ** 2).sum(1) + (c * c).sum(1).max()
    non_ties = int((gap > 64 * torch.finfo(torch.float32).eps * scale).sum())
    # sums over all of X under the variant's own labels, in float64
    expected = torch.zeros_like(c)
    counts = torch.zeros(c.shape[0], dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], 1 << 24):  # float64 copies of X in blocks
        block = labels[start:start + (1 << 24), 0].long()
        expected.index_add_(0, block, X[start:start + (1 << 24)].double())
        counts += torch.bincount(block, minlength=c.shape[0]).double()
    error = float(((sums[0] - expected).abs().max() / expected.abs().max().clamp_min(1.0)))
    count_error = float((weight_sums[0] - counts).abs().max())
    return non_ties, int(differ.sum()), error, count_error


def labels_only_step(X, centers, norms, weights, labels, columns, *, compute_inertia, tuning=DEFAULT_TUNING):
    """The Lloyd step without the per-centre sums: what the sums cost, by difference."""
    plan = triton_assign._plan(X, centers, tuning)
    changed = torch.zeros(1, dtype=torch.int32, device=X.device)
    inertia = torch.empty(plan.n_programs, 1, dtype=torch.float64, device=X.device) if compute_inertia else None
    triton_assign._launch(plan, X, centers, norms, weights, labels, columns, None, None, None, changed, inertia,
                          accumulate=False, write_distances=False, lloyd=True, with_inertia=compute_inertia,
                          tuning=tuning)
    return StepResult(None, None, changed, inertia)


class _ChunkedPass(InMemorySource):
    """A pass in memory-bounded chunks: what the engine's one-piece pass over rows held in
    memory saves against them."""

    def lloyd_pass_chunks(self):
        return self.chunks()


def engine_pass_step(X, centers, norms, weights, labels, columns, *, compute_inertia, chunked=False,
                     tuning=DEFAULT_TUNING):
    """A Lloyd pass as the engine makes it (``engine.lloyd._accumulate_pass``: the chunks a fit
    would use, each chunk's totals added up), for the gap between the kernel alone and
    an iteration of a whole fit."""
    source = tuned((_ChunkedPass if chunked else InMemorySource)(
        X, weights, auto_chunk_size(X.shape[1], centers.shape[1], torch.float32, X.device)), tuning)
    totals = lloyd._accumulate_pass(source, centers, norms, labels, columns, with_potential=compute_inertia)
    return StepResult(totals.sums, totals.weight_sums, totals.n_changed,
                      totals.potential if compute_inertia else None)


def time_iteration(X, centers, labels, recorded, repeats=15, tuning=DEFAULT_TUNING):
    """ms of one Lloyd iteration as ``engine.lloyd.lloyd`` runs it (median of the host's clock),
    from the start of its launches to its progress on the host; and its totals. Launch by
    launch, or replayed from a CUDA graph recorded first (as the loop does from its second
    iteration). The centres stay the same, so every repeat does the same work."""
    source = tuned(InMemorySource(X, None, auto_chunk_size(X.shape[1], centers.shape[1], torch.float32, X.device)),
                   tuning)
    valid = torch.ones(centers.shape[:2], dtype=torch.bool, device=X.device)
    norms = padded_sq_norms(centers, valid)
    columns = torch.zeros(1, dtype=torch.int64, device=X.device)
    work = functools.partial(lloyd._iterate, source, centers, norms, valid, labels, columns, False)
    work()  # compiles the kernels, as the loop's first iteration does
    run = RecordedWork(work, X.device).replay if recorded else work
    times = []
    for _ in range(repeats + 1):
        if X.is_cuda:  # the CPU runs it in tests
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = run()
        result.progress.cpu()
        times.append((time.perf_counter() - start) * 1e3)
    step = StepResult(result.sums, result.weight_sums, None, None)
    return statistics.median(times[1:]), step


def time_variant(X, centers, norms, label_tables, tuning, options, repeats=15):
    columns = torch.zeros(1, dtype=torch.int64, device=X.device)
    inertia = sums_inertia(options)
    chunk = options.get("_chunk_rows", X.shape[0])
    times = []
    if options.get("_iteration"):
        ms, step = time_iteration(X, centers, label_tables[0], options["_iteration"] == "recorded", repeats, tuning)
        return ms, step, label_tables[0]
    engine_pass = options.get("_engine_pass")
    step = (labels_only_step if options.get("_no_sums") else
            functools.partial(engine_pass_step, chunked=engine_pass == "chunks") if engine_pass else
            triton_assign.lloyd_step_triton)
    for attempt in range(repeats + 2):  # the first compiles, the second warms up
        labels = label_tables[attempt % len(label_tables)]
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        parts = [step(X[first:first + chunk], centers, norms, None, labels[first:first + chunk], columns,
                      compute_inertia=inertia, tuning=tuning)
                 for first in range(0, X.shape[0], chunk)]
        if parts[0].sums is not None:
            result = parts[0]._replace(sums=sum(p.sums for p in parts),
                                       weight_sums=sum(p.weight_sums for p in parts))
        else:
            result = parts[0]
        stop.record()
        stop.synchronize()
        if attempt >= 2:
            times.append(start.elapsed_time(stop))
    return statistics.median(times), result, label_tables[(repeats + 1) % len(label_tables)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", action="append", help="N,D,K (repeatable; default: %s)" % SHAPES)
    parser.add_argument("--variant", action="append", help="only the variants named (repeatable)")
    parser.add_argument("--out", default=str(BENCHMARKS / "results"))
    parser.add_argument("--render", metavar="JSON", help="only write the Markdown table of this results file")
    args = parser.parse_args(argv)
    if args.render:
        render(args.render, args.out)
        return 0
    if not torch.cuda.is_available():
        print("gpu_kernel_variants: no CUDA device", file=sys.stderr)
        return 2
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape] if args.shape else SHAPES
    variants = [v for v in VARIANTS if not args.variant or v[0] in args.variant]
    major, minor = torch.cuda.get_device_capability()
    gbps = copy_bandwidth_gbps()
    print(f"copy bandwidth {gbps:.0f} GB/s (read + write), {torch.cuda.get_device_name()}", flush=True)
    rows = []
    for n, d, k in shapes:
        X32, init, _ = make_data(n, d, k, "cuda")
        centers = init[None].contiguous()
        norms = (centers * centers).sum(2)
        for dtype in (torch.float32, torch.bfloat16):
            X = X32 if dtype == torch.float32 else X32.to(dtype)
            floor_ms = X.numel() * X.element_size() / (gbps * 1e9) * 1e3  # gbps: read + write
            label_tables = [torch.zeros((n, 1), dtype=torch.int8, device="cuda") for _ in range(2)]
            for name, variant_dtype, overrides in variants:
                if variant_dtype != dtype:
                    continue
                try:
                    tuning, options = split_settings(overrides)
                    ms, result, labels = time_variant(X, centers, norms, label_tables, tuning, options)
                    checks = (float64_check(X, centers, labels, result.sums, result.weight_sums)
                              if result.sums is not None else (None, None, float("nan"), None))
                    resources = compiled_resources(d, k, dtype, tuning, accumulate=not options.get("_no_sums"),
                                                   inertia=sums_inertia(options), arch=10 * major + minor)
                    record = {"shape": [n, d, k], "variant": name, "ms": ms, "floor_ms": floor_ms,
                              "x_floor": ms / floor_ms, "non_ties": checks[0], "differ": checks[1],
                              "sum_rel_error": checks[2], "count_error": checks[3], "status": "ok",
                              **resources}
                except Exception as error:  # a variant that fails to compile or run is reported
                    record = {"shape": [n, d, k], "variant": name, "status": f"failed: {type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200] if str(error) else ''}"}
                rows.append(record)
                print(json.dumps(record), flush=True)
            del label_tables
            if dtype != torch.float32:
                del X
        del X32
        torch.cuda.empty_cache()
    write_results(pathlib.Path(args.out), rows, {"copy_gbps": gbps, "environment": environment(["cuda"])})
    return 0


def write_results(out, rows, meta):
    """gpu-kernel-variants.{json,md} in ``out``; the table is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-kernel-variants.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    device = meta.get("environment", {}).get("gpu", "cuda")
    lines = [f"# Triton Lloyd step variants ({device}, copy {meta['copy_gbps']:.0f} GB/s)", "",
             "| shape | variant | ms | x floor | non-ties | differ | sum rel err | regs | spills | shared |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["status"] == "ok":
            lines.append(f"| {tuple(r['shape'])} | {r['variant']} | {r['ms']:.3f} | {r['x_floor']:.2f} | "
                         f"{r['non_ties']} | {r['differ']} | {r['sum_rel_error']:.1e} | {r.get('regs', '')} | "
                         f"{r.get('spills', '')} | {r.get('shared', '')} |")
        else:
            lines.append(f"| {tuple(r['shape'])} | {r['variant']} | {r['status']} | | | | | | | |")
    (out / "gpu-kernel-variants.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def render(json_path, out):
    """The Markdown table of a JSON that came back alone from a device run."""
    saved = json.loads(pathlib.Path(json_path).read_text())
    write_results(pathlib.Path(out), saved["rows"], saved["meta"])


if __name__ == "__main__":
    sys.exit(main())
