"""benchmarks/mutation.sh, the mutation-testing job: its checks before any work (the job
itself takes tens of minutes, so it is run by hand, not here)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "mutation.sh"


def _run(*args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, **env})


def test_without_a_module_and_tests_it_says_how_to_call_it():
    done = _run("gpukmeans/metrics/_sampled.py")
    assert done.returncode == 2
    assert done.stderr.strip() == "usage: bash benchmarks/mutation.sh MODULE TEST_PATH... [-- MUTANT_NAME...]"


def test_without_mutmut_it_says_how_to_install_it_and_copies_nothing(tmp_path):
    work = tmp_path / "work"
    done = _run("gpukmeans/metrics/_sampled.py", "tests/metrics", PYTHON="false", WORK=str(work))
    assert done.returncode == 2
    assert done.stderr.strip() == "mutation: mutmut is not installed for false (false -m pip install mutmut)"
    assert not work.exists()
