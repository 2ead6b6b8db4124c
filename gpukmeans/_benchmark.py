"""Side-by-side Lloyd timings of gpukmeans and its peers, on one machine, in one run.

The protocol, the same for every library:

- the same float32 data (Gaussian blobs, the shape of a customer table) and the
  same initial centres (k rows of the data) for everyone;
- a library's *time per Lloyd iteration* is ``(T(n0 + n) - T(n0)) / n`` where
  ``T(i)`` is the best of ``repeats`` wall-clock times of a fit of exactly ``i``
  iterations: set-up, input conversion, initialisation and final assignment cancel
  out, and only iterations are compared; the repeats of all libraries on one data set
  are interleaved, so that a busy spell of a shared machine hits them alike;
- the first fit of a library is a warm-up (imports, JIT compilation, CUDA context);
  it is excluded, and its time reported;
- the bandwidth floor is measured in the same run: a large reduction over the data
  on the CPU, a large device-to-device copy on a GPU. ``floor_ms`` is the time to
  read the data once at that bandwidth, the least any iteration can take.

Peers are imported only when they run, so a missing or failing one is recorded as
such (``status``) and never stops the others. Nothing here is needed at run time of
the library itself; it backs ``benchmarks/bench_lloyd.py`` and ``gpukmeans bench``.
"""

import contextlib
import dataclasses
import importlib
import importlib.metadata
import math
import os
import platform
import time
from typing import Callable, Optional

import numpy as np
import torch

CPU_SHAPES = [(1_000_000, 16, 8), (1_000_000, 32, 32), (200_000, 64, 256)]
GPU_SHAPES = CPU_SHAPES + [(10_000_000, 16, 8), (100_000_000, 32, 16)]
QUICK_SHAPES = [(200_000, 16, 8), (100_000, 32, 32)]


class PeerMissing(Exception):
    """The peer library is not installed (or cannot run on this device)."""


@dataclasses.dataclass
class Measurement:
    library: str
    device: str
    n_samples: int
    n_features: int
    n_clusters: int
    status: str  # "ok", "missing: ...", "failed: ..."
    ms_per_iter: Optional[float] = None
    points_iters_per_s: Optional[float] = None
    floor_ms: Optional[float] = None
    x_floor: Optional[float] = None  # ms_per_iter / floor_ms: 1.0 is the bandwidth limit
    warmup_s: Optional[float] = None
    note: str = ""


# ------------------------------------------------------------------ data and clocks
def make_data(n_samples, n_features, n_clusters, device, seed=0):
    """Float32 blobs around ``n_clusters`` true centres, the initial centres (rows of the
    data) and their row indices; generated on ``device``, so that 100M rows need no host copy.

    The blobs overlap (centres one standard deviation apart, like real customer
    segments), so that Lloyd keeps moving labels for dozens of iterations: a library
    that stops at strict convergence would leave no iterations to time.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    truth = torch.randn(n_clusters, n_features, generator=generator, device=device)
    X = torch.empty(n_samples, n_features, device=device)
    step = 1 << 22
    for start in range(0, n_samples, step):
        stop = min(start + step, n_samples)
        owners = torch.randint(0, n_clusters, (stop - start,), generator=generator, device=device)
        X[start:stop] = truth[owners] + torch.randn(stop - start, n_features, generator=generator, device=device)
    picks = torch.randperm(n_samples, generator=generator, device=device)[:n_clusters]
    return X, X[picks].clone(), picks.cpu().numpy()


def _synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bandwidth_floor_ms(X: torch.Tensor, repeats: int = 20) -> tuple[float, float]:
    """(GB/s, ms to read X once) from a large reduction (CPU) or copy (GPU) over X.

    The best of many repeats: the floor is what the memory system can do, so a
    repeat slowed down by another process must not count.
    """
    device = str(X.device)
    nbytes = X.numel() * X.element_size()
    best = math.inf
    if X.is_cuda:
        target = torch.empty_like(X)
        for _ in range(repeats + 1):
            _synchronize(device)
            start = time.perf_counter()
            target.copy_(X)
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
        gbps = 2 * nbytes / best / 1e9  # a copy reads and writes every byte
        del target
    else:
        for _ in range(repeats + 1):
            start = time.perf_counter()
            X.sum()
            best = min(best, time.perf_counter() - start)
        gbps = nbytes / best / 1e9
    return gbps, nbytes / (gbps * 1e9) * 1e3


def matmul_gflops(device: str, size: int = 2048, repeats: int = 10, clock=time.perf_counter) -> float:
    """The float32 rate of a large square matrix product on ``device`` (the best of
    ``repeats``): what this machine's arithmetic can do at best, as its BLAS reaches it.
    Timed with ``clock`` under the caller's thread settings."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=generator, device=device)
    b = torch.randn(size, size, generator=generator, device=device)
    best = math.inf
    for attempt in range(repeats + 2):  # two warm-ups
        seconds, _ = _timed(lambda _: torch.mm(a, b), None, device, clock)
        if attempt >= 2:
            best = min(best, seconds)
    return 2 * size**3 / best / 1e9


def _per_iteration(short, long, short_ran, long_ran, base_iter, n_iter) -> float:
    if short_ran < base_iter or long_ran < base_iter + n_iter:
        ran = short_ran if short_ran < base_iter else long_ran
        raise RuntimeError(f"converged after {ran} iterations: no per-iteration figure")
    if long <= short:
        raise RuntimeError("timings too noisy (the longer fit was not slower): rerun on a quieter machine")
    return (long - short) / (long_ran - short_ran)


def _timed(fit, iterations, device, clock=time.perf_counter):
    _synchronize(device)
    start = clock()
    ran = fit(iterations)
    _synchronize(device)
    return clock() - start, ran


@contextlib.contextmanager
def single_thread():
    """Every library on one thread (PyTorch, BLAS and OpenMP pools, faiss, our kernel).

    With the process CPU clock this gives figures that other processes on a shared
    machine barely move (a descheduled thread uses no CPU time), unlike wall-clock
    figures with several threads, where one descheduled thread stalls the others.
    """
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    faiss_threads = None
    try:
        import faiss

        faiss_threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
    except ImportError:
        pass
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)
        if faiss_threads is not None:
            faiss.omp_set_num_threads(faiss_threads)


def time_per_iteration(fit: Callable[[int], int], device: str, n_iter: int, repeats: int,
                       base_iter: int = 2, clock=time.perf_counter) -> float:
    """Seconds per Lloyd iteration by differencing fits of ``base_iter`` and
    ``base_iter + n_iter`` iterations; ``fit(i)`` returns the iterations it ran."""
    short = long = math.inf
    short_ran = long_ran = 0
    for _ in range(repeats):
        seconds, short_ran = _timed(fit, base_iter, device, clock)
        short = min(short, seconds)
        seconds, long_ran = _timed(fit, base_iter + n_iter, device, clock)
        long = min(long, seconds)
    return _per_iteration(short, long, short_ran, long_ran, base_iter, n_iter)


# ------------------------------------------------------------------ the libraries
def _gpukmeans(X, init, init_rows, device, *, environment=None, dtype=None):
    """gpukmeans' fit; ``environment``: variables set during each fit (its switches)."""
    from gpukmeans import KMeans

    data = X.to(device)
    options = {} if dtype is None else {"dtype": dtype}
    environment = environment or {}

    def fit(iterations):
        model = KMeans(init.shape[0], init=init.cpu().numpy(), n_init=1, max_iter=iterations,
                       tol=0.0, device=device, **options)
        saved = {name: os.environ.get(name) for name in environment}
        os.environ.update(environment)
        try:
            model.fit(data)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name)
                else:
                    os.environ[name] = value
        return int(model.n_iter_)
    return fit


def _gpukmeans_reference_kernel(X, init, init_rows, device):
    return _gpukmeans(X, init, init_rows, device, environment={"GPUKMEANS_KERNEL": "reference"})


def _gpukmeans_launch_by_launch(X, init, init_rows, device):
    # Without the CUDA graph of each iteration: what recording it saves, at each shape.
    return _gpukmeans(X, init, init_rows, device, environment={"GPUKMEANS_CUDA_GRAPHS": "0"})


def _gpukmeans_bfloat16(X, init, init_rows, device):
    # Same float32 data, stored as bfloat16 by the estimator: half the bytes per pass.
    # Listed for GPUs only; on the CPU it runs (chunks widened to float32) but saves
    # memory, not time.
    return _gpukmeans(X, init, init_rows, device, dtype="bfloat16")


def _sklearn(algorithm):
    def runner(X, init, init_rows, device):
        if device != "cpu":
            raise PeerMissing("CPU only")
        from sklearn.cluster import KMeans

        data, centres = X.numpy(), init.numpy()

        def fit(iterations):
            model = KMeans(init.shape[0], init=centres, n_init=1, max_iter=iterations, tol=0.0,
                           algorithm=algorithm).fit(data)
            return int(model.n_iter_)
        return fit
    return runner


def _faiss(X, init, init_rows, device):
    try:
        import faiss
    except ImportError as error:
        raise PeerMissing(str(error)) from None
    use_gpu = device.startswith("cuda")
    if use_gpu and not hasattr(faiss, "StandardGpuResources"):
        raise PeerMissing("faiss without GPU support (faiss-gpu not installed)")
    data, centres = X.cpu().numpy(), init.cpu().numpy()

    def fit(iterations):
        # every point takes part (no subsampling), from our centres, for exactly `iterations`
        model = faiss.Kmeans(data.shape[1], centres.shape[0], niter=iterations, seed=0,
                             max_points_per_centroid=data.shape[0], gpu=use_gpu, verbose=False)
        model.train(data, init_centroids=centres)
        return iterations
    return fit


_FASTKMEANS_CENTROID_TILE = 128  # its kernel's BLOCK_N for d <= 384
FASTKMEANS_TORCH_NOTE = "its PyTorch backend: its Triton kernel fails unless k is a multiple of 128"


def _fastkmeans(X, init, init_rows, device):
    try:
        import fastkmeans
    except ImportError as error:
        raise PeerMissing(str(error)) from None
    data = X.cpu().numpy()
    n_clusters = init.shape[0]
    # fastkmeans only starts from rows picked by torch.randperm after seeding: reorder the
    # rows so that the rows it picks are our initial centres (same data, same start).
    seed = 0
    torch.manual_seed(seed)
    its_picks = torch.randperm(data.shape[0])[:n_clusters].numpy()
    order = np.arange(data.shape[0])  # order[slot] = row placed there
    position = np.arange(data.shape[0])  # position[row] = its slot
    for theirs, mine in zip(its_picks, init_rows):
        here, other = position[mine], order[theirs]
        order[theirs], order[here] = mine, other
        position[mine], position[other] = theirs, here
    reordered = np.ascontiguousarray(data[order])
    options = {}
    if device.startswith("cuda") and n_clusters % _FASTKMEANS_CENTROID_TILE:
        # Its Triton kernel gives padding centroid columns norm 0 and no mask, so it
        # returns labels >= k unless k fills its 128-centroid tiles; on an H200 (2026-11-26)
        # that was a device-side assert in its index_add_, which ends the process's CUDA
        # context. Its plain-PyTorch backend is measured instead, and the table says so.
        options["use_triton"] = False

    def fit(iterations):
        model = fastkmeans.FastKMeans(data.shape[1], n_clusters, niter=iterations, tol=-1.0,
                                      gpu=device.startswith("cuda"), seed=seed,
                                      max_points_per_centroid=None, dtype=torch.float32, **options)
        model.train(reordered)
        return iterations
    if options:
        fit.note = FASTKMEANS_TORCH_NOTE
    return fit


def _fast_pytorch_kmeans(X, init, init_rows, device):
    try:
        from fast_pytorch_kmeans import KMeans
    except ImportError as error:
        raise PeerMissing(str(error)) from None
    data, centres = X.to(device), init.to(device)

    def fit(iterations):
        KMeans(n_clusters=init.shape[0], max_iter=iterations, tol=-1.0).fit_predict(data, centroids=centres.clone())
        return iterations
    return fit


def _flash_kmeans(X, init, init_rows, device):
    if not device.startswith("cuda"):
        raise PeerMissing("CUDA only")
    try:
        from flash_kmeans import batch_kmeans_Euclid
    except ImportError as error:
        raise PeerMissing(str(error)) from None
    data, centres = X.to(device)[None], init.to(device)[None]

    def fit(iterations):
        batch_kmeans_Euclid(data, centres.shape[1], max_iters=iterations, tol=0.0,
                            init_centroids=centres.clone())
        return iterations
    return fit


def _cuml(X, init, init_rows, device):
    if not device.startswith("cuda"):
        raise PeerMissing("CUDA only")
    try:
        from cuml.cluster import KMeans
    except ImportError as error:
        raise PeerMissing(str(error)) from None
    import cupy

    data, centres = cupy.asarray(X.to(device)), cupy.asarray(init.to(device))

    def fit(iterations):
        model = KMeans(n_clusters=centres.shape[0], init=centres, n_init=1, max_iter=iterations, tol=0.0)
        model.fit(data)
        return int(model.n_iter_)
    return fit


def naive_torch_lloyd(X, centers, iterations):
    """Textbook Lloyd in eager PyTorch: the whole n x k distance matrix, argmin, index_add."""
    k = centers.shape[0]
    for _ in range(iterations):
        distances = torch.addmm((centers * centers).sum(1)[None, :], X, centers.T, alpha=-2.0)
        labels = distances.argmin(dim=1)
        sums = torch.zeros_like(centers).index_add_(0, labels, X)
        counts = torch.bincount(labels, minlength=k).to(X.dtype)[:, None]
        centers = torch.where(counts > 0, sums / counts.clamp_min(1), centers)
    return centers


def _naive_torch(X, init, init_rows, device):
    data, centres = X.to(device), init.to(device)

    def fit(iterations):
        naive_torch_lloyd(data, centres, iterations)
        return iterations
    return fit


PEERS = {
    "gpukmeans": _gpukmeans,
    "gpukmeans (plain-PyTorch kernel)": _gpukmeans_reference_kernel,
    "gpukmeans (bfloat16 storage)": _gpukmeans_bfloat16,
    "gpukmeans (launch by launch)": _gpukmeans_launch_by_launch,
    "scikit-learn (lloyd)": _sklearn("lloyd"),
    "scikit-learn (elkan)": _sklearn("elkan"),
    "faiss": _faiss,
    "fastkmeans": _fastkmeans,
    "fast-pytorch-kmeans": _fast_pytorch_kmeans,
    "flash-kmeans": _flash_kmeans,
    "cuML": _cuml,
    "plain torch": _naive_torch,
}
CPU_PEERS = ["gpukmeans", "gpukmeans (plain-PyTorch kernel)", "scikit-learn (lloyd)", "scikit-learn (elkan)", "faiss", "fastkmeans",
             "fast-pytorch-kmeans", "plain torch"]
GPU_PEERS = ["gpukmeans", "gpukmeans (bfloat16 storage)", "gpukmeans (launch by launch)", "flash-kmeans", "fastkmeans",
             "fast-pytorch-kmeans", "plain torch",
             "cuML", "faiss"]


# ------------------------------------------------------------------ running it all
def _failure(error) -> str:
    text = str(error).splitlines()[0][:160] if str(error) else ""
    return f"failed: {type(error).__name__}: {text}"


def _release_cached_memory(device):
    """Gives cached CUDA blocks back between libraries. After a peer's device-side assert
    every CUDA call fails: that peer's record says why, and so do the later ones."""
    if device.startswith("cuda"):
        try:
            torch.cuda.empty_cache()
        except RuntimeError:
            pass


def measure_shape(libraries, X, init, init_rows, device, *, n_iter, repeats, floor_ms,
                  base_iter=2, clock=time.perf_counter) -> list[Measurement]:
    """Every library on one data set, the repeats interleaved across libraries (in
    alternating order), so that a busy spell of the machine hits all of them alike."""
    n, d = X.shape
    records, fits = {}, {}
    for library in libraries:
        record = records[library] = Measurement(library, device, n, d, init.shape[0], status="ok",
                                                floor_ms=floor_ms)
        try:
            fit = PEERS[library](X, init, init_rows, device)
            record.note = getattr(fit, "note", "")
            record.warmup_s, _ = _timed(fit, 1, device)  # imports, JIT, CUDA context, caches
            fits[library] = fit
        except PeerMissing as error:
            record.status = f"missing: {error}"
        except Exception as error:  # a peer that breaks is reported, never hidden
            record.status = _failure(error)
    best = {library: [math.inf, math.inf, 0, 0] for library in fits}
    every_time = {library: ([], []) for library in fits}  # (short fits, long fits)
    for repeat in range(repeats):
        order = list(fits) if repeat % 2 == 0 else list(reversed(fits))
        for library in order:
            if library not in fits:
                continue
            try:
                if device.startswith("cuda"):
                    # After the cache was given back, the next fit pays cudaMalloc for its large
                    # buffers (milliseconds at 100M rows); timed in the short fit only, that cost
                    # came off the long-minus-short difference: an H200 run read 0.75x the
                    # bandwidth floor at (100M, 32, 16), less than a pass can take. One
                    # untimed fit first puts every timed fit on a warm allocator.
                    fits[library](base_iter)
                for slot, iterations in ((0, base_iter), (1, base_iter + n_iter)):
                    seconds, ran = _timed(fits[library], iterations, device, clock)
                    best[library][slot] = min(best[library][slot], seconds)
                    best[library][2 + slot] = ran
                    every_time[library][slot].append(seconds)
            except Exception as error:
                records[library].status = _failure(error)
                del fits[library]
            finally:
                _release_cached_memory(device)
    for library in fits:
        record = records[library]
        try:
            seconds = _per_iteration(*best[library], base_iter, n_iter)
        except RuntimeError as error:
            record.status = _failure(error)
            continue
        record.ms_per_iter = seconds * 1e3
        record.points_iters_per_s = n / seconds
        record.x_floor = record.ms_per_iter / floor_ms if floor_ms else None
        noise = _noise_note(*every_time[library], difference=best[library][1] - best[library][0])
        if noise:
            record.status = f"{record.status}; {noise}"
    return [records[library] for library in libraries]


def _noise_note(short_times, long_times, *, difference) -> str:
    """A note where the repeats of one fit spread over more than half the difference the
    figure rests on: the best of each is then as much the quietest moment as the work (an
    H200 run read 0.04 ms an iteration at (1M, 16, 8) on a loaded host, a quarter of what
    quieter runs read)."""
    spread = max((max(times) - min(times) for times in (short_times, long_times) if len(times) > 1), default=0.0)
    if spread <= difference / 2:
        return ""
    return (f"noisy: the repeats of one fit spread over {spread * 1e3:.2f} ms, the difference "
            f"measured is {difference * 1e3:.2f} ms")


def n_init_cost(n_samples=1_000_000, n_features=16, n_clusters=8, n_init=10, *, device="cpu",
                n_iter=10, repeats=2, cpu_time=False) -> dict:
    """Per-iteration cost of ``n_init`` restarts batched in one pass, against one restart,
    through the engine's Lloyd loop (the restarts are the groups of one pass).
    ``cpu_time``: one thread and the process CPU clock, as in :func:`run_comparison`."""
    from gpukmeans._device import auto_chunk_size
    from gpukmeans._lloyd import lloyd
    from gpukmeans._sources import InMemorySource

    # structureless data: ten restarts on blobs converge at different early iterations
    # (converged groups leave the pass), which would leave no common iterations to time
    generator = torch.Generator(device=device).manual_seed(1)
    X = torch.randn(n_samples, n_features, generator=generator, device=device)
    starts = [X[torch.randperm(n_samples, generator=generator, device=device)[:n_clusters]]
              for _ in range(n_init)]
    result = {"shape": [n_samples, n_features, n_clusters], "n_init": n_init, "device": device,
              "clock": "process CPU time, 1 thread" if cpu_time else "wall clock"}
    for groups in (1, n_init):
        chunk = auto_chunk_size(n_features, n_clusters * groups, X.dtype, X.device)
        source = InMemorySource(X, None, chunk)

        def fit(iterations):
            return min(lloyd(source, starts[:groups], max_iter=iterations, tol=-1.0).n_iter)
        with single_thread() if cpu_time else contextlib.nullcontext():
            fit(1)
            seconds = time_per_iteration(fit, device, n_iter, repeats,
                                         clock=time.process_time if cpu_time else time.perf_counter)
        result[f"ms_per_iter_{groups}"] = seconds * 1e3
    result["ratio"] = result[f"ms_per_iter_{n_init}"] / result["ms_per_iter_1"]
    # The distances alone: 2 n d k flops per restart, at the machine's best matrix-product
    # rate. No exact Lloyd pass can take less, however well it shares the read of X.
    with single_thread() if cpu_time else contextlib.nullcontext():
        gflops = matmul_gflops(device, clock=time.process_time if cpu_time else time.perf_counter)
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
    import subprocess
    import sys
    import tempfile

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


def environment(devices) -> dict:
    """Where the numbers were measured: machine, load, library versions."""
    versions = {}
    for name in ["gpukmeans", "torch", "numpy", "numba", "scikit-learn", "faiss-cpu", "faiss-gpu",
                 "fastkmeans", "fast-pytorch-kmeans", "flash-kmeans", "cuml", "triton"]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    if versions["gpukmeans"] is None:  # run from a source tree
        import gpukmeans

        versions["gpukmeans"] = getattr(gpukmeans, "__version__", None)
    info = {
        "cpu": _cpu_model(),
        "git_commit": _git_commit(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
        "versions": versions,
        "devices": devices,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if any(d.startswith("cuda") for d in devices):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _git_commit() -> Optional[str]:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_comparison(shapes_by_device: dict, *, libraries_by_device: dict, n_iter: int, repeats: int,
                   progress: Callable[[Measurement], None] = lambda m: None,
                   cpu_time: bool = False) -> list[Measurement]:
    """Measure every library on every shape of every device; one list of records.

    ``cpu_time``: one thread for everyone and the process CPU clock (see
    :func:`single_thread`), for a shared machine; CPU only.
    """
    records = []
    for device, shapes in shapes_by_device.items():
        for n, d, k in shapes:
            X, init, init_rows = make_data(n, d, k, device)
            with single_thread() if cpu_time else contextlib.nullcontext():
                _, floor_ms = bandwidth_floor_ms(X)
                measured = measure_shape(libraries_by_device[device], X, init, init_rows, device,
                                         n_iter=n_iter, repeats=repeats, floor_ms=floor_ms,
                                         clock=time.process_time if cpu_time else time.perf_counter)
            for record in measured:
                records.append(record)
                progress(record)
            del X, init
            _release_cached_memory(device)
    return records


def markdown_table(records: list[Measurement]) -> str:
    """One row per (device, shape, library): the figures, or why there are none."""
    lines = ["| device | n | d | k | library | ms / iter | points x iter / s | x floor | warm-up s | status |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in records:
        def fmt(value, spec):
            return "" if value is None else format(value, spec)
        lines.append(
            f"| {r.device} | {r.n_samples:,} | {r.n_features} | {r.n_clusters} | {r.library} | "
            f"{fmt(r.ms_per_iter, '.2f')} | {fmt(r.points_iters_per_s, '.3g')} | {fmt(r.x_floor, '.2f')} | "
            f"{fmt(r.warmup_s, '.2f')} | {r.status}{f' ({r.note})' if r.note else ''} |")
    return "\n".join(lines)


HALF_STORAGE = "gpukmeans (bfloat16 storage)"
HALF_STORAGE_TARGET = 1.7  # issue 3: bfloat16 storage at least 1.7x faster than float32


def storage_speedups(records: list[Measurement]) -> list[dict]:
    """gpukmeans' float32 over bfloat16-storage time per iteration, per device and shape
    where both were measured (same data, same centres, same run)."""
    float32 = {(r.device, r.n_samples, r.n_features, r.n_clusters): r for r in records
               if r.library == "gpukmeans" and r.ms_per_iter}
    speedups = []
    for r in records:
        base = float32.get((r.device, r.n_samples, r.n_features, r.n_clusters))
        if r.library != HALF_STORAGE or not r.ms_per_iter or base is None:
            continue
        speedups.append({"device": r.device, "shape": [r.n_samples, r.n_features, r.n_clusters],
                         "float32_ms": base.ms_per_iter, "bfloat16_ms": r.ms_per_iter,
                         "speedup": base.ms_per_iter / r.ms_per_iter})
    return speedups


def speedup_table(speedups: list[dict]) -> str:
    """The bfloat16-storage speed-ups as a Markdown table, against the issue's target."""
    lines = [f"| device | n | d | k | float32 ms / iter | bfloat16 ms / iter | speed-up "
             f"(target >= {HALF_STORAGE_TARGET}x) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in speedups:
        n, d, k = s["shape"]
        lines.append(f"| {s['device']} | {n:,} | {d} | {k} | {s['float32_ms']:.2f} | {s['bfloat16_ms']:.2f} | "
                     f"{s['speedup']:.2f}x |")
    return "\n".join(lines)


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True
