"""``dtype=``: the storage dtype of X (float32, float64, and 16-bit bfloat16 / float16).

16-bit storage keeps centres, sums and the inertia in float32; only the rows are
rounded. On the CPU the chunks are widened to float32 for the numba kernel; on CUDA
the Triton kernel reads the 16-bit rows. That kernel is checked here under Triton's
interpreter (``TRITON_INTERPRET=1``, set below before Triton is imported) when there
is no GPU, and on a GPU by the ``gpu`` tests.
"""

import importlib.util
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_blobs

if (not torch.cuda.is_available() and "triton" not in sys.modules
        and importlib.util.find_spec("triton") is not None):
    os.environ["TRITON_INTERPRET"] = "1"  # read when triton is imported: run kernels on the CPU

from gpukmeans import KMeans, MiniBatchKMeans, kernels  # noqa: E402
from gpukmeans.sources.files import FileSource  # noqa: E402
from gpukmeans.sources import InMemorySource  # noqa: E402
from gpukmeans.sources import base as sources_base  # noqa: E402
from gpukmeans.kernels.reference import assign_accumulate_reference, lloyd_step_reference  # noqa: E402

HALF = [torch.bfloat16, torch.float16]
N_CLUSTERS = 5


@pytest.fixture(scope="module")
def separated():
    """Well-separated blobs and an init array (one row of each blob), float64."""
    X, y = make_blobs(n_samples=2000, n_features=6, centers=N_CLUSTERS, cluster_std=0.6,
                      center_box=(-12, 12), random_state=7)
    init = X[[int(np.flatnonzero(y == j)[0]) for j in range(N_CLUSTERS)]]
    return X, init


@pytest.fixture
def chunks_seen(monkeypatch):
    """Every chunk an in-memory or file source hands out during the test:
    ``(rows dtype, bytes per value, bytes of the tensor the rows live in, weights dtype)``."""
    seen = []

    def spy_on(cls):
        original = cls.chunks

        def chunks(self):
            for start, rows, weights in original(self):
                seen.append((rows.dtype, rows.element_size(), rows.untyped_storage().nbytes(),
                             None if weights is None else weights.dtype))
                yield start, rows, weights
        monkeypatch.setattr(cls, "chunks", chunks)

    spy_on(InMemorySource)
    spy_on(FileSource)
    return seen


def _fit(X, init, dtype, **params):
    return KMeans(N_CLUSTERS, init=init, device="cpu", dtype=dtype, **params).fit(X)


def _relative_gap(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ------------------------------------------------------------------ the parameter
@pytest.mark.parametrize("estimator", [KMeans, MiniBatchKMeans])
@pytest.mark.parametrize("dtype", ["bf16", "half", "int32", torch.int32, torch.complex64, int, np.int64,
                                   np.dtype("int64"), 16])
def test_a_bad_dtype_is_a_one_line_value_error(estimator, dtype, separated):
    X, _ = separated
    with pytest.raises(ValueError, match="'dtype' parameter of") as caught:
        estimator(2, dtype=dtype, device="cpu").fit(X)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("spellings", [
    ["bfloat16", torch.bfloat16],
    ["float16", torch.float16, torch.half, np.float16, np.dtype("float16")],
    ["float32", torch.float32, np.float32, np.dtype("float32")],
])
def test_every_spelling_of_a_dtype_gives_the_same_fit(spellings, separated):
    X, init = separated
    first = _fit(X, init, spellings[0])
    for spelling in spellings[1:]:
        again = _fit(X, init, spelling)
        np.testing.assert_array_equal(again.cluster_centers_, first.cluster_centers_)
        np.testing.assert_array_equal(again.labels_, first.labels_)


def test_dtype_is_a_plain_parameter():
    assert KMeans().get_params()["dtype"] is None
    assert MiniBatchKMeans(dtype="bfloat16").get_params()["dtype"] == "bfloat16"


# ------------------------------------------------------------ float32 / float64
def test_float32_storage_of_float64_input(separated, chunks_seen):
    X, init = separated
    stored32 = _fit(X, init, "float32")
    full = _fit(X, init, None)
    assert {entry[0] for entry in chunks_seen} == {torch.float32, torch.float64}
    assert stored32.cluster_centers_.dtype == np.float32
    assert stored32.transform(X[:3]).dtype == np.float32
    assert full.cluster_centers_.dtype == np.float64
    np.testing.assert_array_equal(stored32.labels_, full.labels_)
    assert _relative_gap(stored32.cluster_centers_, full.cluster_centers_) < 1e-5


def test_float64_storage_of_float32_input(separated):
    X, init = separated
    model = _fit(X.astype(np.float32), init, "float64")
    assert model.cluster_centers_.dtype == np.float64
    assert model.transform(X[:3].astype(np.float32)).dtype == np.float64


# ------------------------------------------------------------- 16-bit storage
@pytest.mark.parametrize("storage", HALF)
def test_half_storage_on_cpu_agrees_with_float32(storage, separated):
    X, init = separated
    reference = _fit(X, init, "float32")
    half = _fit(X, init, storage)
    assert half.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(half.labels_, reference.labels_)
    assert _relative_gap(half.cluster_centers_, reference.cluster_centers_) < 1e-2
    assert half.inertia_ == pytest.approx(reference.inertia_, rel=1e-2)
    # rounding the rows is not nothing: the centres moved, a little
    assert not np.array_equal(half.cluster_centers_, reference.cluster_centers_)


@pytest.mark.parametrize("storage", HALF)
def test_half_storage_predict_transform_score_use_the_fitted_storage(storage, separated, chunks_seen):
    X, init = separated
    model = _fit(X, init, storage)
    chunks_seen.clear()
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    np.testing.assert_array_equal(model.predict(X.astype(np.float32)), model.labels_)
    distances = model.transform(X)
    score = model.score(X)
    assert {entry[0] for entry in chunks_seen} == {storage}
    assert distances.dtype == np.float32
    np.testing.assert_array_equal(distances.argmin(axis=1), model.labels_)
    assert score == pytest.approx(-model.inertia_, rel=1e-6)


@pytest.mark.parametrize("storage", HALF)
def test_half_storage_holds_two_bytes_per_value(storage, separated, chunks_seen):
    X, init = separated
    _fit(X, init, storage)
    n_values = X.shape[0] * X.shape[1]
    # The first pass takes the moments of the rows as given (the caller's float64 array,
    # read in place); every pass after it reads the stored rows.
    as_given, *stored = chunks_seen
    assert as_given[:3] == (torch.float64, 8, 8 * n_values)
    assert stored
    for dtype, bytes_per_value, tensor_bytes, _ in stored:
        assert (dtype, bytes_per_value) == (storage, 2)
        assert tensor_bytes == 2 * n_values  # the whole stored X: half of float32's bytes


def test_half_storage_keeps_weights_in_float32(separated, chunks_seen):
    X, init = separated
    # 257 is not a bfloat16 (it rounds to 256): weights are not rounded like rows
    weights = np.where(np.arange(X.shape[0]) % 3 == 0, 257.0, 1.0)
    unweighted = _fit(X, init, "bfloat16")
    weighted_half = KMeans(N_CLUSTERS, init=init, device="cpu", dtype="bfloat16").fit(X, sample_weight=weights)
    weighted_full = KMeans(N_CLUSTERS, init=init, device="cpu", dtype="float32").fit(X, sample_weight=weights)
    assert {entry[3] for entry in chunks_seen if entry[3] is not None} == {torch.float32}
    assert _relative_gap(weighted_half.cluster_centers_, weighted_full.cluster_centers_) < 1e-2
    assert weighted_half.inertia_ == pytest.approx(weighted_full.inertia_, rel=1e-2)
    assert not np.allclose(weighted_half.cluster_centers_, unweighted.cluster_centers_, rtol=1e-3)


def test_float16_beyond_its_range_is_scaled_into_it(separated):
    X, init = separated
    money = X * 1e5  # values far above float16's 65504: stored scaled by a power of two
    half = _fit(money, init * 1e5, "float16")
    full = _fit(money, init * 1e5, "float32")
    assert half._conditioning.exponent > 0
    np.testing.assert_array_equal(half.labels_, full.labels_)
    assert _relative_gap(half.cluster_centers_, full.cluster_centers_) < 1e-2
    np.testing.assert_array_equal(half.predict(money), half.labels_)
    # rows far beyond the fitted ones still do not fit float16 once scaled the same way
    with pytest.raises(ValueError, match="beyond the range of float16"):
        half.predict(money * 1e6)


@pytest.mark.parametrize("storage", HALF)
def test_a_half_tensor_with_default_dtype_stays_half(storage, separated, chunks_seen):
    X, init = separated
    tensor = torch.as_tensor(X).to(storage)
    model = _fit(tensor, init, None)
    assert {entry[0] for entry in chunks_seen} == {storage}
    # the caller's tensor itself is what the fit read: no copy
    assert {entry[2] for entry in chunks_seen} == {tensor.untyped_storage().nbytes()}
    assert isinstance(model.cluster_centers_, torch.Tensor)
    assert model.cluster_centers_.dtype == torch.float32
    assert torch.equal(model.predict(tensor), model.labels_)
    assert model.transform(tensor).dtype == torch.float32
    explicit = _fit(X, init, storage)
    np.testing.assert_array_equal(model.labels_.numpy(), explicit.labels_)
    np.testing.assert_allclose(model.cluster_centers_.numpy(), explicit.cluster_centers_, rtol=1e-6)


def test_a_half_tensor_with_float32_storage_is_widened(separated, chunks_seen):
    X, init = separated
    model = _fit(torch.as_tensor(X).to(torch.bfloat16), init, "float32")
    assert {entry[0] for entry in chunks_seen} == {torch.float32}
    assert model.cluster_centers_.dtype == torch.float32


def test_half_storage_with_k_means_plus_plus_and_restarts(separated):
    X, _ = separated
    half = KMeans(N_CLUSTERS, n_init=3, random_state=0, device="cpu", dtype="bfloat16").fit(X)
    full = KMeans(N_CLUSTERS, n_init=3, random_state=0, device="cpu", dtype="float32").fit(X)
    assert half.cluster_centers_.dtype == np.float32
    assert half.inertia_ == pytest.approx(full.inertia_, rel=1e-2)
    np.testing.assert_array_equal(half.predict(X), half.labels_)


def test_a_callable_init_sees_the_stored_rows_in_float32(separated):
    X, init = separated
    handed = []

    def first_rows_of_each_blob(rows, n_clusters, random_state):
        handed.append(rows)
        return init
    model = KMeans(N_CLUSTERS, init=first_rows_of_each_blob, n_init=1, device="cpu", dtype="bfloat16").fit(X)
    (rows,) = handed
    assert rows.dtype == np.float32
    stored = torch.as_tensor(X).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(rows, stored)  # the rounded rows, exactly
    np.testing.assert_array_equal(model.labels_, _fit(X, init, "bfloat16").labels_)


def test_half_storage_from_a_file(tmp_path, separated, chunks_seen):
    X, init = separated
    path = tmp_path / "rows.csv"
    pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])]).to_csv(path, index=False)
    from_file = _fit(path, init, "bfloat16", chunk_size=300)
    in_memory = _fit(X, init, "bfloat16")
    full = _fit(path, init, None)
    assert {entry[0] for entry in chunks_seen if entry[1] == 2} == {torch.bfloat16}
    assert from_file.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(from_file.labels_, in_memory.labels_)
    assert _relative_gap(from_file.cluster_centers_, in_memory.cluster_centers_) < 1e-5
    assert not np.allclose(from_file.cluster_centers_, full.cluster_centers_, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(from_file.predict(path), from_file.labels_)


# ------------------------------------------------------------------- mini-batch
@pytest.mark.parametrize("storage", HALF)
def test_minibatch_half_storage_agrees_with_float32(storage, separated, chunks_seen):
    X, _ = separated
    params = dict(n_clusters=N_CLUSTERS, batch_size=256, max_iter=20, random_state=0, device="cpu")
    reference = MiniBatchKMeans(dtype="float32", **params).fit(X)
    chunks_seen.clear()
    half = MiniBatchKMeans(dtype=storage, **params).fit(X)
    # after the moments of the rows as given (the caller's array, read in place), the full
    # passes read the 16-bit X; only the small init sample is widened (float32)
    n_values = X.shape[0] * X.shape[1]
    as_given, *after = chunks_seen
    assert as_given[2] == X.nbytes
    assert {entry[2] for entry in after if entry[0] == storage} == {2 * n_values}
    assert max(entry[2] for entry in after if entry[0] != storage) < 4 * n_values  # no float32 X
    assert half.cluster_centers_.dtype == np.float32 and half.counts_.dtype == np.float32
    np.testing.assert_array_equal(half.labels_, reference.labels_)
    assert _relative_gap(half.cluster_centers_, reference.cluster_centers_) < 1e-2
    np.testing.assert_array_equal(half.predict(X), half.labels_)


def test_minibatch_partial_fit_keeps_the_first_calls_storage(separated, chunks_seen):
    X, _ = separated
    model = MiniBatchKMeans(N_CLUSTERS, random_state=0, device="cpu", dtype="bfloat16")
    model.partial_fit(X[:1000])
    model.set_params(dtype="float64")  # only a new fit would take it
    chunks_seen.clear()
    model.partial_fit(X[1000:])
    assert {entry[0] for entry in chunks_seen} == {torch.bfloat16}
    assert model.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(model.predict(X[1000:]), model.labels_)


# ---------------------------------------------------------------- the backends
@pytest.mark.parametrize("storage", HALF)
@pytest.mark.parametrize("kernel", ["", "reference"])
def test_backends_widen_half_rows_off_triton(storage, kernel, monkeypatch):
    monkeypatch.setenv("GPUKMEANS_KERNEL", kernel)
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(301, 7, generator=generator).to(storage)
    centers = torch.randn(2, 4, 7, generator=generator)
    norms = (centers * centers).sum(dim=2)
    weights = torch.rand(301, generator=generator)
    expected = assign_accumulate_reference(X.float(), centers, norms, weights)
    backend = kernels.backend_for("cpu", storage)
    got = backend.assign(X, centers, norms, weights)
    assert got.sums.dtype == torch.float32 and got.min_sq_distances.dtype == torch.float32
    assert torch.equal(got.labels, expected.labels)
    torch.testing.assert_close(got.sums, expected.sums, rtol=1e-5, atol=1e-5)
    labels = torch.full((301, 2), -1, dtype=torch.int16)
    step = backend.lloyd_step(X, centers, norms, weights, labels, torch.tensor([0, 1]))
    reference_labels = torch.full((301, 2), -1, dtype=torch.int16)
    expected_step = lloyd_step_reference(X.float(), centers, norms, weights, reference_labels, torch.tensor([0, 1]))
    assert torch.equal(labels, reference_labels)
    torch.testing.assert_close(step.sums, expected_step.sums, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------- the Triton path
def _triton_interpreter_available():
    return os.environ.get("TRITON_INTERPRET") == "1" and importlib.util.find_spec("triton") is not None


@pytest.mark.skipif(not _triton_interpreter_available(),
                    reason="Triton not installed, or already imported without the interpreter")
@pytest.mark.parametrize("storage", HALF)
def test_estimator_on_the_triton_kernel_in_the_interpreter(storage, monkeypatch):
    """The whole fit on the Triton kernel (as on CUDA), run by Triton's interpreter on
    CPU tensors: 16-bit rows reach the kernel as they are, with float32 centres."""
    from gpukmeans.kernels import triton_assign

    X, y = make_blobs(n_samples=400, n_features=4, centers=3, cluster_std=0.5, random_state=1)
    init = X[[int(np.flatnonzero(y == j)[0]) for j in range(3)]]
    on_cpu_kernel = KMeans(3, init=init, device="cpu", dtype=storage, max_iter=20).fit(X)

    rows_seen = []
    lloyd_step_triton = triton_assign.lloyd_step_triton

    def recording_lloyd_step(X, centers, *args, **kwargs):
        rows_seen.append((X.dtype, centers.dtype))
        return lloyd_step_triton(X, centers, *args, **kwargs)

    # every pass on the Triton backend (as on CUDA), but the final labels' (float64, which
    # Triton does not take: the CPU kernel's)
    monkeypatch.setattr(triton_assign, "lloyd_step_triton", recording_lloyd_step)
    triton = kernels.TritonBackend(triton_assign)
    original_backend_for = sources_base.backend_for
    monkeypatch.setattr(sources_base, "backend_for",
                        lambda device, dtype: original_backend_for(device, dtype) if dtype == torch.float64 else triton)
    on_triton = KMeans(3, init=init, device="cpu", dtype=storage, max_iter=20).fit(X)

    assert rows_seen and set(rows_seen) == {(storage, torch.float32)}
    assert on_triton.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(on_triton.labels_, on_cpu_kernel.labels_)
    assert _relative_gap(on_triton.cluster_centers_, on_cpu_kernel.cluster_centers_) < 1e-5
    assert on_triton.n_iter_ == on_cpu_kernel.n_iter_
    np.testing.assert_array_equal(on_triton.predict(X), on_triton.labels_)


# ----------------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.parametrize("storage", HALF)
def test_cuda_half_storage_reads_two_bytes_and_agrees_with_float32(storage, separated, chunks_seen):
    X, init = separated
    assert kernels.backend_for(torch.zeros(4, 2, device="cuda", dtype=storage)) == "triton"
    reference = KMeans(N_CLUSTERS, init=init, device="cuda", dtype="float32").fit(X)
    chunks_seen.clear()
    half = KMeans(N_CLUSTERS, init=init, device="cuda", dtype=storage).fit(X)
    assert chunks_seen and {entry[:2] for entry in chunks_seen} == {(storage, 2)}
    assert half.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(half.labels_, reference.labels_)
    assert _relative_gap(half.cluster_centers_, reference.cluster_centers_) < 1e-2
    np.testing.assert_array_equal(half.predict(X), half.labels_)
    on_cpu = KMeans(N_CLUSTERS, init=init, device="cpu", dtype=storage).fit(X)
    np.testing.assert_array_equal(half.labels_, on_cpu.labels_)
    assert _relative_gap(half.cluster_centers_, on_cpu.cluster_centers_) < 1e-5


@pytest.mark.gpu
def test_cuda_half_tensor_input_stays_on_the_gpu_in_16_bits(separated, chunks_seen):
    X, init = separated
    tensor = torch.as_tensor(X, device="cuda").to(torch.bfloat16)
    model = KMeans(N_CLUSTERS, init=init, device="cuda").fit(tensor)
    assert {entry[0] for entry in chunks_seen} == {torch.bfloat16}
    assert model.cluster_centers_.device.type == "cuda" and model.cluster_centers_.dtype == torch.float32
    assert torch.equal(model.predict(tensor), model.labels_)
