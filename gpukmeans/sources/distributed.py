"""torch.distributed: each rank holds some of the table's rows, the fit covers them all.

:class:`DistributedSource` wraps the source of one rank's rows (in memory, pinned, or
a shard of a file) and turns the seam's exchanges into collectives: sums and counts
by all-reduce, small sets (candidates, drawn indices) by all-gather, and the rows at
global indices by an all-reduce in which only the owner contributes. No rank ever
sends rows beyond the few that become centres or candidates. Collectives run on the
backend's device: CUDA for NCCL, the CPU for gloo.
"""

import copy
import os
from typing import Optional

import torch
import torch.distributed as dist

from .base import DataSource


def active_group(distributed: bool):
    """The default process group when ``distributed`` and one with 2+ ranks is initialised."""
    if not distributed or not dist.is_available() or not dist.is_initialized():
        return None
    if dist.get_world_size() < 2:
        return None
    return dist.group.WORLD


def communication_device(group) -> torch.device:
    """Where tensors must be for the group's backend: the current CUDA device for NCCL."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def local_cuda_device() -> Optional[torch.device]:
    """``cuda:LOCAL_RANK`` under torchrun, so that ``device="auto"`` gives each rank its own GPU."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None or not torch.cuda.is_available():
        return None
    return torch.device("cuda", int(local_rank) % torch.cuda.device_count())


class Exchange:
    """The collectives of one process group, on the backend's device."""

    def __init__(self, group):
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.device = communication_device(group)

    def _outbound(self, tensor: torch.Tensor) -> torch.Tensor:
        # Always a fresh buffer: collectives work in place and must not touch the caller's.
        return tensor.detach().to(self.device, copy=True).contiguous()

    def reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        buffer = self._outbound(tensor)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=self.group)
        return buffer.to(tensor.device)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        buffer = self._outbound(tensor)
        parts = [torch.empty_like(buffer) for _ in range(self.world_size)]
        dist.all_gather(parts, buffer, group=self.group)
        return torch.stack(parts).to(tensor.device)

    def concat(self, tensor: torch.Tensor) -> torch.Tensor:
        sizes = self.all_gather(torch.tensor([tensor.shape[0]], dtype=torch.int64)).flatten().tolist()
        longest = max(sizes)
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.shape[0]] = tensor
        gathered = self.all_gather(padded)
        return torch.cat([gathered[r, : sizes[r]] for r in range(self.world_size)])

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        buffer = self._outbound(tensor)
        dist.broadcast(buffer, src=dist.get_global_rank(self.group, 0), group=self.group)
        return buffer.to(tensor.device)

    def all_ok(self, failed: bool) -> None:
        """Learn whether every rank succeeded, so that no rank waits forever for one that failed.

        A rank that failed calls this from its ``except`` block and then re-raises its own
        error; the others raise here, saying which ranks failed.
        """
        flags = self.all_gather(torch.tensor([failed], dtype=torch.int64)).flatten()
        failed_ranks = torch.nonzero(flags).flatten().tolist()
        if failed_ranks and not failed:
            raise ValueError(f"gpukmeans: rank(s) {failed_ranks} rejected their data; see their error.")


class DistributedSource(DataSource):
    """One rank's rows as part of the table that every rank together holds.

    Parameters
    ----------
    local : the data source of this rank's rows.
    exchange : :class:`Exchange` of the process group.
    row_offset : global index of this rank's first row; None means the ranks'
        rows follow each other in rank order (found by exchanging the row counts).
    """

    def __init__(self, local: DataSource, exchange: Exchange, row_offset: Optional[int] = None):
        self.local = local
        self.exchange = exchange
        self.rank = exchange.rank
        self.world_size = exchange.world_size
        counts = self.all_gather(torch.tensor([local.n_samples], dtype=torch.int64)).flatten()
        self.total_samples = int(counts.sum())
        self.row_offset = int(counts[: self.rank].sum()) if row_offset is None else int(row_offset)

    @property
    def n_samples(self) -> int:
        return self.local.n_samples

    @property
    def n_features(self) -> int:
        return self.local.n_features

    @property
    def dtype(self) -> torch.dtype:
        return self.local.dtype

    @property
    def storage_dtype(self) -> torch.dtype:
        return self.local.storage_dtype

    @property
    def device(self) -> torch.device:
        return self.local.device

    @property
    def sample_weight(self):
        return self.local.sample_weight

    @property
    def conditioning(self):
        return self.local.conditioning

    def chunks(self):
        return self.local.chunks()

    def lloyd_pass_chunks(self):
        return self.local.lloyd_pass_chunks()

    def take_local(self, indices: torch.Tensor) -> torch.Tensor:
        return self.local.take_local(indices)

    def stored_rows(self, bounds) -> torch.Tensor:
        return self.local.stored_rows(bounds)

    def _owned(self, indices: torch.Tensor):
        indices = indices.to(self.device)
        mine = (indices >= self.row_offset) & (indices < self.row_offset + self.n_samples)
        return mine, indices[mine] - self.row_offset

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        mine, local = self._owned(indices)
        rows = torch.zeros(len(indices), self.n_features, dtype=self.dtype, device=self.device)
        if local.numel():
            rows[mine] = self.local.take_local(local)
        # A row has one owner; the others add zeros, which leaves its bits unchanged.
        return self.reduce_sum(rows)

    def weights_of(self, indices: torch.Tensor) -> torch.Tensor:
        mine, local = self._owned(indices)
        weights = torch.zeros(len(indices), dtype=self.dtype, device=self.device)
        if local.numel():
            weights[mine] = 1 if self.sample_weight is None else self.sample_weight[local]
        return self.reduce_sum(weights)

    def reduce_sum(self, tensor):
        return self.exchange.reduce_sum(tensor)

    def all_gather(self, tensor):
        return self.exchange.all_gather(tensor)

    def concat(self, tensor):
        return self.exchange.concat(tensor)

    def broadcast(self, tensor):
        return self.exchange.broadcast(tensor)

    def conditioned(self, conditioning, storage_dtype=None) -> "DistributedSource":
        local = self.local.conditioned(conditioning, storage_dtype)
        if local is self.local:
            return self
        joined = copy.copy(self)
        joined.local = local
        return joined

    def close(self) -> None:
        self.local.close()


# Storage dtypes as numbers, so that ranks can compare theirs in one all-gather.
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_DTYPE_NAMES = {code: str(dtype).removeprefix("torch.") for dtype, code in _DTYPE_CODES.items()}


def join_ranks(local: DataSource, exchange: Exchange, storage_dtype: torch.dtype, *,
               shared_table: bool) -> "DistributedSource":
    """This rank's source as part of the whole table, after checking that every rank holds
    the same kind of rows (features, and the dtype they will be stored in).

    ``shared_table``: every rank opened the same file and holds its own slice of it (the
    source knows its row offset); otherwise the ranks' rows follow each other in rank order.
    """
    has_weights = local.sample_weight is not None
    facts = torch.tensor([local.n_features, _DTYPE_CODES[storage_dtype], has_weights], dtype=torch.int64)
    every_rank = exchange.all_gather(facts)
    if len(set(every_rank[:, 0].tolist())) > 1 or len(set(every_rank[:, 1].tolist())) > 1:
        local.close()
        described = ", ".join(
            f"rank {r}: {int(f)} features, {_DTYPE_NAMES[int(c)]}"
            for r, (f, c, _) in enumerate(every_rank.tolist())
        )
        raise ValueError(f"Every rank must hold rows with the same features and dtype; got {described}.")
    if bool(every_rank[:, 2].any()) and not has_weights:
        local.sample_weight = torch.ones(local.n_samples, dtype=local.dtype, device=local.device)
    source = DistributedSource(local, exchange, row_offset=local.row_offset if shared_table else None)
    if source.sample_weight is not None:
        total = source.reduce_sum(source.sample_weight.double().sum())
        if float(total) <= 0:
            source.close()
            raise ValueError("sample_weight must have at least one positive weight; every weight is zero.")
    return source
