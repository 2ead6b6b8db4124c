"""Every fast path of the fused assign-and-accumulate step against the plain-PyTorch reference.

Fast paths: the CPU kernel (numba), always; the Triton kernel on CUDA (``gpu``
marker), and, on a machine without CUDA but with Triton installed, the same Triton
kernel under Triton's interpreter (``TRITON_INTERPRET=1``, set below before Triton
is imported). Labels must be identical except at exact ties (where both candidates
are equally near, checked in float64); sums within 1e-5 relative.
"""

import functools
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

if (not torch.cuda.is_available() and "triton" not in sys.modules
        and importlib.util.find_spec("triton") is not None):
    os.environ["TRITON_INTERPRET"] = "1"  # read when triton is imported: run kernels on the CPU

from gpukmeans import kernels  # noqa: E402
from gpukmeans.kernels import cpu as cpu_kernel  # noqa: E402
from gpukmeans.kernels.reference import (  # noqa: E402
    assign_accumulate_reference,
    candidate_potentials_reference,
    lloyd_step_reference,
)

FEATURES = [1, 2, 3, 7, 16, 33, 64]
CENTERS = [1, 2, 8, 33, 256]
N_ROWS = 203  # not a multiple of any tile height, so every kernel has a ragged last tile
CPU_PATHS = {"cpu-rows-in-lanes": "rows", "cpu-centres-in-lanes": "centres"}


def _triton_interpreter_available():
    return os.environ.get("TRITON_INTERPRET") == "1" and importlib.util.find_spec("triton") is not None


def _fast_paths():
    # the CPU kernel in each of its layouts (rows or centres in the vectors' lanes)
    paths = [pytest.param(name, id=name) for name in CPU_PATHS]
    paths.append(pytest.param("triton-cuda", id="triton-cuda", marks=pytest.mark.gpu))
    paths.append(pytest.param(
        "triton-interpreter", id="triton-interpreter",
        marks=pytest.mark.skipif(not _triton_interpreter_available(),
                                 reason="Triton not installed, or already imported without the interpreter")))
    return paths


def _implementation(name):
    """(assign_accumulate, lloyd_step, device) of one fast path."""
    if name in CPU_PATHS:
        layout = CPU_PATHS[name]
        return (functools.partial(cpu_kernel.assign_accumulate_cpu, layout=layout),
                functools.partial(cpu_kernel.lloyd_step_cpu, layout=layout), "cpu")
    from gpukmeans.kernels import triton_assign

    device = "cuda" if name == "triton-cuda" else "cpu"
    return triton_assign.assign_accumulate_triton, triton_assign.lloyd_step_triton, device


def _dtypes(name):
    # The Triton path computes in float32: float64 input goes to the reference on CUDA.
    return [torch.float32, torch.float64] if name in CPU_PATHS else [torch.float32]


def make_problem(n_features, k_max, n_groups, dtype, weighted, *, seed=0, n_rows=N_ROWS):
    """Random rows and ``n_groups`` groups of centres; groups after the first are
    shorter than ``k_max`` and padded (finite rows, ``+inf`` norms), as the engine does."""
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n_rows, n_features, generator=generator, dtype=torch.float64)
    sizes = [k_max] + [max(1, k_max - 1 - 3 * g) for g in range(1, n_groups)]
    centers = torch.randn(n_groups, k_max, n_features, generator=generator, dtype=torch.float64)
    valid = torch.zeros(n_groups, k_max, dtype=torch.bool)
    for g, size in enumerate(sizes):
        picks = torch.randint(0, n_rows, (size,), generator=generator)
        centers[g, :size] = X[picks] + 0.1 * torch.randn(size, n_features, generator=generator, dtype=torch.float64)
        valid[g, :size] = True
    norms = (centers * centers).sum(dim=2).masked_fill(~valid, float("inf"))
    weights = torch.rand(n_rows, generator=generator, dtype=torch.float64) * 2 if weighted else None
    cast = (lambda t: None if t is None else t.to(dtype))
    return cast(X), cast(centers), cast(norms), cast(weights), valid


def exact_sq_distances(X, centers):
    """(m, G, k) squared distances in float64 by direct differences."""
    diff = X.double()[:, None, None, :] - centers.double()[None, :, :, :]
    return (diff * diff).sum(dim=3)


def chosen_sq_distances(X, centers, labels):
    """(m, G) float64 squared distance from each row to the centre its label names."""
    picked = centers.double()[torch.arange(centers.shape[0])[None, :], labels]  # (m, G, d)
    return ((X.double()[:, None, :] - picked) ** 2).sum(dim=2)


def assert_labels_match_up_to_ties(labels, expected, X, centers, valid):
    assert labels.shape == expected.shape and labels.dtype == torch.int64
    assert bool((labels >= 0).all()) and bool((labels < centers.shape[1]).all())
    # a label must name a real centre of its group, never padding
    n_groups = centers.shape[0]
    assert bool(valid[torch.arange(n_groups)[None, :], labels].all())
    differ = labels != expected
    if not bool(differ.any()):
        return
    distances = exact_sq_distances(X, centers)
    rows, groups = torch.nonzero(differ, as_tuple=True)
    ours = distances[rows, groups, labels[rows, groups]]
    theirs = distances[rows, groups, expected[rows, groups]]
    eps = torch.finfo(X.dtype).eps
    scale = (X.double() ** 2).sum(dim=1)[rows] + (centers.double() ** 2).sum(dim=2).amax(dim=1)[groups]
    # a difference is only allowed where both centres are equally near, up to rounding
    assert torch.all((ours - theirs).abs() <= 64 * eps * scale), (
        f"{int(differ.sum())} labels differ from the reference and are not ties")


def expected_sums(X, labels, weights, n_groups, k_max):
    """Float64 sums per (group, centre) of w * x for the given labels."""
    w = torch.ones(X.shape[0], dtype=torch.float64) if weights is None else weights.double()
    sums = torch.zeros(n_groups, k_max, X.shape[1], dtype=torch.float64)
    weight_sums = torch.zeros(n_groups, k_max, dtype=torch.float64)
    for g in range(n_groups):
        sums[g].index_add_(0, labels[:, g], X.double() * w[:, None])
        weight_sums[g].index_add_(0, labels[:, g], w)
    return sums, weight_sums


def assert_close_relative(actual, expected, rtol=1e-5):
    actual, expected = actual.double().cpu(), expected.double().cpu()
    scale = expected.abs().max().clamp_min(1.0)
    assert torch.allclose(actual, expected, rtol=rtol, atol=rtol * float(scale)), (
        f"max difference {float((actual - expected).abs().max()):.3g} at scale {float(scale):.3g}")


@pytest.mark.parametrize("path", _fast_paths())
@pytest.mark.parametrize("n_features", FEATURES)
@pytest.mark.parametrize("k_max", CENTERS)
def test_fast_assign_accumulate_matches_reference(path, n_features, k_max):
    assign, _, device = _implementation(path)
    if path == "triton-interpreter" and k_max == 256 and n_features == 64:
        pytest.skip("the interpreter takes minutes on the largest case; covered on CUDA")
    for dtype in _dtypes(path):
        for n_groups in (1, 3):
            for weighted in (False, True):
                X, centers, norms, weights, valid = make_problem(
                    n_features, k_max, n_groups, dtype, weighted, seed=n_features * 1000 + k_max)
                expected = assign_accumulate_reference(X, centers, norms, weights)
                to = (lambda t: None if t is None else t.to(device))
                got = assign(to(X), to(centers), to(norms), to(weights))
                labels = got.labels.cpu()
                assert_labels_match_up_to_ties(labels, expected.labels, X, centers, valid)
                chosen = chosen_sq_distances(X, centers, labels)
                scale = (X.double() ** 2).sum(dim=1, keepdim=True) + 1.0
                assert torch.all((got.min_sq_distances.cpu().double() - chosen).abs() <= 1e-4 * scale)
                assert bool((got.min_sq_distances >= 0).all())
                sums, weight_sums = expected_sums(X, labels, weights, n_groups, k_max)
                assert_close_relative(got.sums, sums)
                assert_close_relative(got.weight_sums, weight_sums)
                if torch.equal(labels, expected.labels):
                    assert_close_relative(got.sums, expected.sums)
                    assert_close_relative(got.weight_sums, expected.weight_sums)
                assert got.sums.dtype == (dtype if path in CPU_PATHS else torch.float32)


@pytest.mark.parametrize("path", _fast_paths())
def test_without_accumulate_sums_are_skipped(path):
    assign, _, device = _implementation(path)
    X, centers, norms, _, _ = make_problem(5, 8, 2, torch.float32, False)
    got = assign(X.to(device), centers.to(device), norms.to(device), accumulate=False)
    expected = assign_accumulate_reference(X, centers, norms, accumulate=False)
    assert got.sums is None and got.weight_sums is None
    assert torch.equal(got.labels.cpu(), expected.labels)


@pytest.mark.parametrize("path", _fast_paths())
def test_exact_ties_go_to_the_lowest_index(path):
    assign, _, device = _implementation(path)
    X, centers, norms, _, _ = make_problem(6, 40, 1, torch.float32, False)
    # every centre duplicated at a higher index (within and across centre tiles): exact ties
    centers[0, 20:40] = centers[0, 0:20]
    norms[0, 20:40] = norms[0, 0:20]
    got = assign(X.to(device), centers.to(device), norms.to(device), accumulate=False)
    assert bool((got.labels.cpu() < 20).all())


@pytest.mark.parametrize("path", _fast_paths())
def test_empty_chunk_gives_empty_labels_and_zero_sums(path):
    assign, _, device = _implementation(path)
    X, centers, norms, _, _ = make_problem(4, 3, 2, torch.float32, False, n_rows=8)
    got = assign(X[:0].to(device), centers.to(device), norms.to(device))
    assert got.labels.shape == (0, 2) and got.min_sq_distances.shape == (0, 2)
    assert float(got.sums.abs().sum()) == 0.0 and float(got.weight_sums.abs().sum()) == 0.0


@pytest.mark.parametrize("path", _fast_paths())
@pytest.mark.parametrize("label_dtype", [torch.int16, torch.int32, torch.int64])
@pytest.mark.parametrize("with_inertia", [True, False])
def test_fast_lloyd_step_matches_reference(path, label_dtype, with_inertia):
    _, step, device = _implementation(path)
    X, centers, norms, weights, _ = make_problem(7, 33, 3, torch.float32, True)
    # the label table has a column per group of the whole run; two of three groups are active
    stored = torch.randint(0, 33, (X.shape[0], 4), generator=torch.Generator().manual_seed(1)).to(label_dtype)
    columns = torch.tensor([3, 0])
    active = centers[[0, 2]], norms[[0, 2]]
    expected_labels = stored.clone()
    expected = lloyd_step_reference(X, *active, weights, expected_labels, columns,
                                    compute_inertia=with_inertia)
    labels = stored.clone().to(device)
    got = step(X.to(device), active[0].to(device), active[1].to(device), weights.to(device),
               labels, columns.to(device), compute_inertia=with_inertia)
    assert torch.equal(labels.cpu(), expected_labels)  # untouched columns 1 and 2 included
    assert torch.equal(got.n_changed.cpu(), expected.n_changed)
    assert_close_relative(got.sums, expected.sums)
    assert_close_relative(got.weight_sums, expected.weight_sums)
    if with_inertia:
        assert_close_relative(got.inertia, expected.inertia)
    else:
        assert got.inertia is None and expected.inertia is None


@pytest.mark.parametrize("layout", CPU_PATHS.values())
@pytest.mark.parametrize("label_dtype", [torch.int16, torch.int32, torch.int64])
def test_cpu_lloyd_step_on_a_one_column_label_table(layout, label_dtype):
    """One group, its labels a table of one column: the rows-in-lanes layout reads and
    writes a whole tile's labels as one vector there."""
    X, centers, norms, _, _ = make_problem(6, 9, 1, torch.float32, False, n_rows=1000)
    stored = torch.randint(0, 9, (X.shape[0], 1), generator=torch.Generator().manual_seed(3)).to(label_dtype)
    expected_labels = stored.clone()
    expected = lloyd_step_reference(X, centers, norms, None, expected_labels, torch.tensor([0]))
    labels = stored.clone()
    got = cpu_kernel.lloyd_step_cpu(X, centers, norms, None, labels, torch.tensor([0]), layout=layout)
    assert torch.equal(labels, expected_labels)
    assert int(got.n_changed) == int(expected.n_changed) > 0
    assert_close_relative(got.sums, expected.sums)


def test_cpu_kernel_reads_strided_rows_and_any_thread_count(monkeypatch):
    X, centers, norms, weights, valid = make_problem(9, 8, 1, torch.float32, True, n_rows=20000)
    strided = torch.stack([X, X], dim=2)[:, :, 0]  # a non-contiguous view of the same values
    expected = assign_accumulate_reference(X, centers, norms, weights)
    for threads in (1, 3):
        monkeypatch.setattr(cpu_kernel, "_thread_count", lambda: threads)
        got = cpu_kernel.assign_accumulate_cpu(strided, centers, norms, weights)
        assert_labels_match_up_to_ties(got.labels, expected.labels, X, centers, valid)
        assert_close_relative(got.sums, expected_sums(X, got.labels, weights, 1, 8)[0])


def test_cpu_kernel_does_not_reuse_packed_centres_after_they_change():
    X, centers, norms, _, _ = make_problem(3, 4, 1, torch.float32, False)
    first = cpu_kernel.assign_accumulate_cpu(X, centers, norms)
    moved = centers.flip(1).contiguous()
    second = cpu_kernel.assign_accumulate_cpu(X, moved, norms.flip(1).contiguous())
    assert torch.equal(second.labels, 3 - first.labels)


def test_the_backend_is_the_cpu_kernel_and_the_reference_when_asked(monkeypatch):
    cpu = kernels.backend_for("cpu", torch.float32)
    assert cpu.name == "cpu" and cpu.whole_pass and cpu.fused_potentials and not cpu.chunk_distances
    # 16-bit rows go through the CPU kernel widened a chunk at a time: never a whole pass
    half = kernels.backend_for("cpu", torch.bfloat16)
    assert half.name == "cpu" and not half.whole_pass
    monkeypatch.setenv("GPUKMEANS_KERNEL", "reference")
    reference = kernels.backend_for("cpu", torch.float32)
    assert reference.name == "reference" and not reference.whole_pass and reference.chunk_distances


def test_a_16_bit_chunk_on_the_cpu_backend_equals_its_float32_widening():
    X, centers, norms, weights, _ = make_problem(5, 4, 2, torch.float32, True)
    X16 = X.to(torch.bfloat16)
    backend = kernels.backend_for("cpu", torch.bfloat16)
    got = backend.assign(X16, centers, norms, weights)
    expected = kernels.backend_for("cpu", torch.float32).assign(X16.float(), centers, norms, weights)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_the_backend_on_cuda_is_triton():
    assert kernels.backend_for("cuda", torch.float32).name == "triton"
    assert kernels.backend_for("cuda", torch.float64).name == "reference"


@pytest.mark.gpu
@pytest.mark.parametrize("storage", [torch.float16, torch.bfloat16])
def test_triton_half_storage_keeps_float32_centres_and_sums(storage):
    from gpukmeans.kernels import triton_assign

    X, centers, norms, weights, valid = make_problem(12, 8, 1, torch.float32, True, n_rows=5000)
    stored = X.to(storage)
    # the reference on the rounded rows: the only difference half storage may make
    expected = assign_accumulate_reference(stored.float(), centers, norms, weights)
    got = triton_assign.assign_accumulate_triton(stored.cuda(), centers.cuda(), norms.cuda(), weights.cuda())
    assert got.sums.dtype == torch.float32
    assert_labels_match_up_to_ties(got.labels.cpu(), expected.labels, stored.float(), centers, valid)
    assert_close_relative(got.sums, expected_sums(stored.float(), got.labels.cpu(), weights, 1, 8)[0])


def _triton_paths():
    return [p for p in _fast_paths() if p.values[0] not in CPU_PATHS]


# Launch settings the tuning runs (benchmarks/gpu_kernel_variants.py) try, each of which
# may become a default: the results must not depend on them.
TRITON_TUNINGS = [
    {"sum_precision": "split_tf32"},
    {"sum_precision": "one_hot_bf16"},
    {"distance_precision": "tf32x3", "sum_precision": "tf32x3", "block_m": 128, "maxnreg": 0},
    {"slot_counts": False},
    {"sum_precision": "split_tf32", "hoist_centers": False},
    {"reload_for_sums": True},  # the rows read twice, with the inertia too
    {"reload_for_sums": False},  # the rows read once, in every pass
]


@pytest.mark.slow
@pytest.mark.parametrize("path", _triton_paths())
@pytest.mark.parametrize("settings", TRITON_TUNINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("n_features, k_max", [(3, 1), (16, 8), (33, 5), (80, 20), (7, 70)])
def test_triton_tuning_settings_match_reference(path, settings, n_features, k_max):
    from gpukmeans.kernels import triton_assign

    assign, step, device = _implementation(path)
    to = (lambda t: None if t is None else t.to(device))
    for weighted in (False, True):
        X, centers, norms, weights, valid = make_problem(n_features, k_max, 2, torch.float32, weighted,
                                                         seed=n_features + k_max, n_rows=700)
        expected = assign_accumulate_reference(X, centers, norms, weights)
        tuning = triton_assign.Tuning(**settings)
        got = assign(to(X), to(centers), to(norms), to(weights), tuning=tuning)
        labels = torch.zeros(X.shape[0], 2, dtype=torch.int32, device=device)
        stepped = step(to(X), to(centers), to(norms), to(weights), labels, torch.tensor([1, 0], device=device),
                       tuning=tuning)
        assert_labels_match_up_to_ties(got.labels.cpu(), expected.labels, X, centers, valid)
        sums, weight_sums = expected_sums(X, got.labels.cpu(), weights, 2, k_max)
        assert_close_relative(got.sums, sums)
        assert_close_relative(got.weight_sums, weight_sums)
        step_labels = labels.long().cpu()[:, [1, 0]]
        assert_labels_match_up_to_ties(step_labels, expected.labels, X, centers, valid)
        sums, weight_sums = expected_sums(X, step_labels, weights, 2, k_max)
        assert_close_relative(stepped.sums, sums)
        assert_close_relative(stepped.weight_sums, weight_sums)
        assert torch.equal(stepped.n_changed.cpu(), (step_labels != 0).sum(dim=0))


@pytest.mark.skipif(not _triton_interpreter_available() and not torch.cuda.is_available(),
                    reason="Triton not installed")
def test_a_triton_too_old_for_the_kernel_falls_back_with_a_warning(monkeypatch):
    import triton

    from gpukmeans.kernels import triton_assign

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(triton, "__version__", "2.3.1")
    with pytest.warns(RuntimeWarning, match="Triton 2.3.1 is older than 3.0"):
        assert not triton_assign.available()
    monkeypatch.setattr(triton, "__version__", "3.6.0")
    assert triton_assign.available()


@pytest.mark.parametrize("vector_bytes", [16, 32])
def test_cpu_kernel_on_narrower_vector_widths(monkeypatch, vector_bytes):
    """The packing a CPU without AVX-512 gets (AVX2, SSE/NEON), checked on this one."""
    monkeypatch.setattr(cpu_kernel, "HOST_VECTOR_BYTES", vector_bytes)
    for dtype in (torch.float32, torch.float64):
        assert cpu_kernel.row_lanes(dtype) * torch.empty((), dtype=dtype).element_size() == vector_bytes
        for k_max in (3, 20):
            X, centers, norms, weights, valid = make_problem(5, k_max, 3, dtype, True, seed=vector_bytes + k_max)
            packed = cpu_kernel._pack_centers(centers, norms)
            assert packed.norms.shape[2] * X.element_size() <= vector_bytes
            expected = assign_accumulate_reference(X, centers, norms, weights)
            for layout in CPU_PATHS.values():
                got = cpu_kernel.assign_accumulate_cpu(X, centers, norms, weights, layout=layout)
                assert_labels_match_up_to_ties(got.labels, expected.labels, X, centers, valid)
                assert_close_relative(got.sums, expected_sums(X, got.labels, weights, 3, k_max)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_features", [1, 5, 16, 17, 40])
@pytest.mark.parametrize("k_max", [1, 7, 8, 9, 33])
def test_cpu_layouts_give_the_same_bits(dtype, n_features, k_max):
    """Rows or centres in the lanes: each distance is the same sequence of operations,
    so labels, distances, sums and change counts agree bit for bit. The inertia is
    summed per tile, and the layouts' tiles differ in height: it agrees up to rounding."""
    X, centers, norms, weights, _ = make_problem(n_features, k_max, 3, dtype, True, seed=n_features + k_max,
                                                 n_rows=1001)
    rows, centres = (cpu_kernel.assign_accumulate_cpu(X, centers, norms, weights, layout=layout)
                     for layout in ("rows", "centres"))
    for got, expected in zip(rows, centres):
        assert torch.equal(got, expected)
    stored = torch.randint(0, k_max, (X.shape[0], 3), generator=torch.Generator().manual_seed(2))
    steps = []
    for layout in ("rows", "centres"):
        labels = stored.clone()
        steps.append((labels, cpu_kernel.lloyd_step_cpu(X, centers, norms, weights, labels, torch.arange(3),
                                                        layout=layout)))
    (rows_labels, rows_step), (centres_labels, centres_step) = steps
    assert torch.equal(rows_labels, centres_labels) and torch.equal(rows_labels, rows.labels)
    for name in ("sums", "weight_sums", "n_changed"):
        assert torch.equal(getattr(rows_step, name), getattr(centres_step, name))
    assert torch.allclose(rows_step.inertia, centres_step.inertia, rtol=1e-12, atol=0)


def test_cpu_layout_rule():
    limit = cpu_kernel.ROWS_IN_LANES_MAX_FEATURES
    assert [cpu_kernel.layout_for(limit, k) for k in (1, 256)] == ["rows", "rows"]
    max_features, max_centres = cpu_kernel.ROWS_IN_LANES_MAX_FEATURES_FEW_CENTRES
    assert cpu_kernel.layout_for(max_features, max_centres) == "rows"
    assert cpu_kernel.layout_for(max_features, max_centres + 1) == "centres"
    assert cpu_kernel.layout_for(max_features + 1, 2) == "centres"


def test_lane_count_pads_least():
    assert cpu_kernel.lane_count(8, torch.float32, 64) == 8
    assert cpu_kernel.lane_count(9, torch.float32, 64) == 16
    assert cpu_kernel.lane_count(24, torch.float32, 64) == 8
    assert cpu_kernel.lane_count(32, torch.float32, 64) == 16
    assert cpu_kernel.lane_count(3, torch.float64, 64) == 4
    assert cpu_kernel.lane_count(9, torch.float32, 32) == 4
    assert cpu_kernel.lane_count(16, torch.float32, 32) == 8
    assert cpu_kernel.lane_count(3, torch.float64, 16) == 2
    assert np.all([cpu_kernel.lane_count(k, torch.float32, 64) in (8, 16) for k in range(1, 300)])


@pytest.mark.parametrize("shape", [(3, 8, 16), (1, 5, 7), (10, 8), (0, 0)])
def test_cpu_kernel_per_part_totals_start_on_their_own_cache_lines(shape):
    parts = cpu_kernel._per_part(shape, np.float64, 4)
    assert parts.shape == (4, *shape) and not parts.any()
    assert parts.ctypes.data % 64 == 0  # vectors of sums never straddle two lines
    assert parts.strides[0] % 64 == 0 and parts.strides[0] >= max(parts[0].nbytes, 1)
    parts[1] += 1.0  # parts do not overlap
    assert parts[1].all() and not parts[0].any() and not parts[2:].any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_features", [1, 3, 16, 17, 40])
@pytest.mark.parametrize("n_candidates", [1, 4, 9, 17])
def test_cpu_candidate_potentials_match_reference(dtype, n_features, n_candidates):
    generator = torch.Generator().manual_seed(n_features * 100 + n_candidates)
    for n_rows in (1, 7, N_ROWS, 5000):  # ragged last tiles; several parts on several threads
        for weighted in (False, True):
            X = torch.randn(n_rows, n_features, generator=generator, dtype=torch.float64).to(dtype)
            candidates = torch.randn(n_candidates, n_features, generator=generator, dtype=torch.float64).to(dtype)
            norms = (candidates * candidates).sum(dim=1)
            # some rows nearer to a centre already chosen than to any candidate, some not
            closest = (torch.rand(n_rows, generator=generator, dtype=torch.float64) * 3 * n_features).to(dtype)
            weights = torch.rand(n_rows, generator=generator, dtype=torch.float64).to(dtype) if weighted else None
            got = cpu_kernel.candidate_potentials_cpu(X, candidates, norms, closest, weights)
            expected = candidate_potentials_reference(X, candidates, norms, closest, weights)
            assert got.shape == (n_candidates,) and got.dtype == torch.float64
            # distances round at the scale of ||x||^2 + ||c||^2, not at their own (which can be ~0)
            w = torch.ones(n_rows, dtype=torch.float64) if weights is None else weights.double()
            scale = float((w * ((X.double() ** 2).sum(dim=1) + float(norms.double().max()))).sum())
            eps = torch.finfo(dtype).eps
            assert torch.all((got - expected).abs() <= 16 * eps * scale + 1e-12), (got, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_kernel_lowers_closest_in_place_to_a_chosen_centre(dtype):
    generator = torch.Generator().manual_seed(9)
    X = torch.randn(5003, 6, generator=generator, dtype=torch.float64).to(dtype)
    centre = torch.randn(1, 6, generator=generator, dtype=torch.float64).to(dtype)
    norms = (centre * centre).sum(dim=1)
    closest = (torch.rand(5003, generator=generator, dtype=torch.float64) * 18).to(dtype)
    expected = torch.minimum(closest, assign_accumulate_reference(
        X, centre[None], norms[None], accumulate=False).min_sq_distances[:, 0])
    lowered = closest.clone()
    cpu_kernel.candidate_potentials_cpu(X, centre, norms, lowered, lower_closest=True)
    eps = torch.finfo(dtype).eps
    scale = (X.double() ** 2).sum(dim=1) + float(norms)
    assert torch.all((lowered.double() - expected.double()).abs() <= 16 * eps * scale)
    assert bool((lowered <= closest).all()) and not torch.equal(lowered, closest)
    # with candidates after it, the first centre lowers closest to the same bits (k-means++
    # lowers a drawn block with it alone, then the whole table with the next candidates),
    # and the candidates are weighed against the lowered values
    others = torch.randn(16, 6, generator=generator, dtype=torch.float64).to(dtype)
    points = torch.cat([centre, others])
    lowered_with_others = closest.clone()
    potentials = cpu_kernel.candidate_potentials_cpu(X, points, (points * points).sum(dim=1), lowered_with_others,
                                                     lower_closest=True)
    assert torch.equal(lowered_with_others, lowered)
    assert_close_relative(potentials[0], lowered.double().sum(), rtol=1e-10)
    expected = candidate_potentials_reference(X, others, (others * others).sum(dim=1), lowered)
    assert_close_relative(potentials[1:], expected, rtol=1e-5 if dtype == torch.float32 else 1e-12)


def _split_at(call, n_rows, block_rows, split):
    """Block totals of ``call(start, stop, block_offset)`` over rows ``0:split`` and
    ``split:n_rows`` (as two chunks of a pass), added as k-means++ adds them."""
    head = call(0, split, 0)
    tail = call(split, n_rows, split % block_rows)
    totals = torch.zeros(-(-n_rows // block_rows), head.shape[1], dtype=torch.float64)
    totals[: head.shape[0]] += head.cpu()
    totals[split // block_rows:] += tail.cpu()
    return totals


def _check_block_totals(potentials, X, candidates, closest, weights, block_rows, split, rtol):
    """``potentials(X, candidates, norms, closest, weights, **options)`` per block: the
    reference's, and bit for bit the same for every block that a split leaves whole."""
    norms = (candidates * candidates).sum(dim=1)
    n_rows = X.shape[0]
    whole_closest, split_closest, expected_closest = closest.clone(), closest.clone(), closest.clone()
    whole = potentials(X, candidates, norms, whole_closest, weights, lower_closest=True, block_rows=block_rows).cpu()
    expected = candidate_potentials_reference(X.cpu().to(candidates.dtype), candidates.cpu(), norms.cpu(),
                                              expected_closest.cpu(), None if weights is None else weights.cpu(),
                                              lower_closest=True, block_rows=block_rows)
    assert whole.shape == expected.shape == (-(-n_rows // block_rows), candidates.shape[0])
    assert_close_relative(whole, expected, rtol=rtol)
    assert torch.equal(whole.sum(dim=0), potentials(X, candidates, norms, closest.clone(), weights,
                                                    lower_closest=True, block_rows=block_rows).cpu().sum(dim=0))

    def call(start, stop, offset):
        return potentials(X[start:stop], candidates, norms, split_closest[start:stop],
                          None if weights is None else weights[start:stop], lower_closest=True,
                          block_rows=block_rows, block_offset=offset)

    parted = _split_at(call, n_rows, block_rows, split)
    straddled = split // block_rows
    kept = [b for b in range(whole.shape[0]) if b != straddled]
    assert torch.equal(parted[kept], whole[kept])
    assert_close_relative(parted[straddled], whole[straddled], rtol=1e-12)
    assert torch.equal(split_closest, whole_closest)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_cpu_potentials_per_block_of_rows(dtype, weighted):
    generator = torch.Generator().manual_seed(11)
    X = torch.randn(5_000, 7, generator=generator, dtype=torch.float64).to(dtype)
    candidates = torch.randn(5, 7, generator=generator, dtype=torch.float64).to(dtype)
    closest = (torch.rand(5_000, generator=generator, dtype=torch.float64) * 20).to(dtype)
    weights = torch.rand(5_000, generator=generator, dtype=torch.float64).to(dtype) if weighted else None
    for block_rows, split in ((1024, 1500), (256, 2051), (8, 13)):
        _check_block_totals(cpu_kernel.candidate_potentials_cpu, X, candidates, closest, weights, block_rows, split,
                            rtol=1e-5 if dtype == torch.float32 else 1e-12)


def _triton_devices():
    """Where the Triton kernels other than the assignment run: CUDA, or the interpreter on the CPU."""
    return [pytest.param("cuda", id="triton-cuda", marks=pytest.mark.gpu),
            pytest.param("cpu", id="triton-interpreter", marks=pytest.mark.skipif(
                not _triton_interpreter_available(),
                reason="Triton not installed, or already imported without the interpreter"))]


@pytest.mark.parametrize("device", _triton_devices())
@pytest.mark.parametrize("storage", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_features", [1, 3, 16, 17, 70])
@pytest.mark.parametrize("n_candidates", [1, 4, 17])
def test_triton_candidate_potentials_match_reference(device, storage, n_features, n_candidates):
    """k-means++'s potentials in one Triton pass: the reference's on the rows as stored
    (bfloat16 rows are read as such; centres, closest and weights are float32)."""
    from gpukmeans.kernels import triton_potentials

    generator = torch.Generator().manual_seed(n_features * 100 + n_candidates)
    X = torch.randn(N_ROWS, n_features, generator=generator).to(storage)
    candidates = X[torch.randperm(N_ROWS, generator=generator)[:n_candidates]].float() + 0.1
    norms = (candidates * candidates).sum(dim=1)
    closest = torch.rand(N_ROWS, generator=generator) * 2 * n_features
    weights = torch.rand(N_ROWS, generator=generator) * 2
    for w in (None, weights):
        expected = candidate_potentials_reference(X.float(), candidates, norms, closest, w)
        got = triton_potentials.candidate_potentials_triton(
            X.to(device), candidates.to(device), norms.to(device), closest.to(device),
            None if w is None else w.to(device))
        assert got.dtype == torch.float64 and got.shape == (n_candidates,)
        assert_close_relative(got, expected)


@pytest.mark.parametrize("device", _triton_devices())
def test_triton_potentials_lower_closest_in_place(device):
    from gpukmeans.kernels import triton_potentials

    generator = torch.Generator().manual_seed(5)
    X = torch.randn(N_ROWS, 7, generator=generator)
    centre = X[:1] * 0.5
    norms = (centre * centre).sum(dim=1)
    closest = torch.rand(N_ROWS, generator=generator) * 10
    lowered = closest.clone().to(device)
    potential = triton_potentials.candidate_potentials_triton(X.to(device), centre.to(device), norms.to(device),
                                                              lowered, lower_closest=True)
    distance = ((X.double() - centre.double()) ** 2).sum(dim=1)
    expected = torch.minimum(closest.double(), distance)
    scale = (X.double() ** 2).sum(dim=1) + float(norms)
    assert torch.all((lowered.cpu().double() - expected).abs() <= 64 * torch.finfo(torch.float32).eps * scale)
    assert bool((lowered.cpu() < closest).any()) and bool((lowered.cpu() <= closest).all())
    assert_close_relative(potential, lowered.double().sum().reshape(1))
    # with candidates after it: the same lowering, and the candidates weighed against it
    others = torch.randn(70, 7, generator=generator)  # two tiles of 64 candidates: only the first lowers
    points = torch.cat([centre, others])
    lowered_with_others = closest.clone().to(device)
    potentials = triton_potentials.candidate_potentials_triton(
        X.to(device), points.to(device), (points * points).sum(dim=1).to(device), lowered_with_others,
        lower_closest=True)
    assert torch.equal(lowered_with_others, lowered)
    assert_close_relative(potentials[1:], candidate_potentials_reference(
        X, others, (others * others).sum(dim=1), lowered.cpu()))


@pytest.mark.parametrize("device", _triton_devices())
@pytest.mark.parametrize("storage", [torch.float32, torch.bfloat16])
def test_triton_potentials_per_block_of_rows(device, storage):
    from gpukmeans.kernels import triton_potentials

    generator = torch.Generator().manual_seed(12)
    X = torch.randn(2_600, 7, generator=generator).to(storage).to(device)
    candidates = torch.randn(5, 7, generator=generator).to(device)
    closest = (torch.rand(2_600, generator=generator) * 20).to(device)
    weights = torch.rand(2_600, generator=generator).to(device)
    for block_rows, split in ((1024, 1500), (128, 1001)):
        _check_block_totals(triton_potentials.candidate_potentials_triton, X, candidates, closest, weights,
                            block_rows, split, rtol=1e-5)


@pytest.mark.parametrize("device", _triton_devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_features,k_max", [(1, 1), (3, 2), (16, 8), (70, 33)])
def test_triton_center_update_matches_reference(device, dtype, n_features, k_max):
    """One launch for Lloyd's update: the same means bit for bit, the norms and shift
    as the same sums in another order, the same flags."""
    from gpukmeans.kernels import triton_update
    from gpukmeans.kernels.reference import update_centers_reference

    generator = torch.Generator().manual_seed(n_features * 100 + k_max)
    n_groups = 3
    old = torch.randn(n_groups, k_max, n_features, generator=generator, dtype=torch.float64).to(dtype) * 3
    weight_sums = torch.rand(n_groups, k_max, generator=generator, dtype=torch.float64) * 100
    sums = torch.randn(n_groups, k_max, n_features, generator=generator, dtype=torch.float64) * weight_sums[..., None]
    valid = torch.ones(n_groups, k_max, dtype=torch.bool)
    weight_sums[0, 0] = 0.0  # a valid centre that emptied: it keeps its place, and is flagged
    sums[0, 0] = 0.0
    valid[2, -1] = False  # padding (group 2 has k_max - 1 centres): never flagged
    weight_sums[2, -1] = 0.0
    sums[2, -1] = 0.0
    n_changed = torch.tensor([5, 0, 7])
    expected = update_centers_reference(sums, weight_sums, n_changed, old, valid)
    got = triton_update.update_centers_triton(*(t.to(device) for t in (sums, weight_sums, n_changed, old, valid)))
    got = [t.cpu() for t in got]
    assert torch.equal(got[0], expected.new_centers)
    assert torch.equal(got[0][0, 0], old[0, 0])
    torch.testing.assert_close(got[1], expected.new_norms, rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=0)
    assert torch.isinf(got[1][2, -1]) and torch.isfinite(got[1][:2]).all()
    assert got[2][0].tolist() == [5.0, 0.0, 7.0]
    torch.testing.assert_close(got[2][1], expected.progress[1], rtol=1e-12, atol=0)
    assert got[2][2].tolist() == expected.progress[2].tolist() == [1.0, 0.0, 0.0]


def test_a_failing_cuda_potentials_kernel_falls_back_to_the_assignment_with_a_warning(monkeypatch):
    """If the Triton k-means++ kernel fails where it runs (a Triton that will not compile
    it), the fit goes on with the assignment's distances, and the kernel is not tried again.
    (The CUDA branch's fallback, called here with CPU tensors.)"""
    import types

    from gpukmeans.kernels import backend as backends

    def broken(*args, **kwargs):
        raise RuntimeError("PTX assembly failed\nmore detail")
    stub, load = types.SimpleNamespace(candidate_potentials_triton=broken), backends._load
    monkeypatch.setattr(backends, "_load", lambda name: stub if name == "triton_potentials" else load(name))
    # the CUDA backend, its assignment on the reference (CPU tensors here)
    triton = backends.TritonBackend(types.SimpleNamespace())
    monkeypatch.setattr(triton, "assign", backends.ReferenceBackend().assign)
    assert triton.fused_potentials
    generator = torch.Generator().manual_seed(8)
    X = torch.randn(N_ROWS, 5, generator=generator)
    candidates = X[:3] + 0.1
    norms = (candidates * candidates).sum(dim=1)
    closest = torch.rand(N_ROWS, generator=generator) * 5
    with pytest.warns(RuntimeWarning, match=r"RuntimeError: PTX assembly failed\); using the assignment"):
        got = triton.candidate_potentials(X, candidates, norms, closest, None)
    assert_close_relative(got, candidate_potentials_reference(X, candidates, norms, closest))
    assert not triton.fused_potentials
    lowered = closest.clone()
    triton.candidate_potentials(X, candidates[:1], norms[:1], lowered, None, lower_closest=True)
    expected = closest.clone()
    cpu_kernel.candidate_potentials_cpu(X, candidates[:1], norms[:1], expected, lower_closest=True)
    assert torch.equal(lowered, expected) and bool((lowered < closest).any())


@pytest.mark.slow
@pytest.mark.skipif(not _triton_interpreter_available(), reason="Triton not installed, or not in its interpreter")
@pytest.mark.parametrize("storage", [torch.float32, torch.bfloat16])
def test_kmeans_plusplus_through_the_triton_pass_picks_the_rows_the_cpu_kernel_picks(monkeypatch, storage):
    """k-means++ as it runs on CUDA (every pass and every drawn block through the Triton
    kernel, rows as stored, chunks that start inside blocks), here under the interpreter:
    the same rows as through the CPU kernel."""
    from gpukmeans.engine import initialisation
    from gpukmeans.sources import InMemorySource
    from gpukmeans.kernels import triton_potentials

    rng = np.random.default_rng(4)
    X = torch.from_numpy(rng.standard_normal((2_100, 3)).astype(np.float32) * 3).to(storage)
    weights = torch.from_numpy(rng.random(2_100).astype(np.float32))

    def picks(chunk_size, backend=None):
        source = InMemorySource(X, weights, chunk_size=chunk_size)
        if backend is not None:
            source.backend = backend
        return initialisation.kmeans_plusplus_tensor(source, 4, torch.Generator().manual_seed(6))[1]

    through_cpu_kernel = picks(2_100)
    calls = []

    class ThroughTriton(type(kernels.backend_for("cpu", storage))):
        def candidate_potentials(self, *args, **kwargs):
            calls.append(kwargs.get("block_offset", 0))
            return triton_potentials.candidate_potentials_triton(*args, **kwargs)

    backend = ThroughTriton(kernels.backend._load("cpu"), storage)
    assert torch.equal(picks(2_100, backend), through_cpu_kernel)
    assert torch.equal(picks(700, backend), through_cpu_kernel)
    assert 700 in calls and 376 in calls  # chunks that start inside the first and second blocks


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_rows,n_features,n_groups", [(0, 3, 2), (1, 1, 1), (N_ROWS, 16, 3), (9_001, 70, 2)])
def test_cpu_exact_distances_match_the_pytorch_form(dtype, n_rows, n_features, n_groups):
    """Exact distances (direct differences, squares in X's dtype, sums in float64): the
    CPU kernel's one pass against the reference's PyTorch blocks, far from the origin
    too, where the matrix-product form would lose digits."""
    generator = torch.Generator().manual_seed(n_rows + n_features)
    X = (torch.randn(n_rows, n_features, generator=generator, dtype=torch.float64) + 1e3).to(dtype)
    centers = (torch.randn(n_groups, 6, n_features, generator=generator, dtype=torch.float64) + 1e3).to(dtype)
    labels = torch.randint(0, 6, (n_rows, n_groups), generator=generator)
    got = kernels.backend_for("cpu", dtype).exact_sq_distances(X, centers, labels)
    expected = kernels.ReferenceBackend().exact_sq_distances(X, centers, labels)
    assert got.shape == expected.shape == (n_rows, n_groups) and got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_rows", [0, 1, 7, 1_000, 20_011])
def test_cpu_moments_match_the_reference(dtype, n_rows):
    """The conditioning pass's moments: the CPU kernel's parts merge to the reference's
    (means and sums of squared deviations to float64 rounding, extremes exactly), far
    from the origin and scaled too."""
    from gpukmeans.sources.conditioning import RowMoments

    def merged(parts):
        total = RowMoments(0.0, torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64),
                           torch.full((5,), float("inf"), dtype=torch.float64),
                           torch.full((5,), float("-inf"), dtype=torch.float64))
        for count, mean, sums, low, high in zip(*parts):
            if count > 0:
                total = total.merged(RowMoments(float(count), mean, sums, low, high))
        return total

    generator = torch.Generator().manual_seed(n_rows)
    X = (torch.randn(n_rows, 5, generator=generator, dtype=torch.float64) * 3 + 1e4).to(dtype)
    for scale in (1.0, 2.0**-20):
        got = merged(kernels.backend_for("cpu", dtype).moments(X, scale))
        expected = merged(kernels.ReferenceBackend().moments(X, scale))
        assert got.count == expected.count == n_rows
        if n_rows:
            torch.testing.assert_close(got.mean, expected.mean, rtol=1e-13, atol=0)
            torch.testing.assert_close(got.sum_sq_dev, expected.sum_sq_dev, rtol=1e-9, atol=1e-12)
            assert torch.equal(got.minimum, expected.minimum) and torch.equal(got.maximum, expected.maximum)
