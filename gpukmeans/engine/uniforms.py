"""Random numbers that do not depend on how the rows are chunked.

A per-row uniform is a hash of (seed, row index): any chunk size, any number of
streams or ranks draws exactly the same value for the same row, which keeps fits
identical whatever ``chunk_size`` is.
"""

import numpy as np
import torch

_MASK_64 = (1 << 64) - 1


def _as_signed(value: int) -> int:
    value &= _MASK_64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _as_signed(0x9E3779B97F4A7C15)
_MIX_1 = _as_signed(0xBF58476D1CE4E5B9)
_MIX_2 = _as_signed(0x94D049BB133111EB)


def _logical_shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    # torch shifts int64 arithmetically; mask off the copied sign bits.
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def row_uniforms(seed: int, row_indices: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """Uniforms in (0, 1], one per row index, from the splitmix64 finaliser."""
    x = row_indices.to(torch.int64) * _GOLDEN + _as_signed(seed * 0x632BE59BD9B4E019 + 1)
    x = (x ^ _logical_shift_right(x, 30)) * _MIX_1
    x = (x ^ _logical_shift_right(x, 27)) * _MIX_2
    x = x ^ _logical_shift_right(x, 31)
    top_53_bits = _logical_shift_right(x, 11).to(torch.float64)
    return ((top_53_bits + 1.0) * 2.0**-53).to(dtype)


def new_seed(random_state: np.random.RandomState) -> int:
    """A fresh 63-bit seed drawn from a scikit-learn style RandomState."""
    return int(random_state.randint(0, np.iinfo(np.int64).max, dtype=np.int64))
