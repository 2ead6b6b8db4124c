"""Compiles the Triton Lloyd step (or k-means++'s pass) for a GPU architecture without a GPU,
and counts its code.

A GPU's minutes are few; the machine code is not. The step is bound by instructions
issued per row, with few warps per SM (registers), not by memory (an Nsight Compute
profile: benchmarks/gpu_session.sh's profile stage). This script compiles
``_assign_kernel`` with the constants a launch at a given shape and tuning would use
(``_compile_settings``) for sm_90 (H100/H200), with Triton's own ptxas, and reports
registers, spills, shared memory and the SASS instructions of the row loop, per row, by
kind. benchmarks/gpu_kernel_variants.py reads each variant's registers from here.

    python benchmarks/kernel_sass.py [--shape N,D,K ...] [--dtype float32|bfloat16] [--set key=value ...]
    python benchmarks/kernel_sass.py --potentials [--shape N,D,T ...] [--dtype ...]   # k-means++,
        T points a pass: the centre chosen last and the candidates (2 + int(log k) of them)

Instructions behind a forward branch in the loop (code that most passes skip, such as
k-means++'s once-a-block totals) are counted apart: "per row" counts the loop without them.

Instruction counts are static (one pass of the loop body), not a timing: they compare
variants of the kernel, and a variant that cuts them must still be timed on a GPU.
"""

import argparse
import collections
import pathlib
import re
import subprocess
import sys
import tempfile
import types

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.tools.disasm import path_to_cuobjdump  # noqa: E402

from gpukmeans.kernels import triton_assign, triton_potentials  # noqa: E402
from gpukmeans.kernels.triton_assign import DEFAULT_TUNING, Tuning  # noqa: E402

SHAPES = [(100_000_000, 32, 16), (10_000_000, 16, 8), (1_000_000, 32, 32)]
TYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
# SASS opcodes by the unit or purpose a reader cares about
KINDS = [
    ("tensor core", r"^(HMMA|HGMMA|IMMA|WARPGROUP)"),
    ("async copy", r"^LDGSTS"), ("global load", r"^LDG"), ("global store", r"^(STG|RED|ATOM)"),
    ("shared memory", r"^(LDS|STS|LDSM|STSM)"), ("barrier", r"^(BAR|SYNCS|DEPBAR|WARPSYNC)"),
    ("shuffle", r"^SHFL"), ("float32", r"^(FADD|FMUL|FFMA|FMNMX|FSETP|FSEL|FCHK)"),
    ("float64", r"^(DADD|DMUL|DFMA|DSETP)"), ("conversion", r"^(F2F|F2I|I2F|F2FP|I2FP|F2IP)"),
    ("integer/logic", r"^(IADD|IMAD|LOP|SHF|ISETP|SEL|LEA|IABS|IMNMX|PRMT|VIADD|VIMNMX|PLOP|P2R|R2P)"),
    ("move", r"^(MOV|S2R|S2UR|CS2R|UMOV|ULDC|LDC|R2UR)"), ("branch", r"^(BRA|BSSY|BSYNC|EXIT|CALL|RET)"),
]


def compile_step(n_features, k_max, dtype, *, weighted=False, accumulate=True, inertia=False, arch=90,
                 tuning: Tuning = DEFAULT_TUNING):
    """The compiled kernel of a Lloyd step at this shape and ``tuning`` (labels as int8, as
    bench_lloyd; without the inertia, as the engine's iterations run it), and its plan."""
    X = torch.empty((1 << 20, n_features), dtype=dtype, device="meta")
    centers = torch.empty((1, k_max, n_features), device="meta")
    plan = triton_assign._plan(X, centers, tuning)
    constants, options = triton_assign._compile_settings(
        plan, dtype, "cuda", n_features, k_max, weighted=weighted, accumulate=accumulate, write_distances=False,
        lloyd=True, with_inertia=inertia, tuning=tuning)
    pointer_types = ["*" + TYPE_NAMES[dtype], "*fp32", "*fp32", "*fp32", "*i8", "*i64", "*fp32", "*fp32", "*fp32",
                     "*i32", "*fp64"]
    names = triton_assign._assign_kernel.arg_names
    signature = {name: kind for name, kind in zip(names, pointer_types + ["i32"] * 6)}
    signature.update({name: "constexpr" for name in constants})
    # as a launch specialises them: 16-byte aligned pointers, and the integers that divide by 16
    divisible = [i for i in range(len(pointer_types))]
    divisible += [names.index(n) for n, v in (("n_features", n_features), ("stride_x", n_features)) if v % 16 == 0]
    attrs = {(i,): [["tt.divisibility", 16]] for i in divisible}
    source = ASTSource(triton_assign._assign_kernel, signature, constexprs=constants, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options), plan


def compile_potentials(n_features, n_points, dtype, *, weighted=False, arch=90):
    """The compiled k-means++ pass (``triton_potentials``): ``n_points`` points, the first
    lowering ``closest``, per block of rows, as ``engine.initialisation.kmeans_plusplus_tensor``
    launches it."""
    constants = triton_potentials.compile_settings(dtype, "cuda", n_features, n_points, weighted=weighted,
                                                   lower=True)
    kernel = triton_potentials._potentials_kernel
    names = kernel.arg_names
    pointer_types = ["*" + TYPE_NAMES[dtype], "*fp32", "*fp32", "*fp32", "*fp32", "*fp64"]
    signature = {name: kind for name, kind in zip(names, pointer_types + ["i32"] * 7)}
    signature.update({name: "constexpr" for name in constants})
    divisible = list(range(len(pointer_types)))
    divisible += [names.index(n) for n in ("n_features", "stride_x") if n_features % 16 == 0]
    attrs = {(i,): [["tt.divisibility", 16]] for i in divisible}
    source = ASTSource(kernel, signature, constexprs=constants, attrs=attrs)
    rows_per_tile = types.SimpleNamespace(block_m=constants["BLOCK_M"])  # what summary() reads of a plan
    return triton.compile(source, target=GPUTarget("cuda", arch, 32)), rows_per_tile


def listing(sass):
    """``(instructions, label -> index of the instruction after it)`` of Triton's SASS
    listing: ``LABEL:`` lines, and instructions after a tab, behind their control codes."""
    label_at, instructions = {}, []
    for line in sass.splitlines():
        label = re.match(r"^(\w+):\s*$", line)
        if label:
            label_at[label.group(1)] = len(instructions)
        elif "\t" in line:
            instructions.append(line.split("\t", 1)[1].strip())
    return instructions, label_at


def hot_loop(sass):
    """The instructions of the backward-branching loop with the most tensor-core
    instructions in its body."""
    instructions, label_at = listing(sass)
    best = []
    for end, instruction in enumerate(instructions):
        jump = re.search(r"\bBRA\s+(\w+)", instruction)
        if not jump or label_at.get(jump.group(1), end + 1) > end:
            continue  # not a branch, or a forward one
        body = instructions[label_at[jump.group(1)]:end + 1]
        if (tensor_core_count(body), len(body)) > (tensor_core_count(best), len(best)):
            best = body
    return best


def behind_forward_branches(sass, loop):
    """How many of ``loop``'s instructions sit behind forward branches inside it (skipped
    by the passes that take the branch)."""
    instructions, labels = listing(sass)
    start = next(i for i in range(len(instructions)) if instructions[i:i + len(loop)] == loop)
    skipped = set()
    for offset, instruction in enumerate(loop):
        jump = re.search(r"\bBRA\s+(\w+)", instruction)
        target = labels.get(jump.group(1), -1) - start if jump else -1
        if offset < target <= len(loop):
            skipped.update(range(offset + 1, target))
    return len(skipped)


def opcode(instruction):
    """``FFMA`` of ``@!P0 FFMA.FTZ R1, R2, R3, R4;``."""
    code = re.sub(r"^@!?U?P[T0-9]+\s+", "", instruction.strip())
    return re.split(r"[\s.;]", code, maxsplit=1)[0]


def tensor_core_count(instructions):
    return sum(bool(re.match(KINDS[0][1], opcode(i))) for i in instructions)


def resource_usage(compiled):
    """(registers, spill bytes) from the cubin, as ``cuobjdump --dump-resource-usage`` reads it
    (a compiled kernel knows its registers only once loaded on a device)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        report = subprocess.check_output([path_to_cuobjdump(), "--dump-resource-usage", cubin.name], text=True)
    registers = int(re.search(r"REG:(\d+)", report).group(1))
    spilled = int(re.search(r"STACK:(\d+)", report).group(1)) + int(re.search(r"LOCAL:(\d+)", report).group(1))
    return registers, spilled


def summary(compiled, plan):
    sass = compiled.asm["sass"]
    registers, spilled = resource_usage(compiled)
    loop = hot_loop(sass)
    skipped = behind_forward_branches(sass, loop)
    counts = collections.Counter()
    for line in loop:
        op = opcode(line)
        kind = next((name for name, pattern in KINDS if re.match(pattern, op)), "other")
        counts[kind] += 1
    warps = compiled.metadata.num_warps
    # warp-instructions per row, one loop pass per tile, without what forward branches skip
    per_row = (len(loop) - skipped) * warps / plan.block_m
    return {"regs": registers, "local_bytes": spilled, "shared": compiled.metadata.shared,
            "warps": warps, "block_m": plan.block_m, "loop_instructions": len(loop),
            "behind_forward_branches": skipped, "warp_instructions_per_row": per_row,
            "kinds": dict(counts.most_common())}


def parse_value(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", action="append", help="N,D,K (repeatable; default: %s)" % SHAPES)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--weighted", action="store_true")
    parser.add_argument("--labels-only", action="store_true", help="without the per-centre sums")
    parser.add_argument("--inertia", action="store_true", help="with the inertia (the engine's last pass)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a triton_assign.Tuning field (repeatable)")
    parser.add_argument("--arch", type=int, default=90, help="compute capability, 90 for H100/H200")
    parser.add_argument("--dump", help="write the SASS of the last shape to this file")
    parser.add_argument("--potentials", action="store_true",
                        help="k-means++'s pass instead; the shape's third number is its points")
    args = parser.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape] if args.shape else SHAPES
    settings = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)}
    try:
        tuning = Tuning(**settings)
    except TypeError as error:  # a name that is not a Tuning field
        parser.error(f"--set: {error}")
    dtype = getattr(torch, args.dtype)
    for n, d, k in shapes:
        if args.potentials:
            compiled, plan = compile_potentials(d, k, dtype, weighted=args.weighted, arch=args.arch)
        else:
            compiled, plan = compile_step(d, k, dtype, weighted=args.weighted, accumulate=not args.labels_only,
                                          inertia=args.inertia, arch=args.arch, tuning=tuning)
        result = summary(compiled, plan)
        kinds = ", ".join(f"{name} {count}" for name, count in result["kinds"].items())
        print(f"({n:,}, {d}, {k}) {args.dtype} {settings or ''}: {result['regs']} regs, "
              f"{result['local_bytes']} B local (spills), {result['shared']} B shared; "
              f"loop {result['loop_instructions']} instructions "
              f"({result['behind_forward_branches']} behind forward branches) "
              f"x {result['warps']} warps / {result['block_m']} rows = "
              f"{result['warp_instructions_per_row']:.1f} warp-instructions per row")
        print(f"    {kinds}")
        if args.dump:
            pathlib.Path(args.dump).write_text(compiled.asm["sass"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
