#!/usr/bin/env bash
# The GPU measurements as one command for a machine with an H100/H200: the Triton kernel's
# variants, the CUDA tests, then the Lloyd suite on CUDA (benchmarks/bench_lloyd.py), logs
# and results under $OUT. How to call it, and what comes back: docs/benchmarks.md,
# "gpu_session.sh".
#
#   bash benchmarks/gpu_session.sh [STAGE ...]
#
# Stages, run in the order given, each under its own time limit (default: variants bench
# bench-large whole-fit tests: the suite before the tests, whose parallel workers load the
# host, and the host drives every launch of a million-row iteration):
#   variants     benchmarks/gpu_kernel_variants.py: the Triton step alone under several launch
#                settings and precisions, timed and checked against float64 -> gpu-kernel-variants.*
#   tests        pytest -m gpu: the kernel and dtype tests in parallel (pytest-xdist, where
#                installed: Triton compiles about a hundred kernel variants), then
#                tests/gpu/test_gpu.py and tests/gpu/test_gpu_scale.py alone (they read free GPU memory
#                and one fills it on purpose)
#   bench        the suite at the GPU shapes whose float32 X is under 4 GiB    -> lloyd-cuda.*
#   bench-large  the suite at the larger ones, (100M, 32, 16): 12.8 GB of X    -> lloyd-cuda-large.*
#   profile      Nsight Compute (ncu) on one launch of the Triton step at (10M, 32, 16), float32
#                and bfloat16, and on k-means++'s first pass there: throughput against the chip's
#                limits, occupancy, warp stalls and where they happen (not by default)
#   suite        the rest of the test suite with CUDA visible (not run by default)
#   restarts     only the n_init=10 cost at (1M, 16, 8) (bench includes it)     -> restarts-cuda.*
#   whole-fit    benchmarks/gpu_whole_fit.py: a default fit at (100M, 32, 16) by phase
#                (k-means++, its passes and draws, the iterations, the rest)     -> gpu-whole-fit.*
#
# Environment: OUT (default: a new temporary folder), PYTHON (default python3),
# GPU_SESSION_BUDGET_S (default 560: no stage starts, or runs, past it),
# GPU_SESSION_TESTS=serial (the tests stage runs only the serial files),
# GPU_SESSION_LARGE_WITHOUT=NAME (bench-large leaves out that peer: fastkmeans, which streams
# X from host memory, takes most of that stage's 180 s),
# GPU_SESSION_REHEARSE=1 (runs every stage on the CPU at toy sizes, pytest only collecting:
# a check of this script that costs no device time; benchmarks/tests/test_gpu_session.py runs it).
# Past GPU_SESSION_MAX_FILES files in $OUT (default 8: what a reply carries), all but the log
# are packed into gpu-session-results.tar.gz.
# Exit status: 0 when every stage passed, 1 when one failed or ran out of time, 2 when
# nothing could run (no CUDA device, no torch, an unknown stage).
set -uo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
REHEARSE=${GPU_SESSION_REHEARSE:-0}
BUDGET_S=${GPU_SESSION_BUDGET_S:-560}

declare -A LIMIT_S=([variants]=200 [tests]=150 [bench]=160 [bench-large]=200 [profile]=150 [suite]=300
                    [restarts]=60 [whole-fit]=120)
STAGES=("$@")
((${#STAGES[@]})) || STAGES=(variants bench bench-large whole-fit tests)
for stage in "${STAGES[@]}"; do
  if [[ -z ${LIMIT_S[$stage]+set} ]]; then
    echo "gpu_session: unknown stage '$stage' (known: variants tests bench bench-large profile suite" \
         "restarts whole-fit)" >&2
    exit 2
  fi
done

# Before anything else, so that a machine without a GPU costs one line and no time.
if [[ $REHEARSE != 1 ]]; then
  "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 4)' >/dev/null 2>&1
  case $? in
    0) ;;
    4) echo "gpu_session: no CUDA device visible to PyTorch on this machine; nothing was run" \
            "(this script is for a machine with a GPU: docs/benchmarks.md)" >&2
       exit 2 ;;
    *) echo "gpu_session: '$PY' cannot import torch; nothing was run (set PYTHON to a Python with torch)" >&2
       exit 2 ;;
  esac
fi

OUT=${OUT:-}
[[ -n $OUT ]] || OUT=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session.XXXXXX")
mkdir -p "$OUT"
LOG=$OUT/session.log
: >"$LOG"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session-work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

say() { printf '%s\n' "$*" | tee -a "$LOG"; }

# Runs a command with its output in the log, stopped after $1 seconds; returns its status
# (124 when it ran out of time).
logged() {
  local seconds=$1
  shift
  timeout --kill-after=15 "$seconds" "$@" 2>&1 | tee -a "$LOG"
  return "${PIPESTATUS[0]}"
}

# --- environment: the repository, the carried peer wheels, the CLI package ---------------
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
unset TRITON_INTERPRET  # the Triton kernels must run on the GPU, not in the interpreter
mkdir -p "$WORK/site" "$WORK/path"
# The CLI lives in cli/ and is installed as gpukmeans_cli; the tests and the benchmark
# harness (gpukmeans_cli.benchmarking) are imported by that name.
ln -s "$REPO/cli" "$WORK/path/gpukmeans_cli"
export PYTHONPATH="$REPO:$WORK/path:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"

say "== gpu_session: stages ${STAGES[*]}; results and log in $OUT$([[ $REHEARSE == 1 ]] && echo '; REHEARSAL on the CPU')"
shopt -s nullglob
wheels=(.whl/*.whl)
shopt -u nullglob
if ((${#wheels[@]})); then
  say "== installing ${#wheels[@]} carried wheels from .whl/ (benchmarks/fetch_gpu_wheels.sh)"
  logged 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --disable-pip-version-check --target "$WORK/site" "${wheels[@]}" ||
    say "   wheel install failed: the peers it carried will be reported as missing"
else
  say "== no .whl/ folder carried: the peers that the image lacks will be reported as missing"
fi

say "== machine"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,pstate,clocks.sm,clocks.max.sm \
    --format=csv,noheader 2>&1 | tee -a "$LOG"
else
  say "nvidia-smi: not on this machine"
fi
logged 60 "$PY" - <<'EOF'
import importlib.metadata as metadata
import os
import platform

import torch

print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"{os.cpu_count()} CPUs")
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print(f"torch sees {props.name}: {props.total_memory / 2**30:.1f} GiB, "
          f"{props.multi_processor_count} SMs, compute capability {props.major}.{props.minor}")
found = []
for name in ["triton", "cupy-cuda13x", "cupy-cuda12x", "numba", "numpy", "scikit-learn", "pytest-xdist",
             "flash-kmeans", "fastkmeans", "fast-pytorch-kmeans", "faiss-gpu", "cuml-cu13", "kneed"]:
    try:
        found.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        found.append(f"{name} -")
print("packages: " + ", ".join(found))
EOF

# --- the plan: the suite's GPU shapes, split by the size of X ------------------------------
mapfile -t SHAPES < <("$PY" - <<'EOF'
from gpukmeans_cli.benchmarking import GPU_SHAPES

LARGE = 4 * 2**30  # bytes of float32 X from which a shape is measured in its own stage
print(" ".join(f"{n},{d},{k}" for n, d, k in GPU_SHAPES if n * d * 4 < LARGE))
print(" ".join(f"{n},{d},{k}" for n, d, k in GPU_SHAPES if n * d * 4 >= LARGE))
EOF
)
read -r -a SMALL_SHAPES <<<"${SHAPES[0]:-}"
read -r -a LARGE_SHAPES <<<"${SHAPES[1]:-}"
say "plan: bench at ${SMALL_SHAPES[*]:-nothing}; bench-large at ${LARGE_SHAPES[*]:-nothing}"

DEVICE=cuda
# 10 timed iterations, best of 3 (of 2 at the large shape, where fastkmeans streams 12.8 GB
# from host memory every iteration), to end well inside the stages' limits (LIMIT_S).
SMALL_TIMING=(--iterations 10 --repeats 3)
LARGE_TIMING=(--iterations 8 --repeats 2 --skip-restarts)
LIBRARIES=()
PYTEST_RUN=(-x)
PYTEST_SERIAL_RUN=()
XDIST=()
"$PY" -c "import xdist" >/dev/null 2>&1 && XDIST=(-n 8)
if [[ $REHEARSE == 1 ]]; then
  DEVICE=cpu
  SMALL_SHAPES=(3000,16,8 2000,5,3)
  LARGE_SHAPES=(4000,32,16)
  SMALL_TIMING=(--iterations 2 --repeats 1 --skip-restarts)
  LARGE_TIMING=(--iterations 2 --repeats 1 --skip-restarts)
  LIBRARIES=(--libraries gpukmeans "plain torch")
  PYTEST_RUN=(--collect-only)
  PYTEST_SERIAL_RUN=(--collect-only)
fi

# --- the stages ----------------------------------------------------------------------------
SERIAL_GPU_TESTS=(tests/gpu/test_gpu.py tests/gpu/test_gpu_scale.py)
# the customer-table shape of the floor target, at a tenth of its rows
PROFILE_SHAPE=10000000,32,16
PROFILED_VARIANTS=("float32 default" "bfloat16 default")
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -o faulthandler_timeout=120 -rfEs)

stage_tests() {
  local limit=$1 start=$SECONDS ignore=() path
  for path in "${SERIAL_GPU_TESTS[@]}"; do ignore+=("--ignore=$path"); done
  if [[ ${GPU_SESSION_TESTS:-all} != serial ]]; then
    logged "$limit" "${PYTEST[@]}" "${PYTEST_RUN[@]}" "${XDIST[@]}" -m gpu "${ignore[@]}" tests || return
  fi
  local rest=$((limit - (SECONDS - start)))
  ((rest >= 10)) || return 124
  # no -x here: each of these tests checks something of its own
  logged "$rest" "${PYTEST[@]}" "${PYTEST_SERIAL_RUN[@]}" -m gpu "${SERIAL_GPU_TESTS[@]}"
}

stage_variants() {
  if [[ $REHEARSE == 1 ]]; then
    say "   (rehearsal: the variants need CUDA; only checked to import)"
    logged "$1" "$PY" -c "import benchmarks.gpu_kernel_variants" 2>/dev/null ||
      logged "$1" "$PY" -c "import runpy; runpy.run_path('benchmarks/gpu_kernel_variants.py', run_name='check')"
    return
  fi
  # only the JSON comes back (the reply carries at most 8 files); the table is in the log
  logged "$1" "$PY" benchmarks/gpu_kernel_variants.py --out "$WORK/variants"
  local status=$?
  cp "$WORK/variants/gpu-kernel-variants.json" "$OUT/" 2>/dev/null || say "   no gpu-kernel-variants.json was written"
  return "$status"
}

stage_profile() {
  local ncu limit=$1 start=$SECONDS status=0 variant
  ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
  local sections=(--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats
                  --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section InstructionStats
                  --section SchedulerStats --section SourceCounters)
  local args=(--clock-control none --kernel-name regex:_assign_kernel --launch-skip 2 --launch-count 1
              "${sections[@]}")
  for variant in "${PROFILED_VARIANTS[@]}"; do
    local program=("$PY" benchmarks/gpu_kernel_variants.py --shape "$PROFILE_SHAPE" --variant "$variant"
                   --out "$WORK/profile")
    if [[ $REHEARSE == 1 ]]; then
      say "   (rehearsal: would run) ${ncu:-ncu} ${args[*]} ${program[*]}"
      continue
    fi
    if [[ -z $ncu ]]; then
      say "   ncu: not found on this machine"
      return 1
    fi
    local rest=$((limit - (SECONDS - start)))
    ((rest >= 20)) || return 124
    say "-- ncu: $variant at $PROFILE_SHAPE"
    logged "$rest" "$ncu" "${args[@]}" "${program[@]}" || status=$?
  done
  # k-means++'s pass: its first launch is a whole pass over X (the later small ones lower
  # only the blocks a draw lands in)
  local program=("$PY" benchmarks/gpu_whole_fit.py --shape "$PROFILE_SHAPE" --kmeans-plusplus-only)
  local pass_args=(--clock-control none --kernel-name regex:_potentials_kernel --launch-skip 0 --launch-count 1
                   "${sections[@]}")
  if [[ $REHEARSE == 1 ]]; then
    say "   (rehearsal: would run) ${ncu:-ncu} ${pass_args[*]} ${program[*]}"
    return "$status"
  fi
  local rest=$((limit - (SECONDS - start)))
  ((rest >= 20)) || return 124
  say "-- ncu: k-means++'s pass at $PROFILE_SHAPE"
  logged "$rest" "$ncu" "${pass_args[@]}" "${program[@]}" || status=$?
  return "$status"
}

stage_suite() {
  logged "$1" "${PYTEST[@]}" "${PYTEST_RUN[@]}" "${XDIST[@]}" -m "not gpu" tests
}

# bench_lloyd.py into a folder of its own; its lloyd-<device>.{json,md,png} come back
# as $OUT/lloyd-<device><suffix>.*
run_bench() {
  local limit=$1 suffix=$2 status ext shape
  shift 2
  local timing=("$@")
  local dir=$WORK/bench$suffix
  local shapes=("${SMALL_SHAPES[@]}")
  [[ $suffix == -large ]] && shapes=("${LARGE_SHAPES[@]}")
  if ((${#shapes[@]} == 0)); then
    say "   no shape for this stage: see the plan line above"
    return 1
  fi
  local libraries=("${LIBRARIES[@]}")
  if [[ $suffix == -large && -n ${GPU_SESSION_LARGE_WITHOUT:-} && ${#libraries[@]} -eq 0 ]]; then
    mapfile -t libraries < <(LEAVE_OUT=$GPU_SESSION_LARGE_WITHOUT "$PY" -c '
import os
from gpukmeans_cli.benchmarking import GPU_PEERS
print("--libraries")
print("\n".join(name for name in GPU_PEERS if name != os.environ["LEAVE_OUT"]))')
    say "   leaving out $GPU_SESSION_LARGE_WITHOUT (GPU_SESSION_LARGE_WITHOUT)"
  fi
  local args=(benchmarks/bench_lloyd.py --device "$DEVICE" "${timing[@]}" --out "$dir" "${libraries[@]}")
  for shape in "${shapes[@]}"; do args+=(--shape "$shape"); done
  logged "$limit" "$PY" "${args[@]}"
  status=$?
  for ext in json md png; do
    if [[ -f $dir/lloyd-$DEVICE.$ext ]]; then
      cp "$dir/lloyd-$DEVICE.$ext" "$OUT/lloyd-$DEVICE$suffix.$ext"
    else
      say "   no lloyd-$DEVICE.$ext was written"
    fi
  done
  return "$status"
}
stage_bench() { run_bench "$1" "" "${SMALL_TIMING[@]}"; }

stage_restarts() {
  if [[ $REHEARSE == 1 ]]; then  # its shape is fixed, (1M, 16, 8): minutes on a small CPU
    say "   (rehearsal: the restarts stage runs bench_lloyd.py --restarts-only, as bench does)"
    return
  fi
  logged "$1" "$PY" benchmarks/bench_lloyd.py --device "$DEVICE" --restarts-only --iterations 10 --repeats 3 \
    --out "$WORK/restarts"
  local status=$?
  cp "$WORK/restarts/restarts-$DEVICE".* "$OUT/" 2>/dev/null || say "   no restarts-$DEVICE.* was written"
  return "$status"
}

stage_whole-fit() {
  if [[ $REHEARSE == 1 ]]; then
    say "   (rehearsal: the whole fit needs CUDA; only checked to import)"
    logged "$1" "$PY" -c "import runpy; runpy.run_path('benchmarks/gpu_whole_fit.py', run_name='check')"
    return
  fi
  logged "$1" "$PY" benchmarks/gpu_whole_fit.py --out "$WORK/whole-fit"
  local status=$?
  cp "$WORK/whole-fit/gpu-whole-fit".* "$OUT/" 2>/dev/null || say "   no gpu-whole-fit.* was written"
  return "$status"
}
stage_bench-large() { run_bench "$1" -large "${LARGE_TIMING[@]}"; }

SUMMARY=()
FAILED=0
for stage in "${STAGES[@]}"; do
  left=$((BUDGET_S - SECONDS))
  limit=${LIMIT_S[$stage]}
  ((limit > left)) && limit=$left
  if ((limit < 30)); then
    say "== $stage: skipped, ${left} s of the ${BUDGET_S} s budget left"
    SUMMARY+=("$(printf '%-12s %-28s %5s s' "$stage" "skipped (no time left)" 0)")
    FAILED=1
    continue
  fi
  say "== $stage (at most $limit s)"
  start=$SECONDS
  "stage_$stage" "$limit"
  status=$?
  case $status in
    0) result=passed ;;
    124 | 137) result="ran out of time"; FAILED=1 ;;
    *) result="failed (exit $status)"; FAILED=1 ;;
  esac
  SUMMARY+=("$(printf '%-12s %-28s %5d s' "$stage" "$result" $((SECONDS - start)))")
done

# --- what the reply's output tail should show ------------------------------------------------
shopt -s nullglob
for table in "$OUT"/lloyd-*.md "$OUT"/restarts-*.md "$OUT"/gpu-whole-fit*.md; do
  say ""
  say "== $(basename "$table")"
  tee -a "$LOG" <"$table"
done
say ""
say "== summary (${SECONDS} s in all)"
for line in "${SUMMARY[@]}"; do say "$line"; done
# The device tool brings back at most 8 files from $OUT (GPU_SESSION_MAX_FILES for a test):
# past that, everything but the log goes into one archive, so that nothing is left behind.
max_files=${GPU_SESSION_MAX_FILES:-8}
mapfile -t written < <(cd "$OUT" && ls)
if ((${#written[@]} > max_files)); then
  bundle=gpu-session-results.tar.gz
  mapfile -t packed < <(printf '%s\n' "${written[@]}" | grep -vx 'session.log')
  if (cd "$OUT" && tar -czf "$bundle" "${packed[@]}" && rm -f "${packed[@]}"); then
    say "${#written[@]} files are more than the $max_files a reply carries: all but the log are in $bundle" \
        "(tar -xzf $bundle)"
  else
    say "   could not pack the results into $bundle: some of them will not come back"
  fi
fi
say "files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
say "commit the results: copy $OUT/lloyd-$DEVICE*.{json,md,png} into benchmarks/results/"
exit "$FAILED"
