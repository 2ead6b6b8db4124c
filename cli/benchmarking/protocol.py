"""The timing protocol: Lloyd iterations of gpukmeans and its peers, on one machine, in one run.

The protocol, the same for every library:

- the same float32 data (Gaussian blobs, the shape of a customer table) and the
  same initial centres (k rows of the data) for everyone (:func:`make_data`);
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

A peer that is missing or fails (see :mod:`.peers`) is recorded as such (``status``)
and never stops the others.
"""

import contextlib
import dataclasses
import math
import time
from typing import Callable, Optional

import torch

from .peers import PEERS, PeerMissing

CPU_SHAPES = [(1_000_000, 16, 8), (1_000_000, 32, 32), (200_000, 64, 256)]
GPU_SHAPES = CPU_SHAPES + [(10_000_000, 16, 8), (100_000_000, 32, 16)]
QUICK_SHAPES = [(200_000, 16, 8), (100_000, 32, 32)]


@dataclasses.dataclass
class Measurement:
    """One library's figures at one shape on one device, or why there are none (``status``)."""

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


def clock_and_threads(cpu_time: bool):
    """``(clock, threads)`` of a measurement: with ``cpu_time``, the process CPU clock and
    :func:`single_thread`; otherwise the wall clock and the caller's thread settings."""
    if cpu_time:
        return time.process_time, single_thread()
    return time.perf_counter, contextlib.nullcontext()


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
                    # would come off the long-minus-short difference and put a figure under the
                    # bandwidth floor. One untimed fit first puts every timed fit on a warm allocator.
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
    figure rests on: the best of each is then as much the quietest moment as the work, and
    on a loaded host such a figure can read a fraction of what a quiet one does."""
    spread = max((max(times) - min(times) for times in (short_times, long_times) if len(times) > 1), default=0.0)
    if spread <= difference / 2:
        return ""
    return (f"noisy: the repeats of one fit spread over {spread * 1e3:.2f} ms, the difference "
            f"measured is {difference * 1e3:.2f} ms")


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
            clock, threads = clock_and_threads(cpu_time)
            with threads:
                _, floor_ms = bandwidth_floor_ms(X)
                measured = measure_shape(libraries_by_device[device], X, init, init_rows, device,
                                         n_iter=n_iter, repeats=repeats, floor_ms=floor_ms, clock=clock)
            for record in measured:
                records.append(record)
                progress(record)
            del X, init
            _release_cached_memory(device)
    return records


