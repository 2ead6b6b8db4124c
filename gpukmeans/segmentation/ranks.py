"""``segment`` across the processes of a torch.distributed run (torchrun).

Every rank reads its own share of the table's batches (``part=(rank, world)``:
Parquet row groups in contiguous runs, so that the ranks' rows follow each other
in rank order), learns statistics over them, and the ranks then agree:

- on how each column is read (:func:`agree_on_plans`): a column read as numbers in one
  rank's rows and as text in another's is read as text by all, and the pass is read
  again until every rank reads every column alike;
- on the statistics (:func:`merge_statistics`): counts and level counts add, moments
  merge in rank order, the uniform sample keeps the smallest hashes of the union;
- on the transformed columns' moments, gathered batch by batch in table order, so
  that the centring and scaling equal a single process's to the bit.

The fit and the metrics use the engine's own torch.distributed support on each
rank's rows. Rank 0 then gathers each customer's segment and distance, profiles the
table and writes every output; the other ranks write nothing.

Objects travel through a gloo group of the same ranks (pickled, on the CPU), also
when the engine's collectives run on NCCL.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable, Sequence, TypeVar

import numpy as np

from .errors import InputError
from .statistics import TableStatistics
from .tables import NUMBER, TEXT, TEXT_NUMBER, ColumnPlan

T = TypeVar("T")

_KIND_WIDTH = {NUMBER: 0, TEXT_NUMBER: 1, TEXT: 2}


class Ranks:
    """This process's place in a torch.distributed run of two or more ranks.

    Use :meth:`current`; it is None in a single process.
    """

    def __init__(self, rank: int, world: int, group):
        self.rank = rank
        self.world = world
        self._group = group

    @classmethod
    def current(cls) -> "Ranks | None":
        """The ranks of the initialised default process group, or None without one
        (or with a single rank)."""
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
            return None
        group = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        return cls(dist.get_rank(), dist.get_world_size(), group)

    @property
    def part(self) -> tuple[int, int]:
        """This rank's share of the table's batches, as :meth:`TableReader.batches` takes it."""
        return self.rank, self.world

    @property
    def leads(self) -> bool:
        """Whether this rank writes the outputs (rank 0)."""
        return self.rank == 0

    def all_gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        import torch.distributed as dist

        values: list = [None] * self.world
        dist.all_gather_object(values, value, group=self._group)
        return values

    def gather(self, value: T) -> list[T] | None:
        """Every rank's ``value`` in rank order on rank 0; None on the others."""
        import torch.distributed as dist

        values: list | None = [None] * self.world if self.leads else None
        dist.gather_object(value, values, dst=0, group=self._group)
        return values

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        import torch.distributed as dist

        box = [value if self.leads else None]
        dist.broadcast_object_list(box, src=0, group=self._group)
        return box[0]

    def sum(self, array: np.ndarray) -> np.ndarray:
        """The sum over ranks of ``array``, added in rank order (the same bits on every rank)."""
        parts = self.all_gather(np.asarray(array))
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total

    def together(self, work: Callable[[], T]) -> T:
        """Run ``work`` on every rank; when it fails on any, raise on all (the failing
        ranks their own error), so that no rank waits for the others forever."""
        try:
            value = work()
        except Exception as error:  # every error must reach the other ranks before it propagates
            self.all_gather(str(error))
            # A bare raise, never a saved error: a saved error's traceback holds this frame,
            # which holds the error, and that cycle keeps the process group alive past
            # destroy_process_group (gloo then aborts the process as Python exits).
            raise
        failed = [rank for rank, message in enumerate(self.all_gather(None)) if message is not None]
        if failed:
            raise InputError(f"rank {failed[0]} of {self.world} could not go on; see its message")
        return value


def torchrun_world() -> tuple[int, int] | None:
    """``(rank, world size)`` when this process was started by torchrun with 2+ ranks."""
    if "TORCHELASTIC_RUN_ID" not in os.environ and "MASTER_ADDR" not in os.environ:
        return None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else None


def start_process_group(device: str) -> "Ranks | None":
    """Join the torchrun run this process belongs to (NCCL for CUDA devices, gloo
    otherwise), or do nothing outside one. Returns :meth:`Ranks.current`."""
    import torch
    import torch.distributed as dist

    if torchrun_world() is None or dist.is_initialized():
        return Ranks.current()
    cuda = torch.cuda.is_available() and not str(device).startswith("cpu")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Ranks.current()


def stop_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------- agreeing


def agree_on_plans(ranks: Ranks, plans: dict[str, ColumnPlan]) -> dict[str, ColumnPlan] | None:
    """The plans every rank must read with, or None when every rank already reads
    every column alike (the pass stands)."""
    every_rank = ranks.all_gather(plans)
    widest = {name: replace(plan) for name, plan in every_rank[0].items()}
    for other in every_rank[1:]:
        for name, plan in other.items():
            widest[name] = _wider(widest[name], plan) if name in widest else replace(plan)
    same = all(_alike(rank_plans.get(name), plan) for rank_plans in every_rank for name, plan in widest.items())
    return None if same else widest


def _wider(a: ColumnPlan, b: ColumnPlan) -> ColumnPlan:
    if a.kind not in _KIND_WIDTH or b.kind not in _KIND_WIDTH:
        return replace(a)
    if _KIND_WIDTH[a.kind] != _KIND_WIDTH[b.kind]:
        return replace(max(a, b, key=lambda plan: _KIND_WIDTH[plan.kind]))
    if a.kind != TEXT_NUMBER or a.styles is None or b.styles is None:
        return replace(a, styles=a.styles or b.styles)
    merged = a.styles.merge(b.styles)
    return ColumnPlan(a.name, TEXT, None) if merged is None else ColumnPlan(a.name, TEXT_NUMBER, merged)


def _alike(a: ColumnPlan | None, b: ColumnPlan) -> bool:
    return a is not None and a.kind == b.kind and a.styles == b.styles


def merge_statistics(ranks: Ranks, stats: TableStatistics, source: str) -> TableStatistics:
    """The statistics of the whole table (``source`` in messages) from every rank's
    (the same on every rank).

    Raises
    ------
    InputError
        On every rank, when a rank's share of the table holds no rows.
    """
    every_rank = ranks.all_gather(_portable(stats))
    empty = [rank for rank, rank_stats in enumerate(every_rank) if rank_stats.n_rows == 0]
    if empty:
        raise InputError(
            f"{source} splits into too few batches for {ranks.world} ranks: rank {empty[0]} gets no rows; "
            f"use fewer ranks, or write the table in more Parquet row groups"
        )
    kept_by_rank = [s.n_kept for s in every_rank]
    merged = every_rank[0]
    merged.sample.merge([s.sample.state() for s in every_rank], seen=sum(s.sample.seen for s in every_rank))
    for other in every_rank[1:]:
        merged.merge(other)
    merged.kept_by_rank = kept_by_rank
    return merged


def _portable(stats: TableStatistics) -> TableStatistics:
    """``stats`` with its sample trimmed, ready to pickle."""
    stats.sample.state()
    return stats


def gather_rows(ranks: Ranks, arrays: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """Each of ``arrays`` (this rank's rows) joined over the ranks in rank order, on
    rank 0; None on the others."""
    every_rank = ranks.gather(list(arrays))
    if every_rank is None:
        return None
    return [np.concatenate([rank_arrays[i] for rank_arrays in every_rank]) for i in range(len(arrays))]


__all__ = ["Ranks", "agree_on_plans", "gather_rows", "merge_statistics", "start_process_group",
           "stop_process_group", "torchrun_world"]
