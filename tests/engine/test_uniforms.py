"""Per-row uniforms: the splitmix64 finaliser of (seed, row index), whatever the chunking."""

import numpy as np
import pytest
import torch

from gpukmeans.engine.uniforms import new_seed, row_uniforms

_MASK = (1 << 64) - 1


def _splitmix64_finaliser(x: int) -> int:
    """The finaliser on Python integers, modulo 2**64 (an implementation apart from torch's int64)."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def _reference_uniform(seed: int, row: int) -> float:
    state = (row * 0x9E3779B97F4A7C15 + seed * 0x632BE59BD9B4E019 + 1) & _MASK
    return ((_splitmix64_finaliser(state) >> 11) + 1) * 2.0**-53


def test_the_reference_finaliser_is_splitmix64():
    # splitmix64's first output from state 0 (its state moves by the golden ratio first)
    assert _splitmix64_finaliser(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**62 + 7, 2**63 - 1])
def test_row_uniforms_are_the_finaliser_of_seed_and_row(seed):
    # rows at both ends of int64 too, where the products wrap and the shifts meet the sign bit
    rows = [0, 1, 2, 3, 1000, 2**31 + 5, 2**62, 2**63 - 1]
    values = row_uniforms(seed, torch.tensor(rows))
    assert values.dtype == torch.float64
    assert values.tolist() == [_reference_uniform(seed, row) for row in rows]


def test_row_uniforms_lie_in_the_half_open_unit_interval_and_ignore_the_chunking():
    rows = torch.arange(20_000)
    values = row_uniforms(7, rows)
    assert 0.0 < float(values.min()) and float(values.max()) <= 1.0
    assert abs(float(values.mean()) - 0.5) < 0.01  # 20,000 uniforms: standard error 0.002
    chunks = torch.cat([row_uniforms(7, rows[start : start + 999]) for start in range(0, 20_000, 999)])
    assert torch.equal(chunks, values)
    assert torch.equal(row_uniforms(7, rows[[5, 3]]), values[[5, 3]])


def test_row_uniforms_in_another_dtype_are_the_rounded_float64_ones():
    rows = torch.arange(100, dtype=torch.int32)
    single = row_uniforms(3, rows, dtype=torch.float32)
    assert single.dtype == torch.float32
    assert torch.equal(single, row_uniforms(3, rows.long()).float())


def test_new_seed_is_a_63_bit_draw_that_moves_the_state_on():
    state, same = np.random.RandomState(4), np.random.RandomState(4)
    seeds = [new_seed(state) for _ in range(200)]
    assert seeds == [new_seed(same) for _ in range(200)]
    assert len(set(seeds)) == 200 and all(isinstance(seed, int) and 0 <= seed < 2**63 for seed in seeds)
    assert max(seeds) > 2**62  # the whole 63-bit range: 200 draws all below 2**62 has chance 2**-200
