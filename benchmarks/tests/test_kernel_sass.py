"""benchmarks/kernel_sass.py: the Triton step compiled for an H100/H200 without a GPU.

The tool counts the machine instructions of the kernel's row loop; the choice of the
CUDA defaults (triton_assign.Tuning) leans on those counts between GPU sessions, so it
must keep working where CI runs: on a CPU, with Triton's own ptxas. It runs in a process
of its own, since the kernel tests switch this one's Triton to the interpreter.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")


def _loop_counts(*settings, dtype="float32", shape="1000000,32,16", potentials=False):
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    args = [sys.executable, str(ROOT / "benchmarks" / "kernel_sass.py"), "--shape", shape, "--dtype", dtype]
    for setting in settings:
        args += ["--set", setting]
    if potentials:
        args.append("--potentials")
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r"(\d+) regs, .* loop (\d+) instructions \((\d+) behind forward branches\) x (\d+) warps / "
                      r"(\d+) rows = ([\d.]+) warp-instructions per row", done.stdout)
    assert found, done.stdout
    registers, loop, skipped, warps, rows, per_row = found.groups()
    assert abs(float(per_row) - (int(loop) - int(skipped)) * int(warps) / int(rows)) <= 0.05  # printed to 0.1
    return int(registers), int(loop), float(per_row), done.stdout


def test_counts_the_row_loop_of_the_shipped_kernel():
    registers, loop, per_row, report = _loop_counts()
    assert 32 <= registers <= 255
    assert loop > 100  # the whole tile's work: loads, products, argmin, sums
    assert "tensor core" in report and "global load" in report
    assert 5 < per_row < 200


@pytest.mark.slow
def test_the_masked_split_issues_fewer_instructions_than_triton_tf32x3():
    """Why split_tf32 is the float32 default (gpu_kernel_variants.py times the two as well)."""
    _, _, masked, _ = _loop_counts("distance_precision=split_tf32", "sum_precision=split_tf32", "block_m=64")
    _, _, triton_split, _ = _loop_counts("distance_precision=tf32x3", "sum_precision=tf32x3", "block_m=64")
    assert masked < 0.9 * triton_split


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_row_loop_copies_the_next_tiles_ahead(dtype):
    """The rows of the next tiles are copied into shared memory while a tile computes
    (cp.async: LDGSTS). Without it every tile waits out a memory round trip; float32 rows
    keep it only with a load of their own for each tensor-core product
    (triton_assign._reads_rows_twice)."""
    _, _, _, report = _loop_counts(dtype=dtype)
    assert re.search(r"async copy [1-9]", report), report


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_kmeans_plusplus_pass_copies_rows_ahead_and_totals_once_a_block(dtype):
    """k-means++'s pass (the last centre and 4 candidates): rows copied ahead as in the
    Lloyd step, and each block's totals (a reduction over the rows, then a store) behind a
    branch that most tiles skip, not in every tile's path."""
    _, loop, per_row, report = _loop_counts(dtype=dtype, shape="100000000,32,5", potentials=True)
    assert re.search(r"async copy [1-9]", report), report
    skipped = int(re.search(r"\((\d+) behind forward branches\)", report).group(1))
    assert skipped >= 20 and "shuffle" in report and "float64" in report, report
    assert 5 < per_row < 60


def _compile_in_a_process(script):
    """Run ``script`` (which compiles kernels for sm_90) in a fresh process, outside the
    interpreter; its standard output."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout

_COMPILE_CENTER_UPDATE = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from gpukmeans.kernels import triton_update

kernel = triton_update._update_kernel
for center_type in ("fp32", "fp64"):
    for block_k, block_d in ((1, 1), (32, 64)):
        pointers = ["*fp64", "*fp64", "*i64", "*" + center_type, "*i1", "*" + center_type, "*" + center_type, "*fp64"]
        signature = dict(zip(kernel.arg_names, pointers + ["i32"] * 3))
        signature.update(BLOCK_K="constexpr", BLOCK_D="constexpr")
        source = ASTSource(kernel, signature, constexprs={"BLOCK_K": block_k, "BLOCK_D": block_d})
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
        print(center_type, block_k, block_d, "regs", compiled.n_regs if hasattr(compiled, "n_regs") else "?")
"""


@pytest.mark.slow
def test_the_center_update_kernel_compiles_for_the_gpu():
    """The interpreter is lenient about types that the compiler rejects: the update
    kernel (tested against the reference under the interpreter) must also compile."""
    assert _compile_in_a_process(_COMPILE_CENTER_UPDATE).count("regs") == 4


_COMPILE_POTENTIALS = """
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from gpukmeans.kernels import triton_potentials

kernel = triton_potentials._potentials_kernel
for x_type, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
    for n_features, lower in ((16, False), (16, True), (70, False)):
        constants = triton_potentials.compile_settings(dtype, "cuda", n_features, 4, weighted=True, lower=lower)
        pointers = ["*" + x_type, "*fp32", "*fp32", "*fp32", "*fp32", "*fp64"]
        signature = dict(zip(kernel.arg_names, pointers + ["i32"] * 7))
        signature.update({name: "constexpr" for name in constants})
        source = ASTSource(kernel, signature, constexprs=constants)
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
        print(x_type, n_features, lower, "regs", compiled.n_regs if hasattr(compiled, "n_regs") else "?")
"""


@pytest.mark.slow
def test_the_candidate_potentials_kernel_compiles_for_the_gpu():
    """The k-means++ kernel is tested against the reference under the interpreter only
    (no GPU here): it must also compile for an H100/H200, float32 and bfloat16 rows."""
    assert _compile_in_a_process(_COMPILE_POTENTIALS).count("regs") == 6


_VARIANT_RESOURCES = """
import runpy
import torch
from gpukmeans.kernels.triton_assign import Tuning

resources = runpy.run_path("benchmarks/gpu_kernel_variants.py", run_name="variants")["compiled_resources"]
for name, tuning in (("capped", Tuning()), ("uncapped", Tuning(maxnreg=0)), ("4 per SM", Tuning(programs_per_sm=4))):
    found = resources(32, 16, torch.float32, tuning, accumulate=True, inertia=False, arch=90)
    print(name, found["regs"], found["spills"], found["shared"])
"""


@pytest.mark.slow
def test_gpu_kernel_variants_reads_each_variants_registers_from_the_offline_compile():
    """The variants table's registers come from this tool's compile of the variant's own
    tuning: the shipped register cap at k <= 16, and no cap where the variant lifts it."""
    found = {line.rsplit(" ", 3)[0]: [int(part) for part in line.rsplit(" ", 3)[1:]]
             for line in _compile_in_a_process(_VARIANT_RESOURCES).splitlines()}
    assert found["capped"][0] <= 128 < found["uncapped"][0]
    assert found["4 per SM"] == found["capped"]  # programs per SM size the grid, not the code
    assert all(spills >= 0 and shared > 0 for _, spills, shared in found.values())

