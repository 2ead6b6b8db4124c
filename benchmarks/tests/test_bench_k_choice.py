"""benchmarks/bench_k_choice.py: its panel of tables, its hit rates, and one run on a tiny panel
(what it reports, not how well or how fast either method does)."""

import json
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import bench_k_choice as bench  # noqa: E402


def test_a_planted_table_has_its_clusters_apart_with_the_sizes_asked():
    X = bench.planted_table(4, 3, 2000, 5.0, 10.0, 1.0, seed=1)
    assert X.shape[1] == 3 and abs(X.shape[0] - 2000) <= 4
    from sklearn.cluster import KMeans

    labels = KMeans(4, n_init=10, random_state=0).fit_predict(X)
    sizes = np.sort(np.bincount(labels))
    assert sizes[-1] / sizes[0] == pytest.approx(10.0, rel=0.25)


def test_the_panel_is_the_same_every_time_and_names_its_answers():
    first, again = bench.panel(), bench.panel()
    assert len(first) == 9 * len(bench.SETTINGS) + len(bench.UNCLUSTERED)
    assert all(np.array_equal(a.X, b.X) for a, b in zip(first, again))
    assert sorted({t.planted for t in first if t.planted != "none"}) == list(range(2, 11))
    assert [t.name for t in first if t.planted == "none"] == [f"{kind}, {d}-d" for kind, d, _ in bench.UNCLUSTERED]
    assert all(t.X.shape[0] == 600 for t in bench.quick_panel())


def test_hit_rates_count_the_planted_k_and_none():
    rows = [{"planted": 3, "baseline": 3, "gpukmeans": 3}, {"planted": 5, "baseline": 4, "gpukmeans": 5},
            {"planted": "none", "baseline": 2, "gpukmeans": "none"}, {"planted": "none", "baseline": 4,
                                                                     "gpukmeans": 4}]
    rates = bench.hit_rates(rows)
    assert rates["tables"] == 4
    assert rates["baseline"] == {"all": 0.25, "clustered": 0.5, "unclustered": 0.0, "hits": 1}
    assert rates["gpukmeans"] == {"all": 0.75, "clustered": 1.0, "unclustered": 0.5, "hits": 3}


def test_a_run_on_a_tiny_panel_writes_both_results(tmp_path):
    payload = bench.main(["--quick", "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k_choice.json", "k_choice.md"]
    written = json.loads((tmp_path / "k_choice.json").read_text())
    assert written["hit_rates"] == payload["hit_rates"] and written["threads"] == 1
    assert [row["table"] for row in written["tables"]] == ["k=3, apart", "uniform, 2-d", "uniform, 6-d"]
    for row in written["tables"]:
        assert isinstance(row["baseline"], int)  # the baseline always names a k
        assert row["gpukmeans"] == "none" or isinstance(row["gpukmeans"], int)
        assert row["gpukmeans"] == "none" or row["gpukmeans_structure"] != "none"
        assert row["baseline_seconds"] > 0 and row["gpukmeans_seconds"] > 0
        assert row["worst_inertia_excess"] < 0.01
    assert [row["seed"] for row in written["mall"]] == [0]
    report = (tmp_path / "k_choice.md").read_text()
    assert report.startswith("# Choosing k on a panel") and "| gpukmeans.sweep |" in report
    assert "Mall's customers" in report and "k=3, apart" in report
