"""Fitting a table on disk: Parquet files, folders of them, CSV; the same fit as in memory."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_blobs

from gpukmeans import KMeans
from gpukmeans.sources import files as files_module
from gpukmeans.sources.conditioning import Conditioning
from gpukmeans.sources.files import FileSource, open_table, shard_bounds

FEATURES = ["recency", "frequency", "monetary", "tenure"]


@pytest.fixture(scope="module")
def customers():
    X, _ = make_blobs(n_samples=3000, centers=5, n_features=4, cluster_std=1.5, random_state=4)
    frame = pd.DataFrame(X.astype(np.float32), columns=FEATURES)
    frame.insert(0, "customer_id", np.arange(len(frame)))  # numeric, but not a feature
    frame.insert(1, "country", "NL")
    return frame


@pytest.fixture(scope="module")
def files(customers, tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    customers.to_parquet(root / "one.parquet", row_group_size=400)
    folder = root / "folder"
    folder.mkdir()
    for part, rows in enumerate(np.array_split(np.arange(len(customers)), 4)):
        customers.iloc[rows].to_parquet(folder / f"part-{part:02d}.parquet", row_group_size=333)
    (folder / "_SUCCESS").write_text("")  # written by Spark; not a table
    customers.to_csv(root / "table.csv", index=False)
    return root


def _assert_same_fit(from_file, in_memory):
    np.testing.assert_array_equal(from_file.labels_, in_memory.labels_)
    np.testing.assert_allclose(from_file.cluster_centers_, in_memory.cluster_centers_, rtol=1e-5, atol=1e-5)
    assert from_file.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-5)
    assert from_file.n_iter_ == in_memory.n_iter_


@pytest.mark.parametrize("init", ["k-means++", "random", "k-means||"])
@pytest.mark.parametrize("name", ["one.parquet", "folder", "table.csv"])
def test_a_file_gives_the_in_memory_fit(files, customers, name, init):
    dtype = np.float64 if name.endswith(".csv") else np.float32
    X = customers[FEATURES].to_numpy(dtype)
    params = dict(n_clusters=5, init=init, random_state=7, device="cpu")
    from_file = KMeans(chunk_size=700, **params).fit(files / name, columns=FEATURES)
    _assert_same_fit(from_file, KMeans(**params).fit(X))
    assert isinstance(from_file.labels_, np.ndarray) and from_file.labels_.dtype == np.int32
    assert from_file.cluster_centers_.dtype == dtype
    assert list(from_file.feature_names_in_) == FEATURES


def test_without_columns_every_numeric_column_is_a_feature(files, customers):
    km = KMeans(4, random_state=0, device="cpu").fit(files / "one.parquet")
    assert list(km.feature_names_in_) == ["customer_id", *FEATURES]
    X = customers[["customer_id", *FEATURES]].to_numpy(np.float64)
    _assert_same_fit(km, KMeans(4, random_state=0, device="cpu").fit(X))


def test_weights_and_predict_transform_score_on_paths(files, customers):
    X = customers[FEATURES].to_numpy(np.float32)
    weights = np.random.RandomState(1).uniform(0, 2, len(X))
    path = files / "folder"
    from_file = KMeans(5, random_state=2, device="cpu").fit(path, sample_weight=weights, columns=FEATURES)
    in_memory = KMeans(5, random_state=2, device="cpu").fit(X, sample_weight=weights)
    _assert_same_fit(from_file, in_memory)
    np.testing.assert_array_equal(from_file.predict(path), from_file.labels_)
    np.testing.assert_allclose(from_file.transform(path), in_memory.transform(X), rtol=1e-5, atol=1e-4)
    assert from_file.score(path) == pytest.approx(in_memory.score(X), rel=1e-5)
    # Fitted on named columns: a DataFrame with those columns predicts the same.
    np.testing.assert_array_equal(from_file.predict(customers[FEATURES]), from_file.labels_)


def test_the_chunk_size_does_not_change_a_file_fit(files):
    fits = [KMeans(5, random_state=3, chunk_size=c, device="cpu").fit(files / "one.parquet", columns=FEATURES)
            for c in (97, 1000, "auto")]
    for other in fits[1:]:
        np.testing.assert_array_equal(fits[0].labels_, other.labels_)


@pytest.mark.parametrize(
    "columns, message",
    [(["recency", "nope"], "no column 'nope'"), (["country"], "not numeric"), ([], "at least one"),
     ("recency", "list of column names")],
)
def test_bad_columns_are_named(files, columns, message):
    with pytest.raises(ValueError, match=message):
        KMeans(2, device="cpu").fit(files / "one.parquet", columns=columns)


def test_missing_values_in_a_file_are_an_error(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, None, 4.0], "b": [1.0, 2.0, 3.0, 4.0]})
    frame.to_parquet(tmp_path / "gaps.parquet")
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    for name in ("gaps.parquet", "gaps.csv"):
        with pytest.raises(ValueError, match="missing values"):
            KMeans(2, device="cpu").fit(tmp_path / name)


def test_text_in_a_csv_column_is_an_error(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("a,b\n1,2\nx,4\n")
    with pytest.raises(ValueError, match="'a' is string, not numeric"):
        KMeans(1, device="cpu").fit(path, columns=["a", "b"])


def test_paths_that_are_not_tables(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        KMeans(2, device="cpu").fit(tmp_path / "absent.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .parquet files"):
        KMeans(2, device="cpu").fit(tmp_path / "empty")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        KMeans(2, device="cpu").fit(tmp_path / "junk.parquet")


def test_columns_only_apply_to_paths():
    with pytest.raises(ValueError, match="columns="):
        KMeans(2, device="cpu").fit(np.zeros((4, 2)), columns=["a"])


def test_more_clusters_than_rows_in_a_file(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0]}).to_parquet(tmp_path / "tiny.parquet")
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=3"):
        KMeans(3, device="cpu").fit(tmp_path / "tiny.parquet")


def test_rows_at_reads_any_rows_in_any_order(files, customers):
    X = customers[FEATURES].to_numpy(np.float32)
    wanted = np.array([0, 5, 399, 400, 401, 2999, 1234])
    for name in ("one.parquet", "folder", "table.csv"):
        table = open_table(files / name, FEATURES)
        np.testing.assert_allclose(table.rows_at(np.sort(wanted)), X[np.sort(wanted)], rtol=1e-6)
        got = np.concatenate(list(table.batches(350, 1710)))
        np.testing.assert_allclose(got, X[350:1710], rtol=1e-6)


def test_shards_cover_every_row_once():
    for n, world in [(10, 3), (2, 3), (1000, 8)]:
        bounds = [shard_bounds(n, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        sizes = [b - a for a, b in bounds]
        assert max(sizes) - min(sizes) <= 1


# ----------------------------------------------------- folders, names, messages
def test_hidden_and_underscore_files_are_not_part_of_a_folder(tmp_path):
    # Spark and Hive leave _temporary/ folders and .crc or _SUCCESS files beside the parts
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    (tmp_path / "_temporary" / "0").mkdir(parents=True)
    frame.to_parquet(tmp_path / "part-0.parquet")
    frame.to_parquet(tmp_path / ".part-1.parquet")
    frame.to_parquet(tmp_path / "_part-2.parquet")
    frame.to_parquet(tmp_path / "_temporary" / "0" / "part-3.parquet")
    table = open_table(tmp_path)
    assert table.files == [tmp_path / "part-0.parquet"] and table.n_rows == 3


@pytest.mark.parametrize("name", ["table.csv.gz", "table.csv.bz2", "TABLE.CSV"])
def test_compressed_and_upper_case_csv_names_are_csv(tmp_path, name):
    frame = pd.DataFrame({"a": [0.5, 1.5, 2.5], "b": [3.0, 4.0, 5.0]})
    frame.to_csv(tmp_path / name, index=False)
    table = open_table(tmp_path / name)
    assert type(table).__name__ == "CsvTable" and table.n_rows == 3
    np.testing.assert_array_equal(np.concatenate(list(table.batches(0, 3))), frame.to_numpy())


def test_a_decimal_column_is_numeric(tmp_path):
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    amounts = pa.array([decimal.Decimal("1.25"), decimal.Decimal("-2.50")], pa.decimal128(5, 2))
    pq.write_table(pa.table({"amount": amounts, "visits": [3, 4]}), tmp_path / "money.parquet")
    table = open_table(tmp_path / "money.parquet")
    assert table.columns == ["amount", "visits"] and table.dtype == np.float64
    np.testing.assert_array_equal(table.rows_at(np.array([0, 1])), [[1.25, 3.0], [-2.5, 4.0]])


def test_a_csv_column_of_integers_then_decimals_reads_as_float(tmp_path, monkeypatch):
    # pyarrow infers a column's type from its first block: the selected columns are read
    # as float64 whatever the first block holds
    monkeypatch.setattr(files_module, "_CSV_BLOCK_BYTES", 256)
    path = tmp_path / "mixed.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(200)) + "0.5,7\n")
    table = open_table(path)
    assert table.n_rows == 201
    np.testing.assert_array_equal(np.concatenate(list(table.batches(199, 201))), [[199.0, 199.0], [0.5, 7.0]])


def _message(call) -> str:
    with pytest.raises(ValueError) as error:
        call()
    return str(error.value)


def test_the_messages_of_bad_tables_name_the_file_column_and_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(files_module, "READ_ROWS", 4)
    assert _message(lambda: open_table(tmp_path, [])) == "columns must name at least one column."
    gaps = tmp_path / "gaps.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, None], "b": np.arange(6.0)}).to_parquet(gaps)
    assert _message(lambda: list(open_table(gaps).batches(0, 6))) == (
        f"{gaps}: column 'a' has a missing value in data row 6; fill or drop the missing values before clustering.")
    for name in ("far.parquet", "far.csv"):
        path = tmp_path / name
        frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, np.inf, 6.0], "b": np.arange(7.0)})
        frame.to_parquet(path) if name.endswith("parquet") else frame.to_csv(path, index=False)
        infinite = f"{path}: column 'a' holds NaN or infinity in data row 6."
        assert _message(lambda: list(open_table(path).batches(0, 7))) == infinite
        assert _message(lambda: list(open_table(path).batches(5, 7))) == infinite
        assert _message(lambda: open_table(path).rows_at(np.array([5]))) == infinite
    folder = tmp_path / "parts"
    folder.mkdir()
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_parquet(folder / "part-0.parquet")
    pd.DataFrame({"a": [1.0]}).to_parquet(folder / "part-1.parquet")
    assert _message(lambda: open_table(folder, ["a", "b"])) == (
        f"{folder / 'part-1.parquet'}: lacks column(s) ['b'] that {folder / 'part-0.parquet'} has.")
    assert _message(lambda: open_table(folder, ["a", "c"])) == f"{folder}: no column 'c'; the columns are ['a', 'b']."
    csv = tmp_path / "few.csv"
    csv.write_text("a,b\n1,2\n")
    assert _message(lambda: open_table(csv, ["a", "c"])) == f"{csv}: no column 'c'; the columns are ['a', 'b']."
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert _message(lambda: open_table(empty)).startswith(f"{empty}: not a readable CSV file (")
    names = tmp_path / "names.parquet"
    pd.DataFrame({"name": ["ann", "bob"]}).to_parquet(names)
    assert _message(lambda: open_table(names)) == f"{names}: no numeric columns; name them with columns=[...]."
    text = tmp_path / "text.csv"
    monkeypatch.setattr(files_module, "_CSV_BLOCK_BYTES", 64)
    text.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(30)) + "x,7\n")
    assert _message(lambda: open_table(text)).startswith(
        f"{text}: a selected column does not parse as a number (")


def test_rows_read_by_index_name_the_rows_asked_for_in_a_message(tmp_path, monkeypatch):
    # Row 13 (data row 14, counting from 1 as a user does) is infinite in column a, row 15
    # in column b. Row groups of 8 rows and batches of 4 put both in the second
    # batch of the second row group; a CSV file is one block.
    monkeypatch.setattr(files_module, "READ_ROWS", 4)
    frame = pd.DataFrame({"a": np.arange(16.0), "b": np.arange(16.0)})
    frame.loc[13, "a"] = np.inf
    frame.loc[15, "b"] = -np.inf
    for name in ("far.parquet", "far.csv"):
        path = tmp_path / name
        frame.to_parquet(path, row_group_size=8) if name.endswith("parquet") else frame.to_csv(path, index=False)
        table = open_table(path)
        in_a = f"{path}: column 'a' holds NaN or infinity in data row 14."
        assert _message(lambda: table.rows_at(np.array([13]))) == in_a
        assert _message(lambda: table.rows_at(np.array([12, 13, 15]))) == in_a
        in_b = f"{path}: column 'b' holds NaN or infinity in data row 16."
        assert _message(lambda: table.rows_at(np.array([9, 15]))) == in_b
        shard = FileSource(table, (8, 16), chunk_size=3, device=torch.device("cpu"))
        assert _message(lambda: shard.take_local(torch.tensor([5]))) == in_a


# --------------------------------------------------- reading across batch edges
@pytest.fixture
def numbered(tmp_path, monkeypatch):
    """A 1000-row table (row i is [i, -i]) as Parquet (row groups of 300) and as CSV, read
    in batches of 64 rows and CSV blocks of 2 KiB, and the CSV's block edges as pyarrow
    finds them."""
    import pyarrow.csv as pa_csv

    monkeypatch.setattr(files_module, "READ_ROWS", 64)
    monkeypatch.setattr(files_module, "_CSV_BLOCK_BYTES", 2048)
    X = np.stack([np.arange(1000.0), -np.arange(1000.0)], axis=1)
    frame = pd.DataFrame(X, columns=["a", "b"])
    frame.to_parquet(tmp_path / "numbered.parquet", row_group_size=300)
    frame.to_csv(tmp_path / "numbered.csv", index=False)
    reader = pa_csv.open_csv(tmp_path / "numbered.csv", read_options=pa_csv.ReadOptions(block_size=2048))
    block_edges = np.cumsum([batch.num_rows for batch in reader])[:-1]
    assert len(block_edges) >= 3
    return tmp_path, X, [int(edge) for edge in block_edges]


@pytest.mark.parametrize("name", ["numbered.parquet", "numbered.csv"])
def test_rows_at_and_batches_across_batch_and_block_edges(numbered, name):
    folder, X, csv_edges = numbered
    table = open_table(folder / name)
    edges = [64, 128, 300, 364, 600, 900, *csv_edges]
    for edge in edges:
        for row in (edge - 1, edge):  # alone: the last row read is the one asked for
            np.testing.assert_array_equal(table.rows_at(np.array([row])), X[[row]])
    for wanted in (np.arange(1000), np.arange(0, 1000, 7), np.array(sorted({0, 999, *edges}))):
        np.testing.assert_array_equal(table.rows_at(wanted), X[wanted])
    # (130, 364) stops where a batch starts: that batch gives no rows, not an empty one
    for start, stop in [(0, 1000), (63, 641), (130, 364), (edges[-1], 1000), (300, 600), (csv_edges[0], csv_edges[1])]:
        got = list(table.batches(start, stop))
        assert all(0 < batch.shape[0] <= 64 for batch in got)
        np.testing.assert_array_equal(np.concatenate(got), X[start:stop])


# ------------------------------------------------------------- a file's source
def test_a_source_of_some_rows_counts_from_its_first_row(numbered):
    folder, X, _ = numbered
    source = FileSource(open_table(folder / "numbered.parquet"), (350, 710), chunk_size=50,
                        device=torch.device("cpu"))
    assert (source.n_samples, source.row_offset) == (360, 350)
    chunks = list(source.chunks())
    # batches of 64 rows from each row group's start (300, 364, ..., 556, 600, 664), cut in 50s
    assert [start for start, _, _ in chunks] == [0, 14, 64, 78, 128, 142, 192, 206, 250, 300, 314]
    np.testing.assert_array_equal(torch.cat([rows for _, rows, _ in chunks]).numpy(), X[350:710])
    taken = source.take_local(torch.tensor([359, 0, 14, 0]))
    np.testing.assert_array_equal(taken.numpy(), X[[709, 350, 364, 350]])


def test_a_chunk_size_of_one_hands_out_single_rows(numbered):
    folder, X, _ = numbered
    source = FileSource(open_table(folder / "numbered.parquet"), (10, 13), chunk_size=1, device=torch.device("cpu"))
    assert [(start, rows.numpy().tolist()) for start, rows, _ in source.chunks()] == [
        (0, [[10.0, -10.0]]), (1, [[11.0, -11.0]]), (2, [[12.0, -12.0]])]


def test_file_minibatches_visit_every_row_once_an_epoch_with_its_weight(tmp_path):
    X = np.stack([np.arange(10.0), np.zeros(10)], axis=1)
    pd.DataFrame(X, columns=["a", "b"]).to_parquet(tmp_path / "ten.parquet")
    weights = torch.arange(1.0, 11.0, dtype=torch.float64)  # row i weighs i + 1
    source = FileSource(open_table(tmp_path / "ten.parquet"), (0, 10), chunk_size=3, device=torch.device("cpu"),
                        sample_weight=weights)
    stream = source.minibatches(4, np.random.RandomState(0))
    batches = [next(stream) for _ in range(5)]  # 20 rows: two epochs
    assert all(rows.shape == (4, 2) and batch_weights.shape == (4,) for rows, batch_weights in batches)
    rows = torch.cat([rows for rows, _ in batches])[:, 0]
    np.testing.assert_array_equal(torch.cat([w for _, w in batches]).numpy(), rows.numpy() + 1)
    for epoch in (rows[:10], rows[10:]):
        # each chunk of 3 rows read (and the last one of 1) is shuffled in place
        assert sorted(epoch.tolist()) == list(range(10))
        for lo in (0, 3, 6, 9):
            assert sorted(epoch[lo : lo + 3].tolist()) == list(range(lo, min(lo + 3, 10)))
    assert not torch.equal(rows[:10], torch.arange(10.0)) or not torch.equal(rows[10:], torch.arange(10.0))
    unweighted = FileSource(open_table(tmp_path / "ten.parquet"), (0, 10), chunk_size=3, device=torch.device("cpu"))
    assert all(w is None for _, w in itertools.islice(unweighted.minibatches(4, np.random.RandomState(0)), 3))


def test_16_bit_rows_are_conditioned_then_rounded_and_taken_back_in_float32(tmp_path):
    X = np.array([[1000.1, -3.3], [1001.7, 2.2], [999.4, 0.6]])
    pd.DataFrame(X, columns=["a", "b"]).to_parquet(tmp_path / "far.parquet")
    shift = torch.tensor([1000.0, 0.0], dtype=torch.float64)
    source = FileSource(open_table(tmp_path / "far.parquet"), (0, 3), chunk_size=2, device=torch.device("cpu"),
                        storage_dtype=torch.bfloat16, conditioning=Conditioning(shift=shift, exponent=1))
    expected = ((torch.from_numpy(X) - shift) / 2).to(torch.bfloat16)  # x' = (x - shift) * 2**-1, then stored
    rows = torch.cat([rows for _, rows, _ in source.chunks()])
    assert rows.dtype == torch.bfloat16 and torch.equal(rows, expected)
    taken = source.take_local(torch.tensor([2, 0]))
    assert taken.dtype == torch.float32 and torch.equal(taken, expected[[2, 0]].float())  # 16-bit rows compute in float32


def test_a_value_beyond_float16_names_the_file(tmp_path):
    path = tmp_path / "money.parquet"
    pd.DataFrame({"spend": [1.0, 70000.0]}).to_parquet(path)
    source = FileSource(open_table(path), (0, 2), chunk_size=10, device=torch.device("cpu"), storage_dtype=torch.float16)
    assert _message(lambda: list(source.chunks())) == (
        f"{path} has values beyond the range of float16 (largest 65504); "
        "scale the data, or use dtype='bfloat16' (float32's range) or 'float32'.")
