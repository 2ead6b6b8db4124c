"""What ``segment`` and ``predict`` tell a listener: each pass's rows read, ending at the table's rows."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpukmeans.segmentation import predict, segment, tables

N_ROWS = 240
PASSES = ("statistics", "transform", "profile")


class Recorder:
    """A listener that keeps every call, in order."""

    def __init__(self):
        self.calls = []

    def started(self, key, label):
        self.calls.append(("started", key))

    def finished(self, key, label, seconds):
        self.calls.append(("finished", key))

    def rows_read(self, key, rows, total):
        self.calls.append(("rows", key, rows, total))

    def rows(self, key):
        """(rows, total) of every report of pass ``key``, checking it came while the pass ran."""
        reports, running = [], False
        for call in self.calls:
            if call[:2] in (("started", key), ("finished", key)):
                running = call[0] == "started"
            elif call[:2] == ("rows", key):
                assert running, f"rows of {key} reported outside it"
                reports.append(call[2:])
        return reports


def _customers() -> pd.DataFrame:
    rng = np.random.default_rng(6)
    return pd.DataFrame({
        "customer_id": [f"c{i:04d}" for i in range(N_ROWS)],
        "spend": np.concatenate([rng.normal(20, 3, N_ROWS // 2), rng.normal(80, 5, N_ROWS // 2)]),
        "visits": rng.poisson(6, N_ROWS).astype(float),
    })


def _check_pass(recorder: Recorder, key: str, total):
    reports = recorder.rows(key)
    rows = [r for r, _ in reports]
    assert len(rows) >= 3, f"{key}: one report per batch"
    assert rows == sorted(rows) and rows[0] > 0
    assert rows[-1] == N_ROWS
    assert {t for _, t in reports} == {total}


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(tables, "BATCH_ROWS", 50)
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 1024)
    monkeypatch.setattr(tables, "CSV_MIN_BLOCK_BYTES", 1024)


def test_parquet_passes_report_rows_up_to_the_table(tmp_path, small_batches):
    path = tmp_path / "customers.parquet"
    pq.write_table(pa.Table.from_pandas(_customers(), preserve_index=False), path, row_group_size=100)
    recorder = Recorder()
    segment(path, k=2, report=False, listener=recorder)
    for key in PASSES:
        _check_pass(recorder, key, N_ROWS)


def test_csv_passes_report_rows_up_to_the_table(tmp_path, small_batches):
    path = tmp_path / "customers.csv"
    _customers().to_csv(path, index=False)
    recorder = Recorder()
    result = segment(path, k=2, report=False, listener=recorder)
    _check_pass(recorder, "statistics", None)  # a CSV file's rows are known after its first pass
    _check_pass(recorder, "transform", N_ROWS)
    _check_pass(recorder, "profile", N_ROWS)

    predicted = Recorder()
    predict(result.model, path, listener=predicted)
    _check_pass(predicted, "predict", None)


def test_a_restarted_pass_reports_rows_from_the_start(tmp_path, small_batches):
    frame = _customers().astype({"visits": object})
    frame.loc[N_ROWS - 10, "visits"] = "N/A"  # in the last block: the statistics pass starts again
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    recorder = Recorder()
    segment(path, k=2, report=False, listener=recorder)
    assert recorder.rows("statistics")[-1][0] == N_ROWS


def test_a_listener_without_rows_read_is_only_told_the_stages():
    class Stages:
        def __init__(self):
            self.keys = []

        def started(self, key, label):
            self.keys.append(key)

        def finished(self, key, label, seconds):
            pass

    listener = Stages()
    segment(_customers(), k=2, report=False, listener=listener)
    assert [key for key in PASSES if key in listener.keys] == list(PASSES)
