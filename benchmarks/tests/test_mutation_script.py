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


BY_NAME = Path(__file__).resolve().parents[1] / "mutation_by_name.py"


def test_named_mutants_run_in_one_process_against_the_tests_given(tmp_path):
    # A stand-in for a mutmut work folder: a function whose trampoline, as mutmut's,
    # reads MUTANT_UNDER_TEST at every call, and a test that one mutant breaks.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(
        "import os\n"
        "def f():\n"
        "    return 2 if os.environ.get('MUTANT_UNDER_TEST') == 'pkg.mod.x_f__mutmut_1' else 1\n")
    tests = tmp_path / "elsewhere"
    tests.mkdir()
    (tests / "test_f.py").write_text("from pkg.mod import f\n\ndef test_f():\n    assert f() == 1\n")
    names = tmp_path / "names.txt"
    names.write_text("pkg.mod.x_f__mutmut_0\npkg.mod.x_f__mutmut_1\n")
    results = tmp_path / "results.txt"
    done = subprocess.run([sys.executable, str(BY_NAME), str(names), str(results), str(tests / "test_f.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert results.read_text().splitlines() == ["pkg.mod.x_f__mutmut_0 survived 0", "pkg.mod.x_f__mutmut_1 killed 1"]


def test_named_mutants_reach_tests_of_another_checkout_with_its_own_package(tmp_path):
    # A test path in a checkout whose root conftest.py puts its own, unmutated gpukmeans
    # first on sys.path: the work folder's mutated gpukmeans must still be the one tested.
    for root, mutated in ((tmp_path / "work", True), (tmp_path / "checkout", False)):
        (root / "gpukmeans").mkdir(parents=True)
        (root / "gpukmeans" / "__init__.py").write_text(
            "import os\n"
            "def f():\n"
            + ("    return 2 if os.environ.get('MUTANT_UNDER_TEST') == 'gpukmeans.x_f__mutmut_1' else 1\n"
               if mutated else "    return 1\n"))
    checkout = tmp_path / "checkout"
    (checkout / "conftest.py").write_text("")
    (checkout / "pytest.ini").write_text("[pytest]\n")  # the checkout's root is pytest's rootdir
    (checkout / "tests").mkdir()
    (checkout / "tests" / "test_f.py").write_text("from gpukmeans import f\n\ndef test_f():\n    assert f() == 1\n")
    names = tmp_path / "names.txt"
    names.write_text("gpukmeans.x_f__mutmut_0\ngpukmeans.x_f__mutmut_1\n")
    results = tmp_path / "results.txt"
    done = subprocess.run([sys.executable, str(BY_NAME), str(names), str(results), str(checkout / "tests" / "test_f.py"),
                           "-p", "no:cacheprovider"], cwd=tmp_path / "work", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert results.read_text().splitlines() == ["gpukmeans.x_f__mutmut_0 survived 0", "gpukmeans.x_f__mutmut_1 killed 1"]
