"""The fitted preprocessing: IDs, missing values, constants, logs, clipping, one-hot, scaling."""

import json

import numpy as np
import pandas as pd
import pytest

from gpukmeans.segmentation import InputError, Preprocessor
from gpukmeans.segmentation.preprocess import detect_id_column, looks_like_id


@pytest.mark.parametrize("name", ["id", "ID", "customer_id", "Customer ID", "CustomerID", "client.id", "Unnamed: 0"])
def test_id_like_names(name):
    assert looks_like_id(name)


@pytest.mark.parametrize("name", ["paid", "valid", "Annual Income (k$)", "idle_days", "Genre"])
def test_names_that_are_not_ids(name):
    assert not looks_like_id(name)


def test_a_unique_text_column_is_the_id_when_none_is_named_like_one():
    frame = pd.DataFrame({"email": ["a@x", "b@x", "c@x"], "city": ["A", "A", "B"], "x": [1, 2, 3]})
    assert detect_id_column(frame) == "email"
    assert detect_id_column(frame[["city", "x"]]) is None


def _frame():
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
            "spend": [10.0, np.nan, 30.0, 40.0, 1000.0, 20.0],
            "visits": [1, 2, 3, 4, 5, 6],
            "flag": [7, 7, 7, 7, 7, 7],
            "channel": ["web", "store", None, "web", "store", "web"],
            "note": ["a", "b", "c", "d", "e", "f"],
        }
    )


def test_ids_and_text_columns_are_left_out_and_reported():
    prep = Preprocessor(log="none").fit(_frame())
    assert prep.id_column_ == "customer_id"
    assert prep.numeric_columns_ == ["spend", "visits"]
    assert prep.report_.excluded_columns == ["channel", "note"]


def test_median_imputation_is_counted_and_applied():
    prep = Preprocessor(log="none", scale="none").fit(_frame())
    assert prep.report_.missing_counts == {"spend": 1}
    X = prep.transform(_frame()).X
    assert X[1, 0] == np.median([10.0, 30.0, 40.0, 1000.0, 20.0])


def test_drop_missing_drops_rows_and_keeps_their_positions():
    prep = Preprocessor(log="none", scale="none", missing="drop", categorical=["channel"]).fit(_frame())
    prepared = prep.transform(_frame())
    assert prepared.rows.tolist() == [0, 3, 4, 5]
    assert prepared.ids.tolist() == ["c1", "c4", "c5", "c6"]
    assert prep.report_.rows_dropped_missing == 2
    assert prep.report_.missing_counts == {"spend": 1, "channel": 1}


def test_constant_column_is_dropped_with_a_warning():
    prep = Preprocessor(columns=["spend", "flag"], log="none").fit(_frame())
    assert prep.numeric_columns_ == ["spend"]
    assert prep.report_.constant_columns == ["flag"]
    assert any("'flag' is constant" in w for w in prep.report_.warnings)


def test_log_auto_takes_skewed_non_negative_columns_only():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "money": rng.lognormal(3, 1, 500),
            "normal": rng.normal(50, 10, 500),
            "negative_skewed": rng.lognormal(3, 1, 500) - 100,
        }
    )
    prep = Preprocessor(id_column=None, scale="none").fit(frame)
    assert prep.log_columns_ == ["money"]
    X = prep.transform(frame).X
    np.testing.assert_allclose(X[:, 0], np.log1p(frame["money"]))


def test_explicit_log_columns_and_their_errors():
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [-5.0, 1.0, 2.0]})
    prep = Preprocessor(id_column=None, log=["a"], scale="none").fit(frame)
    np.testing.assert_allclose(prep.transform(frame).X[:, 0], np.log1p([0.0, 1.0, 2.0]))
    with pytest.raises(InputError, match="cannot log-transform 'b'.*values <= -1"):
        Preprocessor(id_column=None, log=["b"]).fit(frame)
    with pytest.raises(InputError, match="cannot log-transform 'zzz'"):
        Preprocessor(id_column=None, log=["zzz"]).fit(frame)


def test_clip_at_quantiles():
    frame = pd.DataFrame({"x": np.arange(101, dtype=float)})
    prep = Preprocessor(id_column=None, log="none", clip=0.05, scale="none").fit(frame)
    X = prep.transform(frame).X[:, 0]
    assert X.min() == 5.0 and X.max() == 95.0


@pytest.mark.parametrize(
    "scale, check",
    [
        ("standard", lambda X: np.allclose(X.mean(0), 0) and np.allclose(X.std(0), 1)),
        ("minmax", lambda X: np.allclose(X.min(0), 0) and np.allclose(X.max(0), 1)),
        ("robust", lambda X: np.allclose(np.median(X, 0), 0)
         and np.allclose(np.subtract(*np.quantile(X, [0.75, 0.25], axis=0)), 1)),
        ("none", lambda X: np.allclose(X[:, 0], np.arange(1, 11))),
    ],
)
def test_scalers(scale, check):
    frame = pd.DataFrame({"x": np.arange(1, 11, dtype=float), "y": np.arange(10, dtype=float) ** 2})
    X = Preprocessor(id_column=None, log="none", scale=scale).fit_transform(frame).X
    assert check(X)


def test_one_hot_block_weighs_as_much_as_one_numeric_column():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"x": rng.normal(size=3000), "colour": rng.choice(["red", "green", "blue", "grey"], 3000, p=[0.4, 0.3, 0.2, 0.1])}
    )
    prep = Preprocessor(id_column=None, log="none", categorical=["colour"]).fit(frame)
    X = prep.transform(frame).X
    assert prep.feature_names_out_ == ["x", "colour=blue", "colour=green", "colour=grey", "colour=red"]
    # Total variance 1 in the block, as in the standardised numeric column.
    assert X[:, 1:].var(axis=0).sum() == pytest.approx(1.0)
    assert X[:, 0].var() == pytest.approx(1.0)


def test_unknown_level_at_transform_is_all_zero_and_counted():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"]})
    prep = Preprocessor(id_column=None, log="none", scale="none", categorical=["c"]).fit(frame)
    prepared = prep.transform(pd.DataFrame({"x": [1.0], "c": ["zzz"]}))
    assert prepared.X.tolist() == [[1.0, 0.0, 0.0]]
    assert prepared.report.unknown_levels == {"c": 1}


def test_json_round_trip_reapplies_exactly():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "id": [f"u{i}" for i in range(400)],
            "money": rng.lognormal(4, 1.2, 400),
            "score": rng.normal(size=400),
            "c": rng.choice(["p", "q", "r"], 400),
        }
    )
    frame.loc[::17, "money"] = np.nan
    prep = Preprocessor(categorical=["c"], clip=0.01, scale="robust").fit(frame)
    again = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    np.testing.assert_array_equal(again.transform(frame).X, prep.transform(frame).X)
    assert again.input_columns_ == ["id", "money", "score", "c"]


def test_text_in_a_requested_numeric_column_names_the_row():
    frame = pd.DataFrame({"x": ["1", "2", "oops", "4"], "y": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(InputError, match=r"column 'x' in t.csv is not numeric \(row 3 has 'oops'\).*--categorical"):
        Preprocessor(id_column=None, columns=["x", "y"]).fit(frame, source="t.csv")


def test_no_numeric_columns():
    frame = pd.DataFrame({"id": ["a", "b"], "city": ["x", "y"]})
    with pytest.raises(InputError, match="has no numeric columns to cluster.*non-numeric: city"):
        Preprocessor().fit(frame, source="t.csv")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"columns": ["nope"]}, "column 'nope' not found"),
        ({"categorical": ["nope"]}, "categorical column 'nope' not found"),
        ({"id_column": "nope"}, "ID column 'nope' not found"),
        ({"scale": "zscore"}, "scale must be one of"),
        ({"clip": 0.7}, "clip must be a quantile"),
        ({"columns": ["customer_id"]}, "is the ID column"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        Preprocessor(**kwargs).fit(_frame())


def test_transform_names_missing_columns():
    prep = Preprocessor(log="none").fit(_frame())
    with pytest.raises(InputError, match="lacks column\\(s\\) the model was trained on: visits"):
        prep.transform(_frame().drop(columns=["visits"]), source="new.csv")
