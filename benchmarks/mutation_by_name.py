"""Run named mutants of a mutmut work folder against chosen tests, in one process.

``benchmarks/mutation.sh`` runs every mutant of a module through mutmut, which forks a
fresh test run per mutant and runs every test of the selection that reaches the mutated
function. Rechecking a few hundred survivors against the few tests written to kill them
is faster in one process: mutmut's trampolines read ``MUTANT_UNDER_TEST`` at every call,
so setting it before each ``pytest.main`` switches the mutant without reimporting.

    cd WORK/mutants     # the folder mutation.sh printed; its gpukmeans is the mutated one
    python benchmarks/mutation_by_name.py NAMES.txt RESULTS.txt TEST_PATH... [-k EXPR]

NAMES.txt holds one mutant name a line (``gpukmeans.engine.lloyd.x_lloyd__mutmut_12``);
each result line is ``NAME killed|survived EXIT_CODE``, appended as it ends. Put the name
of a mutant that does not exist first: it must survive, or the tests fail unmutated
(a missing fixture, a check mutmut's trampolines upset) and every "killed" is void.
Test paths outside the folder (new tests not in its checkout) are fine: the mutated package
is imported from the folder before pytest starts, so a test path in another checkout (whose
conftest.py puts that checkout's root first on ``sys.path``) still gets the mutated one.
Tests that start processes (the torch.distributed ranks) give those the package of the test
file's own checkout: run them from the folder's ``tests``.
"""

import contextlib
import io
import os
import sys


def main(names_path: str, results_path: str, pytest_args: list[str]) -> None:
    sys.path.insert(0, os.getcwd())
    if os.path.isdir("gpukmeans"):
        # Imported now, so that the mutated package is the one every test gets: a test path
        # in another checkout puts that checkout's root first on sys.path (its conftest.py).
        import gpukmeans  # noqa: F401
    import pytest

    with open(names_path) as names_file:
        names = [line.strip() for line in names_file if line.strip()]
    with open(results_path, "a") as results:
        for name in names:
            os.environ["MUTANT_UNDER_TEST"] = name
            output = io.StringIO()  # pytest's report of each run would bury the results
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *pytest_args]))
            results.write(f"{name} {'killed' if code != 0 else 'survived'} {code}\n")
            results.flush()


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: python benchmarks/mutation_by_name.py NAMES.txt RESULTS.txt TEST_PATH... [pytest options]")
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
