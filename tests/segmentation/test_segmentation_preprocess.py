"""The fitted preprocessing: IDs, columns left out, codes, missing values, constants, logs, clipping,
one-hot, scaling (of any magnitude)."""

import json

import numpy as np
import pandas as pd
import pytest

from gpukmeans.segmentation import InputError, Preprocessor
from gpukmeans.segmentation.preprocess import LEFT_OUT_REASONS, detect_id_column, looks_like_code_name, looks_like_id


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


def test_every_column_left_out_is_listed_with_its_reason():
    frame = _frame().assign(blank=np.nan)
    report = Preprocessor(log="none").fit(frame).report_
    assert report.left_out == [
        {"column": "customer_id", "reason": "ID column"},
        {"column": "channel", "reason": "not numeric", "detail": "row 1 holds 'web'"},
        {"column": "note", "reason": "not numeric", "detail": "row 1 holds 'a'"},
        {"column": "blank", "reason": "no values"},
        {"column": "flag", "reason": "constant"},
    ]
    assert {entry["reason"] for entry in report.left_out} <= set(LEFT_OUT_REASONS)


def test_a_column_of_numbers_with_a_word_is_left_out_as_mostly_numbers():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "amount": ["1", "2", "oops", "$4"]})
    report = Preprocessor(id_column=None, log="none").fit(frame).report_
    assert report.left_out == [
        {"column": "amount", "reason": "not numeric", "detail": "mostly numbers, but row 3 holds 'oops'"}
    ]


@pytest.mark.parametrize("name", ["Channel", "region", "customer_type", "Store Number", "DeliveryZone",
                                  "TIER", "price-level", "Segment2"])
def test_code_like_names(name):
    assert looks_like_code_name(name)


@pytest.mark.parametrize("name", ["children", "Age", "subregion", "typed_amount", "Fresh", "classes"])
def test_ordinary_names(name):
    assert not looks_like_code_name(name)


def _wholesale(n=60):
    rng = np.random.default_rng(3)
    region = (1 + np.arange(n) % 3).astype(float)
    region[5] = np.nan  # read as floats, as a column of integers with a gap is
    return pd.DataFrame({
        "Channel": 1 + np.arange(n) % 2,
        "Region": region,
        "children": np.arange(n) % 5,
        "is_member": np.arange(n) % 2,
        "Fresh": rng.lognormal(8, 1, n),
    })


def test_columns_of_codes_named_like_codes_are_categories():
    prep = Preprocessor(id_column=None).fit(_wholesale())
    assert prep.report_.auto_categorical == ["Channel", "Region"]
    assert prep.categories_ == {"Channel": ["1", "2"], "Region": ["1", "2", "3"]}
    assert prep.numeric_columns_ == ["children", "is_member", "Fresh"]
    # New customers whose codes are integers rather than floats find the same levels.
    new = _wholesale(6).assign(Region=[1, 2, 3, 1, 2, 3])
    assert prep.transform(new).report.unknown_levels == {}


def test_columns_of_few_whole_numbers_with_ordinary_names_are_flagged_not_changed():
    warnings = Preprocessor(id_column=None).fit(_wholesale()).report_.warnings
    flagged = [w for w in warnings if "whole-number values" in w]
    assert len(flagged) == 1 and "'children' takes only 5 whole-number values (0 to 4)" in flagged[0]
    assert "--categorical" in flagged[0]  # a 0/1 flag is a share either way, and is not flagged


def test_columns_named_by_the_user_are_never_made_categories():
    prep = Preprocessor(id_column=None, columns=["Channel", "Fresh"], categorical=["Region"]).fit(_wholesale())
    assert prep.numeric_columns_ == ["Channel", "Fresh"] and list(prep.categories_) == ["Region"]
    assert prep.report_.auto_categorical == [] and prep.report_.warnings == []


def test_a_tiny_table_of_distinct_whole_numbers_is_not_codes():
    frame = pd.DataFrame({"store_visits": [3, 1, 4, 15, 9, 2]})
    prep = Preprocessor(id_column=None).fit(frame)
    assert prep.numeric_columns_ == ["store_visits"] and prep.report_.warnings == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"columns": ["spend", "visits", "spend"]}, "'spend' is named twice in --columns"),
        ({"categorical": ["channel", "channel"]}, "'channel' is named twice in --categorical"),
        ({"log": ["spend", "spend"]}, "'spend' is named twice in --log"),
    ],
)
def test_a_column_named_twice_is_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        Preprocessor(**kwargs).fit(_frame())


def test_a_frame_with_two_columns_of_one_name_is_refused():
    frame = pd.DataFrame([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]], columns=["spend", "visits", "spend"])
    with pytest.raises(InputError, match=r"more than one column named 'spend' \(columns 1 and 3\)"):
        Preprocessor(id_column=None).fit(frame, source="t.csv")


BASE = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0])
BY_HAND = {
    "standard": (BASE - BASE.mean()) / BASE.std(),
    "robust": (BASE - np.median(BASE)) / np.subtract(*np.quantile(BASE, [0.75, 0.25])),
    "minmax": (BASE - BASE.min()) / (BASE.max() - BASE.min()),
}


@pytest.mark.parametrize("magnitude", [1e300, 1e-300])
@pytest.mark.parametrize("scale", list(BY_HAND))
def test_huge_and_tiny_columns_are_scaled_like_ordinary_ones(scale, magnitude):
    frame = pd.DataFrame({"x": BASE * magnitude, "plain": BASE[::-1]})
    X = Preprocessor(id_column=None, log="none", scale=scale).fit_transform(frame).X
    # The matrix holds float32 (what the engine clusters): right to float32's last bit.
    np.testing.assert_allclose(X[:, 0], BY_HAND[scale], rtol=2**-23, atol=2**-30)
    np.testing.assert_allclose(X[:, 1], BY_HAND[scale][::-1], rtol=2**-23, atol=2**-30)


def test_log_auto_does_not_depend_on_magnitude():
    skewed = np.random.default_rng(4).lognormal(0, 1.5, 300)
    for magnitude in (1e-300, 1.0, 1e300):
        frame = pd.DataFrame({"x": skewed * magnitude, "y": np.arange(300.0)})
        assert Preprocessor(id_column=None).fit(frame).log_columns_ == ["x"], magnitude


@pytest.mark.parametrize("scale", ["minmax", "robust"])
def test_values_beyond_float64_once_scaled_are_an_error_naming_the_column(scale, recwarn):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "edge": [-1.7e308, -1.6e308, 1.6e308, 1.7e308]})
    with pytest.raises(InputError, match="column 'edge' in t.csv holds values too large to scale"):
        Preprocessor(id_column=None, log="none", scale=scale).fit_transform(frame, source="t.csv")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # one line, no warnings


def test_a_wide_table_gets_one_warning_per_kind_not_one_per_column():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({f"q{j}": rng.integers(1, 6, 200) for j in range(300)})  # a survey's 1..5 answers
    frame = frame.assign(**{f"flat{j}": 1.0 for j in range(30)}, **{f"gone{j}": np.nan for j in range(30)})
    frame["spend"] = rng.lognormal(3, 1, 200)
    report = Preprocessor(id_column=None).fit(frame).report_
    assert len(report.warnings) == 3
    assert report.warnings[0].startswith("columns 'gone0', 'gone1'")
    assert "and 20 more have no values" in report.warnings[0]
    assert "and 290 more take only a few whole-number values" in report.warnings[1]
    assert "and 20 more are constant" in report.warnings[2]
    assert len(report.left_out) == 60
