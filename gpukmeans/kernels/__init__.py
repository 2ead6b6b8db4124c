"""Hot loops of k-means, one file per operation, each with a plain-PyTorch reference.

The whole engine calls one seam, :func:`assign_accumulate`: for a chunk of rows and
one or more *groups* of centres (restarts of one fit, or the k's of a sweep), it
returns each row's nearest centre within every group, the squared distance to it,
and (optionally) the per-centre weighted sums and weights that Lloyd's update needs.
:func:`lloyd_step` is the same step as a Lloyd pass uses it: it writes the labels in
place and returns only per-group totals (sums, label changes, inertia), so that a
pass over X writes nothing per row but the labels. :func:`update_centers` is what Lloyd
does with those totals (the means, their norms, the shift and empty flags): one Triton
launch on CUDA, PyTorch elsewhere. :func:`candidate_potentials` is k-means++'s step
(the lowering of every row's nearest distance to the centre chosen last, and each new
candidate's potential) in one pass of the CPU kernel or, on CUDA, of a Triton kernel. Fast paths (a CPU kernel, Triton
kernels) must agree with :mod:`.reference`.

Rows may be stored as float16 or bfloat16 (with float32 centres): the Triton kernel
reads them as they are and computes in float32; every other path gets the chunk
widened to float32 here first (a chunk-sized copy), so on the CPU 16-bit storage
saves memory, not time.

Fast paths are imported on first use, so that ``import gpukmeans`` pays for neither
numba's nor Triton's start-up, and a machine without them still works (on the
reference). The environment variable ``GPUKMEANS_KERNEL=reference`` forces the
reference everywhere, to compare or to rule a fast path out when debugging.
"""

import functools
import os
import warnings

from .reference import (
    AssignResult,
    CenterUpdate,
    StepResult,
    assign_accumulate_reference,
    candidate_potentials_reference,
    lloyd_step_reference,
    padded_sq_norms,
    potentials_from_distances,
    update_centers_reference,
)

__all__ = [
    "AssignResult",
    "CenterUpdate",
    "StepResult",
    "assign_accumulate",
    "assign_accumulate_reference",
    "backend_for",
    "candidate_potentials",
    "exact_sq_distances_cpu",
    "candidate_potentials_reference",
    "fused_cpu_kernel_available",
    "fused_potentials_available",
    "lloyd_step",
    "lloyd_step_reference",
    "padded_sq_norms",
    "update_centers",
    "update_centers_reference",
]


@functools.lru_cache(maxsize=None)
def _load(name):
    """The module of one fast path, or None when its dependencies are missing."""
    try:
        if name == "cpu":
            from . import cpu as module
        elif name == "triton_update":
            from . import triton_update as module
        elif name == "triton_potentials":
            from . import triton_potentials as module
        else:
            from . import triton_assign as module
    except ImportError as error:  # numba / triton not installed: the reference serves
        warnings.warn(
            f"gpukmeans: the {name} fast path is unavailable ({error}); using the "
            "plain-PyTorch reference, which is several times slower.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return module if module.available() else None


def fused_cpu_kernel_available(dtype) -> bool:
    """Whether CPU chunks of this dtype run on the fused CPU kernel (numba present)."""
    if os.environ.get("GPUKMEANS_KERNEL", "").lower() == "reference":
        return False
    import torch

    return dtype in (torch.float32, torch.float64) and _load("cpu") is not None


def backend_for(X) -> str:
    """Name of the implementation :func:`assign_accumulate` uses for this chunk:
    ``"triton"``, ``"cpu"`` (numba) or ``"reference"``."""
    if os.environ.get("GPUKMEANS_KERNEL", "").lower() == "reference":
        return "reference"
    if X.device.type == "cuda":
        module = _load("triton")
        return "triton" if module is not None and module.supports(X) else "reference"
    if X.device.type == "cpu":
        module = _load("cpu")
        return "cpu" if module is not None and module.supports(X) else "reference"
    return "reference"


def _widened_if_half(X, centers, center_sq_norms, weights):
    """Float16/bfloat16 rows (and what goes with them) in float32, unless Triton takes them.

    Only the Triton kernel reads 16-bit rows; the CPU kernel and the reference compute
    in X's dtype, so they get the chunk widened (exactly) and float32 centres.
    """
    import torch

    if X.dtype not in (torch.float16, torch.bfloat16) or backend_for(X) == "triton":
        return X, centers, center_sq_norms, weights
    widen = (lambda t: None if t is None else t.to(torch.float32))
    return widen(X), widen(centers), widen(center_sq_norms), widen(weights)


def assign_accumulate(X, centers, center_sq_norms, weights=None, *, accumulate=True):
    """Dispatch to the fastest implementation available for ``X.device``.

    Same contract as :func:`gpukmeans.kernels.reference.assign_accumulate_reference`,
    except that float16/bfloat16 ``X`` takes float32 centres and gives float32 results.
    """
    X, centers, center_sq_norms, weights = _widened_if_half(X, centers, center_sq_norms, weights)
    backend = backend_for(X)
    if backend == "cpu":
        return _load("cpu").assign_accumulate_cpu(
            X, centers, center_sq_norms, weights, accumulate=accumulate)
    if backend == "triton":
        return _load("triton").assign_accumulate_triton(
            X, centers, center_sq_norms, weights, accumulate=accumulate)
    return assign_accumulate_reference(
        X, centers, center_sq_norms, weights, accumulate=accumulate
    )


def lloyd_step(X, centers, center_sq_norms, weights, labels, label_columns, *, compute_inertia=True):
    """One chunk of a Lloyd pass on the fastest implementation for ``X.device``.

    Same contract as :func:`gpukmeans.kernels.reference.lloyd_step_reference`;
    float16/bfloat16 ``X`` takes float32 centres.
    """
    X, centers, center_sq_norms, weights = _widened_if_half(X, centers, center_sq_norms, weights)
    backend = backend_for(X)
    if backend == "cpu" and labels.is_contiguous():
        return _load("cpu").lloyd_step_cpu(
            X, centers, center_sq_norms, weights, labels, label_columns,
            compute_inertia=compute_inertia)
    if backend == "triton":
        return _load("triton").lloyd_step_triton(
            X, centers, center_sq_norms, weights, labels, label_columns,
            compute_inertia=compute_inertia)
    return lloyd_step_reference(
        X, centers, center_sq_norms, weights, labels, label_columns,
        compute_inertia=compute_inertia)


def update_centers(sums, weight_sums, n_changed, old_centers, valid) -> CenterUpdate:
    """Lloyd's centre update on the fastest implementation for the centres' device: one
    Triton launch on CUDA, PyTorch elsewhere. Same contract as
    :func:`gpukmeans.kernels.reference.update_centers_reference`."""
    if os.environ.get("GPUKMEANS_KERNEL", "").lower() != "reference" and old_centers.device.type == "cuda":
        module = _load("triton_update")
        if module is not None and module.supports(old_centers):
            return module.update_centers_triton(sums, weight_sums, n_changed, old_centers, valid)
    return update_centers_reference(sums, weight_sums, n_changed, old_centers, valid)


def fused_potentials_available(device, dtype) -> bool:
    """Whether k-means++'s candidate potentials of rows on ``device`` in ``dtype`` take
    one pass of a kernel (:func:`candidate_potentials`): the CPU kernel's, or on
    CUDA the Triton one. ``GPUKMEANS_FUSED_POTENTIALS=0`` turns the CUDA one off, to time
    it against the assignment kernel's blocks it replaces (GPU timings are owed)."""
    import torch

    if device.type == "cpu":
        return fused_cpu_kernel_available(dtype)
    if (device.type != "cuda" or os.environ.get("GPUKMEANS_KERNEL", "").lower() == "reference"
            or os.environ.get("GPUKMEANS_FUSED_POTENTIALS") == "0" or _triton_potentials_failed):
        return False
    module = _load("triton_potentials")
    return module is not None and module.supports(torch.empty((0, 1), dtype=dtype, device=device))


def exact_sq_distances_cpu(X, centers, labels):
    """The CPU kernel's :func:`~gpukmeans.kernels.cpu.exact_sq_distances_cpu` (where
    :func:`fused_cpu_kernel_available`)."""
    return _load("cpu").exact_sq_distances_cpu(X, centers, labels)


def candidate_potentials(X, candidates, candidate_sq_norms, closest, weights=None, *, lower_closest=False,
                         block_rows=None, block_offset=0):
    """:func:`~gpukmeans.kernels.reference.candidate_potentials_reference` (its
    ``lower_closest`` and ``block_rows`` included) in one pass, where
    :func:`fused_potentials_available`: on CUDA the Triton kernel (16-bit rows as
    stored), on the CPU the numba kernel (16-bit rows widened first, as for the
    assignment). Elsewhere, from the assignment's per-row distances."""
    import torch

    options = dict(lower_closest=lower_closest, block_rows=block_rows, block_offset=block_offset)
    computed_in = torch.float32 if X.dtype in (torch.float16, torch.bfloat16) else X.dtype
    if not fused_potentials_available(X.device, computed_in):
        return _potentials_from_assignment(X, candidates, candidate_sq_norms, closest, weights, **options)
    if X.device.type == "cuda":
        return _potentials_on_cuda(X, candidates, candidate_sq_norms, closest, weights, **options)
    X, candidates, candidate_sq_norms, weights = _widened_if_half(X, candidates, candidate_sq_norms, weights)
    return _load("cpu").candidate_potentials_cpu(X, candidates, candidate_sq_norms, closest, weights, **options)


_triton_potentials_failed = False


def _potentials_on_cuda(X, candidates, candidate_sq_norms, closest, weights, **options):
    """The Triton potentials kernel; if it fails (a Triton that will not compile it must
    not end the fit), a warning, and the assignment kernel's distances from then on, as
    before it existed."""
    global _triton_potentials_failed
    try:
        return _load("triton_potentials").candidate_potentials_triton(
            X, candidates, candidate_sq_norms, closest, weights, **options)
    except Exception as error:  # noqa: BLE001 - any failure of this kernel has the same remedy
        _triton_potentials_failed = True
        warnings.warn(f"gpukmeans: the CUDA k-means++ kernel failed ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}); using the assignment "
                      "kernel's distances instead.", RuntimeWarning, stacklevel=3)
        return _potentials_from_assignment(X, candidates, candidate_sq_norms, closest, weights, **options)


def _potentials_from_assignment(X, candidates, candidate_sq_norms, closest, weights, **options):
    """:func:`candidate_potentials` from the assignment's per-row distances (the
    candidates as groups of one centre): what k-means++ did before the fused kernels,
    and what it does where they do not run."""
    distances = assign_accumulate(X, candidates[:, None, :], candidate_sq_norms[:, None],
                                  accumulate=False).min_sq_distances
    return potentials_from_distances(distances, closest, weights, **options)
