"""``gpukmeans segment`` under torchrun: real processes, gloo on the CPU.

The command line is the one a user types on a GPU box (``torchrun --nproc-per-node N
--no-python gpukmeans segment ...``); its outputs must be those of one process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpukmeans.segmentation.pipeline import read_segments

# every case starts torchrun and its ranks: seconds each
pytestmark = pytest.mark.slow


def _gpukmeans() -> str:
    script = Path(sys.executable).with_name("gpukmeans")
    if not script.exists():
        pytest.skip("the gpukmeans script is not installed beside this Python")
    return str(script)


def _run(args, cwd, ranks=None):
    command = [_gpukmeans(), *args]
    if ranks is not None:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
                   "--no-python", *command]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def customers(tmp_path_factory):
    """30,000 customers in Parquet row groups of 4,000 rows and in CSV, with missing ages."""
    folder = tmp_path_factory.mktemp("torchrun")
    rng = np.random.default_rng(7)
    n = 30_000
    frame = pd.DataFrame({
        "customer": [f"C{i:06d}" for i in range(n)],
        "spend": rng.lognormal(5, 1, n),
        "visits": rng.poisson(4, n).astype(float),
        "age": rng.normal(40, 12, n),
        "channel": rng.choice(["web", "store", "app"], n),
    })
    frame.loc[rng.choice(n, 300, replace=False), "age"] = np.nan
    frame.to_parquet(folder / "customers.parquet", row_group_size=4_000)
    frame.to_csv(folder / "customers.csv", index=False)
    return folder


def _same_outputs(single: Path, ranks: Path, segments_file: str):
    id_column = "customer"
    pd.testing.assert_frame_equal(read_segments(ranks / segments_file, id_column),
                                  read_segments(single / segments_file, id_column))
    pd.testing.assert_frame_equal(pd.read_csv(ranks / "profiles.csv"), pd.read_csv(single / "profiles.csv"))
    one, many = (json.loads((folder / "summary.json").read_text()) for folder in (single, ranks))
    assert many["ranks"] == 2 and "ranks" not in one
    assert many["segments"] == one["segments"] and many["k"] == one["k"]  # with each segment's rule and fidelity
    assert many["preprocessing"] == one["preprocessing"]
    for key in ("structure", "structure_note", "notes", "k_range", "min_share", "labels", "rules_fidelity"):
        assert many[key] == one[key], key
    for name, value in one["metrics"].items():
        # Sums over the ranks' rows are added in another order: the last bits may differ.
        expected = pytest.approx(value, rel=1e-12) if isinstance(value, float) else value
        assert many["metrics"][name] == expected, name
    assert sorted(p.name for p in ranks.iterdir()) == sorted(p.name for p in single.iterdir())


@pytest.mark.parametrize("table, options", [
    ("customers.parquet", ["--k-range", "2:4", "--categorical", "channel", "--min-share", "0.2"]),
    ("customers.csv", ["--k", "4", "--drop-missing"]),
], ids=["parquet-sweep", "csv-drop-missing"])
def test_two_ranks_write_what_one_process_writes(customers, tmp_path, table, options):
    args = ["segment", str(customers / table), *options, "--no-report", "--quiet"]
    one = _run([*args, "--out", str(tmp_path / "one")], tmp_path)
    assert one.returncode == 0, one.stderr
    two = _run([*args, "--out", str(tmp_path / "two")], tmp_path, ranks=2)
    assert two.returncode == 0, two.stderr[-3000:]
    suffix = Path(table).suffix
    _same_outputs(tmp_path / "one", tmp_path / "two", f"segments{suffix}")


def test_a_table_with_fewer_batches_than_ranks_is_refused_on_one_line(customers, tmp_path):
    small = tmp_path / "small.parquet"
    pd.read_parquet(customers / "customers.parquet").head(5_000).to_parquet(small, row_group_size=4_000)
    run = _run(["segment", str(small), "--k", "3", "--out", str(tmp_path / "out")], tmp_path, ranks=3)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    # Every rank says the same one line (torchrun adds its own report of the failed ranks).
    assert len(lines) == 3 and len(set(lines)) == 1, run.stderr
    assert f"{small} splits into too few batches for 3 ranks: rank 1 gets no rows" in lines[0]
    assert "[rank" not in run.stderr  # no rank's traceback
    assert not (tmp_path / "out").exists()
