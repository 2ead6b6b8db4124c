"""The robustness corpus: outputs. No command destroys something it was not asked to replace.

Each case runs the installed ``gpukmeans`` in a scratch folder and checks the exit
code, the single ``error:`` line and, when the run fails, that the folder holds
exactly the same files with the same contents as before. The rules: an existing
output needs ``--force``; an input is never an output, whatever name it is given; only
regular files and a command's own output folders are ever replaced; the place must be
writable, which is checked before any work; leftovers of a killed run are removed by
the next run into the same place.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from _mounts import tmpfs
from _robustness import assert_fails_and_touches_nothing, fingerprint, run_cli
from gpukmeans.segmentation import segment

DATA = Path(__file__).parents[1] / "data"
MALL = DATA / "Mall_Customers.csv"
RETAIL = DATA / "OnlineRetail_sample.csv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A segment output folder (model.safetensors and the rest) for the Mall table."""
    out = tmp_path_factory.mktemp("trained") / "seg"
    segment(MALL, k=3, report=False, out=out)
    return out


@pytest.fixture
def place(tmp_path, trained) -> Path:
    """A scratch folder holding the Mall table as m.csv and a segment output as seg/."""
    shutil.copy(MALL, tmp_path / "m.csv")
    shutil.copytree(trained, tmp_path / "seg")
    return tmp_path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_predict_never_writes_over_its_input_table(place):
    assert_fails_and_touches_nothing(
        ["predict", "seg", "m.csv", "--out", "./seg/../m.csv", "--force"],
        "is the input table m.csv", "never replaced, even with --force", cwd=place,
    )


def test_predict_never_writes_over_its_model(place):
    os.link(place / "seg" / "model.safetensors", place / "model-link.safetensors")
    assert_fails_and_touches_nothing(
        ["predict", "seg", "m.csv", "--out", "model-link.safetensors", "--force"],
        "is the model seg/model.safetensors", cwd=place,
    )


def test_predict_never_replaces_a_special_file(place):
    os.mkfifo(place / "pipe.csv")
    assert_fails_and_touches_nothing(
        ["predict", "seg", "m.csv", "--out", "pipe.csv", "--force"],
        "pipe.csv is a named pipe (FIFO), not a regular file", cwd=place,
    )


def test_a_folder_where_a_file_goes_is_never_replaced(place):
    assert_fails_and_touches_nothing(
        ["predict", "seg", "m.csv", "--out", "seg", "--force"], "output seg is a folder, not a file", cwd=place,
    )


def test_a_symbolic_link_is_never_replaced(place):
    (place / "kept.csv").write_text("CustomerID,Recency\n")
    os.symlink("kept.csv", place / "link.csv")
    assert_fails_and_touches_nothing(
        ["rfm", RETAIL, "--out", "link.csv", "--force"], "link.csv is a symbolic link", cwd=place,
    )


def test_predict_and_rfm_replace_an_existing_file_only_with_force(place):
    (place / "p.csv").write_text("an earlier result\n")
    for args in (["predict", "seg", "m.csv", "--out", "p.csv"], ["rfm", RETAIL, "--out", "p.csv"]):
        assert_fails_and_touches_nothing(args, "output file p.csv exists; use --force to replace it", cwd=place)
    forced = run_cli(["rfm", RETAIL, "--out", "p.csv", "--force", "--quiet"], cwd=place)
    assert forced.returncode == 0, forced.stderr
    assert list(pd.read_csv(place / "p.csv").columns) == ["CustomerID", "Recency", "Frequency", "Monetary"]


def test_a_folder_holding_a_foreign_file_is_never_replaced(place):
    (place / "seg" / "notes.txt").write_text("the user's")
    assert_fails_and_touches_nothing(
        ["segment", "m.csv", "--k", "3", "--no-report", "--out", "seg", "--force"],
        "seg holds 'notes.txt', which gpukmeans does not write there", "even with --force", cwd=place,
    )
    (place / "demo").mkdir()
    shutil.copy(MALL, place / "demo" / "customers.csv")  # a name the demo writes...
    (place / "demo" / "demo.json").write_text("{}")  # ...and its marker, so no --force is needed
    (place / "demo" / "notes.txt").write_text("the user's")  # ...but not this
    assert_fails_and_touches_nothing(
        ["demo", "--rows", "1000", "--out", "demo"], "demo holds 'notes.txt'", "even with --force", cwd=place,
    )


@pytest.mark.slow
def test_an_output_folder_never_holds_the_input(place):
    (place / "data").mkdir()
    shutil.copy(MALL, place / "data" / "m.csv")
    assert_fails_and_touches_nothing(
        ["segment", "data/m.csv", "--k", "3", "--out", "data", "--force"],
        "output folder data holds the input table data/m.csv", cwd=place,
    )
    assert_fails_and_touches_nothing(
        ["sweep", "m.csv", "--k-range", "2:3", "--out", ".", "--force"], "holds the input table m.csv", cwd=place,
    )


def test_a_read_only_place_is_refused_before_the_data_is_read(place):
    with tmpfs(place / "ro", read_only=True):
        # The table does not exist: the output is refused before the data is looked at.
        assert_fails_and_touches_nothing(
            ["segment", "missing.csv", "--out", "ro/seg"],
            "cannot write ro/seg:", "is not writable (Read-only file system)", cwd=place,
        )


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_nothing(place):
    with tmpfs(place / "small", size="4k"):
        assert_fails_and_touches_nothing(
            ["predict", "seg", "m.csv", "--out", "small/p.csv"],
            "could not write small/p.csv: No space left on device", cwd=place,
        )


def test_a_file_on_the_way_is_refused(place):
    assert_fails_and_touches_nothing(
        ["segment", "m.csv", "--k", "3", "--out", "m.csv/seg"], "m.csv is a file, not a folder", cwd=place,
    )
    assert_fails_and_touches_nothing(
        ["predict", "seg", "m.csv", "--out", "m.csv/p.csv"], "m.csv is a file, not a folder", cwd=place,
    )


@pytest.mark.slow
def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(place):
    dead = _dead_pid()
    shutil.copytree(place / "seg", place / f".seg.partial-{dead}-abc123")
    (place / f".seg.old-{dead}-x9").mkdir()
    (place / f".p.csv.{dead}-k2l3.tmp").write_text("CustomerID,seg")
    before = fingerprint(place)
    run = run_cli(["segment", "m.csv", "--k", "3", "--no-report", "--out", "seg", "--force", "--quiet"], cwd=place)
    assert run.returncode == 0, run.stderr
    run = run_cli(["predict", "seg", "m.csv", "--out", "p.csv", "--quiet"], cwd=place)
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in place.iterdir())
    assert names == ["m.csv", "p.csv", "seg"], names
    assert sorted(p.name for p in (place / "seg").iterdir()) == sorted(
        name for name in before if name.startswith("seg/") for name in [name[4:]]
    )
