"""benchmarks/mutation.sh, the mutation-testing job: its checks before any work (the job
itself takes tens of minutes, so it is run by hand, not here)."""

import os
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


BY_NAME = Path(__file__).resolve().parents[1] / "mutation_by_name.py"


def _work_folder(folder, body_of_f, tests):
    """A stand-in for a mutmut work folder: ``pkg.mod.f``, whose body reads
    MUTANT_UNDER_TEST at every call as mutmut's trampolines do, and a test of it in ``tests``."""
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "mod.py").write_text("import os\ndef f():\n" + body_of_f)
    tests.mkdir(exist_ok=True)
    (tests / "test_f.py").write_text("from pkg.mod import f\n\ndef test_f():\n    assert f() == 1\n")


def test_named_mutants_run_in_one_process_against_the_tests_given(tmp_path):
    # one mutant breaks the test
    tests = tmp_path / "elsewhere"
    _work_folder(tmp_path, "    return 2 if os.environ.get('MUTANT_UNDER_TEST') == 'pkg.mod.x_f__mutmut_1' else 1\n",
                 tests)
    names = tmp_path / "names.txt"
    names.write_text("pkg.mod.x_f__mutmut_0\npkg.mod.x_f__mutmut_1\n")
    results = tmp_path / "results.txt"
    done = subprocess.run([sys.executable, str(BY_NAME), str(names), str(results), str(tests / "test_f.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert results.read_text().splitlines() == ["pkg.mod.x_f__mutmut_0 survived 0", "pkg.mod.x_f__mutmut_1 killed 1"]


def test_test_paths_outside_the_work_folder_are_refused_before_any_run(tmp_path):
    # tests of another checkout would import its unmutated package: every mutant would survive
    work = tmp_path / "work"
    work.mkdir()
    names = work / "names.txt"
    names.write_text("pkg.mod.x_f__mutmut_0\n")
    outside = tmp_path / "test_elsewhere.py"
    outside.write_text("def test_f():\n    pass\n")
    results = work / "results.txt"
    done = subprocess.run([sys.executable, str(BY_NAME), str(names), str(results), f"{outside}::test_f", "-q"],
                          cwd=work, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"mutation_by_name: test paths outside {work}: {outside}::test_f; copy them into "
                                   "its tests (tests of another checkout import its unmutated package)")
    assert not results.exists()


def test_a_mutant_that_never_ends_is_stopped_by_the_timeout_and_counts_as_killed(tmp_path):
    _work_folder(tmp_path, "    while os.environ.get('MUTANT_UNDER_TEST') == 'pkg.mod.x_f__mutmut_1':\n"
                           "        pass\n"
                           "    return 1\n", tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("pkg.mod.x_f__mutmut_0\npkg.mod.x_f__mutmut_1\npkg.mod.x_f__mutmut_2\n")
    results = tmp_path / "results.txt"
    done = subprocess.run([sys.executable, str(BY_NAME), str(names), str(results), "test_f.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "MUTATION_TIMEOUT": "1"})
    assert done.returncode == 0, done.stderr
    assert results.read_text().splitlines() == [
        "pkg.mod.x_f__mutmut_0 survived 0", "pkg.mod.x_f__mutmut_1 killed 1", "pkg.mod.x_f__mutmut_2 survived 0"]
