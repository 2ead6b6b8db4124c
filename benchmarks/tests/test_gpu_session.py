"""benchmarks/gpu_session.sh, the one command for a lent GPU machine, checked on the CPU.

Device time is scarce (15 minutes a task, when a task gets any), so the script must work
the first time: these tests check that it refuses a machine without CUDA in one line, and
rehearse it on the CPU (``GPU_SESSION_REHEARSE=1``) so that a wrong option or path shows up
here rather than on the GPU: a quick rehearsal of its wiring in the fast tier, and one of
the stages that run pytest and the benchmark (about 40 s) marked ``slow``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpukmeans_cli.benchmarking import GPU_SHAPES

REPO = Path(__file__).resolve().parents[2]
SESSION = REPO / "benchmarks" / "gpu_session.sh"
FETCH = REPO / "benchmarks" / "fetch_gpu_wheels.sh"
# What the device tool brings back from $OUT: at most 8 files, named in letters, digits, . _ -
RETURNABLE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _session(*stages, timeout=60, **env):
    environment = {key: value for key, value in os.environ.items() if key != "GPU_SESSION_REHEARSE"}
    environment["PYTHON"] = sys.executable
    environment.update(env)
    return subprocess.run(["bash", str(SESSION), *stages], capture_output=True, text=True,
                          env=environment, timeout=timeout)


def _lines(done):
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


@pytest.mark.parametrize("script", [SESSION, FETCH], ids=lambda path: path.name)
def test_the_scripts_are_valid_bash(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_cuda_the_session_stops_at_once_in_one_line(tmp_path):
    out = tmp_path / "out"
    done = _session(CUDA_VISIBLE_DEVICES="", OUT=str(out))
    assert done.returncode == 2
    lines = _lines(done)
    assert len(lines) == 1, lines
    assert lines[0].startswith("gpu_session: no CUDA device visible to PyTorch")
    assert not out.exists(), "nothing is run, so nothing is written"


def test_a_python_without_torch_is_one_line():
    done = _session(PYTHON="false")
    assert done.returncode == 2
    assert _lines(done) == ["gpu_session: 'false' cannot import torch; nothing was run "
                            "(set PYTHON to a Python with torch)"]


def test_an_unknown_stage_is_refused_before_anything_runs():
    done = _session("tests", "benchmark")
    assert done.returncode == 2
    assert _lines(done) == ["gpu_session: unknown stage 'benchmark' (known: variants tests bench bench-large profile suite "
                            "restarts whole-fit)"]


def _plan(log):
    """The shapes the bench and bench-large stages would measure, from the log's plan line."""
    plan = re.search(r"^plan: bench at (.*); bench-large at (.*)$", log, re.MULTILINE)
    assert plan, log[:2000]
    return [[tuple(int(part) for part in shape.split(",")) for shape in stage.split()] for stage in plan.groups()]


def test_a_quick_rehearsal_plans_every_gpu_shape_and_names_scripts_that_exist(tmp_path):
    # the preamble and the profile stage, which only says what it would run: the script's
    # wiring (environment, plan, stage dispatch, summary, the files that come back) in seconds
    out = tmp_path / "out"
    done = _session("profile", timeout=300, OUT=str(out), GPU_SESSION_REHEARSE="1", GPU_SESSION_MAX_FILES="1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [path.name for path in out.iterdir()] == ["session.log"]  # one file: nothing to pack
    log = (out / "session.log").read_text()
    assert log.endswith(done.stdout[-200:]), "the log holds what the command printed"

    # the plan covers every GPU shape of the suite, the 12.8 GB one in a stage of its own
    small, large = _plan(log)
    assert sorted(small + large) == sorted(GPU_SHAPES) and large == [(100_000_000, 32, 16)]

    would_run = re.findall(r"^   \(rehearsal: would run\) (.*)$", log, re.MULTILINE)
    assert len(would_run) == 3, log
    scripts = {word for line in would_run for word in line.split() if word.startswith("benchmarks/")}
    assert scripts == {"benchmarks/gpu_kernel_variants.py", "benchmarks/gpu_whole_fit.py"}
    assert all((REPO / script).is_file() for script in scripts)
    assert re.search(r"^profile\s+passed", log, re.MULTILINE)


@pytest.mark.slow
def test_a_rehearsal_runs_the_stages_command_lines_on_the_cpu(tmp_path):
    """The tests and bench-large stages on the CPU at toy sizes; their results, past what a
    reply carries (2 files here, 8 on the GPU machine), come back packed beside the log."""
    import tarfile

    out = tmp_path / "out"
    done = _session("tests", "bench-large", timeout=600, OUT=str(out), GPU_SESSION_REHEARSE="1",
                    GPU_SESSION_MAX_FILES="2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    assert sorted(path.name for path in out.iterdir()) == ["gpu-session-results.tar.gz", "session.log"]
    assert all(path.is_file() and RETURNABLE_NAME.match(path.name) for path in out.iterdir())
    with tarfile.open(out / "gpu-session-results.tar.gz") as archive:
        assert sorted(archive.getnames()) == ["lloyd-cpu-large.json", "lloyd-cpu-large.md", "lloyd-cpu-large.png"]
        assert all(RETURNABLE_NAME.match(name) for name in archive.getnames())
        payload = json.load(archive.extractfile("lloyd-cpu-large.json"))
    log = (out / "session.log").read_text()
    assert "all but the log are in gpu-session-results.tar.gz" in log

    # both pytest selections of the tests stage collect GPU tests (they would skip here)
    collected = [int(count) for count in re.findall(r"^(\d+)(?:/\d+)? tests? collected", log, re.MULTILINE)]
    assert len(collected) == 2 and all(count > 0 for count in collected), collected

    measured = {(r["library"], r["n_samples"], r["n_features"], r["n_clusters"]) for r in payload["results"]}
    assert measured == {("gpukmeans", 4000, 32, 16), ("plain torch", 4000, 32, 16)}
    assert "== summary" in log and re.search(r"^bench-large\s+passed", log, re.MULTILINE)
    assert re.search(r"^tests\s+passed", log, re.MULTILINE)
