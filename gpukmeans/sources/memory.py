"""Rows held in memory: one tensor on the device where the work runs."""

from typing import Iterator, Optional

import torch

from .base import DataSource
from .conditioning import Conditioning
from .storage import compute_dtype


class InMemorySource(DataSource):
    """Rows held in one tensor, visited in chunks of ``chunk_size`` rows.

    Parameters
    ----------
    X : (n, d) float tensor on the device where the work runs, in its storage dtype
        (float16 and bfloat16 rows compute in float32).
    sample_weight : (n,) tensor in the compute dtype on X's device, or None for unit weights.
    chunk_size : rows per chunk; bounds the working memory of every pass.
    owns_rows : whether X is a copy made for this fit, which conditioning may overwrite
        (never the caller's memory).
    conditioning : how X relates to the rows as given, when it is already conditioned.
    """

    def __init__(self, X: torch.Tensor, sample_weight: Optional[torch.Tensor], chunk_size: int, *,
                 owns_rows: bool = False, conditioning: Optional[Conditioning] = None):
        self.X = X
        self.sample_weight = sample_weight
        self.chunk_size = max(1, int(chunk_size))
        self.owns_rows = owns_rows
        if conditioning is not None:
            self.conditioning = conditioning

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return compute_dtype(self.X.dtype)

    @property
    def storage_dtype(self) -> torch.dtype:
        return self.X.dtype

    @property
    def device(self) -> torch.device:
        return self.X.device

    def chunks(self) -> Iterator[tuple[int, torch.Tensor, Optional[torch.Tensor]]]:
        """Yield ``(start, rows, weights or None)`` covering every row once, in order."""
        for start in range(0, self.n_samples, self.chunk_size):
            stop = min(start + self.chunk_size, self.n_samples)
            weights = None if self.sample_weight is None else self.sample_weight[start:stop]
            yield start, self.X[start:stop], weights

    def lloyd_pass_chunks(self):
        """The whole table as one chunk where the pass's kernel allocates nothing per row:
        the CPU kernel and the Triton kernel write the labels in place and return totals.

        There a chunk bounds no memory and only costs: on the CPU a hand-off to the
        worker threads and a wait for the slowest (a pass in five chunks about a quarter
        slower than in one: benchmarks/bench_lloyd.py); on a GPU a
        launch whose last tiles leave most of the chip idle, and its totals added up.
        """
        if self.X.device == self.device and self.backend.whole_pass:
            yield 0, self.X, self.sample_weight
        else:
            yield from self.chunks()

    @property
    def recordable_pass(self) -> bool:
        """Whether a Lloyd iteration may be recorded as a CUDA graph (see ``_lloyd``):
        the rows are already on the GPU, so a pass launches kernels and copies nothing."""
        return self.X.device.type == "cuda"

    def take_local(self, indices: torch.Tensor) -> torch.Tensor:
        """The rows at this holder's ``indices`` (a small set: centres, candidates), in ``dtype``."""
        return self.X[indices.to(self.device)].to(self.dtype)

    def stored_rows(self, bounds) -> torch.Tensor:
        return torch.cat([self.X[start:stop] for start, stop in bounds]).to(self.device)

    def conditioned(self, conditioning, storage_dtype: Optional[torch.dtype] = None) -> "InMemorySource":
        """The conditioned rows, computed once: in place when this source owns them and
        keeps their dtype, else in a copy (the caller's memory is never written)."""
        storage_dtype = storage_dtype or self.X.dtype
        if conditioning.is_identity and storage_dtype == self.X.dtype:
            return self
        rows = conditioning.rows(self.X, storage_dtype, in_place=self.owns_rows)
        return self._with_rows(rows, conditioning)

    def _with_rows(self, rows: torch.Tensor, conditioning: Conditioning) -> "InMemorySource":
        """This source with its rows conditioned (a tensor it owns)."""
        return InMemorySource(rows, self.sample_weight, self.chunk_size, owns_rows=True, conditioning=conditioning)
