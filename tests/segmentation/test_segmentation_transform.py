"""The CPU transform kernel against its torch reference, bit for bit, on a fitted
preprocessing with every step: imputation, log, clipping, one-hot levels (unknown and
missing ones), conditioning, centring and scaling, and dropped rows."""

import numpy as np
import pandas as pd
import pytest
import torch

from gpukmeans.segmentation import Preprocessor
from gpukmeans.segmentation.tables import TableReader
from gpukmeans.segmentation.transform import MISSING_CODE, transform_numpy, transform_torch


def _customers(n: int, seed: int, cities=("Lyon", "Nice", "Paris")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": [f"c{seed}-{i}" for i in range(n)],
        "spend": rng.lognormal(4.0, 1.2, n),
        "visits": rng.poisson(5.0, n).astype(np.float64) * 3.0 + 1e6,  # far from zero: conditioned
        "balance": rng.normal(-20.0, 300.0, n),
        "city": np.array(cities, dtype=object)[rng.integers(0, len(cities), n)],
    })
    for column, share in (("spend", 0.05), ("balance", 0.03), ("city", 0.04)):
        frame.loc[rng.random(n) < share, column] = None
    return frame


@pytest.fixture(scope="module")
def new_customers() -> pd.DataFrame:
    """Customers the fit never saw: an unknown city, below the log floor, beyond the clip bounds."""
    frame = _customers(1500, seed=2, cities=("Lyon", "Nice", "Paris", "Oslo"))
    frame.loc[[0, 1], "spend"] = [-50.0, 1e9]
    frame.loc[[2, 3], "balance"] = [-1e7, 1e7]
    return frame


def _fitted(scale: str, missing: str) -> Preprocessor:
    prep = Preprocessor(categorical=["city"], log=["spend"], clip=0.05, scale=scale, missing=missing)
    prep.fit(_customers(2000, seed=1))
    params = prep.parameters()
    assert params.log.tolist() == [True, False, False]
    assert np.isfinite(params.low).all() and np.isfinite(params.high).all()
    assert len(prep.categories_["city"]) == 3
    return prep


_BEFORE = 3


def _both(prep: Preprocessor, frame: pd.DataFrame):
    """Each batch transformed by the numba kernel and by the torch operations on the CPU."""
    params = prep.parameters()
    drop = prep.missing == "drop"
    reader = TableReader.open(frame)
    for batch in reader.batches(prep.feature_columns_):
        numbers = np.stack(prep.numeric_values(batch, reader.name))
        codes = prep.category_codes(batch)
        # Written after rows that must stay as they are (an earlier batch's).
        out = np.full((_BEFORE + batch.n_rows, params.n_features), np.nan, dtype=np.float32)
        kernel = transform_numpy(numbers, codes, drop, params, out, _BEFORE)
        assert np.isnan(out[:_BEFORE]).all()
        X, reference = transform_torch(torch.from_numpy(numbers), torch.from_numpy(codes), drop, params, "cpu")
        yield batch, codes, out[_BEFORE:], kernel, X.numpy(), reference


@pytest.mark.parametrize("missing", ["impute", "drop"])
@pytest.mark.parametrize("scale", ["standard", "robust", "minmax", "none"])
def test_kernel_equals_torch_bit_for_bit(scale, missing, new_customers):
    prep = _fitted(scale, missing)
    params = prep.parameters()
    # Robust and min-max scaling are known from the statistics pass (in the conditioning),
    # standard scaling only after the transform pass (centre and scale); a column far
    # from zero is shifted whatever the scaling.
    assert (params.shift != 0).any() and (params.unit != 1).any() == (scale != "none")
    assert (params.scale != 1).any() == (scale == "standard")
    n_batches = 0
    for batch, codes, out, kernel, X, reference in _both(prep, new_customers):
        n_batches += 1
        kept = batch.n_rows if kernel.rows is None else kernel.rows.size
        if missing == "drop":
            complete = np.isfinite(np.stack([batch.numbers[n] for n in prep.numeric_columns_])).all(axis=0)
            complete &= codes[0] != MISSING_CODE
            np.testing.assert_array_equal(kernel.rows, np.flatnonzero(complete))
            np.testing.assert_array_equal(reference.rows, kernel.rows)
            assert 0 < kept < batch.n_rows
        else:
            assert kernel.rows is None and reference.rows is None
        assert X.dtype == np.float32 and X.shape == (kept, prep.parameters().n_features)
        np.testing.assert_array_equal(out[:kept].view(np.uint32), X.view(np.uint32))
        np.testing.assert_array_equal(kernel.unknown, reference.unknown)
        assert kernel.unknown.tolist() == [int((codes[0] == -1).sum() if kernel.rows is None
                                               else (codes[0][kernel.rows] == -1).sum())]
        assert kernel.unknown[0] > 0
        # Moments of the conditioned values: counts and extremes exactly, sums to rounding.
        np.testing.assert_array_equal(kernel.moments[:, [0, 3, 4]], reference.moments[:, [0, 3, 4]])
        np.testing.assert_allclose(kernel.moments[:, 1:3], reference.moments[:, 1:3], rtol=1e-10, atol=1e-12)
    assert n_batches == 1


def test_levels_unknown_missing_and_clipped_values_are_transformed_as_the_fit_says(new_customers):
    prep = _fitted("standard", "impute")
    (batch, codes, out, _, X, _), = list(_both(prep, new_customers))
    first = len(prep.numeric_columns_)
    levels = prep.categories_["city"]
    absent, present = prep.level_values(present=False), prep.level_values(present=True)
    city = new_customers["city"]

    unknown = np.flatnonzero((city == "Oslo").to_numpy())
    np.testing.assert_array_equal(out[unknown, first:], np.tile(absent, (unknown.size, 1)))
    filled = levels.index(prep.category_fill_["city"])
    missing = np.flatnonzero(city.isna().to_numpy())
    expected = absent.copy()
    expected[filled] = present[filled]
    np.testing.assert_array_equal(out[missing, first:], np.tile(expected, (missing.size, 1)))

    # Beyond the clip bounds and below the log floor: the values at the bounds.
    spend, balance = prep.numeric_columns_.index("spend"), prep.numeric_columns_.index("balance")
    low_spend = out[0, spend]
    assert out[1, spend] == out[:, spend].max() and low_spend == out[:, spend].min()
    assert out[2, balance] == out[:, balance].min() and out[3, balance] == out[:, balance].max()
    # A missing value becomes the imputed one: the same row as one that holds that value.
    imputed = out[np.flatnonzero(new_customers["spend"].isna().to_numpy()), spend]
    holding = new_customers.iloc[:1].assign(spend=prep.impute_values_["spend"])
    assert imputed.size > 0 and (imputed == prep.transform(holding).X[0, spend].astype(np.float32)).all()


@pytest.mark.parametrize("missing", ["impute", "drop"])
def test_transforming_a_table_uses_the_kernel(missing, new_customers):
    prep = _fitted("robust", missing)
    (_, _, out, kernel, _, _), = list(_both(prep, new_customers))
    kept = out if kernel.rows is None else out[: kernel.rows.size]
    transformed = prep.transform(new_customers)
    np.testing.assert_array_equal(transformed.X, kept.astype(np.float64))
    rows = np.arange(len(new_customers)) if kernel.rows is None else kernel.rows
    np.testing.assert_array_equal(transformed.rows, rows)
