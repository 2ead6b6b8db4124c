"""Hot loops of k-means, one file per operation, each with a plain-PyTorch reference.

The whole engine calls one seam, :func:`assign_accumulate`: for a chunk of rows and
one or more *groups* of centres (restarts of one fit, or the k's of a sweep), it
returns each row's nearest centre within every group, the squared distance to it,
and (optionally) the per-centre weighted sums and weights that Lloyd's update needs.
Fast paths (a CPU kernel, a Triton kernel) must agree with :mod:`.reference`.
"""

from .reference import AssignResult, assign_accumulate_reference

__all__ = ["AssignResult", "assign_accumulate", "assign_accumulate_reference"]


def assign_accumulate(X, centers, center_sq_norms, weights=None, *, accumulate=True):
    """Dispatch to the fastest implementation available for ``X.device``.

    Same contract as :func:`gpukmeans.kernels.reference.assign_accumulate_reference`.
    """
    return assign_accumulate_reference(
        X, centers, center_sq_norms, weights, accumulate=accumulate
    )
