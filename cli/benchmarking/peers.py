"""The libraries the benchmarks compare, each behind one adapter.

An adapter ``make(X, init, init_rows, device)`` takes the suite's float32 data, its
initial centres and their row indices, and returns ``fit(iterations) -> iterations
run``: a fit of exactly that many Lloyd iterations from those centres, on ``device``.
Each peer is imported only when its adapter runs, so that a missing one raises
:class:`PeerMissing` (recorded as such) and a broken one fails alone.

gpukmeans appears in several rows: as shipped, with the plain-PyTorch reference kernel
(``GPUKMEANS_KERNEL=reference``), with 16-bit storage, and with no CUDA graph of the
iteration (``GPUKMEANS_CUDA_GRAPHS=0``).
"""

import importlib
import os

import numpy as np
import torch


class PeerMissing(Exception):
    """The peer library is not installed (or cannot run on this device)."""


def _installed(module: str):
    """The peer's module, imported; :class:`PeerMissing` where it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise PeerMissing(str(error)) from None


def _require_cuda(device: str) -> None:
    if not device.startswith("cuda"):
        raise PeerMissing("CUDA only")


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
    faiss = _installed("faiss")
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
    fastkmeans = _installed("fastkmeans")
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
        # returns labels >= k unless k fills its 128-centroid tiles: a device-side assert
        # in its index_add_, which ends the process's CUDA context. Its plain-PyTorch
        # backend is measured instead, and the table says so.
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
    KMeans = _installed("fast_pytorch_kmeans").KMeans
    data, centres = X.to(device), init.to(device)

    def fit(iterations):
        KMeans(n_clusters=init.shape[0], max_iter=iterations, tol=-1.0).fit_predict(data, centroids=centres.clone())
        return iterations
    return fit


def _flash_kmeans(X, init, init_rows, device):
    _require_cuda(device)
    batch_kmeans_Euclid = _installed("flash_kmeans").batch_kmeans_Euclid
    data, centres = X.to(device)[None], init.to(device)[None]

    def fit(iterations):
        batch_kmeans_Euclid(data, centres.shape[1], max_iters=iterations, tol=0.0,
                            init_centroids=centres.clone())
        return iterations
    return fit


def _cuml(X, init, init_rows, device):
    _require_cuda(device)
    KMeans = _installed("cuml.cluster").KMeans
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


HALF_STORAGE = "gpukmeans (bfloat16 storage)"
PEERS = {
    "gpukmeans": _gpukmeans,
    "gpukmeans (plain-PyTorch kernel)": _gpukmeans_reference_kernel,
    HALF_STORAGE: _gpukmeans_bfloat16,
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
CPU_PEERS = ["gpukmeans", "gpukmeans (plain-PyTorch kernel)", "scikit-learn (lloyd)", "scikit-learn (elkan)", "faiss",
             "fastkmeans", "fast-pytorch-kmeans", "plain torch"]
GPU_PEERS = ["gpukmeans", HALF_STORAGE, "gpukmeans (launch by launch)", "flash-kmeans", "fastkmeans",
             "fast-pytorch-kmeans", "plain torch", "cuML", "faiss"]
