"""Reading tables (delimiters, encodings, Parquet, bad files) and writing atomically."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpukmeans.segmentation import InputError, read_table, write_table
from gpukmeans.segmentation.io import atomic_path, read_columns, staged_output_dir

DATA = Path(__file__).parent / "data"


def _write(tmp_path, name, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_detected(tmp_path, delimiter):
    text = delimiter.join(["id", "a b", "c"]) + "\n" + "\n".join(
        delimiter.join([f"x{i}", str(i), str(i * 0.5)]) for i in range(20)
    )
    table = read_table(_write(tmp_path, "t.csv", text.encode()))
    assert table.delimiter == delimiter
    assert list(table.frame.columns) == ["id", "a b", "c"]
    assert table.frame["c"].tolist() == [i * 0.5 for i in range(20)]


def test_only_requested_columns_are_read_and_ids_keep_leading_zeros():
    table = read_table(DATA / "Mall_Customers.csv", ["CustomerID", "Age"], string_columns=["CustomerID"])
    assert list(table.frame.columns) == ["CustomerID", "Age"]
    assert table.frame["CustomerID"].iloc[0] == "0001"
    assert len(table.frame) == 200


def test_latin1_file_is_read(tmp_path):
    path = _write(tmp_path, "t.csv", "name,n\ncaf\xe9,1\nna\xefve,2\n".encode("latin-1"))
    assert read_table(path).frame["name"].tolist() == ["café", "naïve"]


def test_parquet_round_trip_and_detection_without_suffix(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.5]})
    write_table(frame, tmp_path / "t.parquet", "parquet")
    (tmp_path / "t.parquet").rename(tmp_path / "noext")
    table = read_table(tmp_path / "noext", ["x"])
    assert table.format == "parquet"
    assert table.frame["x"].tolist() == [1.5, 2.5]
    assert read_columns(tmp_path / "noext") == ["id", "x"]


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("empty.csv", b"", "is empty"),
        ("blank.csv", b"\n \n", "is empty"),
        ("header.csv", b"a,b\n", "has a header but no data rows"),
        ("binary.csv", bytes(range(256)) * 4, "holds binary data"),
        ("data.json", b'{"a": [1, 2]}\n', "looks like JSON"),
        ("page.csv", b"<html><body>hi</body></html>\n", "looks like HTML"),
        ("ragged.csv", b"a,b\n1,2\n3\n4,5\n", "line 3 has 1 field where the header has 2"),
        ("fake.parquet", b"not parquet", "not a readable Parquet file"),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path, name, content, expected):
    path = _write(tmp_path, name, content)
    with pytest.raises(InputError) as info:
        read_table(path)
    message = str(info.value)
    assert expected in message and str(path) in message
    assert "\n" not in message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="is a folder"):
        read_table(tmp_path)


def test_missing_column_lists_the_columns_that_exist():
    with pytest.raises(InputError) as info:
        read_table(DATA / "Mall_Customers.csv", ["Age", "Income"])
    assert "'Income' not found" in str(info.value)
    assert "Annual Income (k$)" in str(info.value)


def test_malformed_lines_can_be_skipped_and_are_reported():
    # Four lines of the UCI sample lost the comma between Description and Quantity.
    table = read_table(DATA / "OnlineRetail_sample.csv", bad_lines="skip")
    assert table.skipped_lines == [121, 172, 175, 179]
    assert len(table.frame) == 183 - 4  # 183 data lines
    with pytest.raises(InputError, match="line 121 has 7 fields where the header has 8"):
        read_table(DATA / "OnlineRetail_sample.csv")


@pytest.mark.parametrize("name, bad_lines", [("Mall_Customers.csv", "error"), ("OnlineRetail_sample.csv", "skip")])
def test_no_python_row_handler_reaches_arrow_threads(monkeypatch, name, bad_lines):
    # A Python invalid_row_handler given to the threaded reader can be released by an
    # Arrow worker while the interpreter finalizes, which aborts the process (exit 134).
    import pyarrow.csv as pacsv

    real_read_csv = pacsv.read_csv
    calls = []

    def spy(source, read_options=None, parse_options=None, convert_options=None, **kwargs):
        calls.append((read_options.use_threads, parse_options.invalid_row_handler is not None))
        return real_read_csv(source, read_options=read_options, parse_options=parse_options,
                             convert_options=convert_options, **kwargs)

    monkeypatch.setattr(pacsv, "read_csv", spy)
    read_table(DATA / name, bad_lines=bad_lines)
    assert calls, "pyarrow.csv.read_csv was not used"
    assert not any(use_threads and has_handler for use_threads, has_handler in calls), calls


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_written_csv_reads_back_identically(tmp_path):
    frame = pd.DataFrame({"id": ["0001", "0002"], "segment": [1, 0], "distance": [0.1, np.pi]})
    write_table(frame, tmp_path / "s.csv")
    back = read_table(tmp_path / "s.csv", string_columns=["id"]).frame
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)


def test_staged_output_dir_appears_only_on_success(tmp_path):
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(RuntimeError):
        with staged_output_dir(out) as staging:
            (staging / "a.txt").write_text("x")
            raise RuntimeError("boom")
    # Not the folder, not its parents, not the staging folder.
    assert list(tmp_path.iterdir()) == []
    with staged_output_dir(out) as staging:
        (staging / "a.txt").write_text("x")
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_staged_output_dir_replaces_an_earlier_output_only_when_forced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("earlier")
    with pytest.raises(InputError, match="not empty; use --force"):
        with staged_output_dir(out, own_files=["summary.json"]):
            pass
    assert (out / "summary.json").read_text() == "earlier"
    with staged_output_dir(out, force=True, own_files=["summary.json"]) as staging:
        (staging / "summary.json").write_text("new")
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    assert (out / "summary.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        with staged_output_dir(tmp_path / "f", force=True):
            pass
