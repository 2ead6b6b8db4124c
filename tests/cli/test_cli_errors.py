"""Every bad input: exit code 2, one line naming the problem, no traceback, nothing in --out.

Each case runs through Typer's runner; one also runs as a real process of the installed command.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gpukmeans_cli.app import app

DATA = Path(__file__).parents[1] / "data"
MALL = DATA / "Mall_Customers.csv"


def _file(name, content: bytes):
    def make(tmp_path):
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return make


CASES = {
    "missing file": (lambda tmp: tmp / "nope.csv", [], "file not found"),
    "empty file": (_file("empty.csv", b""), [], "is empty"),
    "header only": (_file("header.csv", b"a,b\n"), [], "has a header but no data rows"),
    "missing column": (lambda tmp: MALL, ["--columns", "Age,Income"], "column 'Income' not found"),
    "no numeric columns": (_file("text.csv", b"id,city\na,X\nb,Y\nc,Z\n"), [], "has no numeric columns"),
    "k larger than rows": (lambda tmp: MALL, ["--k", "500"], "k=500 is larger than the number of rows (200)"),
    "not a table (binary)": (_file("photo.csv", bytes(range(256)) * 8), [], "is not a table"),
    "not a table (JSON)": (_file("data.csv", b'[{"a": 1}]\n'), [], "looks like JSON"),
    "ragged rows": (_file("ragged.csv", b"a,b\n1,2\n3\n"), [], "line 3 has 1 field"),
    "text in a numeric column": (
        _file("t.csv", b"x,y\n1,2\noops,3\n4,5\n"), ["--columns", "x,y"], "'x'"
    ),
    "bad k range": (lambda tmp: MALL, ["--k-range", "9:3"], "k range"),
}


def _check(exit_code, stdout, stderr, expected, tmp_path, data):
    assert exit_code == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in stdout + stderr
    assert not (tmp_path / "out").exists()
    # Nothing else was left beside it either (no staging folder).
    leftovers = {p.name for p in tmp_path.iterdir()} - {data.name}
    assert leftovers == set(), leftovers


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_through_the_runner(tmp_path, case):
    make, extra, expected = CASES[case]
    data = make(tmp_path)
    result = CliRunner().invoke(app, ["segment", str(data), "--out", str(tmp_path / "out"), *extra])
    _check(result.exit_code, result.stdout, result.stderr, expected, tmp_path, data)


def test_bad_input_as_a_process(tmp_path):
    # One case as a real process: the installed command's entry point turns an error the
    # library raises after reading the table into the same line and exit code as the
    # runner sees (the robustness corpus runs many more cases as processes).
    make, extra, expected = CASES["k larger than rows"]
    data = make(tmp_path)
    script = Path(sys.executable).with_name("gpukmeans")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gpukmeans_cli"]
    done = subprocess.run(command + ["segment", str(data), "--out", str(tmp_path / "out"), *extra],
                          capture_output=True, text=True, timeout=120)
    _check(done.returncode, done.stdout, done.stderr, expected, tmp_path, data)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu(tmp_path):
    result = CliRunner().invoke(app, ["segment", str(MALL), "--device", "cuda", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "CUDA is not available" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_predict_with_a_table_that_does_not_fit(tmp_path):
    out = tmp_path / "m"
    assert CliRunner().invoke(app, ["segment", str(MALL), "--k", "3", "--out", str(out), "--no-report"]).exit_code == 0
    other = tmp_path / "other.csv"
    other.write_text("CustomerID,Age\n1,20\n")
    result = CliRunner().invoke(app, ["predict", str(out), str(other), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 2
    assert "does not fit the model: it lacks column(s) 'Annual Income (k$)', 'Spending Score (1-100)'" in result.stderr
    assert not (tmp_path / "p.csv").exists()
    missing_model = CliRunner().invoke(app, ["predict", str(tmp_path / "none"), str(MALL), "--out", "p.csv"])
    assert missing_model.exit_code == 2 and "model file not found" in missing_model.stderr


def test_rfm_on_a_table_without_the_columns(tmp_path):
    result = CliRunner().invoke(app, ["rfm", str(MALL), "--out", str(tmp_path / "r.csv")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: columns 'InvoiceNo', 'InvoiceDate', 'Quantity', 'UnitPrice' not found")
    assert not (tmp_path / "r.csv").exists()
