"""Writing results never destroys what it was not asked to replace: in-process cases.

Things that happen *during* a run (a folder or file that appears before the final
rename, a disk that fills up, SIGTERM) are simulated here, in the process, with a
listener or a patched function at the exact moment; the command line's cases are in
``test_robustness_outputs.py``.
"""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from _mounts import tmpfs
from _robustness import fingerprint
from gpukmeans.segmentation import InputError, OutputError, predict, rfm_file, segment, sweep_k, write_table
from gpukmeans.segmentation.io import atomic_path, check_output_dir, check_output_file, staged_output_dir
from gpukmeans_cli._console import stop_cleanly_on_sigterm
from gpukmeans_cli.app import app

DATA = Path(__file__).parents[1] / "data"
MALL = DATA / "Mall_Customers.csv"
RETAIL = DATA / "OnlineRetail_sample.csv"


def _dead_pid() -> int:
    """The ID of a process that has ended (and been reaped)."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "seg"
    segment(MALL, k=3, report=False, out=out)
    return out / "model.safetensors"


class _AtStage:
    """A stage listener that runs ``action`` when the stage ``key`` starts."""

    def __init__(self, key, action):
        self.key, self.action = key, action

    def started(self, key, label):
        if key == self.key:
            self.action()

    def finished(self, key, label, seconds):
        pass


def _users_folder(out: Path) -> None:
    out.mkdir()
    (out / "mine.txt").write_text("the user's")


# ---------------------------------------------------------------- appeared during the run


def test_a_folder_that_appears_during_the_run_is_left_untouched(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="appeared during the run; it is left as it is"):
        segment(MALL, k=3, report=False, out=out, listener=_AtStage("write", lambda: _users_folder(out)))
    assert fingerprint(tmp_path) == {"out": "folder", "out/mine.txt": fingerprint(out)["mine.txt"]}


@pytest.mark.parametrize("earlier_output", [False, True])
def test_a_folder_that_appears_at_the_final_rename_is_left_untouched(tmp_path, monkeypatch, earlier_output):
    """The narrowest window: between the last look at ``out`` and the rename onto it."""
    out = tmp_path / "out"
    if earlier_output:
        out.mkdir()
        (out / "summary.json").write_text("earlier")
    rename = os.rename

    def rename_after_the_user(src, dst):
        if Path(dst) == out and ".out.partial-" in str(src):
            _users_folder(out)
        rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_the_user)
    with pytest.raises(InputError, match="appeared or changed during the run"):
        with staged_output_dir(out, force=True, own_files=["summary.json"]) as staging:
            (staging / "summary.json").write_text("new")
    assert (out / "mine.txt").read_text() == "the user's"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    # No staging folder is left; the earlier output, set aside, stays under a
    # temporary name that the next run removes (its process is this one, alive).
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_an_earlier_output_that_gains_a_foreign_file_is_left_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("earlier")
    with pytest.raises(InputError, match=r"changed during the run \(it holds 'notes.txt'\)"):
        with staged_output_dir(out, force=True, own_files=["summary.json"]) as staging:
            (staging / "summary.json").write_text("new")
            (out / "notes.txt").write_text("the user's")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "summary.json").read_text() == "earlier" and (out / "notes.txt").read_text() == "the user's"


def test_an_empty_folder_that_fills_during_the_run_is_not_replaced_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="filled during the run"):
        with staged_output_dir(out, own_files=["summary.json"]) as staging:
            (staging / "summary.json").write_text("new")
            (out / "summary.json").write_text("another run's")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "summary.json").read_text() == "another run's"


def test_a_file_that_appears_during_predict_is_replaced_only_with_force(tmp_path, model, monkeypatch):
    from gpukmeans.segmentation import pipeline

    out = tmp_path / "p.csv"
    transformed_batches = pipeline.transformed_batches

    def user_writes_meanwhile(*args, **kwargs):
        out.write_text("the user's")
        yield from transformed_batches(*args, **kwargs)

    monkeypatch.setattr(pipeline, "transformed_batches", user_writes_meanwhile)
    with pytest.raises(InputError, match="appeared during the run; it is left as it is"):
        predict(model, MALL, out=out)
    assert out.read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]
    out.unlink()
    predict(model, MALL, out=out, force=True)  # a regular file, and --force: replaced
    assert len(pd.read_csv(out)) == 200


def test_a_special_file_that_appears_is_never_replaced(tmp_path):
    out = tmp_path / "p.csv"
    with pytest.raises(InputError, match="is a named pipe"):
        with atomic_path(out, replace=True) as tmp:
            tmp.write_text("results")
            os.mkfifo(out)
    assert fingerprint(tmp_path) == {"p.csv": "special 10000"}


# ---------------------------------------------------------------- a command's own output


def test_every_file_a_command_writes_is_one_force_may_replace(tmp_path):
    """A rerun with force replaces the folder a run of the same command wrote, with every
    file it can write (a sweep's table, the report), and nothing else is in the way."""
    from gpukmeans.segmentation.pipeline import SEGMENT_FILES, SWEEP_FILES

    seg, sweep = tmp_path / "seg", tmp_path / "sweep"
    segment(MALL, k_range=(2, 3), out=seg)
    assert {"sweep.csv", "report.html"} <= {p.name for p in seg.iterdir()} <= set(SEGMENT_FILES)
    segment(MALL, k=3, report=False, out=seg, force=True)
    assert "report.html" not in {p.name for p in seg.iterdir()}
    sweep_k(MALL, k_range=(2, 3), out=sweep)
    assert {p.name for p in sweep.iterdir()} == set(SWEEP_FILES)
    sweep_k(MALL, k_range=(2, 3), out=sweep, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg", "sweep"]


# ---------------------------------------------------------------- inputs, links, special files


@pytest.mark.parametrize("alias", ["dot", "absolute", "symlink", "hard link"])
def test_an_input_is_never_an_output_by_any_name(tmp_path, monkeypatch, alias):
    monkeypatch.chdir(tmp_path)
    data = Path("m.csv")
    data.write_bytes(MALL.read_bytes())
    out = {
        "dot": Path("./sub/../m.csv"),
        "absolute": tmp_path / "m.csv",
        "symlink": Path("link.csv"),
        "hard link": Path("hard.csv"),
    }[alias]
    Path("sub").mkdir()
    os.symlink("m.csv", "link.csv")
    os.link("m.csv", "hard.csv")
    with pytest.raises(InputError, match="is the input table m.csv; an input is never replaced, even with --force"):
        check_output_file(out, force=True, inputs={"input table": data})


def test_an_output_folder_holding_the_input_is_never_replaced(tmp_path):
    (tmp_path / "data").mkdir()
    data = tmp_path / "data" / "m.csv"
    data.write_bytes(MALL.read_bytes())
    for out in (tmp_path / "data", tmp_path, tmp_path / "data" / "." / ".."):
        with pytest.raises(InputError, match="holds the input table"):
            check_output_dir(out, force=True, own_files=["m.csv"], inputs={"input table": data})


def test_a_linked_or_special_output_folder_is_never_replaced(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError, match="is a symbolic link; it is never replaced"):
        check_output_dir(tmp_path / "link", force=True)
    with pytest.raises(InputError, match=r"exists and is not a folder \(it is a named pipe \(FIFO\)\)"):
        check_output_dir(tmp_path / "fifo", force=True)


def test_foreign_entries_are_found_in_subfolders_and_named(tmp_path):
    own = ["customers.csv", "segments/summary.json"]
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "summary.json").write_text("{}")
    (tmp_path / "customers.csv").write_text("a\n1\n")
    assert check_output_dir(tmp_path, force=True, own_files=own).existed
    (tmp_path / "segments" / "extra.png").write_bytes(b"x")
    with pytest.raises(InputError, match="holds 'segments/extra.png'"):
        check_output_dir(tmp_path, force=True, own_files=own)


# ---------------------------------------------------------------- a place that is not writable


def test_a_read_only_place_is_refused_before_any_work(tmp_path, monkeypatch):
    """The probe is what finds it: permission bits mean nothing to root, so the file
    system's answer is simulated here (a real read-only mount is a corpus case)."""
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    # The data does not exist: the output is refused before the data is even looked at.
    with pytest.raises(OutputError, match="is not writable \\(Read-only file system\\)") as refused:
        segment(tmp_path / "missing.csv", k=3, out=tmp_path / "out")
    assert refused.value.errno == errno.EROFS
    with pytest.raises(OutputError, match="is not writable"):
        rfm_file(tmp_path / "missing.csv", tmp_path / "r.csv")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_for_an_output_file_is_an_error_not_a_new_tree(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        rfm_file(RETAIL, tmp_path / "typo" / "r.csv")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- a disk that fills up


def _failing_writer(code: int):
    """A pyarrow CSV writer that writes part of the file, then fails as a full disk does."""

    def write_csv(table, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"customer,segment\n1,0\n")
        raise OSError(code, os.strerror(code))

    return write_csv


def _failing_streaming_writer(code: int):
    """pyarrow's streaming CSV writer (segments files are written batch by batch), failing alike."""

    class CSVWriter:
        def __init__(self, path, schema, *args, **kwargs):
            self.path = path

        def write_table(self, table):
            _failing_writer(code)(table, self.path)

        def close(self):
            pass

    return CSVWriter


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_a_failed_write_leaves_the_earlier_file_and_no_temporary_one(tmp_path, monkeypatch, code):
    import pyarrow.csv as pacsv

    out = tmp_path / "r.csv"
    out.write_text("the earlier result")
    monkeypatch.setattr(pacsv, "write_csv", _failing_writer(code))
    with pytest.raises(OutputError, match=f"could not write {out}: {os.strerror(code)}") as failed:
        rfm_file(RETAIL, out, force=True)
    assert failed.value.errno == code
    assert fingerprint(tmp_path) == {"r.csv": fingerprint(tmp_path)["r.csv"]}
    assert out.read_text() == "the earlier result"


def test_a_failed_write_in_a_folder_names_the_final_path_and_removes_the_staging(tmp_path, monkeypatch):
    import pyarrow.csv as pacsv

    monkeypatch.setattr(pacsv, "write_csv", _failing_writer(errno.ENOSPC))
    monkeypatch.setattr(pacsv, "CSVWriter", _failing_streaming_writer(errno.ENOSPC))
    out = tmp_path / "new" / "out"
    with pytest.raises(OutputError, match=f"could not write {out / 'segments.csv'}: No space left on device"):
        segment(MALL, k=3, report=False, out=out)
    assert list(tmp_path.iterdir()) == []


def test_a_really_full_disk(tmp_path):
    """A 64 KiB tmpfs, where this machine allows mounting one."""
    big = pd.DataFrame({"customer": range(50_000), "segment": 0})
    with tmpfs(tmp_path / "small") as small:
        with pytest.raises(OutputError, match="No space left on device") as failed:
            write_table(big, small / "big.csv")
        assert failed.value.errno == errno.ENOSPC
        with pytest.raises(OutputError, match=f"could not write {small / 'out' / 'big.parquet'}"):
            with staged_output_dir(small / "out") as staging:
                write_table(big.astype(str), staging / "big.parquet", "parquet")
        assert list(small.iterdir()) == []


def test_a_write_failure_is_one_line_from_the_cli(tmp_path, monkeypatch, model):
    import pyarrow.csv as pacsv

    monkeypatch.setattr(pacsv, "CSVWriter", _failing_streaming_writer(errno.ENOSPC))
    args = ["predict", str(model), str(MALL), "--out", str(tmp_path / "p.csv")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr == f"error: could not write {tmp_path / 'p.csv'}: No space left on device\n"
    debug = CliRunner().invoke(app, args, env={"GPUKMEANS_DEBUG": "1"})
    assert isinstance(debug.exception, OutputError)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- leftovers of killed runs


def test_leftovers_of_ended_runs_are_removed_and_those_of_running_ones_kept(tmp_path):
    dead = _dead_pid()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "out").mkdir()
        for name in (f".out.partial-{dead}-abc123", f".out.old-{dead}-x_9", f".out.partial-{alive.pid}-abc"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "summary.json").write_text("{}")
        (tmp_path / f".out.probe-{dead}-q1").mkdir()
        (tmp_path / f".p.csv.{dead}-k2l3.tmp").write_text("half")
        (tmp_path / f".other.partial-{dead}-abc").mkdir()  # another output's: not this run's business
        check_output_dir(tmp_path / "out")
        check_output_file(tmp_path / "p.csv")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["out", f".out.partial-{alive.pid}-abc", f".other.partial-{dead}-abc"]
        )
    finally:
        alive.kill()
        alive.wait()


def test_an_output_set_aside_by_a_killed_run_is_put_back(tmp_path):
    aside = tmp_path / f".out.old-{_dead_pid()}-abc"
    aside.mkdir()
    (aside / "summary.json").write_text("the earlier output")
    with pytest.raises(InputError, match="not empty; use --force"):
        check_output_dir(tmp_path / "out", own_files=["summary.json"])
    assert fingerprint(tmp_path) == {"out": "folder", "out/summary.json": fingerprint(tmp_path / "out")["summary.json"]}
    assert (tmp_path / "out" / "summary.json").read_text() == "the earlier output"


# ---------------------------------------------------------------- SIGTERM


def test_sigterm_removes_the_staging_and_exits_143(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        with stop_cleanly_on_sigterm():
            with staged_output_dir(tmp_path / "out") as staging:
                (staging / "summary.json").write_text("{}")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)  # the handler raises long before this ends
    assert stopped.value.code == 143
    assert capsys.readouterr().err == "error: stopped by SIGTERM; unfinished outputs were removed\n"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
