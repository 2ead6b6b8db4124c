"""``segment`` and ``predict`` with device="cuda": the same segments as on the CPU
(skipped without a GPU).

The transform runs as torch operations on the GPU and as a numba kernel on the CPU;
both apply the same float64 steps in the same order, so the clustered matrices, and
with them the segments, agree.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from gpukmeans.segmentation import predict, segment

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def customers(tmp_path_factory):
    rng = np.random.default_rng(11)
    n = 40_000
    group = rng.integers(4, size=n)
    frame = pd.DataFrame({
        "customer": [f"C{i:06d}" for i in range(n)],
        "spend": np.round(np.exp(5 + group + rng.normal(0, 0.4, n)), 2),
        "visits": rng.poisson(2 + 3 * group).astype(float),
        "age": rng.normal(30 + 8 * group, 5, n),
        "channel": np.array(["web", "store", "app"])[(group + rng.integers(2, size=n)) % 3],
    })
    frame.loc[rng.choice(n, 400, replace=False), "age"] = np.nan
    path = tmp_path_factory.mktemp("gpu_segment") / "customers.parquet"
    frame.to_parquet(path, row_group_size=7_000)
    return path


def test_segments_on_the_gpu_equal_the_cpus(customers, tmp_path):
    options = dict(k=4, categorical=["channel"], clip=0.01, report=False)
    cpu = segment(customers, device="cpu", out=tmp_path / "cpu", **options)
    gpu = segment(customers, device="cuda", out=tmp_path / "gpu", **options)
    assert gpu.summary["device"].startswith("cuda")
    pd.testing.assert_frame_equal(gpu.segments, cpu.segments, check_exact=False, rtol=1e-6)
    assert (gpu.segments["segment"] == cpu.segments["segment"]).all()
    pd.testing.assert_frame_equal(gpu.profiles, cpu.profiles, check_exact=False, rtol=1e-9)


def test_predict_on_the_gpu_gives_the_fits_segments(customers, tmp_path):
    fitted = segment(customers, k=4, categorical=["channel"], device="cuda", out=tmp_path / "fit", report=False)
    predicted = predict(tmp_path / "fit", customers, device="cuda")
    pd.testing.assert_frame_equal(predicted.segments, fitted.segments)
    on_cpu = predict(tmp_path / "fit", customers, device="cpu")
    assert (on_cpu.segments["segment"] == fitted.segments["segment"]).all()


def test_the_transform_on_the_gpu_equals_the_cpu_kernel(customers):
    from gpukmeans.segmentation.prepare import prepare_table
    from gpukmeans.segmentation.preprocess import Preprocessor
    from gpukmeans.segmentation.tables import TableReader

    matrices = []
    for device in ("cpu", "cuda"):
        prep = Preprocessor(categorical=["channel"], clip=0.01, scale="robust")
        matrices.append(prepare_table(prep, TableReader.open(customers), device=device).X.cpu())
    assert torch.equal(matrices[0], matrices[1])


def test_the_sweep_rules_and_stability_on_the_gpu_agree_with_the_cpus(customers, tmp_path):
    options = dict(categorical=["channel"], k_range=(2, 6), stability=10, report=False)
    cpu = segment(customers, device="cpu", **options)
    gpu = segment(customers, device="cuda", **options)
    assert gpu.summary["k"] == cpu.summary["k"]
    np.testing.assert_allclose([row["inertia"] for row in gpu.summary["sweep"]],
                               [row["inertia"] for row in cpu.summary["sweep"]], rtol=1e-4)
    assert gpu.summary["structure"] == cpu.summary["structure"]
    for on_gpu, on_cpu in zip(gpu.summary["segments"], cpu.summary["segments"]):
        assert on_gpu["stability"] == pytest.approx(on_cpu["stability"], abs=0.02)
        assert on_gpu["rule"] == on_cpu["rule"]
