"""The one way in (``open_source``): arrays and tensors as the metrics give them (no
estimator's validation), tables on disk, the rows it refuses with their messages, and the
dtype and checks of the weights that come with them."""

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


def test_arrays_become_float_rows_and_tensors_stay_tensors():
    # without an estimator's validation (the metrics): scikit-learn's check_array for arrays
    listed = open_source([[1, 2], [3, 4], [5, 7]], device=CPU)
    assert listed.output.kind == "numpy" and listed.source.X.dtype == torch.float64 and listed.n_rows == 3
    assert torch.equal(listed.source.X, torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]], dtype=torch.float64))
    rows = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float32)
    tensor = open_source(rows, device=CPU)
    assert tensor.output.kind == "torch" and tensor.source.X.dtype == torch.float32
    assert torch.equal(tensor.source.X, rows)
    # 16-bit rows stay 16-bit unless a storage dtype is asked for
    half = open_source(rows.half(), device=CPU)
    assert half.source.X.dtype == torch.float16 and torch.equal(half.source.X, rows.half())
    assert open_source(rows.half(), device=CPU, storage_dtype=torch.float32).source.X.dtype == torch.float32


def test_arrays_are_refused_with_a_message_that_says_why():
    frame = pd.DataFrame({"spend": [1.0, 2.0], "city": ["Leiden", "Delft"]})
    assert _message(lambda: open_source(frame, device=CPU)) == (
        "X has non-numeric column(s) ['city']; select or encode them first")
    assert _message(lambda: open_source(np.ones((2, 2)), device=CPU, columns=["a"])) == (
        "columns= selects the columns of a Parquet or CSV file; for a DataFrame pass df[columns].")


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


def test_weights_all_zero_are_refused_unless_asked_not_to(tmp_path):
    # under torch.distributed one rank's share may weigh nothing: the caller checks the total
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_parquet(path)
    for X in (path, np.array([[1.0], [2.0], [3.0]])):
        assert _message(lambda: open_source(X, device=CPU, sample_weight=np.zeros(3))) == (
            "sample_weight must have at least one positive weight; every weight is zero.")
        opened = open_source(X, device=CPU, sample_weight=np.zeros(3), require_positive_weights=False)
        assert torch.equal(opened.source.sample_weight, torch.zeros(3, dtype=torch.float64))


@pytest.mark.filterwarnings("error")  # a Series' read-only values are no reason for a warning
def test_weights_of_every_kind_give_one_float_per_row():
    X = np.array([[1.0], [2.0], [3.0]])
    expected = torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64)
    for weights in ([0.5, 0.0, 2.0], pd.Series([0.5, 0.0, 2.0]), torch.tensor([0.5, 0.0, 2.0], dtype=torch.float32)):
        taken = open_source(X, device=CPU, sample_weight=weights).source.sample_weight
        assert taken.dtype == torch.float64 and torch.equal(taken, expected)
    # a scalar weighs every row alike; weights below 1 are weights too
    for scalar in (0.25, np.float32(0.25), torch.tensor(0.25)):
        weights = open_source(X, device=CPU, sample_weight=scalar).source.sample_weight
        assert weights.dtype == torch.float64 and torch.equal(weights, torch.full((3,), 0.25, dtype=torch.float64))


@pytest.mark.parametrize("weights, message", [
    (np.ones((3, 1)), "Sample weights must be 1D array or scalar, got 2D array."),
    (torch.ones(3, 1), "Sample weights must be 1D array or scalar, got 2D array."),
    (torch.ones(3, 2, 1), "Sample weights must be 1D array or scalar, got 3D array."),
    (torch.ones(1, 3), "Sample weights must be 1D array or scalar, got 2D array."),  # three, laid out as a row
    ([1.0, 2.0], "sample_weight.shape == (2,), expected shape (3,)!"),
    ([1.0, np.nan, 2.0], "Input sample_weight contains NaN or infinity."),
    ([1.0, None, 2.0], "Input sample_weight contains NaN or infinity."),  # a missing weight
    ([1.0, -0.5, 2.0], "sample_weight must be non-negative; found negative weights."),
])
def test_bad_weights_are_refused_with_a_message_that_says_why(weights, message):
    assert _message(lambda: open_source(np.ones((3, 2)), device=CPU, sample_weight=weights)) == message


def test_auto_chunks_are_sized_for_the_centres_and_the_dtype(tmp_path, monkeypatch):
    # Where a pass forms each chunk's distances (the reference kernel here, CUDA's kernels),
    # a row of a chunk costs itemsize * (2 d + 2 k + 8) bytes of the CPU's 8 MiB budget.
    monkeypatch.setenv("GPUKMEANS_KERNEL", "reference")
    X = np.ones((10, 2))
    assert open_source(X, device=CPU).source.chunk_size == 8 * 2**20 // (8 * (4 + 16 + 8))  # k = 8 by default
    assert open_source(X, device=CPU, n_centers=3).source.chunk_size == 8 * 2**20 // (8 * (4 + 6 + 8))
    assert open_source(X.astype(np.float32), device=CPU).source.chunk_size == 8 * 2**20 // (4 * (4 + 16 + 8))
    path = tmp_path / "rows.csv"  # a CSV table is float64
    pd.DataFrame(X, columns=["a", "b"]).to_csv(path, index=False)
    assert open_source(path, device=CPU).source.chunk_size == 8 * 2**20 // (8 * (4 + 16 + 8))
    assert open_source(path, device=CPU, n_centers=3).source.chunk_size == 8 * 2**20 // (8 * (4 + 6 + 8))
    assert open_source(path, device=CPU, chunk_size=7).source.chunk_size == 7
