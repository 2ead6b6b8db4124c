"""Run named mutants of a mutmut work folder against chosen tests, in one process.

``benchmarks/mutation.sh`` runs every mutant of a module through mutmut, which forks a
fresh test run per mutant and runs every test of the selection that reaches the mutated
function. Rechecking a few hundred survivors against the few tests written to kill them
is faster in one process: mutmut's trampolines read ``MUTANT_UNDER_TEST`` at every call,
so setting it before each ``pytest.main`` switches the mutant without reimporting.

    cd WORK/mutants     # the folder mutation.sh printed; its gpukmeans is the mutated one
    python benchmarks/mutation_by_name.py NAMES.txt RESULTS.txt TEST_PATH... [-k EXPR]

MUTATION_TIMEOUT=S in the environment ends a run of more than S seconds (a mutant that
loops for ever) with an error in the test it interrupts: that mutant counts as killed.

NAMES.txt holds one mutant name a line (``gpukmeans.engine.lloyd.x_lloyd__mutmut_12``);
each result line is ``NAME killed|survived EXIT_CODE``, appended as it ends. Put the name
of a mutant that does not exist first: it must survive, or the tests fail unmutated
(a missing fixture, a check mutmut's trampolines upset) and every "killed" is void.
Test paths must lie inside the folder (copy new tests into its ``tests``): pytest puts the
root of a checkout that holds a ``conftest.py`` first on ``sys.path``, so a test file of
another checkout imports that checkout's unmutated package and every mutant "survives".
"""

import contextlib
import io
import os
import signal
import sys
from pathlib import Path


def _expire(signum, frame):
    raise TimeoutError("mutation_by_name: MUTATION_TIMEOUT reached")


def main(names_path: str, results_path: str, pytest_args: list[str]) -> None:
    sys.path.insert(0, os.getcwd())
    import pytest

    timeout = int(os.environ.get("MUTATION_TIMEOUT", "0"))  # 0: no alarm
    signal.signal(signal.SIGALRM, _expire)
    with open(names_path) as names_file:
        names = [line.strip() for line in names_file if line.strip()]
    with open(results_path, "a") as results:
        for name in names:
            os.environ["MUTANT_UNDER_TEST"] = name
            output = io.StringIO()  # pytest's report of each run would bury the results
            signal.alarm(timeout)
            try:
                with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                    code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *pytest_args]))
            finally:
                signal.alarm(0)
            results.write(f"{name} {'killed' if code != 0 else 'survived'} {code}\n")
            results.flush()


def paths_outside(folder: Path, pytest_args: list[str]) -> list[str]:
    """The test paths among ``pytest_args`` that do not lie inside ``folder``."""
    paths = [arg for arg in pytest_args if Path(arg.split("::")[0]).exists()]
    return [path for path in paths if not Path(path.split("::")[0]).resolve().is_relative_to(folder.resolve())]


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: python benchmarks/mutation_by_name.py NAMES.txt RESULTS.txt TEST_PATH... [pytest options]")
    outside = paths_outside(Path.cwd(), sys.argv[3:])
    if outside:
        sys.exit(f"mutation_by_name: test paths outside {Path.cwd()}: {', '.join(outside)}; copy them into its "
                 "tests (tests of another checkout import its unmutated package)")
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
