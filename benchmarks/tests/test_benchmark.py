"""The benchmark harness (gpukmeans_cli.benchmarking) and benchmarks/gpu_kernel_variants.py:
what they report, not how fast anything is."""

import os
import pathlib
import runpy
import subprocess
import sys

import pytest
import torch

from gpukmeans_cli import benchmarking as bench
from gpukmeans_cli.benchmarking import fit_costs, protocol

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("given, after_command", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_harness_leaves_the_openmp_wait_policy_to_the_command(given, after_command):
    """Benchmark scripts import the harness and time under the policy they were started
    with; the ``gpukmeans`` command sleeps its waiting threads unless the user chose."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    script = ("import os, gpukmeans_cli.benchmarking; print(os.environ.get('OMP_WAIT_POLICY')); "
              "import gpukmeans_cli.app; print(os.environ.get('OMP_WAIT_POLICY'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(given), after_command]


def _unavailable(X, init, init_rows, device):
    raise bench.PeerMissing("not installed here")


def _broken(X, init, init_rows, device):
    def fit(iterations):
        raise ZeroDivisionError("peer bug")
    return fit


def test_missing_and_failing_peers_are_reported_not_hidden(monkeypatch):
    monkeypatch.setitem(bench.PEERS, "absent", _unavailable)
    monkeypatch.setitem(bench.PEERS, "broken", _broken)
    records = bench.run_comparison({"cpu": [(2000, 3, 4)]},
                                   libraries_by_device={"cpu": ["absent", "broken", "plain torch"]},
                                   n_iter=2, repeats=1)
    status = {r.library: r.status for r in records}
    assert status["absent"] == "missing: not installed here"
    assert status["broken"].startswith("failed: ZeroDivisionError: peer bug")
    table = bench.markdown_table(records)
    assert "missing: not installed here" in table and "failed: ZeroDivisionError" in table
    assert all(r.floor_ms and r.floor_ms > 0 for r in records)


def test_a_run_that_converged_early_gives_no_per_iteration_figure():
    with pytest.raises(RuntimeError, match="converged after 3 iterations"):
        bench.time_per_iteration(lambda iterations: min(iterations, 3), "cpu", n_iter=5, repeats=1)


def test_same_data_and_start_for_everyone():
    X, init, rows = bench.make_data(5000, 4, 6, "cpu", seed=3)
    again, init_again, _ = bench.make_data(5000, 4, 6, "cpu", seed=3)
    assert X.dtype == torch.float32 and torch.equal(X, again) and torch.equal(init, init_again)
    assert torch.equal(X[torch.as_tensor(rows)], init)


def test_plain_torch_lloyd_is_one_lloyd_step():
    X, init, _ = bench.make_data(3000, 5, 4, "cpu")
    moved = bench.naive_torch_lloyd(X.double(), init.double(), 1)
    labels = torch.cdist(X.double(), init.double()).argmin(dim=1)
    for j in range(4):
        assert torch.allclose(moved[j], X.double()[labels == j].mean(dim=0))


def test_fastkmeans_starts_from_our_centres():
    fastkmeans = pytest.importorskip("fastkmeans")
    X, init, rows = bench.make_data(4000, 3, 5, "cpu")
    captured = {}
    original = fastkmeans.FastKMeans.train

    def spy(self, data):
        torch.manual_seed(self.seed)
        captured["start"] = data[torch.randperm(data.shape[0])[: self.k].numpy()]
        return original(self, data)

    fastkmeans.FastKMeans.train = spy
    try:
        bench.PEERS["fastkmeans"](X, init, rows, "cpu")(1)
    finally:
        fastkmeans.FastKMeans.train = original
    assert torch.equal(torch.as_tensor(captured["start"]), init)


def test_cli_bench_prints_the_table(tmp_path):
    typer = pytest.importorskip("typer")
    bench_command = pytest.importorskip("gpukmeans_cli.bench").bench
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command()(bench_command)
    app.command()(lambda: None)  # two commands, so that the command is named on the line
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--device", "cpu", "--rows", "2000", "--iterations", "2",
                                      "--repeats", "1", "--peers", "gpukmeans,plain torch", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "| cpu | 2,000 | 16 | 8 | gpukmeans |" in result.output
    assert out.exists()
    bad = CliRunner().invoke(app, ["bench", "--peers", "nope"])
    assert bad.exit_code == 2 and "unknown nope" in bad.output


def test_the_bfloat16_storage_row_fits_the_same_data_stored_in_16_bits(monkeypatch):
    """The row is timed on GPUs only; its code path is the same on the CPU."""
    from gpukmeans.sources import InMemorySource

    seen = []
    original = InMemorySource.chunks

    def chunks(self):
        for start, rows, weights in original(self):
            seen.append(rows.dtype)
            yield start, rows, weights
    monkeypatch.setattr(InMemorySource, "chunks", chunks)
    X = torch.randn(3000, 4, generator=torch.Generator().manual_seed(0))  # no structure: no early stop
    init_rows = [0, 1, 2, 3, 4]
    fit = bench.PEERS[bench.HALF_STORAGE](X, X[init_rows], init_rows, "cpu")
    assert fit(3) == 3
    # the moments of the rows as given, then every pass over the stored rows
    assert seen[0] == torch.float32 and set(seen[1:]) == {torch.bfloat16}


def test_the_launch_by_launch_row_fits_with_recording_off(monkeypatch):
    """The row is timed on GPUs only; the switch it sets is seen by the fit on the CPU too,
    and the caller's value is back after the fit."""
    from gpukmeans.engine import lloyd
    from gpukmeans.engine.cuda_graph import cuda_graphs_enabled

    seen = []
    original = lloyd._recorder_for

    def spy(source):
        seen.append(cuda_graphs_enabled())
        return original(source)
    monkeypatch.setattr(lloyd, "_recorder_for", spy)
    monkeypatch.setenv("GPUKMEANS_CUDA_GRAPHS", "1")
    X = torch.randn(2000, 4, generator=torch.Generator().manual_seed(0))
    fit = bench.PEERS["gpukmeans (launch by launch)"](X, X[:5], [0, 1, 2, 3, 4], "cpu")
    assert fit(3) == 3
    assert seen == [False]
    assert os.environ["GPUKMEANS_CUDA_GRAPHS"] == "1"


def test_bfloat16_speedups_pair_each_row_with_float32_at_its_shape():
    def record(library, shape, ms, device="cuda"):
        return bench.Measurement(library, device, *shape, status="ok" if ms else "failed: x", ms_per_iter=ms)

    records = [
        record("gpukmeans", (1000, 16, 8), 4.0),
        record(bench.HALF_STORAGE, (1000, 16, 8), 2.0),
        record("gpukmeans", (1000, 32, 32), 9.0),
        record(bench.HALF_STORAGE, (1000, 32, 32), None),  # failed: no figure, no speed-up
        record(bench.HALF_STORAGE, (50, 2, 2), 1.0),  # no float32 figure at this shape
        record("flash-kmeans", (1000, 16, 8), 1.0),
    ]
    speedups = bench.storage_speedups(records)
    assert speedups == [{"device": "cuda", "shape": [1000, 16, 8], "float32_ms": 4.0, "bfloat16_ms": 2.0,
                         "speedup": 2.0}]
    table = bench.speedup_table(speedups)
    assert "| cuda | 1,000 | 16 | 8 | 4.00 | 2.00 | 2.00x |" in table
    assert f"target >= {bench.HALF_STORAGE_TARGET}x" in table


def test_restart_cost_reports_the_arithmetic_floor_of_the_distances(monkeypatch):
    # the engine runs for real; only its timing is fixed, so the arithmetic can be checked
    seconds = iter([0.002, 0.005])
    monkeypatch.setattr(fit_costs, "time_per_iteration", lambda *args, **kwargs: next(seconds))
    result = bench.n_init_cost(4000, 5, 3, n_init=4, n_iter=2, repeats=1, cpu_time=True)
    assert result["ms_per_iter_1"] == pytest.approx(2.0) and result["ratio"] == pytest.approx(2.5)
    assert result["n_init"] == 4 and result["shape"] == [4000, 5, 3]
    assert 0 < result["matmul_gflops"] < 1e6
    # 2 n d k flops per restart, for every restart, at the measured rate
    flops = 2 * 4000 * 5 * 3 * 4
    assert result["arithmetic_floor_ms"] == pytest.approx(flops / (result["matmul_gflops"] * 1e9) * 1e3)
    assert result["arithmetic_floor_ratio"] == pytest.approx(
        result["arithmetic_floor_ms"] / result["ms_per_iter_1"])


def test_on_cuda_no_timed_fit_pays_for_a_cold_allocator(monkeypatch):
    # Two fake peers on a fake clock: 10 units per iteration, and 50 more for a fit that
    # follows the other peer's fit or a release of the CUDA cache (cudaMalloc again, its
    # blocks taken by the other). Timed in the short fit alone, those 50 units would make
    # the per-iteration figure (120 - 70) / 10 = 5.
    now = [0.0]
    last = [None]

    def peer(name):
        def make(X, init, init_rows, device):
            def fit(iterations):
                now[0] += 10 * iterations + (50 if last[0] != name else 0)
                last[0] = name
                return iterations
            return fit
        return make

    monkeypatch.setattr(protocol, "_release_cached_memory", lambda device: last.__setitem__(0, None))
    monkeypatch.setattr(protocol, "_synchronize", lambda device: None)
    monkeypatch.setitem(bench.PEERS, "fake a", peer("a"))
    monkeypatch.setitem(bench.PEERS, "fake b", peer("b"))
    X, init, rows = bench.make_data(100, 2, 3, "cpu")
    records = bench.measure_shape(["fake a", "fake b"], X, init, rows, "cuda", n_iter=10, repeats=3,
                                  floor_ms=1.0, clock=lambda: now[0])
    assert [r.status for r in records] == ["ok", "ok"]
    assert [r.ms_per_iter for r in records] == [pytest.approx(10 * 1e3)] * 2


def _variants_script():
    pytest.importorskip("triton")
    return runpy.run_path(str(BENCHMARKS / "gpu_kernel_variants.py"), run_name="variants")


@pytest.mark.parametrize("chunked", [False, True])
def test_the_engine_pass_variant_is_the_engines_lloyd_pass(chunked):
    """gpu_kernel_variants.py's "engine's pass" rows time what a fit's iteration does (its
    chunks, their totals added up): its totals must be the kernel's, on whatever device."""
    from gpukmeans.kernels import lloyd_step_reference

    variants = _variants_script()
    X = torch.randn(5000, 6, generator=torch.Generator().manual_seed(3))
    centers = X[:4][None].clone()
    norms = (centers * centers).sum(dim=2)
    labels = torch.full((5000, 1), -1, dtype=torch.int8)
    columns = torch.zeros(1, dtype=torch.int64)
    got = variants["engine_pass_step"](X, centers, norms, None, labels, columns, compute_inertia=True,
                                       chunked=chunked)
    expected_labels = torch.full((5000, 1), -1, dtype=torch.int8)
    expected = lloyd_step_reference(X, centers, norms, None, expected_labels, columns, compute_inertia=True)
    assert torch.equal(labels, expected_labels)
    assert int(got.n_changed.sum()) == int(expected.n_changed.sum()) == 5000
    assert torch.allclose(got.sums.double(), expected.sums.double(), rtol=1e-5, atol=1e-4)
    assert torch.allclose(got.weight_sums.double(), expected.weight_sums.double())
    assert torch.allclose(got.inertia.double(), expected.inertia.double(), rtol=1e-5)


def test_the_iteration_variant_times_the_engines_iteration():
    """The "engine's iteration" rows time ``engine.lloyd._iterate`` (on a GPU also replayed from a
    CUDA graph): on the CPU, launch by launch, its totals must be the reference step's."""
    from gpukmeans.kernels import lloyd_step_reference

    variants = _variants_script()
    X = torch.randn(4000, 5, generator=torch.Generator().manual_seed(4))
    centers = X[:3][None].clone()
    labels = torch.full((4000, 1), -1, dtype=torch.int8)
    ms, got = variants["time_iteration"](X, centers, labels, recorded=False, repeats=2)
    expected = lloyd_step_reference(X, centers, (centers * centers).sum(dim=2), None,
                                    torch.full((4000, 1), -1, dtype=torch.int8), torch.zeros(1, dtype=torch.int64))
    assert ms > 0
    assert torch.allclose(got.sums.double(), expected.sums.double(), rtol=1e-5, atol=1e-4)
    assert torch.equal(got.weight_sums.double(), expected.weight_sums.double())


def test_a_variants_tuning_reaches_the_engines_steps(monkeypatch):
    """The "engine's pass" and "engine's iteration" rows of a variant run the engine with
    the variant's launch settings: its source's backend passes them to every Lloyd step."""
    from gpukmeans.kernels import lloyd_step_reference
    from gpukmeans.kernels.triton_assign import Tuning

    variants = _variants_script()
    seen = []

    def step(*args, compute_inertia=True, tuning):
        seen.append(tuning)
        return lloyd_step_reference(*args, compute_inertia=compute_inertia)
    monkeypatch.setattr(variants["triton_assign"], "lloyd_step_triton", step)
    X = torch.randn(3000, 4, generator=torch.Generator().manual_seed(5))
    centers = X[:3][None].clone()
    norms = (centers * centers).sum(dim=2)
    tuning = Tuning(block_m=32, maxnreg=0)
    labels = torch.full((3000, 1), -1, dtype=torch.int8)
    got = variants["engine_pass_step"](X, centers, norms, None, labels, torch.zeros(1, dtype=torch.int64),
                                       compute_inertia=False, tuning=tuning)
    variants["time_iteration"](X, centers, torch.full((3000, 1), -1, dtype=torch.int8), recorded=False,
                               repeats=1, tuning=tuning)
    expected = lloyd_step_reference(X, centers, norms, None, torch.full((3000, 1), -1, dtype=torch.int8),
                                    torch.zeros(1, dtype=torch.int64), compute_inertia=False)
    assert seen and set(seen) == {tuning}
    assert torch.allclose(got.sums.double(), expected.sums.double())


def _clock_of(durations):
    """A clock under which consecutive timed fits take ``durations`` seconds."""
    readings, now = [], 0.0
    for seconds in durations:
        readings += [now, now + seconds]
        now += seconds + 1.0
    return iter(readings).__next__


def _one_peer(monkeypatch):
    def steady(X, init, init_rows, device):
        return lambda iterations: iterations
    monkeypatch.setitem(bench.PEERS, "steady", steady)
    X, init, rows = bench.make_data(500, 3, 4, "cpu")
    return X, init, rows


@pytest.mark.parametrize("short_times, long_times, noisy", [
    ((1.00, 1.01, 1.005), (1.20, 1.21, 1.205), False),
    ((1.00, 1.50, 1.30), (1.20, 1.21, 1.205), True),   # one short fit took 0.5 s longer
])
def test_a_figure_whose_repeats_spread_more_than_it_measures_is_flagged(monkeypatch, short_times, long_times,
                                                                         noisy):
    X, init, rows = _one_peer(monkeypatch)
    durations = [t for pair in zip(short_times, long_times) for t in pair]  # short, long, short, long...
    [record] = bench.measure_shape(["steady"], X, init, rows, "cpu", n_iter=10, repeats=3, floor_ms=1.0,
                                   clock=_clock_of(durations))
    assert record.ms_per_iter == pytest.approx(20.0)  # (1.20 - 1.00) s over 10 iterations
    assert record.status.startswith("ok")
    assert ("noisy: the repeats of one fit spread over 500.00 ms" in record.status) == noisy
    assert ("noisy" in record.status) == noisy


def test_a_result_names_the_commit_and_the_machine_it_was_measured_on(monkeypatch):
    # benchmarks/machine.py writes the header of every result that README and docs quote
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import machine

    info = machine.machine_info()
    assert info["git_commit"] == bench.environment(["cpu"])["git_commit"]
    header = machine.markdown_header({**info, "git_commit": "abc1234", "processor": "a CPU"})
    assert header.startswith(f"Measured {info['date']} at commit abc1234 on a CPU (")
    assert " at commit " not in machine.markdown_header({**info, "git_commit": None})
