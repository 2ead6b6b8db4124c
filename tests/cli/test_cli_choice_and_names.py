"""What ``segment`` and ``sweep`` print about their choice, as real processes: the k line
once, the structure verdict on the next line, a note per thing the run changed on its own,
the minimum share in the sweep's table, and names in the labels given."""

import json
import re
import shutil
from pathlib import Path

from _robustness import run_cli

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"


def _first_rows(folder: Path, n: int) -> Path:
    path = folder / f"mall{n}.csv"
    path.write_text("\n".join(MALL.read_text().splitlines()[: n + 1]) + "\n")
    return path


def test_a_small_table_narrows_the_range_and_the_verdict_follows_the_k_line(tmp_path):
    _first_rows(tmp_path, 10)
    run = run_cli(["segment", "mall10.csv", "--out", "out", "--no-report"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert run.stderr.count("note: k range narrowed to 2:9: the most that 10 rows allow\n") == 1
    lines = run.stdout.splitlines()
    assert lines[0] == f"k = {summary['k']}: {summary['k_reason']}"
    assert not re.match(r"k = \d+: k\s*=", lines[0]), lines[0]
    assert lines[1] == summary["structure_note"]
    assert summary["k_range"] == [2, 9] and summary["notes"] == ["k range narrowed to 2:9: the most that 10 rows allow"]


def test_sweep_tries_2_to_12_on_a_14_row_table_and_marks_the_minimum_share(tmp_path):
    _first_rows(tmp_path, 14)
    run = run_cli(["sweep", "mall14.csv", "--out", "s", "--min-share", "0.1"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    # Segments of at least 2 of 14 customers: at most 7 of them.
    assert summary["k_range"] == [2, 7]
    assert "note: k range narrowed to 2:7: the most segments that can each hold 10% of the 14 customers" in run.stderr
    header = run.stdout.splitlines()[0].split()
    assert header[0] == "k" and header[-2:] == ["smallest_share", "below_min_share"]
    assert f"Recommended k = {summary['recommended_k']}: {summary['reason']}" in run.stdout
    assert not re.search(r"Recommended k = \d+: k\s*=", run.stdout)
    free = run_cli(["sweep", "mall14.csv", "--out", "free"], cwd=tmp_path)
    assert free.returncode == 0, free.stderr
    assert json.loads((tmp_path / "free" / "summary.json").read_text())["k_range"] == [2, 12]


def test_labels_from_a_file_and_an_option_name_the_segments(tmp_path):
    shutil.copy(MALL, tmp_path / "m.csv")
    (tmp_path / "labels.json").write_text(json.dumps({"Annual Income (k$)": "Income", "Age": "Age in years"}))
    run = run_cli(["segment", "m.csv", "--k", "5", "--labels", "labels.json", "--label",
                   "Spending Score (1-100)=Spending", "--out", "out", "--no-report"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    names = [item["name"] for item in summary["segments"]]
    assert "High income, low spending" in names and "High income, high spending" in names
    for name in names:
        assert name in run.stdout
    assert summary["labels"] == {"Age": "Age in years", "Annual Income (k$)": "Income",
                                 "Spending Score (1-100)": "Spending"}
