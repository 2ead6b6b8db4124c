"""Data sources: the one seam between k-means' loops and where the rows live.

Lloyd's loop, the initialisations, mini-batch k-means and the scores are written once
against this interface (as FAISS does with its ``DatasetAssign``). An in-memory tensor
on the CPU or a GPU is one implementation (``memory``); rows streamed from pinned host
memory (``host_stream``), from Parquet or CSV files (``files``), and a shard of a table
split across torch.distributed ranks (``distributed``) are others.

The seam, for a holder of some of the table's rows:

- ``n_samples, n_features, dtype, device``: this holder's rows, and where work runs.
  ``dtype`` is the *compute* dtype: that of centres, weights and results.
- ``storage_dtype``: the dtype the rows are stored in and ``chunks()`` hands out. It
  is ``dtype`` except for 16-bit storage (float16, bfloat16), which computes in
  float32 (see ``storage``); the kernels take 16-bit rows with float32 centres.
- ``chunks()``: ``(start, rows, weights or None)`` over this holder's rows, in order;
  ``start`` is the *local* offset of the chunk (it indexes per-row state such as labels).
  ``lloyd_pass_chunks()``: the same for a Lloyd pass, which may take larger pieces.
  ``recordable_pass``: whether a Lloyd iteration over these rows may be recorded as a
  CUDA graph (rows held on the GPU by this process alone).
- ``sample_weight``: this holder's weights as one tensor on ``device``, or None.
- ``row_offset``: the global index of this holder's first row. Global indices
  (``row_offset + local``) name rows in every exchange: draws, ``take``, ``weights_of``.
- ``take(indices)``, ``weights_of(indices)``: rows and weights at *global* indices,
  the same answer on every holder (a small set: centres, candidates), in ``dtype``
  (stored rows widened exactly: they become centres).
  ``stored_rows(bounds)``: this holder's rows in the ranges ``[(start, stop), ...]``,
  one after another, as stored, on ``device`` (the few blocks k-means++'s draws read again).
- ``reduce_sum``, ``all_gather``, ``concat``, ``broadcast``, ``rank``, ``world_size``:
  the exchanges between holders (identities when one process holds every row).
- ``assign(...)``, ``lloyd_step(...)``: the fused kernels, retried in halves on a
  CUDA out-of-memory error (see ``gpukmeans.kernels.resilient``); ``assigned_blocks(...)``: ``assign`` over
  every row in blocks of bounded size.
- ``minibatches(...)``: an endless stream of mini-batches for mini-batch k-means.
- ``conditioned(conditioning, storage_dtype)``: the same rows as every pass sees them,
  conditioned (see ``conditioning``) and stored in ``storage_dtype``. A fit builds its
  source from the rows as given, takes their moments, then computes on this one.
"""

from typing import Optional

import numpy as np
import torch

from .._device import assign_block_bytes, row_blocks, widened_block_bytes
from ..kernels import backend_for
from ..kernels.resilient import ResilientAssigner
from .conditioning import Conditioning


class DataSource:
    """What every data source shares: the exchanges of a single holder, and the kernel call.

    Subclasses provide ``n_samples, n_features, dtype, device, sample_weight,
    chunks()`` and ``take_local(indices)``.
    """

    row_offset = 0
    rank = 0
    world_size = 1
    sample_weight: Optional[torch.Tensor] = None
    recordable_pass = False
    conditioning = Conditioning()  # how the rows handed out relate to the rows as given

    @property
    def storage_dtype(self) -> torch.dtype:
        """The dtype of the rows ``chunks()`` yields (``dtype`` unless stored in 16 bits)."""
        return self.dtype

    # ------------------------------------------------------------------ rows
    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """The rows at global ``indices``, on ``device``."""
        return self.take_local(indices)

    def stored_rows(self, bounds) -> torch.Tensor:
        """This holder's rows in the (local) ranges ``[(start, stop), ...]``, one after
        another, in ``storage_dtype``, on ``device``: one ``take_local``."""
        indices = torch.cat([torch.arange(start, stop) for start, stop in bounds])
        # widened exactly by take_local, so narrowing them back is exact too
        return self.take_local(indices).to(self.storage_dtype)

    def weights_of(self, indices: torch.Tensor) -> torch.Tensor:
        """The sample weights of the rows at global ``indices``."""
        if self.sample_weight is None:
            return torch.ones(len(indices), dtype=self.dtype, device=self.device)
        return self.sample_weight[indices.to(self.device)]

    # ------------------------------------------------------------- exchanges
    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a partial result over every holder of rows; one process holds them all here."""
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Stack every holder's ``tensor`` (same shape on each) along a new first dimension."""
        return tensor[None]

    def concat(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every holder's ``tensor`` (any length along dim 0) in rank order."""
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor`` on every holder."""
        return tensor

    # ----------------------------------------------------------------- kernel
    @property
    def backend(self):
        """The kernels for these rows (:func:`gpukmeans.kernels.backend_for` of the device
        and storage dtype), resolved on first use; a benchmark may set another."""
        if getattr(self, "_backend", None) is None:
            self._backend = backend_for(self.device, self.storage_dtype)
        return self._backend

    @backend.setter
    def backend(self, backend) -> None:
        self._backend = backend
        self._assigners = {}

    def _assigner(self, dtype) -> ResilientAssigner:
        """The backend for rows of ``dtype`` here, its calls halved on a CUDA OOM (one per
        dtype: the stored rows, and float64 for the final labels)."""
        assigners = self.__dict__.setdefault("_assigners", {})
        if dtype not in assigners:
            backend = self.backend if dtype == self.storage_dtype else backend_for(self.device, dtype)
            assigners[dtype] = ResilientAssigner(backend)
        return assigners[dtype]

    def assign(self, rows, centers, center_sq_norms):
        """The backend's ``assign`` for ``rows``, each row's nearest centres and distances only
        (the passes that need Lloyd's per-centre sums use :meth:`lloyd_step`), halving the rows
        on a CUDA OOM."""
        return self._assigner(rows.dtype)(rows, centers, center_sq_norms)

    def assigned_blocks(self, centers, center_sq_norms=None):
        """``(start, rows, weights or None, AssignResult)`` over this holder's rows, in blocks.

        For the passes that need each row's nearest centres but not Lloyd's sums (the
        initialisations, the farthest points). The kernel's per-row results (a label
        and a distance for each of the G groups) and what the caller derives from them
        are bounded by a block of about ``assign_block_bytes``, not by a chunk: with ten
        restarts they would otherwise be the largest thing a fit holds. ``start`` is the
        block's local offset; ``center_sq_norms`` None computes them.
        """
        if center_sq_norms is None:
            center_sq_norms = (centers * centers).sum(dim=2)
        # an int64 label, a distance and a float64 copy of it, per group
        bytes_per_row = centers.shape[0] * (16 + centers.element_size())
        for chunk_start, chunk, chunk_weights in self.chunks():
            for start, stop in row_blocks(chunk.shape[0], bytes_per_row, assign_block_bytes(chunk.device)):
                rows = chunk[start:stop]
                weights = None if chunk_weights is None else chunk_weights[start:stop]
                yield chunk_start + start, rows, weights, self.assign(rows, centers, center_sq_norms)

    def exactly_assigned_blocks(self, centers, valid=None):
        """As :meth:`assigned_blocks`, in float64: each block of rows widened (exactly),
        the centres in float64. The final labels of a fit, every prediction and every
        inertia come from here: on conditioned rows (see ``conditioning``) the distances'
        expansion then loses only float64's last digits, so each label is the nearest
        centre in float64 arithmetic. ``rows`` are handed out as stored.

        ``valid`` (G, k_max) marks padding (None: every centre is real).
        """
        centers = centers.double()
        norms = (centers * centers).sum(dim=2)
        if valid is not None:
            norms = norms.masked_fill(~valid, float("inf"))
        # the widened rows, and an int64 label and a float64 distance per group
        bytes_per_row = 8 * centers.shape[2] + 16 * centers.shape[0]
        for chunk_start, chunk, chunk_weights in self.chunks():
            for start, stop in row_blocks(chunk.shape[0], bytes_per_row, widened_block_bytes(chunk.device)):
                rows = chunk[start:stop]
                weights = None if chunk_weights is None else chunk_weights[start:stop]
                result = self.assign(rows.double(), centers, norms)
                yield chunk_start + start, rows, weights, result

    def lloyd_pass_chunks(self):
        """The chunks of a Lloyd pass (see :meth:`lloyd_step`): ``chunks()`` unless a
        source knows a pass needs no chunk bound."""
        return self.chunks()

    def lloyd_step(self, rows, centers, center_sq_norms, weights, labels, label_columns, *, compute_inertia=True):
        """The backend's ``lloyd_step``, halving the rows on a CUDA OOM."""
        return self._assigner(rows.dtype).lloyd_step(
            rows, centers, center_sq_norms, weights, labels, label_columns, compute_inertia=compute_inertia
        )

    # ------------------------------------------------------------ mini-batch
    def minibatches(self, batch_size: int, random_state: np.random.RandomState):
        """Endless ``(rows, weights or None)`` mini-batches.

        As scikit-learn's MiniBatchKMeans: ``batch_size`` rows drawn with replacement,
        with probability proportional to their sample weight, then weighted equally
        (so ``weights`` is None). It draws with the same calls on ``random_state`` as
        ``random_state.choice(n, batch_size, p=w / w.sum())``, from a cumulative
        distribution computed once instead of at every step.
        """
        if self.sample_weight is None:
            # In the data's dtype, as scikit-learn's unit weights, so the draws agree bit for bit.
            weights = np.ones(self.n_samples, dtype=torch.empty(0, dtype=self.dtype).numpy().dtype)
        else:
            weights = self.sample_weight.detach().cpu().numpy()
        cdf = (weights / weights.sum()).astype(np.float64).cumsum()
        cdf /= cdf[-1]
        while True:
            indices = cdf.searchsorted(random_state.random_sample(batch_size), side="right")
            indices = torch.from_numpy(indices.astype(np.int64))
            yield self.take_local(indices), None

    def conditioned(self, conditioning, storage_dtype: Optional[torch.dtype] = None) -> "DataSource":
        """These rows conditioned and stored in ``storage_dtype`` (None: as they are)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds outside Python's memory (pinned pages, files)."""


class RowsByIndex:
    """A source's rows as a read-only (n, d) array indexed by global row numbers: ``rows[i]``
    is ``source.take(i)``, in the compute dtype. For the scores that need only some rows
    (a silhouette's sample) of a table that is not in memory, or spread across ranks
    (where every holder must index with the same rows).

    ``subset`` (global row numbers) makes row ``i`` the ``subset[i]``-th of the source.
    """

    def __init__(self, source: DataSource, n_rows: int, subset: Optional[torch.Tensor] = None):
        self._source = source
        self._subset = subset
        self.shape = (n_rows if subset is None else subset.shape[0], source.n_features)
        self.dtype = source.dtype
        self.device = source.device

    def __getitem__(self, indices: torch.Tensor) -> torch.Tensor:
        indices = torch.as_tensor(indices).to(torch.int64)
        if self._subset is not None:
            indices = self._subset[indices.to(self._subset.device)]
        return self._source.take(indices.cpu())
