"""Out-of-memory resilience: a CUDA OOM in the assign step halves the rows and retries.

The chunk size is chosen from free GPU memory before a fit, but other processes (or
the caller's own tensors) can take memory meanwhile. Rather than lose a fit that may
have run for hours, the kernel call that ran out of memory is split in two halves,
and every later call uses pieces no larger than the size that worked.
"""

import logging
from typing import Optional

import torch

from .reference import AssignResult, StepResult

logger = logging.getLogger("gpukmeans")


class ResilientAssigner:
    """Calls a backend's ``assign`` (or ``lloyd_step``) in pieces of at most ``max_rows`` rows.

    ``max_rows`` starts unbounded and halves on every out-of-memory error; it never
    grows back within one fit. The first halving is logged once (logger
    ``"gpukmeans"``, level WARNING); a single row that still does not fit re-raises.
    """

    def __init__(self, backend):
        self.backend = backend
        self.max_rows: Optional[int] = None
        self._logged = False

    def __call__(self, rows, centers, center_sq_norms) -> AssignResult:
        """Each row's nearest centres and their distances (no per-centre sums)."""
        pieces = []
        start = 0
        n_rows = rows.shape[0]
        while start < n_rows:
            size = n_rows - start if self.max_rows is None else min(self.max_rows, n_rows - start)
            result = self._try(rows[start : start + size], centers, center_sq_norms)
            if result is None:
                self._halve(size)
                continue
            pieces.append(result)
            start += size
        if len(pieces) == 1:
            return pieces[0]
        return AssignResult(torch.cat([p.labels for p in pieces]), torch.cat([p.min_sq_distances for p in pieces]),
                            None, None)

    def lloyd_step(self, rows, centers, center_sq_norms, weights, labels, label_columns, *, compute_inertia):
        """The backend's ``lloyd_step`` in pieces; ``labels`` rows follow ``rows``.

        A piece that ran out of memory is retried whole: its labels are only written
        once its assignment is done, so no row is counted twice.
        """
        pieces = []
        start = 0
        n_rows = rows.shape[0]
        while start < n_rows:
            size = n_rows - start if self.max_rows is None else min(self.max_rows, n_rows - start)
            piece = slice(start, start + size)
            try:
                result = self.backend.lloyd_step(rows[piece], centers, center_sq_norms,
                                                 None if weights is None else weights[piece],
                                                 labels[piece], label_columns, compute_inertia=compute_inertia)
            except torch.OutOfMemoryError:
                result = None
            if result is None:
                self._halve(size)
                continue
            pieces.append(result)
            start += size
        if len(pieces) == 1:
            return pieces[0]
        return StepResult(
            sum(p.sums for p in pieces),
            sum(p.weight_sums for p in pieces),
            sum(p.n_changed for p in pieces),
            None if pieces[0].inertia is None else sum(p.inertia for p in pieces),
        )

    def _try(self, rows, centers, norms) -> Optional[AssignResult]:
        # Return None instead of retrying inside the except block: the exception's
        # traceback keeps the failed call's temporaries alive until the block ends.
        try:
            return self.backend.assign(rows, centers, norms, None, accumulate=False)
        except torch.OutOfMemoryError:
            return None

    def _halve(self, failed_rows: int) -> None:
        if failed_rows <= 1:
            raise torch.OutOfMemoryError(
                "gpukmeans: out of memory assigning a single row; free device memory or use fewer clusters."
            )
        self.max_rows = failed_rows // 2
        if not self._logged:
            logger.warning(
                "gpukmeans: out of device memory assigning %d rows; retrying in chunks of %d rows "
                "(further reductions are not logged).",
                failed_rows,
                self.max_rows,
            )
            self._logged = True
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

