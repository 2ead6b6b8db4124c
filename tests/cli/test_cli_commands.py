"""The commands, through Typer's runner and as real processes of the installed command, on real files."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gpukmeans_cli.app import app

DATA = Path(__file__).parents[1] / "data"
MALL = DATA / "Mall_Customers.csv"
RETAIL = DATA / "OnlineRetail_sample.csv"
MALL_COLUMNS = "Annual Income (k$),Spending Score (1-100)"
TEXTBOOK_SIZES = [81, 39, 35, 23, 22]


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def gpukmeans_command() -> list[str]:
    """The installed ``gpukmeans`` script of this environment, else ``python -m gpukmeans_cli``."""
    script = Path(sys.executable).with_name("gpukmeans")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gpukmeans_cli"]


def run_process(*args, cwd):
    return subprocess.run(
        gpukmeans_command() + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_segment_mall_textbook(tmp_path):
    out = tmp_path / "mall"
    result = run("segment", MALL, "--columns", MALL_COLUMNS, "--k", "5", "--scale", "none", "--out", out)
    assert result.exit_code == 0, result.output
    assert "High Annual Income (k$), low Spending Score (1-100)" in result.stdout
    assert f"Report: {out / 'report.html'}" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert round(summary["metrics"]["inertia"], 2) == 44448.46
    assert [s["size"] for s in summary["segments"]] == TEXTBOOK_SIZES


def test_segment_json_is_the_summary(tmp_path):
    result = run("segment", MALL, "--columns", MALL_COLUMNS, "--k", "5", "--scale", "none",
                 "--out", tmp_path / "o", "--json", "--no-report")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["k"] == 5 and round(summary["metrics"]["inertia"], 2) == 44448.46
    assert summary == json.loads((tmp_path / "o" / "summary.json").read_text()) | {
        "timings": summary["timings"]
    }


def test_segment_reports_left_out_columns_on_stderr(tmp_path):
    result = run("segment", MALL, "--k", "4", "--out", tmp_path / "o", "--no-report")
    assert result.exit_code == 0, result.output
    assert "non-numeric column(s) left out: Genre" in result.stderr
    quiet = run("segment", MALL, "--k", "4", "--out", tmp_path / "q", "--no-report", "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_force_replaces_an_earlier_output_and_nothing_else(tmp_path):
    out = tmp_path / "o"
    assert run("segment", MALL, "--k", "3", "--out", out, "--no-report").exit_code == 0
    refused = run("segment", MALL, "--k", "4", "--out", out, "--no-report")
    assert refused.exit_code == 2 and "use --force" in refused.stderr
    forced = run("segment", MALL, "--k", "4", "--out", out, "--no-report", "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "summary.json").read_text())["k"] == 4
    (out / "old.txt").write_text("x")
    foreign = run("segment", MALL, "--k", "3", "--out", out, "--no-report", "--force")
    assert foreign.exit_code == 2 and "holds 'old.txt'" in foreign.stderr
    assert (out / "old.txt").read_text() == "x" and json.loads((out / "summary.json").read_text())["k"] == 4


def test_predict_reproduces_segment_labels(tmp_path):
    out = tmp_path / "mall"
    assert run("segment", MALL, "--categorical", "Genre", "--k", "6", "--out", out, "--no-report").exit_code == 0
    result = run("predict", out / "model.safetensors", MALL, "--out", tmp_path / "pred.csv")
    assert result.exit_code == 0, result.output
    trained = pd.read_csv(out / "segments.csv", dtype={"CustomerID": str})
    predicted = pd.read_csv(tmp_path / "pred.csv", dtype={"CustomerID": str})
    pd.testing.assert_frame_equal(predicted, trained)


def test_rfm_then_segment(tmp_path):
    rfm_csv = tmp_path / "rfm.csv"
    result = run("rfm", RETAIL, "--out", rfm_csv)
    assert result.exit_code == 0, result.output
    assert "14 customers" in result.stdout
    assert "skipped 4 malformed line(s): 121, 172, 175, 179" in result.stderr
    table = pd.read_csv(rfm_csv)
    assert list(table.columns) == ["CustomerID", "Recency", "Frequency", "Monetary"]
    seg = run("segment", rfm_csv, "--k", "3", "--out", tmp_path / "seg", "--json")
    assert seg.exit_code == 0, seg.output
    summary = json.loads(seg.stdout)
    # The sample spans one morning: every recency is one day, so it is left out.
    assert summary["preprocessing"]["constant_columns"] == ["Recency"]
    assert summary["preprocessing"]["log_columns"] == ["Frequency", "Monetary"]
    assert sum(s["size"] for s in summary["segments"]) == 14


def test_sweep_recommends_the_textbook_k(tmp_path):
    out = tmp_path / "sweep"
    result = run("sweep", MALL, "--columns", MALL_COLUMNS, "--scale", "none", "--k-range", "2:8", "--out", out)
    assert result.exit_code == 0, result.output
    assert "Recommended k = 5" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["elbow.png", "silhouette.png", "summary.json", "sweep.csv"]
    table = pd.read_csv(out / "sweep.csv")
    assert table["k"].tolist() == list(range(2, 9))
    assert round(table.set_index("k").loc[5, "inertia"], 2) == 44448.46


def test_info_lists_versions_and_devices():
    result = run("info")
    assert result.exit_code == 0, result.output
    assert "torch" in result.stdout and ("GPU" in result.stdout)
    facts = json.loads(run("info", "--json").stdout)
    assert facts["optional"]["safetensors"] is True and facts["optional"]["numba"] is True


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = run("demo", "--rows", "3000", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (out / "customers.csv").exists() and (out / "segments" / "report.html").exists()
    facts = json.loads((out / "demo.json").read_text())
    assert facts["adjusted_rand_index"] > 0.8
    # Elbow, silhouette per segment, projection, heatmap: all inlined.
    assert (out / "segments" / "report.html").read_text().count("data:image/png;base64,") == 4
    assert f"Open the report: {out / 'segments' / 'report.html'}" in result.stdout
    # The k line says k once, then the verdict on its own line.
    lines = result.stdout.splitlines()
    k_line = next(i for i, line in enumerate(lines) if line.startswith("k = "))
    assert not re.match(r"k = \d+: k\s*=", lines[k_line]), lines[k_line]
    assert lines[k_line + 1] == json.loads((out / "segments" / "summary.json").read_text())["structure_note"]
    # A second run replaces the earlier demo without --force.
    assert run("demo", "--rows", "1000", "--out", out, "--device", "cpu", "-q").exit_code == 0


# ------------------------------------------------------------- real processes


@pytest.mark.slow
def test_process_segment_mall_then_predict(tmp_path):
    done = run_process("segment", MALL, "--columns", MALL_COLUMNS, "--k", "5", "--scale", "none",
                       "--out", "mall", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "mall" / "summary.json").read_text())
    assert round(summary["metrics"]["inertia"], 2) == 44448.46
    assert summary["command"] == (
        f"gpukmeans segment {MALL} --columns 'Annual Income (k$),Spending Score (1-100)' "
        "--k 5 --scale none --out mall"
    )
    assert [s["size"] for s in summary["segments"]] == TEXTBOOK_SIZES
    done = run_process("predict", "mall", MALL, "--out", "pred.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pred.csv").read_text() == (tmp_path / "mall" / "segments.csv").read_text()


@pytest.mark.slow
def test_process_rfm_then_segment(tmp_path):
    done = run_process("rfm", RETAIL, "--out", "rfm.parquet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_process("segment", "rfm.parquet", "--k", "3", "--out", "seg", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    segments = pd.read_parquet(tmp_path / "seg" / "segments.parquet")
    assert len(segments) == 14 and set(segments["segment"]) == {0, 1, 2}


def test_warnings_are_one_line_each(tmp_path):
    # Two distinct customers asked for three segments: the engine warns, the run goes on.
    data = tmp_path / "dupes.csv"
    data.write_text("x,y\n" + "1,1\n" * 5 + "9,9\n" * 5)
    result = run("segment", data, "--k", "3", "--out", tmp_path / "o", "--no-report")
    assert result.exit_code == 0, result.output
    warning_lines = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any("distinct" in line for line in warning_lines), result.stderr
    assert ".py:" not in result.stderr  # no file names and line numbers
    quiet = run("segment", data, "--k", "3", "--out", tmp_path / "q", "--no-report", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_max_iter_reaches_the_sweep(tmp_path):
    out = tmp_path / "sweep"
    result = run("sweep", MALL, "--columns", MALL_COLUMNS, "--scale", "none", "--k-range", "2:6",
                 "--max-iter", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out / "sweep.csv")["n_iter"].tolist() == [1] * 5
