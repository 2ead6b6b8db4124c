"""Data sources: the one seam between k-means' loops and where the rows live.

Lloyd's loop, the initialisations and the scores are written once against this
interface (as FAISS does with its ``DatasetAssign``). An in-memory tensor on the CPU
or a GPU is one implementation; data streamed from files or sharded across
torch.distributed ranks are others.
"""

from typing import Iterator, Optional

import torch


class InMemorySource:
    """Rows held in one tensor, visited in chunks of ``chunk_size`` rows.

    Parameters
    ----------
    X : (n, d) float tensor on the device where the work runs.
    sample_weight : (n,) tensor in X's dtype and device, or None for unit weights.
    chunk_size : rows per chunk; bounds the working memory of every pass.
    """

    def __init__(self, X: torch.Tensor, sample_weight: Optional[torch.Tensor], chunk_size: int):
        self.X = X
        self.sample_weight = sample_weight
        self.chunk_size = max(1, int(chunk_size))

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def dtype(self) -> torch.dtype:
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

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """The rows at global ``indices`` (a small set: centres, candidates)."""
        return self.X[indices.to(self.device)]

    def weights_of(self, indices: torch.Tensor) -> torch.Tensor:
        """The sample weights of the rows at global ``indices``."""
        if self.sample_weight is None:
            return torch.ones(len(indices), dtype=self.dtype, device=self.device)
        return self.sample_weight[indices.to(self.device)]

    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a partial result over every holder of rows; one process holds them all here."""
        return tensor
