"""The one way in (``open_source``) for a table on disk: the rows it refuses, with their
messages, and the dtype and checks of the weights that come with it."""

import numpy as np
import pandas as pd
import pytest
import torch

from gpukmeans.sources import open_source

CPU = torch.device("cpu")


def _message(action):
    with pytest.raises(ValueError) as error:
        action()
    return str(error.value)


def test_an_empty_table_is_refused_and_a_single_row_opens(tmp_path):
    empty, single = tmp_path / "empty.parquet", tmp_path / "single.parquet"
    pd.DataFrame({"a": np.zeros(0), "b": np.zeros(0)}).to_parquet(empty)
    pd.DataFrame({"a": [1.5], "b": [2.5]}).to_parquet(single)
    assert _message(lambda: open_source(empty, device=CPU)) == (
        f"{empty}: Found array with 0 sample(s) while a minimum of 1 is required.")
    opened = open_source(single, device=CPU)
    assert opened.n_rows == 1 and opened.columns == ["a", "b"]


def test_a_table_with_other_columns_than_the_model_is_refused(tmp_path):
    path = tmp_path / "three.csv"
    pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]}).to_csv(path, index=False)
    assert _message(lambda: open_source(path, device=CPU, expected_features=2)) == (
        f"{path}: 3 numeric column(s), but the model is expecting 2 features as input.")
    assert open_source(path, device=CPU, expected_features=3).n_rows == 2


@pytest.mark.parametrize("table_dtype, storage, weights_dtype", [
    (np.float32, None, torch.float32),  # a float32 table computes in float32
    (np.float64, None, torch.float64),
    (np.float32, torch.float64, torch.float64),
    (np.float64, torch.float16, torch.float32),  # 16-bit storage computes in float32
])
def test_a_tables_weights_take_the_dtype_its_rows_compute_in(tmp_path, table_dtype, storage, weights_dtype):
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"a": np.arange(5, dtype=table_dtype), "b": np.ones(5, dtype=table_dtype)}).to_parquet(path)
    weights = [0.1, 0.2, 0.3, 0.4, 0.5]
    opened = open_source(path, device=CPU, sample_weight=weights, storage_dtype=storage)
    assert opened.source.sample_weight.dtype == weights_dtype
    np.testing.assert_allclose(opened.source.sample_weight.double().numpy(), weights, rtol=1e-7)


def test_a_tables_weights_all_zero_are_refused_unless_asked_not_to(tmp_path):
    # under torch.distributed one rank's share may weigh nothing: the caller checks the total
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_parquet(path)
    assert _message(lambda: open_source(path, device=CPU, sample_weight=np.zeros(3))) == (
        "sample_weight must have at least one positive weight; every weight is zero.")
    opened = open_source(path, device=CPU, sample_weight=np.zeros(3), require_positive_weights=False)
    assert torch.equal(opened.source.sample_weight, torch.zeros(3, dtype=torch.float64))
