"""Reading tables (delimiters, encodings, Parquet, bad files, numbers written as text) and writing atomically."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from gpukmeans.segmentation import InputError, read_table, write_table
from gpukmeans.segmentation.io import atomic_path, frame_text_numbers, read_columns, staged_output_dir
from gpukmeans.segmentation.numbers import (
    NumberFormat, blank_placeholders, detect_decimal, find_placeholders, non_numbers, parse_numbers,
)

DATA = Path(__file__).parents[1] / "data"


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


# ---------------------------------------------------------------- numbers written as text


@pytest.mark.parametrize(
    "cells, values, number_format",
    [
        (["$1,200.50", "N/A", "($30)"], [1200.5, np.nan, -30.0], NumberFormat(".", ",", "$", True)),
        (["1.234,50", "3,5", "-0,25"], [1234.5, 3.5, -0.25], NumberFormat(",", ".", None)),
        (["€ 3.400,50", "€12,00", " - "], [3400.5, 12.0, np.nan], NumberFormat(",", ".", "€")),
        (["12%", "3.5 %", "?"], [12.0, 3.5, np.nan], NumberFormat(".", None, "%")),
        (["1\u202f234", "1 234 567", "\u00a012"], [1234.0, 1234567.0, 12.0], NumberFormat(".", " ")),
        (["1'234.5", "12"], [1234.5, 12.0], NumberFormat(".", "'")),
        (["1 234,50 kr", "12 kr"], [1234.5, 12.0], NumberFormat(",", " ", "kr")),
        (["\u22125", "+3", "-$4", "$-4"], [-5.0, 3.0, -4.0, -4.0], NumberFormat(".", None, "$")),
        (["1e300", "-2.5E-300", ".5", "NaN", "null"], [1e300, -2.5e-300, 0.5, np.nan, np.nan], NumberFormat()),
        ([None, "", "  ", "-"], [np.nan] * 4, NumberFormat()),
    ],
)
def test_numbers_are_read_as_written(cells, values, number_format):
    parsed = parse_numbers(cells)
    np.testing.assert_array_equal(parsed.values, values)
    assert parsed.format == number_format


@pytest.mark.parametrize(
    "cells",
    [
        ["12", "many"],  # a word among numbers
        ["$5", "€5"],  # two currencies
        ["1,5", "1.5"],  # two decimal separators
        ["(5", "3"],  # an unclosed parenthesis
        ["-(5)", "3"],  # a sign and parentheses
        ["$5%", "3"],  # a currency and a percent
        ["1,23,456", "7"],  # groups that are not of three digits
        ["2020-01-31", "2021-02-01"],  # dates
        ["5 apples", "3"],
    ],
)
def test_columns_that_are_not_one_number_format_stay_text(cells):
    assert parse_numbers(cells) is None


def test_cells_that_read_two_ways_follow_the_preferred_decimal_separator():
    assert parse_numbers(["1.234"]).values.tolist() == [1.234]
    assert parse_numbers(["1.234"], decimals=(",", ".")).values.tolist() == [1234.0]
    assert parse_numbers(['1,234']).values.tolist() == [1234.0]
    assert parse_numbers(["1,234"], decimals=(",", ".")).values.tolist() == [1.234]
    # A column that reads only one way does so whatever the preference.
    assert parse_numbers(["3,5"]).values.tolist() == [3.5]
    assert parse_numbers(["1.5"], decimals=(",", ".")).values.tolist() == [1.5]


def test_parsed_numbers_are_correctly_rounded():
    rng = np.random.default_rng(0)
    numbers_ = rng.lognormal(0, 8, size=2000) * rng.choice([-1, 1], size=2000)
    texts = [f"{x:,.{rng.integers(0, 12)}f}" for x in numbers_]
    np.testing.assert_array_equal(parse_numbers(texts).values, [float(t.replace(",", "")) for t in texts])


def test_placeholders_are_counted_by_spelling_and_blank_cells_are_missing():
    missing, counts = find_placeholders(["1", "N/A", "n/a", "-", "", "  ", None, "x", "N/A"])
    assert missing.tolist() == [False, True, True, True, True, True, True, False, True]
    assert counts == {"N/A": 2, "n/a": 1, "-": 1}
    positions, present = non_numbers(["1", "N/A", "oops", "$2", "Male"])
    assert positions.tolist() == [2, 4] and present == 4


def test_placeholders_of_a_slice_are_blanked_in_the_slice_s_own_text():
    # Readers hand over batches as slices of one column: a slice's text starts past byte 0.
    column = pa.array(["Köln", "N/A", "Straße", "Nice", None, "-", "Málaga", "Lyon"], pa.string())
    blanked, counts = blank_placeholders(column.slice(2, 5))
    assert blanked.to_pylist() == ["Straße", "Nice", None, None, "Málaga"]
    assert counts == {"-": 1}


@pytest.mark.parametrize(
    "cells, decimal",
    [
        (["3,5", "1.234", "abc", "12"], ","),
        (["1.234,5", "7"], ","),
        (["1.5", "3"], "."),
        (["1,234.5"], "."),
        (["1.234", "1,234", "12"], None),  # every number reads two ways
        (["Paris"], None),
    ],
)
def test_the_decimal_separator_is_detected_from_cells_that_read_one_way(cells, decimal):
    assert detect_decimal(cells) == decimal


def test_a_csv_with_placeholders_and_formatted_numbers(tmp_path):
    path = _write(tmp_path, "t.csv", (
        'id,spend,rate,city\n'
        'a,"$1,200.50",12%,Paris\n'
        'b,N/A,3.5%,-\n'
        'c,-,?,Nice\n'
        'd,"($30.00)",,N/A\n'
    ).encode())
    table = read_table(path, string_columns=["id"])
    assert table.frame["spend"].tolist()[::3] == [1200.5, -30.0] and table.frame["spend"].isna().sum() == 2
    assert table.frame["rate"].tolist()[:2] == [12.0, 3.5] and table.frame["rate"].isna().sum() == 2
    # Text stays text, its placeholders missing values.
    assert table.frame["city"].tolist()[0::2] == ["Paris", "Nice"] and table.frame["city"].isna().sum() == 2
    assert table.placeholders == {"spend": {"N/A": 1, "-": 1}, "rate": {"?": 1}, "city": {"-": 1, "N/A": 1}}
    assert table.number_formats == {"spend": NumberFormat(".", ",", "$", True), "rate": NumberFormat(unit="%")}


def test_a_semicolon_csv_with_decimal_commas(tmp_path):
    path = _write(tmp_path, "t.csv", "a;b;c\n3,5;1.200;x\n4,25;2.500;y\n".encode())
    table = read_table(path)
    assert table.decimal == ","
    assert table.frame["a"].tolist() == [3.5, 4.25]
    assert table.frame["b"].tolist() == [1200.0, 2500.0]


def test_the_decimal_separator_can_be_given(tmp_path):
    path = _write(tmp_path, "t.csv", b"a;b\n1.200;x\n2.500;y\n")  # nothing in the file tells
    assert read_table(path).frame["a"].tolist() == [1.2, 2.5]
    assert read_table(path, decimal=",").frame["a"].tolist() == [1200.0, 2500.0]
    with pytest.raises(InputError, match="decimal separator must be '.' or ','"):
        read_table(path, decimal=";")


def test_a_parquet_column_of_formatted_numbers(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "spend": ["€ 1.200,50", "-", "€ 3,00"], "n": [1, 2, 3]})
    frame.to_parquet(tmp_path / "t.parquet")
    table = read_table(tmp_path / "t.parquet", string_columns=["id"])
    np.testing.assert_array_equal(table.frame["spend"], [1200.5, np.nan, 3.0])
    assert table.placeholders == {"spend": {"-": 1}} and table.number_formats["spend"].unit == "€"
    assert table.frame["id"].tolist() == ["a", "b", "c"]


def test_a_frame_in_memory_is_read_like_a_file():
    frame = pd.DataFrame({"id": ["N/A", "b"], "spend": ["$1,000", "n/a"], "mixed": [1, "x"]}, dtype=object)
    converted, formats, placeholders = frame_text_numbers(frame, ".", keep_text=["id"])
    np.testing.assert_array_equal(converted["spend"], [1000.0, np.nan])
    assert converted["id"].tolist() == ["N/A", "b"]  # an identifier is never a placeholder
    assert converted["mixed"].tolist() == [1, "x"]
    assert formats == {"spend": NumberFormat(".", ",", "$")} and placeholders == {"spend": {"n/a": 1}}
    assert frame["spend"].tolist() == ["$1,000", "n/a"]  # the caller's frame is untouched


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_two_columns_with_one_name_are_refused(tmp_path, kind):
    if kind == "csv":
        path = _write(tmp_path, "t.csv", b"x,spend,y,spend,spend\n1,2,3,4,5\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "t.parquet"
        arrays = [pa.array([1.0]) for _ in range(5)]
        pq.write_table(pa.Table.from_arrays(arrays, names=["x", "spend", "y", "spend", "spend"]), path)
    for reader in (read_table, read_columns):
        with pytest.raises(InputError, match=r"more than one column named 'spend' \(columns 2, 4 and 5\)"):
            reader(path)


def test_columns_without_names_are_refused_when_there_are_two(tmp_path):
    with pytest.raises(InputError, match=r"more than one column without a name \(columns 2 and 3\)"):
        read_table(_write(tmp_path, "t.csv", b"x,,\n1,2,3\n"))


def test_a_header_longer_than_the_sniffed_start_is_read_whole(tmp_path):
    names = [f"a_rather_long_feature_name_{j}" for j in range(4000)]  # about 130 kB of header
    rows = [",".join(str(i + j) for j in range(4000)) for i in range(3)]
    table = read_table(_write(tmp_path, "wide.csv", "\n".join([",".join(names), *rows]).encode()))
    assert list(table.frame.columns) == names
    assert table.frame.iloc[2, 3999] == 2 + 3999
