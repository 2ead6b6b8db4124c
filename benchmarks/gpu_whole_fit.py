"""A whole CUDA fit as a user runs it, by phase, at one large shape.

The suite (bench_lloyd.py) times Lloyd iterations only: the same initial centres for
every library, and the fit's other costs cancelled out. A user's fit also draws its
initial centres (greedy k-means++), checks convergence against ``tol`` and assigns
every row once more at the end. This script times, on one CUDA device:

- the draws' block totals the way k-means++ sums them (many blocks, one transfer) against
  a transfer per block, over the same values;
- greedy k-means++ alone (``engine.initialisation.kmeans_plusplus_tensor``: one pass over
  X per centre), best of 2, with the Triton potentials kernel (the default) and with the
  assignment kernel's distances instead (a backend of its own with ``fused_potentials``
  off), and whether both chose the same rows; then once more split into its passes and
  its draws (each timed to the device's end), to show where a greedy step's time goes;
- the default fit, best of 2 (``KMeans(k, random_state=0)``: k-means++, ``tol=1e-4``, up to 300
  iterations), with its iteration count, so that the seconds outside the iterations show;
  then once more by phase: the input's checks, the rows' moments (for ``tol``), k-means++,
  the Lloyd iterations, the final assignment, and what is left.

    python benchmarks/gpu_whole_fit.py [--shape N,D,K] [--out DIR] [--device cpu (a check of the script)]
    python benchmarks/gpu_whole_fit.py --kmeans-plusplus-only [--shape N,D,K]   # under a profiler

Prints one JSON line per measurement and writes gpu-whole-fit.{json,md} to --out.
"""

import argparse
import contextlib
import json
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from gpukmeans import KMeans, _kmeans  # noqa: E402
from gpukmeans._estimator import _BaseKMeans  # noqa: E402
from gpukmeans.engine import initialisation, lloyd  # noqa: E402
from gpukmeans.kernels import backend_for, new_backend  # noqa: E402
from gpukmeans.sources import InMemorySource, open_source  # noqa: E402
from gpukmeans_cli.benchmarking import environment, make_data  # noqa: E402


def per_block_totals(source, values):
    """The draws' block totals with a transfer per block: what summing many blocks per
    transfer (``initialisation._block_totals``) saves."""
    return torch.tensor([float(initialisation._block_values(source, values, start, stop, weights).sum())
                         for start, stop, weights in initialisation._weight_blocks(source)], dtype=torch.float64)


def unfused_backend(source):
    """A backend of the source's own kind that weighs k-means++'s candidates from the
    assignment kernel's distances, not in its fused potentials pass."""
    backend = new_backend(source.device.type, source.storage_dtype)
    backend.fused_potentials = False
    return backend


@contextlib.contextmanager
def timed_calls(device, parts):
    """Within the block, each ``parts[name] = (owner, attribute)`` function is timed to the
    device's end on every call; yields ``{name: [seconds, calls]}``."""
    spent = {name: [0.0, 0] for name in parts}
    originals = {name: getattr(owner, attribute) for name, (owner, attribute) in parts.items()}

    def timed(name, work):
        def run(*args, **kwargs):
            took, result = seconds(lambda: work(*args, **kwargs), device)
            spent[name][0] += took
            spent[name][1] += 1
            return result
        return run

    for name, (owner, attribute) in parts.items():
        setattr(owner, attribute, timed(name, originals[name]))
    try:
        yield spent
    finally:
        for name, (owner, attribute) in parts.items():
            setattr(owner, attribute, originals[name])


def seconds(work, device, repeats=1):
    """Best wall-clock seconds of ``work()`` over ``repeats``, the device drained before and after."""
    best, result = float("inf"), None
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = work()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="100000000,32,16", help="N,D,K")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--kmeans-plusplus-only", action="store_true",
                        help="one k-means++ and nothing else (what gpu_session.sh's profile stage profiles)")
    args = parser.parse_args(argv)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_whole_fit: no CUDA device", file=sys.stderr)
        return 2
    n, d, k = (int(v) for v in args.shape.split(","))
    X, _, _ = make_data(n, d, k, device)
    source = open_source(X, device=X.device, chunk_size=n).source
    if args.kmeans_plusplus_only:
        initialisation.kmeans_plusplus_tensor(source, k, torch.Generator().manual_seed(0))
        return 0
    records = []

    def record(name, value, **extra):
        records.append({"measure": name, "value": value, **extra})
        print(json.dumps(records[-1]), flush=True)

    values = torch.rand(n, dtype=torch.float64, device=device, generator=torch.Generator(device=device).manual_seed(0))
    batched_s, batched_totals = seconds(lambda: initialisation._block_totals(source, values), device, repeats=3)
    per_block_s, per_block = seconds(lambda: per_block_totals(source, values), device, repeats=2)
    record("draw block totals, many blocks per transfer (s)", batched_s)
    record("draw block totals, a transfer per block (s)", per_block_s,
           same=bool(torch.allclose(batched_totals, per_block, rtol=1e-12, atol=0)))
    del values

    # best of 2: the first compiles the kernels
    chosen = {}
    for fused, backend, name in ((True, backend_for(device, source.storage_dtype),
                                  "k-means++ alone, the fused potentials kernel (s)"),
                                 (False, unfused_backend(source),
                                  "k-means++ alone, the assignment kernel's distances (s)")):
        source.backend = backend
        init_s, (_, chosen[fused]) = seconds(
            lambda: initialisation.kmeans_plusplus_tensor(source, k, torch.Generator().manual_seed(0)), device,
            repeats=2)
        record(name, init_s, **({} if fused else {"same_rows": bool(torch.equal(chosen[True], chosen[False]))}))
    source.backend = backend_for(device, source.storage_dtype)
    passes_and_draws = {"passes": (initialisation, "_lower_and_weigh"),
                        "draws": (initialisation, "_draw_by_block_totals")}
    with timed_calls(device, passes_and_draws) as spent:
        initialisation.kmeans_plusplus_tensor(source, k, torch.Generator().manual_seed(0))
    (passes_s, n_passes), (draws_s, _) = spent["passes"], spent["draws"]
    record("k-means++ passes over X, all (s)", passes_s, passes=n_passes,
           ms_per_pass=round(1e3 * passes_s / n_passes, 2))
    record("k-means++ draws, all (s)", draws_s)
    fit_s, model = seconds(lambda: KMeans(k, random_state=0, device=device).fit(X), device, repeats=2)
    record("default fit: k-means++, tol=1e-4 (s)", fit_s, n_iter=int(model.n_iter_))
    phases = {"input checks": (_BaseKMeans, "_validate_data"), "moments": (_kmeans, "local_moments"),
              "conditioning the rows": (InMemorySource, "conditioned"),
              "k-means++": (initialisation, "kmeans_plusplus_tensor"), "lloyd": (_kmeans, "lloyd"),
              "final assignment": (lloyd, "_final_assignment")}
    with timed_calls(device, phases) as spent:
        fit_s, _ = seconds(lambda: KMeans(k, random_state=0, device=device).fit(X), device)
    spent["lloyd"][0] -= spent["final assignment"][0]  # the final assignment runs inside lloyd
    for name, (took, calls) in spent.items():
        record(f"default fit by phase: {name} (s)", took, calls=calls)
    record("default fit by phase: the rest (s)", fit_s - sum(took for took, _ in spent.values()))
    write_results(pathlib.Path(args.out), records, (n, d, k), environment([device]))
    return 0


def write_results(out, records, shape, env):
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-whole-fit.json").write_text(json.dumps({"shape": shape, "environment": env,
                                                         "records": records}, indent=1))
    lines = [f"# A whole CUDA fit by phase at {shape} ({env.get('gpu', 'cuda')})", "",
             "| measure | value | notes |", "|---|---:|---|"]
    for r in records:
        notes = ", ".join(f"{key} {value}" for key, value in r.items() if key not in ("measure", "value"))
        lines.append(f"| {r['measure']} | {r['value']:.3f} | {notes} |")
    (out / "gpu-whole-fit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
