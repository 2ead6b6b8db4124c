"""A backend: how one pass is computed for rows of one dtype on one device.

:func:`backend_for` resolves, once per device type and row dtype, the fastest
implementation present: the CPU kernel (numba, :mod:`.cpu`), the Triton kernels on CUDA
(:mod:`.triton_assign`, :mod:`.triton_update`, :mod:`.triton_potentials`), or the
plain-PyTorch reference (:mod:`.reference`) everywhere else. Callers hold the backend
and call its operations; they never ask which kernel exists. What a backend can do is
in its attributes:

- ``whole_pass``: a Lloyd step allocates nothing per row (it writes the labels in
  place and returns totals), so a pass over rows held in memory may take them in one
  piece;
- ``fused_potentials``: k-means++'s step (lower every row's nearest distance, weigh
  the next candidates) runs in one pass holding nothing per row;
- ``chunk_distances``: an assignment forms a chunk's ``m x k`` distances (the
  reference), which bounds how many rows a chunk may have.

Every operation has the contract of its reference in :mod:`.reference`. Rows may be
stored as float16 or bfloat16 (with float32 centres): the Triton kernels read them as
they are and compute in float32; the other backends widen each chunk to float32 first
(a chunk-sized copy), so on the CPU 16-bit storage saves memory, not time.

Fast paths are imported on first use, so that ``import gpukmeans`` pays for neither
numba's nor Triton's start-up, and a machine without them still works (on the
reference). ``GPUKMEANS_KERNEL=reference`` forces the reference everywhere, to compare
or to rule a fast path out when debugging.
"""

import functools
import os
import warnings

import torch

from . import reference
from .reference import AssignResult, CenterUpdate, StepResult, padded_sq_norms, potentials_from_distances

HALF_DTYPES = (torch.float16, torch.bfloat16)


def backend_for(device, dtype) -> "ReferenceBackend":
    """The backend for rows of ``dtype`` on ``device`` (a torch.device or its name), shared
    by every caller: resolved once per device type and dtype."""
    forced = os.environ.get("GPUKMEANS_KERNEL", "").strip().lower() == "reference"
    return _resolved(torch.device(device).type, dtype, forced)


@functools.lru_cache(maxsize=None)
def _resolved(device_type: str, dtype: torch.dtype, forced_reference: bool) -> "ReferenceBackend":
    return new_backend(device_type, dtype, forced_reference)


def new_backend(device_type: str, dtype: torch.dtype, forced_reference: bool = False) -> "ReferenceBackend":
    """A backend of its own, to change (``fused_potentials = False``, to compare) without
    touching the shared one."""
    if not forced_reference:
        if device_type == "cpu" and dtype in (torch.float32, torch.float64, *HALF_DTYPES):
            module = _load("cpu")
            if module is not None:
                return CpuBackend(module, dtype)
        if device_type == "cuda" and dtype in (torch.float32, *HALF_DTYPES):
            module = _load("triton_assign")
            if module is not None:
                return TritonBackend(module)
    return ReferenceBackend()


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
            stacklevel=4,
        )
        return None
    return module if module.available() else None


def _widened(*tensors):
    """16-bit tensors (rows, and what goes with them) in float32; others as they are."""
    return tuple(None if t is None else t.to(torch.float32) if t.dtype in HALF_DTYPES else t for t in tensors)


class ReferenceBackend:
    """The plain-PyTorch definition (:mod:`.reference`), on any device: one chunk's
    ``m x (G * k_max)`` distances at a time."""

    name = "reference"
    whole_pass = False
    fused_potentials = False
    chunk_distances = True

    def assign(self, X, centers, center_sq_norms, weights=None, *, accumulate=True) -> AssignResult:
        """Each row's nearest centre in every group, its squared distance, and (``accumulate``)
        the per-centre weighted sums; see :func:`.reference.assign_accumulate_reference`."""
        X, centers, center_sq_norms, weights = _widened(X, centers, center_sq_norms, weights)
        return reference.assign_accumulate_reference(X, centers, center_sq_norms, weights, accumulate=accumulate)

    def lloyd_step(self, X, centers, center_sq_norms, weights, labels, label_columns, *,
                   compute_inertia=True) -> StepResult:
        """One chunk of a Lloyd pass: labels written in place, totals returned; see
        :func:`.reference.lloyd_step_reference`."""
        X, centers, center_sq_norms, weights = _widened(X, centers, center_sq_norms, weights)
        return reference.lloyd_step_reference(X, centers, center_sq_norms, weights, labels, label_columns,
                                              compute_inertia=compute_inertia)

    def update_centers(self, sums, weight_sums, n_changed, old_centers, valid) -> CenterUpdate:
        """Lloyd's update of the centres from one pass's totals; see
        :func:`.reference.update_centers_reference`."""
        return reference.update_centers_reference(sums, weight_sums, n_changed, old_centers, valid)

    def candidate_potentials(self, X, candidates, candidate_sq_norms, closest, weights=None, *,
                             lower_closest=False, block_rows=None, block_offset=0):
        """k-means++'s step; see :func:`.reference.candidate_potentials_reference`. Here from
        the assignment's per-row distances (the candidates as groups of one centre)."""
        distances = self.assign(X, candidates[:, None, :], candidate_sq_norms[:, None],
                                accumulate=False).min_sq_distances
        return potentials_from_distances(distances, closest, weights, lower_closest=lower_closest,
                                         block_rows=block_rows, block_offset=block_offset)

    def moments(self, X, scale: float = 1.0):
        """Per-feature moments of the rows ``X * scale`` in float64, in parts:
        ``(counts (P,), means (P, d), sums of squared deviations (P, d), minima (P, d),
        maxima (P, d))``, for the caller to merge (Chan et al.'s pairwise formula)."""
        from .._device import row_blocks, work_block_bytes

        parts = []
        # one float64 copy of a block, worked on in place
        for start, stop in row_blocks(X.shape[0], 8 * X.shape[1], work_block_bytes(X.device)):
            rows = X[start:stop].to(torch.float64, copy=True)  # X is never written
            if scale != 1.0:
                rows.mul_(scale)
            mean = rows.mean(dim=0)
            parts.append((float(rows.shape[0]), mean, rows.amin(dim=0), rows.amax(dim=0),
                          rows.sub_(mean).square_().sum(dim=0)))
        if not parts:
            empty = torch.zeros((0, X.shape[1]), dtype=torch.float64, device=X.device)
            return torch.zeros(0, dtype=torch.float64), empty, empty, empty, empty
        counts, means, minima, maxima, sums = zip(*parts)
        return (torch.tensor(counts, dtype=torch.float64), torch.stack(means), torch.stack(sums),
                torch.stack(minima), torch.stack(maxima))

    def label_sums(self, X, labels, n_labels: int, weights=None):
        """Per label, the float64 sum of its (weighted) rows and its total weight:
        ``(sums (n_labels, d), totals (n_labels,))``; ``labels`` in ``0..n_labels-1``."""
        from .._device import row_blocks, work_block_bytes

        sums = torch.zeros(n_labels, X.shape[1], dtype=torch.float64, device=X.device)
        totals = torch.zeros(n_labels, dtype=torch.float64, device=X.device)
        for start, stop in row_blocks(X.shape[0], 8 * X.shape[1], work_block_bytes(X.device)):
            rows = X[start:stop].to(torch.float64)
            unit = torch.ones(stop - start, dtype=torch.float64, device=X.device)
            if weights is not None:
                unit = weights[start:stop].to(torch.float64)
                rows = rows * unit[:, None]
            sums.index_add_(0, labels[start:stop], rows)
            totals.index_add_(0, labels[start:stop], unit)
        return sums, totals

    def exact_sq_distances(self, X, centers, labels):
        """(m, G) float64 squared distance from each row to its centre in each group
        (``labels`` (m, G)), by direct difference: exact where the expansion loses digits."""
        from .._device import row_blocks, work_block_bytes

        X, centers = _widened(X, centers)
        distances = torch.empty(X.shape[0], centers.shape[0], dtype=torch.float64, device=X.device)
        # the gathered centres and the differences are copies of a block (see row_blocks)
        bytes_per_row = 2 * X.shape[1] * X.element_size()
        for start, stop in row_blocks(X.shape[0], bytes_per_row, work_block_bytes(X.device)):
            block = X[start:stop]
            for g in range(centers.shape[0]):
                difference = block - centers[g].to(block.dtype)[labels[start:stop, g]]
                distances[start:stop, g] = (difference * difference).sum(dim=1, dtype=torch.float64)
        return distances


class CpuBackend(ReferenceBackend):
    """numba and one SIMD micro-kernel (:mod:`.cpu`): every operation in one pass of the
    thread pool, nothing allocated per row in a Lloyd step (but the float32 copy of a
    chunk of 16-bit rows: those passes go by chunks)."""

    name = "cpu"
    fused_potentials = True
    chunk_distances = False

    def __init__(self, module, dtype):
        self._cpu = module
        self.whole_pass = dtype not in HALF_DTYPES

    def assign(self, X, centers, center_sq_norms, weights=None, *, accumulate=True):
        X, centers, center_sq_norms, weights = _widened(X, centers, center_sq_norms, weights)
        return self._cpu.assign_accumulate_cpu(X, centers, center_sq_norms, weights, accumulate=accumulate)

    def lloyd_step(self, X, centers, center_sq_norms, weights, labels, label_columns, *, compute_inertia=True):
        if not labels.is_contiguous():  # the kernel writes label rows in place
            return super().lloyd_step(X, centers, center_sq_norms, weights, labels, label_columns,
                                      compute_inertia=compute_inertia)
        X, centers, center_sq_norms, weights = _widened(X, centers, center_sq_norms, weights)
        return self._cpu.lloyd_step_cpu(X, centers, center_sq_norms, weights, labels, label_columns,
                                        compute_inertia=compute_inertia)

    def candidate_potentials(self, X, candidates, candidate_sq_norms, closest, weights=None, *,
                             lower_closest=False, block_rows=None, block_offset=0):
        if not self.fused_potentials:  # turned off to compare (tests, benchmarks): the assignment's distances
            return super().candidate_potentials(X, candidates, candidate_sq_norms, closest, weights,
                                                lower_closest=lower_closest, block_rows=block_rows,
                                                block_offset=block_offset)
        X, candidates, candidate_sq_norms, weights = _widened(X, candidates, candidate_sq_norms, weights)
        return self._cpu.candidate_potentials_cpu(X, candidates, candidate_sq_norms, closest, weights,
                                                  lower_closest=lower_closest, block_rows=block_rows,
                                                  block_offset=block_offset)

    def exact_sq_distances(self, X, centers, labels):
        (X,) = _widened(X)
        return self._cpu.exact_sq_distances_cpu(X, centers, labels)

    def label_sums(self, X, labels, n_labels: int, weights=None):
        if X.dtype not in (torch.float32, torch.float64):
            return super().label_sums(X, labels, n_labels, weights)
        return tuple(torch.from_numpy(part) for part in self._cpu.label_sums_cpu(X, labels, n_labels, weights))

    def moments(self, X, scale: float = 1.0):
        if X.dtype not in (torch.float32, torch.float64):
            return super().moments(X, scale)
        return tuple(torch.from_numpy(part) for part in self._cpu.moments_cpu(X, scale))


class TritonBackend(ReferenceBackend):
    """The Triton kernels on CUDA: one launch per chunk for the assignment and the Lloyd
    step (16-bit rows read as stored), one for the centre update, one for k-means++'s step.

    If the k-means++ kernel fails (a Triton that will not compile it must not end the
    fit), a warning, and the assignment kernel's distances from then on.
    """

    name = "triton"
    whole_pass = True
    chunk_distances = False

    def __init__(self, module):
        self._assign = module
        self.fused_potentials = _load("triton_potentials") is not None

    def assign(self, X, centers, center_sq_norms, weights=None, *, accumulate=True):
        return self._assign.assign_accumulate_triton(X, centers, center_sq_norms, weights, accumulate=accumulate)

    def lloyd_step(self, X, centers, center_sq_norms, weights, labels, label_columns, *, compute_inertia=True):
        return self._assign.lloyd_step_triton(X, centers, center_sq_norms, weights, labels, label_columns,
                                              compute_inertia=compute_inertia)

    def update_centers(self, sums, weight_sums, n_changed, old_centers, valid):
        module = _load("triton_update")
        if module is not None and module.supports(old_centers):
            return module.update_centers_triton(sums, weight_sums, n_changed, old_centers, valid)
        return super().update_centers(sums, weight_sums, n_changed, old_centers, valid)

    def candidate_potentials(self, X, candidates, candidate_sq_norms, closest, weights=None, *,
                             lower_closest=False, block_rows=None, block_offset=0):
        options = dict(lower_closest=lower_closest, block_rows=block_rows, block_offset=block_offset)
        if self.fused_potentials:
            try:
                return _load("triton_potentials").candidate_potentials_triton(
                    X, candidates, candidate_sq_norms, closest, weights, **options)
            except Exception as error:  # noqa: BLE001 - any failure of this kernel has the same remedy
                self.fused_potentials = False
                first_line = str(error).splitlines()[0] if str(error) else ""
                warnings.warn(f"gpukmeans: the CUDA k-means++ kernel failed ({type(error).__name__}: {first_line}); "
                              "using the assignment kernel's distances instead.", RuntimeWarning, stacklevel=3)
        return super().candidate_potentials(X, candidates, candidate_sq_norms, closest, weights, **options)


__all__ = ["CpuBackend", "ReferenceBackend", "TritonBackend", "backend_for", "padded_sq_norms"]
