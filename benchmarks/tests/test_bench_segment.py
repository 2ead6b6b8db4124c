"""benchmarks/bench_segment.py: its generated tables, its figures and targets, and one whole
run through the installed command on a tiny table (what it reports, not how fast anything is)."""

import json
import os
import pathlib
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import bench_segment as bench  # noqa: E402

MONEY = [name for name, kind, *_ in bench.PARQUET_NUMERIC if kind == "money"]
COUNTS = [name for name, kind, *_ in bench.PARQUET_NUMERIC if kind == "count"]


@pytest.fixture(scope="module")
def customers(tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "customers.parquet"
    return bench.write_customers_parquet(path, 4000, row_group_rows=1000)


def test_the_parquet_table_has_an_id_eight_numeric_columns_and_a_channel(customers):
    table = pq.read_table(customers)
    numeric = [name for name, *_ in bench.PARQUET_NUMERIC]
    assert table.column_names == ["customer_id", *numeric, "channel"]
    assert len(numeric) == 8 and table.num_rows == 4000
    types = dict(zip(table.column_names, table.schema.types))
    assert types["customer_id"] == pa.string() and types["channel"] == pa.string()
    assert all(types[name] == pa.int64() for name in COUNTS)
    assert all(types[name] == pa.float64() for name in numeric if name not in COUNTS)
    ids = table["customer_id"].to_pylist()
    assert ids[:2] == ["C0000001", "C0000002"] and ids[-1] == "C0004000" and len(set(ids)) == 4000
    assert set(table["channel"].to_pylist()) == set(bench.CHANNELS)


def test_some_columns_miss_about_half_a_percent_of_their_values(customers):
    table = pq.read_table(customers)
    for name, *_ in bench.PARQUET_NUMERIC:
        share = table[name].null_count / table.num_rows
        if name in bench.MISSING_COLUMNS:
            assert 0.001 < share < 0.015, name
        else:
            assert share == 0, name
    assert table["customer_id"].null_count == 0 and table["channel"].null_count == 0


def test_money_is_skewed_with_wild_values_and_the_share_stays_in_0_1(customers):
    table = pq.read_table(customers)
    for name in MONEY:
        values = table[name].drop_null().to_numpy()
        assert values.min() > 0 and np.mean(values) > 1.3 * np.median(values), name
        assert values.max() > 20 * np.median(values), name  # the wild values
    share = table["discount_share"].drop_null().to_numpy()
    assert 0 <= share.min() and share.max() <= 1 and share.std() > 0.1


def test_the_table_is_written_in_row_groups_of_the_given_size(customers):
    metadata = pq.ParquetFile(customers).metadata
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [1000] * 4
    last_short = bench.write_customers_parquet(customers.with_name("short.parquet"), 2500, row_group_rows=1000)
    metadata = pq.ParquetFile(last_short).metadata
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [1000, 1000, 500]


def test_the_table_is_the_same_every_time(customers, tmp_path):
    again = bench.write_customers_parquet(tmp_path / "again.parquet", 4000, row_group_rows=1000)
    assert pq.read_table(again).equals(pq.read_table(customers))
    other_seed = bench.write_customers_parquet(tmp_path / "other.parquet", 4000, row_group_rows=1000, seed=1)
    assert not pq.read_table(other_seed).equals(pq.read_table(customers))


def test_blocks_drawn_by_several_processes_make_the_same_table(customers, tmp_path):
    parallel = bench.write_customers_parquet(tmp_path / "parallel.parquet", 4000, row_group_rows=1000, workers=2)
    assert pq.read_table(parallel).equals(pq.read_table(customers))


def test_the_twelve_column_table_has_two_more_numeric_columns(customers, tmp_path):
    wide = bench.write_customers_parquet(tmp_path / "wide.parquet", 4000, row_group_rows=1000, width=12)
    table, ten = pq.read_table(wide), pq.read_table(customers)
    assert table.num_rows == 4000 and table.num_columns == 12
    assert table.column_names == [*ten.column_names[:-1], "web_visits_12m", "returns_share", "channel"]
    again = bench.write_customers_parquet(tmp_path / "again.parquet", 4000, row_group_rows=1000, width=12, workers=2)
    assert pq.read_table(again).equals(table)
    path, _ = bench.cached_parquet(tmp_path, 3000, row_group_rows=1000, width=12)
    assert path.name == "customers_3kx12.parquet"


def test_a_cached_table_is_reused_only_when_made_the_same_way(tmp_path):
    path, how = bench.cached_parquet(tmp_path, 3000, row_group_rows=1000)
    assert path.name == "customers_3k.parquet" and how.startswith("written")
    written = path.stat().st_mtime_ns
    assert bench.cached_parquet(tmp_path, 3000, row_group_rows=1000) == (path, "reused")
    assert path.stat().st_mtime_ns == written
    _, how = bench.cached_parquet(tmp_path, 3000, row_group_rows=500)
    assert how.startswith("written") and pq.ParquetFile(path).metadata.num_row_groups == 6
    path.write_bytes(b"not parquet")  # a broken file is made again
    _, how = bench.cached_parquet(tmp_path, 3000, row_group_rows=500)
    assert how.startswith("written") and pq.ParquetFile(path).metadata.num_rows == 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers_3k.parquet"]  # no partial file left


def test_a_cached_csv_is_reused_when_it_has_the_rows(tmp_path):
    path, how = bench.cached_csv(tmp_path, 1500)
    assert how.startswith("written") and sum(1 for _ in open(path)) == 1501
    assert bench.cached_csv(tmp_path, 1500) == (path, "reused")
    path.write_text(path.read_text().rsplit("\n", 2)[0] + "\n")  # a row short: made again
    assert bench.cached_csv(tmp_path, 1500)[1].startswith("written")


@pytest.mark.parametrize("rows, label", [(10_000_000, "10m"), (1_000_000, "1m"), (5000, "5k"), (12_345, "12345")])
def test_row_labels_name_the_cached_files(rows, label):
    assert bench.row_label(rows) == label


def test_engine_time_is_fit_and_sweep_and_outside_is_every_other_stage_but_total():
    stages = {"read": 2.0, "preprocess": 22.1, "fit": 11.6, "assign": 1.5, "score": 7.4, "profile": 13.6,
              "report": 1.8, "total": 61.0}
    figures = bench.engine_and_outside(stages)
    assert figures == {"engine_seconds": 11.6, "outside_seconds": 48.4, "outside_to_engine": round(48.4 / 11.6, 3)}
    swept = bench.engine_and_outside({"read_stats": 1.0, "sweep": 6.0, "fit": 2.0, "write": 3.0, "total": 20.0})
    assert swept == {"engine_seconds": 8.0, "outside_seconds": 4.0, "outside_to_engine": 0.5}
    assert bench.engine_and_outside({"read": 1.0, "total": 1.0})["outside_to_engine"] is None


def _runs(ratio_k8=0.5, peak_k8=2 * bench.GB, ratio_sweep=0.4, peak_predict=1.5 * bench.GB, differing=0):
    return [
        {"case": "parquet-k8", "outside_to_engine": ratio_k8, "peak_rss_bytes": peak_k8},
        {"case": "parquet-sweep", "outside_to_engine": ratio_sweep, "peak_rss_bytes": 9 * bench.GB},
        {"case": "parquet-predict", "peak_rss_bytes": peak_predict, "differing_segments": differing},
    ]


def _passed(checks):
    return {(c["case"], c["field"]): c["passed"] for c in checks}


def test_targets_pass_at_their_limits():
    checks = bench.check_targets(_runs())
    assert len(checks) == 5 and all(_passed(checks).values())


@pytest.mark.parametrize("change, failing", [
    ({"ratio_k8": 0.51}, ("parquet-k8", "outside_to_engine")),
    ({"peak_k8": 2 * bench.GB + 1}, ("parquet-k8", "peak_rss_bytes")),
    ({"ratio_sweep": None}, ("parquet-sweep", "outside_to_engine")),
    ({"peak_predict": 1.5 * bench.GB + 1}, ("parquet-predict", "peak_rss_bytes")),
    ({"differing": 1}, ("parquet-predict", "differing_segments")),
])
def test_each_target_fails_alone_past_its_limit(change, failing):
    passed = _passed(bench.check_targets(_runs(**change)))
    assert [key for key, ok in passed.items() if not ok] == [failing]


def test_targets_of_cases_not_run_are_left_out():
    checks = bench.check_targets([{"case": "csv-k8", "outside_to_engine": 3.0, "peak_rss_bytes": 1}])
    assert checks == []


@pytest.mark.parametrize("runs_stages, order", [
    ([["read", "fit", "total"], ["read", "sweep", "fit", "total"]], ["read", "sweep", "fit", "total"]),
    ([["read", "fit", "total"], ["stats", "fit", "write"]], ["read", "stats", "fit", "total", "write"]),
    ([["a", "b"], ["b", "a"]], ["a", "b"]),
])
def test_stages_keep_their_order_of_first_appearance(runs_stages, order):
    assert bench.stage_order(runs_stages) == order


def _segments_file(path, ids, segments):
    pq.write_table(pa.table({"customer_id": ids, "segment": pa.array(segments, pa.int32()),
                             "segment_name": ["x"] * len(ids)}), path)
    return path


def test_predicted_segments_are_compared_row_by_row(tmp_path):
    fitted = _segments_file(tmp_path / "fitted.parquet", ["a", "b", "c", "d"], [0, 1, 1, 2])
    same = _segments_file(tmp_path / "same.parquet", ["a", "b", "c", "d"], [0, 1, 1, 2])
    one_moved = _segments_file(tmp_path / "moved.parquet", ["a", "b", "c", "d"], [0, 1, 2, 2])
    reordered = _segments_file(tmp_path / "reordered.parquet", ["b", "a", "c", "d"], [1, 0, 1, 2])
    short = _segments_file(tmp_path / "short.parquet", ["a", "b", "c"], [0, 1, 1])
    assert bench.count_differing_segments(fitted, same) == (4, 0)
    assert bench.count_differing_segments(fitted, one_moved) == (4, 1)
    assert bench.count_differing_segments(fitted, reordered) == (4, 2)
    assert bench.count_differing_segments(fitted, short) == (4, 1)
    no_ids = tmp_path / "no_ids.parquet"
    pq.write_table(pa.table({"row": [0, 1, 2, 3], "segment": [0, 1, 1, 2]}), no_ids)
    assert bench.count_differing_segments(fitted, no_ids) == (4, 4)


def test_predict_brings_the_fit_whose_model_it_uses():
    assert bench.selected_cases(["parquet-predict"]) == ["parquet-k8", "parquet-predict"]
    assert bench.selected_cases(["csv-k8,parquet-sweep"]) == ["csv-k8", "parquet-sweep"]
    assert bench.selected_cases(None) == list(bench.CASES)
    with pytest.raises(SystemExit, match="unknown case"):
        bench.selected_cases(["k8"])


def test_the_stage_table_has_the_stages_of_every_run_in_order_of_first_appearance():
    machine = {"date": "today", "processor": "a CPU", "cpu_count": 2, "cuda": None, "torch": "t",
               "scikit-learn": "s", "load_average_1m": 1.0}
    runs = [
        {"case": "parquet-k8", "command": "gpukmeans segment", "wall_seconds": 9.0, "peak_rss_bytes": 2.5e9,
         "stages": {"read": 1.0, "fit": 2.0, "total": 5.0}, "k": 8, "load_average_1m_after": 1.0,
         **bench.engine_and_outside({"read": 1.0, "fit": 2.0, "total": 5.0})},
        {"case": "parquet-sweep", "command": "gpukmeans segment", "wall_seconds": 9.0, "peak_rss_bytes": 1e9,
         "stages": {"read": 1.0, "sweep": 4.0, "fit": 2.0, "total": 9.0}, "k": 8, "load_average_1m_after": 1.0,
         **bench.engine_and_outside({"read": 1.0, "sweep": 4.0, "fit": 2.0, "total": 9.0})},
        {"case": "parquet-predict", "command": "gpukmeans predict", "wall_seconds": 2.0, "peak_rss_bytes": 1e9,
         "differing_segments": 3, "rows_compared": 10, "load_average_1m_after": 1.0},
    ]
    text = bench.markdown({"machine": machine, "note": "", "runs": runs, "targets": bench.check_targets(runs)})
    lines = text.splitlines()
    assert "| case | read | sweep | fit | total |" in lines
    assert "| parquet-k8 | 1.0 | - | 2.0 | 5.0 |" in lines
    stage_rows = lines[lines.index("| case | read | sweep | fit | total |"):]
    assert not any(line.startswith("| parquet-predict |") for line in stage_rows)  # predict records no stages
    assert "| parquet-k8 | peak memory | <= 2.00 GB | 2.50 GB | NO |" in lines
    assert "| parquet-predict | rows whose segment differs from parquet-k8's | <= 0 | 3 | NO |" in lines
    assert "| parquet-sweep | outside/engine | <= 0.50 | 0.17 | yes |" in lines


@pytest.mark.slow
def test_the_whole_benchmark_runs_the_installed_command_on_a_tiny_table(tmp_path):
    """Every case as a fresh process (about 25 s on 2 cores): the record holds their figures."""
    results = tmp_path / "results"
    record = bench.main(["--rows", "3000", "--row-group-rows", "1000", "--csv-rows", "2000",
                         "--data-dir", str(tmp_path / "data"), "--results", str(results)])
    assert [run["case"] for run in record["runs"]] == list(bench.CASES)
    by_case = {run["case"]: run for run in record["runs"]}
    for case in ("csv-k8", "parquet-k8", "parquet-sweep"):
        run = by_case[case]
        assert run["engine_seconds"] > 0 and run["outside_to_engine"] is not None and "total" in run["stages"]
        assert run["k"] == 8 or case == "parquet-sweep"
    assert all(run["peak_rss_bytes"] > 50 * 2**20 and run["wall_seconds"] > 0 for run in record["runs"])
    assert by_case["parquet-predict"]["rows_compared"] == 3000
    assert by_case["parquet-predict"]["differing_segments"] == 0
    assert "--categorical channel" in by_case["parquet-k8"]["command"]
    assert [(check["case"], check["field"]) for check in record["targets"]] == [
        (target.case, target.field) for target in bench.TARGETS]
    assert json.loads((results / "segment_cli.json").read_text())["runs"] == record["runs"]
    assert "## Targets" in (results / "segment_cli.md").read_text()
    assert sorted(os.listdir(tmp_path / "data")) == ["customers_2k.csv", "customers_3k.parquet"]
