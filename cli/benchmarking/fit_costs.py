"""What a fit costs besides one restart's iterations: restarts batched in one pass, and
the CPU kernel's first call in a fresh process."""

import os
import subprocess
import sys
import tempfile

import torch

from .protocol import clock_and_threads, matmul_gflops, time_per_iteration


def n_init_cost(n_samples=1_000_000, n_features=16, n_clusters=8, n_init=10, *, device="cpu",
                n_iter=10, repeats=2, cpu_time=False) -> dict:
    """Per-iteration cost of ``n_init`` restarts batched in one pass, against one restart,
    through the engine's Lloyd loop (the restarts are the groups of one pass).
    ``cpu_time``: one thread and the process CPU clock (see :func:`.protocol.clock_and_threads`)."""
    from gpukmeans.engine.lloyd import lloyd
    from gpukmeans.sources import open_source

    # structureless data: ten restarts on blobs converge at different early iterations
    # (converged groups leave the pass), which would leave no common iterations to time
    generator = torch.Generator(device=device).manual_seed(1)
    X = torch.randn(n_samples, n_features, generator=generator, device=device)
    starts = [X[torch.randperm(n_samples, generator=generator, device=device)[:n_clusters]]
              for _ in range(n_init)]
    result = {"shape": [n_samples, n_features, n_clusters], "n_init": n_init, "device": device,
              "clock": "process CPU time, 1 thread" if cpu_time else "wall clock"}
    for groups in (1, n_init):
        # chunks sized for every centre of the pass, as a fit with this many restarts sizes them
        source = open_source(X, device=X.device, n_centers=n_clusters * groups).source

        def fit(iterations):
            return min(lloyd(source, starts[:groups], max_iter=iterations, tol=-1.0).n_iter)
        clock, threads = clock_and_threads(cpu_time)
        with threads:
            fit(1)
            seconds = time_per_iteration(fit, device, n_iter, repeats, clock=clock)
        result[f"ms_per_iter_{groups}"] = seconds * 1e3
    result["ratio"] = result[f"ms_per_iter_{n_init}"] / result["ms_per_iter_1"]
    # The distances alone: 2 n d k flops per restart, at the machine's best matrix-product
    # rate. No exact Lloyd pass can take less, however well it shares the read of X.
    clock, threads = clock_and_threads(cpu_time)
    with threads:
        gflops = matmul_gflops(device, clock=clock)
    floor_ms = 2 * n_samples * n_features * n_clusters * n_init / (gflops * 1e9) * 1e3
    result.update(matmul_gflops=gflops, arithmetic_floor_ms=floor_ms,
                  arithmetic_floor_ratio=floor_ms / result["ms_per_iter_1"])
    return result


_FIRST_CALL = """
import time
import torch
start = time.perf_counter()
from gpukmeans.kernels import cpu
X = torch.randn(1000, 5)
for dtype in (torch.float32, torch.float64):
    centers = X[:3][None].clone().to(dtype)
    cpu.assign_accumulate_cpu(X.to(dtype), centers, (centers * centers).sum(2))
print(time.perf_counter() - start)
"""


def cpu_kernel_first_call() -> dict:
    """Seconds to the first result of the CPU kernel in a fresh process: with an empty
    numba cache (compilation), then with the cache it left (what every later run pays)."""
    seconds = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("compile_s", "cached_s"):
            done = subprocess.run([sys.executable, "-c", _FIRST_CALL], capture_output=True, text=True,
                                  env=env, timeout=600)
            try:
                seconds[label] = float(done.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                seconds[label] = None
    return seconds
