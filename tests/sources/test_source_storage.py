"""The storage dtype a ``dtype`` parameter names, the dtype results are computed in, and
rows converted to storage without silent infinities."""

import numpy as np
import pytest
import torch

from gpukmeans.sources.storage import compute_dtype, resolve_storage_dtype, to_storage


@pytest.mark.parametrize("dtype, expected", [
    (None, None),
    (torch.float16, torch.float16),
    ("bfloat16", torch.bfloat16),
    ("float16", torch.float16),
    (np.float32, torch.float32),
    (np.dtype(np.float64), torch.float64),
])
def test_a_dtype_parameter_names_a_torch_dtype(dtype, expected):
    assert resolve_storage_dtype(dtype) is expected


@pytest.mark.parametrize("dtype", ["int8", np.int32])
def test_a_dtype_that_is_not_a_storage_dtype_is_a_clear_error(dtype):
    with pytest.raises(ValueError, match=r"^dtype=.* is not a storage dtype; use None, 'float32', 'float64', "
                                         r"'bfloat16' or 'float16'\.$"):
        resolve_storage_dtype(dtype)


@pytest.mark.parametrize("storage, expected", [
    (torch.bfloat16, torch.float32), (torch.float16, torch.float32),
    (torch.float32, torch.float32), (torch.float64, torch.float64),
])
def test_16_bit_rows_compute_in_float32_the_others_in_their_own_dtype(storage, expected):
    assert compute_dtype(storage) is expected


def test_rows_already_in_storage_or_without_one_are_not_copied():
    X = torch.ones(3, 2, dtype=torch.float32)
    assert to_storage(X, None) is X and to_storage(X, torch.float32) is X


def test_rows_converted_to_storage_are_the_rounded_rows():
    X = torch.tensor([[1.0 + 2**-12, -3.5], [65504.0, 1e-3]], dtype=torch.float64)
    for storage in (torch.float16, torch.bfloat16, torch.float32):
        stored = to_storage(X, storage)
        assert stored.dtype == storage and torch.equal(stored, X.to(storage))
    widened = to_storage(X.float(), torch.float64)
    assert widened.dtype == torch.float64 and torch.equal(widened, X.float().double())


@pytest.mark.parametrize("storage, value, message", [
    (torch.float16, 70_000.0, r"^centers has values beyond the range of float16 \(largest 65504\); scale the data, "
                              r"or use dtype='bfloat16' \(float32's range\) or 'float32'\.$"),
    (torch.bfloat16, 1e300, r"^centers has values beyond the range of bfloat16 \(largest 3\.38953e\+38\)"),
])
def test_values_beyond_the_storage_range_are_an_error_not_infinities(storage, value, message):
    X = torch.tensor([[1.0, value]], dtype=torch.float64)
    with pytest.raises(ValueError, match=message):
        to_storage(X, storage, name="centers")
    with pytest.raises(ValueError, match="^X has values"):
        to_storage(X, storage)
