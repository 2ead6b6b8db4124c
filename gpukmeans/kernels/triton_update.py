"""Triton path of Lloyd's centre update: one launch for what PyTorch does in about twenty.

Same contract as :func:`gpukmeans.kernels.reference.update_centers_reference`. After
the assignment pass, an iteration divides the sums into means (a centre nobody was
assigned to keeps its place), rounds them to the centres' dtype, and computes their
padded squared norms, the shift of each group's centres and whether one emptied. Each
of those is a tiny PyTorch operation; on a GPU each is a launch of its own, and on a
million rows these launches, not the pass, were most of an iteration (each node of a
CUDA graph costs a microsecond or two even when replayed). Here one program per group
does it all.

The means are bit for bit the reference's (the same float64 division and rounding);
the norms and the shift are the same sums added in another order, so they may differ
in the last bits.
"""

import torch
import triton
import triton.language as tl

from .reference import CenterUpdate

_BLOCK_K = 32
_BLOCK_D = 64


@triton.jit
def _update_kernel(SUMS, WEIGHT_SUMS, CHANGED, OLD, VALID, NEW, NORMS, PROGRESS,
                   n_groups, k_max, n_features,
                   BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    group = tl.program_id(0)
    shift = tl.zeros((BLOCK_K,), dtype=tl.float64)
    emptied = tl.zeros((BLOCK_K,), dtype=tl.int32)
    for k_start in range(0, k_max, BLOCK_K):
        centers = k_start + tl.arange(0, BLOCK_K)
        center_ok = centers < k_max
        slot = group * k_max + centers
        weight = tl.load(WEIGHT_SUMS + slot, mask=center_ok, other=1.0)
        valid = tl.load(VALID + slot, mask=center_ok, other=0) != 0
        emptied = tl.maximum(emptied, ((weight == 0) & valid).to(tl.int32))
        # only centres with weight divide; the others keep their place
        divisor = tl.where(weight > 0, weight, 1.0)
        norm = tl.zeros((BLOCK_K,), dtype=NEW.dtype.element_ty)
        for d_start in range(0, n_features, BLOCK_D):
            features = d_start + tl.arange(0, BLOCK_D)
            ok = center_ok[:, None] & (features < n_features)[None, :]
            offsets = slot.to(tl.int64)[:, None] * n_features + features[None, :]
            old = tl.load(OLD + offsets, mask=ok, other=0.0)
            means = tl.load(SUMS + offsets, mask=ok, other=0.0) / divisor[:, None]
            new = tl.where(weight[:, None] > 0, means, old.to(tl.float64)).to(NEW.dtype.element_ty)
            tl.store(NEW + offsets, new, mask=ok)
            moved = new.to(tl.float64) - old.to(tl.float64)
            shift += tl.sum(moved * moved, axis=1)
            norm += tl.sum(new * new, axis=1)
        tl.store(NORMS + slot, tl.where(valid, norm, float("inf")), mask=center_ok)
    tl.store(PROGRESS + group, tl.load(CHANGED + group).to(tl.float64))
    tl.store(PROGRESS + n_groups + group, tl.sum(shift, axis=0))
    tl.store(PROGRESS + 2 * n_groups + group, tl.max(emptied, axis=0).to(tl.float64))


def update_centers_triton(sums, weight_sums, n_changed, old_centers, valid) -> CenterUpdate:
    """:func:`~gpukmeans.kernels.reference.update_centers_reference` in one launch."""
    n_groups, k_max, n_features = old_centers.shape
    old_centers = old_centers.contiguous()
    new_centers = torch.empty_like(old_centers)
    new_norms = torch.empty((n_groups, k_max), dtype=old_centers.dtype, device=old_centers.device)
    progress = torch.empty((3, n_groups), dtype=torch.float64, device=old_centers.device)
    if n_groups:
        _update_kernel[(n_groups,)](
            sums.contiguous(), weight_sums.contiguous(), n_changed.contiguous(), old_centers,
            valid.contiguous(), new_centers, new_norms, progress, n_groups, k_max, n_features,
            BLOCK_K=min(_BLOCK_K, triton.next_power_of_2(k_max)),
            BLOCK_D=min(_BLOCK_D, triton.next_power_of_2(n_features)),
        )
    return CenterUpdate(new_centers, new_norms, progress)


def supports(old_centers: torch.Tensor) -> bool:
    """Float32 or float64 centres on CUDA (the Triton interpreter runs it on the CPU in tests)."""
    return old_centers.device.type == "cuda" and old_centers.dtype in (torch.float32, torch.float64)


def available() -> bool:
    """Triton compiles for CUDA devices only; the reference serves everything else."""
    return torch.cuda.is_available()
