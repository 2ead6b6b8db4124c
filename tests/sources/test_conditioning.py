"""Correct on any float data: tables far from the origin, tiny and huge magnitudes.

Every kernel computes distances as ||x||^2 - 2 x.c + ||c||^2; without conditioning
(gpukmeans.sources.conditioning) float32 blobs of spread 1 around 1e4 lose a third of their
labels. Each case here is checked against scikit-learn in float64 from the same
initial centres, and every final label against the nearest centre in float64.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs

from gpukmeans import KMeans, MiniBatchKMeans, kmeans_plusplus, metrics, sweep
from gpukmeans.sources.conditioning import Conditioning, RowMoments, fit_conditioning, local_moments, merged_moments
from gpukmeans.sources import InMemorySource

N_CLUSTERS = 4


def _blobs(offset=0.0, scale=1.0, dtype=np.float32, n=2000, seed=0):
    X, _ = make_blobs(n_samples=n, centers=N_CLUSTERS, n_features=3, cluster_std=1.0, center_box=(-5, 5),
                      random_state=seed)
    return (X * scale + offset).astype(dtype)


def _moved_pair(offset, n=2000, seed=0):
    """(near, far): float32 blobs around the origin and the same rows moved by ``offset``,
    exactly (``far`` is rounded first, so that ``near = far - offset`` holds bit for bit)."""
    far = _blobs(offset, n=n, seed=seed)
    near = (far.astype(np.float64) - offset).astype(np.float32)
    assert np.array_equal(near.astype(np.float64) + offset, far.astype(np.float64))
    return near, far


def _agreement(a, b) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def _init(X):
    return X[[0, len(X) // 4, len(X) // 2, 3 * len(X) // 4]]


def _exact_centers(model) -> np.ndarray:
    """The fitted centres in float64 (cluster_centers_ is rounded to the input's dtype)."""
    return model._conditioning.centers_out(model._centers).cpu().numpy()


def _assert_nearest_in_float64(X, labels, centers):
    """Every label is a nearest centre by direct difference in float64 (ties: either)."""
    X64 = np.asarray(X, dtype=np.float64)
    distances = ((X64[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    chosen = distances[np.arange(len(X64)), labels]
    slack = 1e-12 * distances.max()
    assert (chosen <= distances.min(axis=1) + slack).all(), int((chosen > distances.min(axis=1) + slack).sum())


def _sklearn(X, init):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SklearnKMeans(N_CLUSTERS, init=np.asarray(init, dtype=np.float64), n_init=1).fit(
            np.asarray(X, dtype=np.float64))


# ------------------------------------------------------------------- offsets
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [1e3, 1e4, 1e5, 1e6, 1e7])
def test_far_from_the_origin(offset, dtype):
    X = _blobs(offset, dtype=dtype)
    model = KMeans(N_CLUSTERS, init=_init(X), device="cpu").fit(X)
    _assert_nearest_in_float64(X, model.labels_, _exact_centers(model))
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    if dtype == np.float32 and offset >= 1e7:
        # float32 holds values around 1e7 to whole units: the rows are a lattice of spread
        # 1, full of exact ties, where float32 and float64 Lloyd take different paths
        # (scikit-learn's own float32 fit ends 36-76% above its float64 one here). What
        # holds is that the result is a float64 fixed point: Lloyd in float64 started
        # from it keeps it.
        reference = _sklearn(X, _exact_centers(model))
        assert reference.n_iter_ == 1
    else:
        reference = _sklearn(X, _init(X))
    assert model.inertia_ == pytest.approx(reference.inertia_, rel=1e-3)


def test_offset_blobs_with_restarts_match_scikit_learn():
    """The reported case: values around 1e4, spread 1, float32, ten restarts."""
    X = _blobs(1e4, n=5000)
    model = KMeans(N_CLUSTERS, n_init=10, random_state=0, device="cpu").fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = SklearnKMeans(N_CLUSTERS, n_init=10, random_state=0).fit(X.astype(np.float64))
    assert model.inertia_ == pytest.approx(best.inertia_, rel=1e-3)
    _assert_nearest_in_float64(X, model.labels_, _exact_centers(model))


def test_a_fit_is_unchanged_by_moving_the_table():
    """k-means is translation-equivariant; so is every path of the engine (restarts,
    k-means++ draws, tolerance). The two fits differ only in float32's rounding of the
    distances, which can flip a row that lies on a boundary (before conditioning, a
    third of the rows at 1e4)."""
    for offset in (1e4, -3e5):
        near, far = _moved_pair(offset, n=3000)
        near_fit = KMeans(N_CLUSTERS, n_init=3, random_state=1, device="cpu").fit(near)
        far_fit = KMeans(N_CLUSTERS, n_init=3, random_state=1, device="cpu").fit(far)
        assert _agreement(far_fit.labels_, near_fit.labels_) >= 0.999
        assert far_fit.inertia_ == pytest.approx(near_fit.inertia_, rel=1e-4)
        np.testing.assert_allclose(_exact_centers(far_fit) - offset, _exact_centers(near_fit), atol=1e-3)


# ---------------------------------------------------------------- magnitudes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-10, 1e10, 1e20, 1e30])
def test_tiny_and_huge_magnitudes(scale, dtype):
    X = _blobs(scale=scale, dtype=dtype)
    model = KMeans(N_CLUSTERS, init=_init(X), device="cpu").fit(X)
    assert np.isfinite(model.inertia_) and model.inertia_ > 0
    _assert_nearest_in_float64(X, model.labels_, _exact_centers(model))
    # scikit-learn in float64 on the same rows brought to magnitude 1 (k-means is unchanged by scaling)
    unit = np.asarray(X, dtype=np.float64) / scale
    reference = _sklearn(unit, _init(unit))
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    assert model.inertia_ / scale**2 == pytest.approx(reference.inertia_, rel=1e-3)
    np.testing.assert_allclose(model.cluster_centers_ / scale, reference.cluster_centers_, rtol=1e-4, atol=1e-5)
    assert -model.score(X) == pytest.approx(model.inertia_, rel=1e-6)
    np.testing.assert_allclose((model.transform(X).min(axis=1).astype(np.float64) / scale) ** 2,
                               ((unit - reference.cluster_centers_[reference.labels_]) ** 2).sum(axis=1),
                               rtol=1e-3, atol=1e-9)


def test_squares_beyond_float64_are_a_clear_error():
    X = _blobs(scale=1e200, dtype=np.float64)
    with pytest.raises(ValueError, match="squared distances exceed float64's range"):
        KMeans(N_CLUSTERS, device="cpu").fit(X)


def test_float64_whose_moments_overflow_but_inertia_does_not():
    """Values near 1e152 spread by 1e149: their squares overflow float64, so the moments
    are taken again scaled, and the fit computes in range."""
    X = _blobs(1e152, scale=1e149, dtype=np.float64)
    model = KMeans(N_CLUSTERS, init=_init(X), device="cpu").fit(X)
    unit = (X - 1e152) / 1e149
    reference = _sklearn(unit, _init(unit))
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    assert model.inertia_ / 1e298 == pytest.approx(reference.inertia_, rel=1e-6)


def test_squares_beyond_float64_with_a_spread_whose_squares_fit():
    """Values near 1e160 (squares near 1e320) spread by about 1e146: the moments are taken
    again scaled by 2**-532, and the squared distances (about 1e292) are in range."""
    X = np.array([[1e160], [1e160 * (1 + 1e-14)], [1e160 * (1 + 3e-14)]])
    model = KMeans(1, device="cpu").fit(X)
    deviations = X - X.mean()  # about 1e146: their squares fit float64
    # float64's spacing here is about 2e144: a mean one spacing off adds 3 * 4e288, 3e-4 of the inertia
    assert model.inertia_ == pytest.approx(float((deviations**2).sum()), rel=1e-3)
    assert model.cluster_centers_[0, 0] == pytest.approx(X.mean(), rel=1e-15)


def test_the_fitted_shift_is_the_mean_rounded_to_the_rows_dtype():
    X = _blobs(1e4)  # float32
    conditioning, _ = fit_conditioning(InMemorySource(torch.from_numpy(X), None, 1000), torch.float32)
    shift = conditioning.shift
    assert torch.equal(shift.float().double(), shift)  # a float32, so rows near it subtract it exactly
    np.testing.assert_allclose(shift.numpy(), X.astype(np.float64).mean(axis=0), rtol=1e-7)


def test_squares_beyond_float64_name_the_largest_value():
    X = np.array([[1e200], [-3e200]])
    with pytest.raises(ValueError) as error:
        KMeans(1, device="cpu").fit(X)
    assert str(error.value) == ("X's squared distances exceed float64's range (values up to 3e+200); "
                                "divide X by a constant first (k-means is unchanged by scaling).")


def _conditioning_of(X, storage):
    return Conditioning.for_moments(local_moments(InMemorySource(torch.from_numpy(X), None, 100)), storage)


def test_the_scale_is_chosen_for_the_centred_rows():
    # rows near 1e6 spread by a few units: centred, their largest magnitude (below 2**3) is
    # in float16's safe range (2**-6 to 2**14): no scaling, whatever the offset
    X = _blobs(1e6, dtype=np.float64)
    for storage in (torch.float16, torch.float32):
        conditioning = _conditioning_of(X, storage)
        assert conditioning.exponent == 0
        np.testing.assert_allclose(conditioning.shift.numpy(), X.mean(axis=0), rtol=1e-12)
    # centred near the origin but spread to 2**20: scaled by 2**-21, to a largest magnitude in [0.5, 1)
    spread = np.array([[-(2.0**20)], [2.0**20 - 1.0]])
    assert _conditioning_of(spread, torch.float16) == Conditioning(None, 21)
    # a single row is its own mean: moved onto the origin
    one = _conditioning_of(np.array([[3.0, -5.0]]), torch.float64)
    assert one.exponent == 0 and one.shift.tolist() == [3.0, -5.0]


# ------------------------------------------------------------- other paths
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_file_far_from_the_origin_fits_as_in_memory(tmp_path, suffix):
    X = _blobs(1e5, dtype=np.float64)
    path = tmp_path / f"table{suffix}"
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    in_memory = KMeans(N_CLUSTERS, init=_init(X), device="cpu").fit(X)
    streamed = KMeans(N_CLUSTERS, init=_init(X), device="cpu", chunk_size=300).fit(path)
    np.testing.assert_array_equal(streamed.labels_, in_memory.labels_)
    assert streamed.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-9)
    np.testing.assert_array_equal(streamed.predict(path), streamed.labels_)
    assert streamed.score(path) == pytest.approx(-streamed.inertia_, rel=1e-9)


def test_the_result_does_not_depend_on_the_chunk_size_far_from_the_origin():
    X = _blobs(1e5)
    runs = [KMeans(N_CLUSTERS, n_init=2, random_state=0, device="cpu", chunk_size=size).fit(X)
            for size in (97, 500, "auto")]
    for run in runs[1:]:
        np.testing.assert_array_equal(run.labels_, runs[0].labels_)
        np.testing.assert_allclose(run.cluster_centers_, runs[0].cluster_centers_, rtol=1e-6)


def test_minibatch_far_from_the_origin():
    near, far = _moved_pair(1e4, n=4000)
    params = dict(n_clusters=N_CLUSTERS, batch_size=256, random_state=0, device="cpu")
    near_fit = MiniBatchKMeans(**params).fit(near)
    far_fit = MiniBatchKMeans(**params).fit(far)
    assert _agreement(far_fit.labels_, near_fit.labels_) >= 0.999
    assert far_fit.inertia_ == pytest.approx(near_fit.inertia_, rel=1e-3)
    _assert_nearest_in_float64(far, far_fit.labels_, _exact_centers(far_fit))
    np.testing.assert_array_equal(far_fit.predict(far), far_fit.labels_)


def test_minibatch_partial_fit_keeps_the_first_batchs_conditioning():
    X = _blobs(1e4, n=3000)
    model = MiniBatchKMeans(N_CLUSTERS, random_state=0, device="cpu")
    for batch in np.array_split(X, 6):
        model.partial_fit(batch)
    shift = model._conditioning.shift
    assert shift is not None
    np.testing.assert_allclose(shift.numpy(), X[:500].astype(np.float64).mean(axis=0).astype(np.float32))
    _assert_nearest_in_float64(X, model.predict(X), _exact_centers(model))


def test_sweep_far_from_the_origin_equals_the_sweep_near_it():
    near_rows, far_rows = _moved_pair(1e5, n=1500)
    near = sweep(near_rows, k=[2, 3, 4, 5], random_state=0, device="cpu")
    far = sweep(far_rows, k=[2, 3, 4, 5], random_state=0, device="cpu")
    np.testing.assert_allclose(far.table["inertia"], near.table["inertia"], rtol=1e-4)
    np.testing.assert_allclose(far.table["silhouette"], near.table["silhouette"], atol=1e-4)
    np.testing.assert_allclose(far.table["calinski_harabasz"], near.table["calinski_harabasz"], rtol=1e-4)
    model = far.models[4]
    np.testing.assert_array_equal(model.predict(far_rows), model.labels_)
    np.testing.assert_allclose(model.cluster_centers_ - 1e5, near.models[4].cluster_centers_, atol=0.02)


def test_kmeans_plusplus_far_from_the_origin_returns_the_rows_themselves():
    X = _blobs(1e6)
    given = X.copy()
    centers, indices = kmeans_plusplus(X, N_CLUSTERS, random_state=0, device="cpu")
    np.testing.assert_array_equal(X, given)  # conditioned in a copy: the caller's rows are never written
    np.testing.assert_array_equal(centers, given[indices])
    near_centers, near_indices = kmeans_plusplus(X - np.float32(1e6), N_CLUSTERS, random_state=0, device="cpu")
    assert len(set(indices.tolist())) == N_CLUSTERS
    # the same draws up to the rounding of the moved rows: most picks agree
    assert len(set(indices.tolist()) & set(near_indices.tolist())) >= N_CLUSTERS - 1


@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e30])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_scores_at_any_offset_and_scale(offset, scale):
    from sklearn import metrics as reference

    X = _blobs(scale=scale, offset=offset * scale)
    labels = KMeans(N_CLUSTERS, random_state=0, device="cpu").fit(X).labels_
    unit = np.asarray(X, dtype=np.float64) / scale - offset
    assert float(metrics.silhouette_score(X, labels, device="cpu")) == pytest.approx(
        reference.silhouette_score(unit, labels), abs=1e-5)
    assert metrics.calinski_harabasz_score(X, labels, device="cpu") == pytest.approx(
        reference.calinski_harabasz_score(unit, labels), rel=1e-4)
    assert metrics.davies_bouldin_score(X, labels, device="cpu") == pytest.approx(
        reference.davies_bouldin_score(unit, labels), rel=1e-4)


# -------------------------------------------------------------- the mechanism
def test_centred_data_is_neither_moved_nor_copied():
    X = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    moments = local_moments(InMemorySource(torch.from_numpy(X), None, 100))
    conditioning = Conditioning.for_moments(moments, torch.float32, torch.float32)
    assert conditioning.is_identity
    tensor = torch.from_numpy(X)
    source = InMemorySource(tensor, None, 100)
    assert source.conditioned(conditioning) is source


def test_the_callers_rows_are_never_written():
    X = _blobs(1e4)
    before = X.copy()
    tensor = torch.from_numpy(X)
    KMeans(N_CLUSTERS, random_state=0, device="cpu").fit(tensor)
    KMeans(N_CLUSTERS, random_state=0, device="cpu").fit(X)
    np.testing.assert_array_equal(X, before)


def test_a_copy_made_for_the_fit_is_conditioned_in_place():
    rows = torch.from_numpy(_blobs(1e4, dtype=np.float64))
    source = InMemorySource(rows.clone(), None, 100, owns_rows=True)
    moments = local_moments(source)
    conditioning = Conditioning.for_moments(moments, torch.float64, torch.float64)
    conditioned = source.conditioned(conditioning)
    assert conditioned.X.data_ptr() == source.X.data_ptr()
    np.testing.assert_allclose(conditioned.X.mean(dim=0).numpy(), 0.0, atol=1e-9)


def test_the_shift_is_the_mean_rounded_to_the_rows_dtype_so_rows_move_exactly():
    X = _blobs(1e4)
    moments = local_moments(InMemorySource(torch.from_numpy(X), None, 1000))
    conditioning = Conditioning.for_moments(moments, torch.float32, torch.float32)
    moved = conditioning.rows(torch.from_numpy(X))
    # Sterbenz: a row within a factor of two of the shift subtracts it exactly
    exact = X.astype(np.float64) - conditioning.shift.numpy()
    np.testing.assert_array_equal(moved.numpy().astype(np.float64), exact)


def test_moments_merge_exactly_across_holders():
    X = torch.from_numpy(_blobs(1e3, dtype=np.float64))
    whole = local_moments(InMemorySource(X, None, 10_000))
    parts = [local_moments(InMemorySource(X[a:b], None, 77)) for a, b in ((0, 700), (700, 701), (701, 2000))]
    merged = parts[0].merged(parts[1]).merged(parts[2])
    np.testing.assert_allclose(merged.mean.numpy(), whole.mean.numpy(), rtol=1e-14)
    np.testing.assert_allclose(merged.sum_sq_dev.numpy(), whole.sum_sq_dev.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(merged.minimum.numpy(), X.min(dim=0).values.numpy())
    np.testing.assert_array_equal(merged.maximum.numpy(), X.max(dim=0).values.numpy())
    empty = RowMoments.unpacked(whole.packed() * 0)
    assert whole.merged(empty._replace(count=0.0)) is whole
    # a holder of one row merges as any other, first or not; the merge keeps the prescale
    one_first = parts[1].merged(parts[0]).merged(parts[2])
    np.testing.assert_allclose(one_first.mean.numpy(), whole.mean.numpy(), rtol=1e-14)
    assert one_first.count == 2000
    assert parts[0]._replace(prescale=7).merged(parts[2]._replace(prescale=7)).prescale == 7


def test_every_holders_moments_are_merged_in_rank_order():
    # three holders' packed moments, as torch.distributed's all_gather stacks them on every rank
    X = torch.from_numpy(_blobs(1e3, dtype=np.float64))
    holders = [local_moments(InMemorySource(X[a:b], None, 100)) for a, b in ((0, 500), (500, 1200), (1200, 2000))]

    class Gathered:
        @staticmethod
        def all_gather(packed):
            return torch.stack([moments.packed() for moments in holders])

    merged = merged_moments(Gathered(), holders[0])
    assert merged.count == 2000
    np.testing.assert_allclose(merged.mean.numpy(), X.mean(dim=0).numpy(), rtol=1e-14)
    np.testing.assert_allclose(merged.sum_sq_dev.numpy(), ((X - X.mean(dim=0)) ** 2).sum(dim=0).numpy(), rtol=1e-10)
    np.testing.assert_array_equal(merged.minimum.numpy(), X.min(dim=0).values.numpy())


def test_the_moments_of_no_rows():
    # a torch.distributed rank may hold no rows: its moments are the empty ones every merge skips
    moments = local_moments(InMemorySource(torch.empty(0, 2, dtype=torch.float64), None, 10), prescale=3)
    assert moments.count == 0 and moments.prescale == 3
    inf = float("inf")
    for values, expected in ((moments.mean, [0.0, 0.0]), (moments.sum_sq_dev, [0.0, 0.0]),
                             (moments.minimum, [inf, inf]), (moments.maximum, [-inf, -inf])):
        assert values.dtype == torch.float64 and values.tolist() == expected


def test_the_tolerance_is_tol_times_the_mean_variance_in_conditioned_units():
    # scikit-learn's tol * mean(var(X, axis=0)); conditioned distances are 4**exponent smaller
    X = np.array([[0.0, 0.0], [2.0, 4.0], [4.0, 8.0]])
    moments = local_moments(InMemorySource(torch.from_numpy(X), None, 10))
    mean_variance = float(np.mean(np.var(X, axis=0)))  # (8/3 + 32/3) / 2
    for tol in (0.0, 1e-4, 1.0):
        assert Conditioning().tolerance(moments, tol) == pytest.approx(tol * mean_variance, rel=1e-15)
        assert Conditioning(exponent=3).tolerance(moments, tol) == pytest.approx(tol * mean_variance / 64, rel=1e-15)


def test_rows_are_moved_in_float64_and_rounded_once_to_their_storage():
    # 16-bit rows minus the shift leave float16's range (-64992 - 51000) before the scaling
    # brings them back: moved in float16 they would become infinite
    X = torch.tensor([[64000.0], [-64992.0], [51008.0]], dtype=torch.float16)
    conditioning = Conditioning(shift=torch.tensor([51000.0], dtype=torch.float64), exponent=17)
    expected = ((X.double() - 51000.0) * 2.0**-17).half()
    assert torch.equal(conditioning.rows(X), expected) and torch.isfinite(expected).all()


def test_rows_beyond_the_storage_range_once_moved_are_refused_with_a_message():
    # a prediction far from the fitted rows: moved as they were, it leaves float16's range
    conditioning = Conditioning(shift=torch.tensor([-1e5], dtype=torch.float64), exponent=0)
    with pytest.raises(ValueError) as error:
        conditioning.rows(torch.tensor([[1e5]], dtype=torch.float64), torch.float16)
    assert str(error.value) == (
        "X has values beyond the range of float16 once moved and scaled as the fitted rows were; "
        "they lie too far from the data the model was fitted on.")


def test_centres_come_in_conditioned_units_in_the_dtype_asked_for():
    centers = torch.tensor([[10.5, 3.0], [12.5, -1.0]], dtype=torch.float64)
    moved = Conditioning(shift=torch.tensor([10.0, 1.0], dtype=torch.float64), exponent=1)
    expected = torch.tensor([[0.25, 1.0], [1.25, -1.0]])  # (c - shift) / 2
    for conditioning, wanted in ((moved, expected), (Conditioning(), centers.float())):
        inside = conditioning.centers_in(centers, torch.float32)
        assert inside.dtype == torch.float32 and torch.equal(inside, wanted)
        assert conditioning.centers_in(centers.float()).dtype == torch.float32  # by default, the centres' own


# ----------------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_far_from_the_origin_on_cuda(offset):
    X = _blobs(offset)
    on_cpu = KMeans(N_CLUSTERS, init=_init(X), device="cpu").fit(X)
    on_cuda = KMeans(N_CLUSTERS, init=_init(X), device="cuda").fit(X)
    np.testing.assert_array_equal(on_cuda.labels_, on_cpu.labels_)
    assert on_cuda.inertia_ == pytest.approx(on_cpu.inertia_, rel=1e-5)
    _assert_nearest_in_float64(X, on_cuda.labels_, _exact_centers(on_cuda))
    np.testing.assert_array_equal(on_cuda.predict(X), on_cuda.labels_)


@pytest.mark.gpu
def test_far_from_the_origin_streamed_from_host_memory(monkeypatch):
    from gpukmeans.sources import factory

    X = _blobs(1e5)
    in_memory = KMeans(N_CLUSTERS, init=_init(X), device="cuda").fit(X)
    monkeypatch.setattr(factory, "fits_on_device", lambda n_bytes, device: False)
    streamed = KMeans(N_CLUSTERS, init=_init(X), device="cuda", chunk_size=300).fit(X)
    np.testing.assert_array_equal(streamed.labels_, in_memory.labels_)
    assert streamed.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-6)
