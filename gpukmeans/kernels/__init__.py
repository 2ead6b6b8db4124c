"""How one pass is computed: hot loops of k-means, one file per operation, each with a
plain-PyTorch reference.

The engine holds a *backend* (:func:`backend_for`, resolved once per device and row
dtype, see :mod:`.backend`) and calls its operations:

- ``assign``: for a chunk of rows and one or more *groups* of centres (restarts of one
  fit, or the k's of a sweep), each row's nearest centre within every group, the
  squared distance to it, and (optionally) the per-centre weighted sums and weights
  that Lloyd's update needs;
- ``lloyd_step``: the same step as a Lloyd pass uses it: it writes the labels in place
  and returns only per-group totals (sums, label changes, inertia), so that a pass over
  X writes nothing per row but the labels;
- ``update_centers``: what Lloyd does with those totals (the means, their norms, the
  shift and empty flags);
- ``candidate_potentials``: k-means++'s step (the lowering of every row's nearest
  distance to the centre chosen last, and each new candidate's potential);
- ``exact_sq_distances``: each row's squared distance to its centre by direct difference.

:mod:`.reference` is the definition every fast path (:mod:`.cpu`, the Triton kernels) is
tested against; :mod:`.resilient` retries a kernel call in halves on a CUDA
out-of-memory error.
"""

from .backend import CpuBackend, ReferenceBackend, TritonBackend, backend_for, new_backend
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
    "CpuBackend",
    "ReferenceBackend",
    "StepResult",
    "TritonBackend",
    "assign_accumulate_reference",
    "backend_for",
    "candidate_potentials_reference",
    "lloyd_step_reference",
    "new_backend",
    "padded_sq_norms",
    "potentials_from_distances",
    "update_centers_reference",
]
