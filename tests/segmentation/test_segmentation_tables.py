"""Reading a table in batches: plans that a later batch widens, encodings, Parquet row
groups, each process's share of the batches, and DataFrames read like files."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpukmeans.segmentation import tables
from gpukmeans.segmentation.tables import TEXT, TEXT_NUMBER, TableReader, _contiguous_share, read_pass


@pytest.fixture
def csv_blocks(monkeypatch):
    """Sets the CSV block size of readers opened afterwards, so that a small file
    splits into many batches."""

    def set_size(size: int) -> None:
        monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", size)
        monkeypatch.setattr(tables, "CSV_MIN_BLOCK_BYTES", size)

    return set_size


def _read(reader, columns, *, raw=(), part=None):
    """Every batch of one pass (restarts included) and how many times the pass started."""
    starts = []

    def start():
        starts.append(None)
        return []

    batches = read_pass(reader, columns, start, lambda state, batch: state.append(batch), raw=raw, part=part)
    return batches, len(starts)


def _text(array) -> list:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array.to_pylist()


def _numbers(batches, name) -> np.ndarray:
    assert all(name in batch.numbers and name not in batch.texts for batch in batches)
    return np.concatenate([batch.numbers[name] for batch in batches])


def _texts(batches, name) -> list:
    assert all(name in batch.texts and name not in batch.numbers for batch in batches)
    return [value for batch in batches for value in _text(batch.texts[name])]


def _positions(batches) -> list[int]:
    """Table positions of the batches' rows, checking that each batch starts where its rows are."""
    return [position for batch in batches for position in range(batch.start, batch.start + batch.n_rows)]


def _write_csv(path, header: str, rows: list[str], encoding: str = "utf-8"):
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode(encoding))
    return path


def _first_batch_ends_before(batches, row: int) -> None:
    """The cell at ``row`` lies beyond the first batch (the one that decided the plan)."""
    assert len(batches) > 2 and batches[0].start + batches[0].n_rows <= row


# ---------------------------------------------------------------- plans widened by a later batch


def test_na_in_a_late_block_restarts_the_pass_and_reads_the_column_one_way(tmp_path, csv_blocks):
    csv_blocks(64)
    spend = [i * 1.5 for i in range(60)]
    rows = [f"{i},{spend[i]},c{i % 3}" for i in range(60)]
    rows[49] = "49,N/A,c1"
    reader = TableReader.open(_write_csv(tmp_path / "t.csv", "id,spend,city", rows))

    batches, starts = _read(reader, ["spend", "city"])

    _first_batch_ends_before(batches, 49)
    assert starts == 2
    assert reader.plans["spend"].kind == TEXT_NUMBER
    expected = np.array(spend)
    expected[49] = np.nan
    np.testing.assert_array_equal(_numbers(batches, "spend"), expected)
    # Counted once, by the pass that stood, as a placeholder rather than a value.
    assert reader.placeholders == {"spend": {"N/A": 1}}
    assert _texts(batches, "city") == [f"c{i % 3}" for i in range(49)] + ["c1"] + [f"c{i % 3}" for i in range(50, 60)]
    assert _positions(batches) == list(range(60))


def test_a_word_in_a_late_block_makes_a_number_column_text(tmp_path, csv_blocks):
    csv_blocks(64)
    cells = [str(i) for i in range(60)]
    cells[20], cells[54] = "N/A", "unknown"
    reader = TableReader.open(_write_csv(tmp_path / "t.csv", "id,spend", [f"{i},{c}" for i, c in enumerate(cells)]))

    batches, starts = _read(reader, ["spend"])

    _first_batch_ends_before(batches, 20)
    assert starts == 3  # read as numbers, then as text holding numbers, then as text
    assert reader.plans["spend"].kind == TEXT
    assert reader.column_kind("spend") == TEXT
    assert _texts(batches, "spend") == cells[:20] + [None] + cells[21:]
    # Counted by the pass that stood only, though the one before counted it too.
    assert reader.placeholders == {"spend": {"N/A": 1}}


def test_a_decimal_comma_seen_only_late_rereads_the_earlier_rows(tmp_path, csv_blocks):
    # Beyond the 64 KiB the layout is detected from, so only a later batch shows the comma;
    # it makes every "1.250" before it a thousand and a quarter, as in the whole column.
    csv_blocks(4096)
    cells = [f"{i % 9 + 1}.250" for i in range(8000)]
    cells[7990] = "3,5"
    path = _write_csv(tmp_path / "t.csv", "id;amount", [f"{i};{c}" for i, c in enumerate(cells)])
    assert path.stat().st_size > 80_000
    reader = TableReader.open(path)

    batches, starts = _read(reader, ["amount"])

    _first_batch_ends_before(batches, 7990)
    assert starts == 3
    assert reader.plans["amount"].kind == TEXT_NUMBER
    values = _numbers(batches, "amount")
    expected = pd.read_csv(path, sep=";", decimal=",", thousands=".")["amount"].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(values, expected)
    assert values[0] == 1250.0 and values[7990] == 3.5


@pytest.mark.parametrize("accented_row", [0, 5900], ids=["in-the-head", "only-late"])
def test_latin1_csv_is_read_whole(tmp_path, csv_blocks, accented_row):
    csv_blocks(4096)
    cities = ["Paris"] * 6000
    cities[accented_row] = "Zürich"
    rows = [f"{i},{city},{i}" for i, city in enumerate(cities)]
    reader = TableReader.open(_write_csv(tmp_path / "t.csv", "id,city,spend", rows, encoding="latin-1"))

    batches, _ = _read(reader, ["city", "spend"])

    assert len(batches) > 2
    assert _texts(batches, "city") == cities
    np.testing.assert_array_equal(_numbers(batches, "spend"), np.arange(6000.0))
    assert reader.n_rows == 6000


# ---------------------------------------------------------------- Parquet


@pytest.fixture
def table() -> pd.DataFrame:
    """100 customers with a number column holding missing values and a text column."""
    rng = np.random.default_rng(5)
    spend = rng.gamma(2.0, 50.0, 100)
    spend[[3, 40, 97]] = np.nan
    city = np.array(["Lyon", "Nice", "Paris", None], dtype=object)[rng.integers(0, 4, 100)]
    return pd.DataFrame({"id": [f"c{i:03d}" for i in range(100)], "spend": spend, "city": city})


def _parquet(table, path, row_group_size=13):
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path, row_group_size=row_group_size)
    return path


def test_parquet_batches_cover_every_row_once_with_their_positions(tmp_path, table, monkeypatch):
    monkeypatch.setattr(tables, "BATCH_ROWS", 5)  # row groups of 13 rows read in batches of 5, 5, 3
    path = _parquet(table, tmp_path / "t.parquet")
    reader = TableReader.open(path)
    assert reader.format == "parquet" and reader.n_rows == 100

    batches, starts = _read(reader, ["spend", "city"], raw=["id"])

    assert starts == 1
    assert [batch.n_rows for batch in batches[:4]] == [5, 5, 3, 5]
    assert _positions(batches) == list(range(100))
    np.testing.assert_array_equal(_numbers(batches, "spend"), table["spend"].to_numpy())
    assert _texts(batches, "city") == [None if pd.isna(city) else city for city in table["city"]]
    assert [v for batch in batches for v in _text(batch.raw["id"])] == table["id"].tolist()
    spend = table["spend"].to_numpy()
    for batch in batches:
        np.testing.assert_array_equal(batch.numbers["spend"], spend[batch.start:batch.start + batch.n_rows])


# ---------------------------------------------------------------- each process's share


def _parts_in_rank_order(reader, columns, n_parts):
    """Each part's batches (a first full pass already made)."""
    return [_read(reader, columns, part=(rank, n_parts))[0] for rank in range(n_parts)]


def _check_parts(parts, table):
    """The parts' rows, in rank order, are the whole table in order, each row once."""
    whole = [position for batches in parts for position in _positions(batches)]
    assert whole == list(range(len(table)))
    spend = np.concatenate([batch.numbers["spend"] for batches in parts for batch in batches])
    np.testing.assert_array_equal(spend, table["spend"].to_numpy())


@pytest.mark.parametrize("n_parts", [1, 2, 3, 4])
def test_parquet_parts_are_contiguous_runs_of_row_groups(tmp_path, table, n_parts):
    reader = TableReader.open(_parquet(table, tmp_path / "t.parquet"))
    parts = _parts_in_rank_order(reader, ["spend"], n_parts)
    _check_parts(parts, table)
    assert all(parts[rank] for rank in range(n_parts))  # 8 row groups: none of 4 parts is empty


@pytest.mark.parametrize("n_parts", [1, 2, 3, 4])
def test_csv_parts_are_contiguous_once_a_pass_has_counted_the_blocks(tmp_path, table, csv_blocks, n_parts):
    csv_blocks(256)
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    reader = TableReader.open(path)
    whole, _ = _read(reader, ["spend"])
    assert len(whole) >= 8

    _check_parts(_parts_in_rank_order(reader, ["spend"], n_parts), table)


@pytest.mark.parametrize("n_parts", [2, 3])
def test_csv_parts_before_a_first_pass_take_the_blocks_in_turn(tmp_path, table, csv_blocks, n_parts):
    csv_blocks(256)
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    parts = []
    for rank in range(n_parts):
        # A fresh reader for each rank: each process learns on its own.
        parts.append(_read(TableReader.open(path), ["spend"], part=(rank, n_parts))[0])
    blocks = sorted((batch.start, batch.n_rows, rank) for rank, batches in enumerate(parts) for batch in batches)
    assert [position for start, n, _ in blocks for position in range(start, start + n)] == list(range(100))
    assert [rank for _, _, rank in blocks] == [index % n_parts for index in range(len(blocks))]


@pytest.mark.parametrize("n_parts", [1, 2, 3, 4])
def test_dataframe_parts_are_contiguous_runs_of_slices(table, monkeypatch, n_parts):
    monkeypatch.setattr(tables, "BATCH_ROWS", 7)
    reader = TableReader.open(table)
    parts = _parts_in_rank_order(reader, ["spend"], n_parts)
    _check_parts(parts, table)
    assert all(len(batches) >= 3 for batches in parts)


@pytest.mark.parametrize("sizes", [[13] * 7 + [9], [100], [1, 50, 1, 1, 47], [5, 5]])
@pytest.mark.parametrize("n_parts", [1, 2, 3, 4])
def test_contiguous_share_cuts_groups_into_ordered_runs(sizes, n_parts):
    shares = [_contiguous_share(sizes, rank, n_parts) for rank in range(n_parts)]
    assert [group for share in shares for group in share] == list(range(len(sizes)))
    assert all(share.step == 1 for share in shares)


# ---------------------------------------------------------------- a DataFrame reads like its file


def test_dataframe_reader_equals_csv_reader_on_the_same_table(tmp_path, table, csv_blocks, monkeypatch):
    csv_blocks(256)
    monkeypatch.setattr(tables, "BATCH_ROWS", 9)
    table = table.assign(visits=np.arange(100) % 7, city=table["city"].where(np.arange(100) % 11 != 5, "N/A"))
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    columns = ["spend", "visits", "city"]

    from_file, _ = _read(TableReader.open(path), columns, raw=["id"])
    frame_reader = TableReader.open(table)
    from_frame, _ = _read(frame_reader, columns, raw=["id"])

    for name in ("spend", "visits"):
        np.testing.assert_array_equal(_numbers(from_frame, name), _numbers(from_file, name))
    assert _texts(from_frame, "city") == _texts(from_file, "city")
    assert None in _texts(from_frame, "city") and "N/A" not in _texts(from_frame, "city")
    assert frame_reader.placeholders == {"city": {"N/A": int((table["city"] == "N/A").sum())}}
    assert _positions(from_frame) == _positions(from_file) == list(range(100))
