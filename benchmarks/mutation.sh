#!/usr/bin/env bash
# Mutation testing of one module with mutmut, outside CI: every small change mutmut makes to
# the module (an operator, a constant, an argument dropped) must make one of the given tests
# fail; the survivors are listed for triage (benchmarks/results/mutation.md).
#
#   bash benchmarks/mutation.sh MODULE TEST_PATH... [-- MUTANT_NAME...]
#   bash benchmarks/mutation.sh gpukmeans/metrics/_sampled.py tests/metrics/test_metrics.py \
#        tests/estimators/test_sweep.py
#   bash benchmarks/mutation.sh gpukmeans/engine/uniforms.py tests/engine -m "not slow"
#
# Options among the test paths go to pytest too (-m "not slow": the fast tier).
# It runs in a copy of the committed checkout (git archive HEAD) in $WORK (default: a new
# temporary folder), so the working tree is never mutated; names after -- rerun only those
# mutants. mutmut is a tool, not a dependency: .venv/bin/python -m pip install mutmut.
# Runs forked from a fork server (torch is not fork-safe once its thread pools start),
# one thread per test process. PYTHON (default .venv/bin/python) runs it; MUTATION_CHILDREN
# (default: one per core) caps the test processes run at once, for a machine others share.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if (($# < 2)); then
  echo "usage: bash benchmarks/mutation.sh MODULE TEST_PATH... [-- MUTANT_NAME...]" >&2
  exit 2
fi
if ! "$PY" -c "import mutmut" 2>/dev/null; then
  echo "mutation: mutmut is not installed for $PY ($PY -m pip install mutmut)" >&2
  exit 2
fi
MODULE=$1
shift
TESTS=()
while (($#)) && [[ $1 != -- ]]; do TESTS+=("$1"); shift; done
(($#)) && shift  # the --
NAMES=("$@")

WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mutation.XXXXXX")}
mkdir -p "$WORK"
git archive HEAD | tar -x -C "$WORK"
{
  echo "[mutmut]"
  echo "source_paths=gpukmeans"
  echo "only_mutate=$MODULE"
  printf 'also_copy=\n    conftest.py\n    cli\n'
  echo "pytest_add_cli_args_test_selection="
  printf '    %s\n' "${TESTS[@]}"
  printf 'pytest_add_cli_args=\n    -p\n    no:cacheprovider\n'
  echo "process_isolation=forkserver"
} >"$WORK/setup.cfg"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, the venv's link kept
cd "$WORK"
echo "mutation: $MODULE against ${TESTS[*]} in $WORK (commit $(git -C "$OLDPWD" rev-parse --short HEAD))"
CHILDREN=()
[[ -n ${MUTATION_CHILDREN:-} ]] && CHILDREN=(--max-children "$MUTATION_CHILDREN")
OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 "$PY" -m mutmut run "${CHILDREN[@]}" "${NAMES[@]}" || true
"$PY" -m mutmut results
echo "mutation: 'cd $WORK && $PY -m mutmut show NAME' shows a mutant"
