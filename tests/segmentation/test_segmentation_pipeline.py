"""``segment`` end to end from Python: the textbook result, exact predictions, outputs, errors."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from gpukmeans.segmentation import InputError, make_customers, predict, read_table, segment, sweep_k, write_table

DATA = Path(__file__).parents[1] / "data"
MALL = DATA / "Mall_Customers.csv"
INCOME, SPENDING = "Annual Income (k$)", "Spending Score (1-100)"
TEXTBOOK = {
    f"Typical customers, below-average {INCOME}": 81,
    f"High {INCOME}, high {SPENDING}": 39,
    f"High {INCOME}, low {SPENDING}": 35,
    f"Low {INCOME}, low {SPENDING}": 23,
    f"Low {INCOME}, high {SPENDING}": 22,
}


@pytest.fixture(scope="module")
def mall_result():
    return segment(MALL, columns=[INCOME, SPENDING], k=5, scale="none", report=False)


def test_mall_textbook_segments(mall_result):
    assert round(mall_result.summary["metrics"]["inertia"], 2) == 44448.46
    assert dict(zip(mall_result.model.segment_names, mall_result.profiles["size"])) == TEXTBOOK
    # Numbered by size, largest first.
    assert mall_result.profiles["size"].tolist() == sorted(TEXTBOOK.values(), reverse=True)
    profile = mall_result.profiles.set_index("segment_name")
    assert profile.loc[f"High {INCOME}, low {SPENDING}", f"{INCOME} mean"] == pytest.approx(88.2, abs=0.05)
    assert profile.loc[f"High {INCOME}, low {SPENDING}", f"{SPENDING} mean"] == pytest.approx(17.114, abs=1e-3)
    segments = mall_result.segments
    assert list(segments.columns) == ["CustomerID", "segment", "segment_name", "distance"]
    assert segments["CustomerID"].iloc[0] == "0001"
    inertia = float(np.sum(segments["distance"].to_numpy() ** 2))
    assert inertia == pytest.approx(mall_result.summary["metrics"]["inertia"])


def test_summary_says_what_was_done(mall_result):
    summary = mall_result.summary
    assert summary["k"] == 5 and summary["k_reason"] == "given by the user; no sweep ran"
    assert summary["preprocessing"]["id_column"] == "CustomerID"
    assert summary["preprocessing"]["features"] == [INCOME, SPENDING]
    assert {"statistics", "transform", "fit", "assign", "score", "name", "profile", "total"} <= set(summary["timings"])
    assert summary["metrics"]["silhouette"] == pytest.approx(0.5539, abs=1e-3)
    assert summary["device"] == "cpu" or summary["device"].startswith("cuda")
    assert {"gpukmeans", "torch", "numpy", "pandas"} <= set(summary["versions"])


def test_predict_reproduces_the_training_labels_exactly(mall_result):
    frame = read_table(MALL, string_columns=["CustomerID"]).frame
    again = mall_result.model.predict_frame(frame)
    pd.testing.assert_frame_equal(again, mall_result.segments)


def test_outputs_are_written_and_predict_from_files_agrees(tmp_path):
    out = tmp_path / "run"
    result = segment(MALL, columns=[INCOME, SPENDING], k=5, scale="none", out=out)
    assert sorted(p.name for p in out.iterdir()) == [
        "model.safetensors", "profiles.csv", "report.html", "segments.csv", "summary.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging left
    written = read_table(out / "segments.csv", string_columns=["CustomerID"]).frame
    pd.testing.assert_frame_equal(written, result.segments, check_dtype=False)
    predicted = predict(out, MALL, out=tmp_path / "pred.csv")
    assert predicted.rows == 200 and predicted.out == tmp_path / "pred.csv"
    pd.testing.assert_frame_equal(predicted.segments, result.segments)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<script" not in html


def test_parquet_in_parquet_out(tmp_path):
    frame = read_table(MALL, string_columns=["CustomerID"]).frame
    write_table(frame, tmp_path / "mall.parquet", "parquet")
    segment(tmp_path / "mall.parquet", columns=[INCOME, SPENDING], k=5, scale="none", out=tmp_path / "out",
            report=False)
    assert (tmp_path / "out" / "segments.parquet").exists()
    back = pd.read_parquet(tmp_path / "out" / "segments.parquet")
    assert back["segment"].value_counts().sort_values().tolist() == sorted(TEXTBOOK.values())


def test_planted_demo_segments_are_found():
    customers, truth = make_customers(4000, random_state=3)
    result = segment(customers, k=5, categorical=["Channel"], report=False)
    assert result.summary["preprocessing"]["excluded_columns"] == ["Region"]
    assert set(result.summary["preprocessing"]["log_columns"]) >= {"Annual income", "Annual spend"}
    found = result.segments.set_index("customer_id")["segment"].reindex(customers["customer_id"])
    assert adjusted_rand_score(truth, found) > 0.9
    assert len(set(result.model.segment_names)) == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 500}, "k=500 is larger than the number of rows \\(200\\)"),
        ({"k": 1}, "k must be at least 2"),
        ({"k_range": (7, 5)}, "k range must go from at least 2 to a larger k, got 7:5"),
        ({"min_share": 0.5}, "minimum segment share must be a fraction of the customers between 0 and 0.5"),
        ({"min_share": 0}, "between 0 and 0.5 \\(e.g. 0.05 for 5%\\), got 0"),
        ({"labels": {"Nope": "No"}}, "a label is given for column 'Nope', which .*Mall_Customers.csv does not have"),
        ({"columns": ["Nope"]}, "column 'Nope' not found"),
        ({"columns": ["Genre"]}, "'Genre' .* is not numeric"),
    ],
)
def test_bad_arguments_fail_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        segment(MALL, out=tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_output_folder_is_refused_before_any_work(tmp_path):
    (tmp_path / "summary.json").write_text("an earlier run's")
    with pytest.raises(InputError, match="not empty; use --force"):
        segment(tmp_path / "does-not-exist.csv", k=3, out=tmp_path)
    (tmp_path / "old.txt").write_text("keep")
    with pytest.raises(InputError, match="holds 'old.txt', which gpukmeans does not write there"):
        segment(tmp_path / "does-not-exist.csv", k=3, out=tmp_path, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt", "summary.json"]


def test_max_iter_reaches_the_sweep():
    """``max_iter`` bounds the sweep's fits too, not only the final fit."""
    options = dict(columns=[INCOME, SPENDING], scale="none", k_range=(2, 6))
    free = sweep_k(MALL, **options).sweep.table
    # so that max_iter=1 below is a real bound (a k started from a neighbour's solution may
    # converge in one iteration)
    assert (free["n_iter"] > 1).sum() >= 3
    capped = sweep_k(MALL, max_iter=1, **options).sweep.table
    assert capped["n_iter"].tolist() == [1] * 5
    chosen = segment(MALL, max_iter=1, report=False, **options)
    assert [row["n_iter"] for row in chosen.summary["sweep"]] == [1] * 5
    assert chosen.summary["metrics"]["n_iter"] == 1


def test_predict_reads_numbers_as_the_training_table_did(tmp_path):
    # In training, the decimal commas of "umsatz" make "9.000" nine thousand.
    lines = ["customer_id;umsatz;menge"] + [
        f"k{i:02d};{1 + i % 7},5;{'1.000' if i % 2 else '9.000'}" for i in range(20)
    ]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    result = segment(tmp_path / "train.csv", k=2, log="none", report=False, out=tmp_path / "run")
    assert result.model.info["decimal"] == ","
    # The new table writes nothing that tells its decimal separator.
    (tmp_path / "new.csv").write_text("customer_id;umsatz;menge\nn1;3;1.000\nn2;4;9.000\n")
    assert read_table(tmp_path / "new.csv").frame["menge"].tolist() == [1.0, 9.0]
    predicted = predict(tmp_path / "run", tmp_path / "new.csv").segments
    as_numbers = predict(result.model, pd.DataFrame({"customer_id": ["n1", "n2"], "umsatz": [3, 4],
                                                     "menge": [1000.0, 9000.0]})).segments
    pd.testing.assert_frame_equal(predicted, as_numbers)
    assert predicted["segment"].nunique() == 2
    assert predict(tmp_path / "run", tmp_path / "new.csv", decimal=".").segments["segment"].nunique() == 1


def test_a_table_in_memory_with_numbers_as_text_is_segmented_like_its_file(tmp_path):
    frame = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(12)],
        "spend": [f"${v:,.2f}" if i % 5 else "N/A" for i, v in enumerate(np.linspace(100, 12_000, 12))],
        "visits": [str(v) for v in [1, 9, 2, 8, 3, 7, 4, 6, 5, 5, 1, 9]],
    })
    frame.to_csv(tmp_path / "t.csv", index=False)
    in_memory = segment(frame, k=2, report=False)
    from_file = segment(tmp_path / "t.csv", k=2, report=False)
    pd.testing.assert_frame_equal(in_memory.profiles, from_file.profiles)
    assert in_memory.summary["input"]["placeholders"] == {"spend": {"N/A": 3}}
    assert in_memory.summary["preprocessing"]["features"] == ["spend", "visits"]


def test_a_numpy_array_is_segmented_like_the_same_table_as_a_dataframe():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 3))
    X[:300] += 4.0
    from_array = segment(X, k=2, report=False)
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    from_frame = segment(frame, k=2, report=False)
    pd.testing.assert_frame_equal(from_array.segments, from_frame.segments)
    pd.testing.assert_frame_equal(from_array.profiles, from_frame.profiles)
    assert adjusted_rand_score(from_array.segments["segment"], np.repeat([0, 1], 300)) == 1.0


@pytest.mark.parametrize("array, message", [
    (np.zeros(5), "2 dimensions (rows, columns), got shape (5,)"),
    (np.array([["a", "b"], ["c", "d"]]), "must hold numbers, got dtype <U1"),
])
def test_an_array_that_is_not_a_table_of_numbers_is_refused(array, message):
    with pytest.raises(InputError, match=re.escape(message)):
        segment(array, k=2, report=False)
