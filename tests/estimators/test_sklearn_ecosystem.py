"""The estimators where scikit-learn's users work: pipelines with pandas output, scikit-learn's
parameters, persistence without pickle (skops), the equivalent scikit-learn estimator, a
light import and the environment report."""

import importlib.util
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import torch
from sklearn import cluster as skcluster
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import gpukmeans
from gpukmeans import KMeans, MiniBatchKMeans
from gpukmeans._environment import OPTIONAL_PARTS

MALL_FEATURES = ["Age", "Annual Income (k$)", "Spending Score (1-100)"]

ESTIMATORS = {
    "kmeans": lambda **kw: KMeans(3, random_state=0, device="cpu", **kw),
    "minibatchkmeans": lambda **kw: MiniBatchKMeans(3, batch_size=64, random_state=0, device="cpu", **kw),
}


@pytest.fixture(scope="module")
def mall():
    from conftest import MALL_CSV

    return pd.read_csv(MALL_CSV)[MALL_FEATURES].astype(np.float64)


@pytest.fixture(scope="module")
def far_rows():
    """Rows far from the origin compared with their spread: the fit centres them first."""
    rng = np.random.default_rng(5)
    return rng.normal(size=(400, 4)) * [1.0, 2.0, 0.5, 1.0] + 1_000.0


# ----------------------------------------------------------- set_output, feature names
@pytest.mark.parametrize("prefix", ESTIMATORS)
def test_a_pandas_pipeline_gives_named_distance_columns(mall, prefix):
    def pipeline():
        return Pipeline([("scale", StandardScaler()), ("km", ESTIMATORS[prefix]())])

    frame = pipeline().set_output(transform="pandas").fit(mall).transform(mall)
    plain = pipeline().fit(mall).transform(mall)
    assert isinstance(frame, pd.DataFrame) and isinstance(plain, np.ndarray)
    assert list(frame.columns) == [f"{prefix}0", f"{prefix}1", f"{prefix}2"]
    assert frame.index.equals(mall.index)
    np.testing.assert_array_equal(frame.to_numpy(), plain)


@pytest.mark.parametrize("prefix", ESTIMATORS)
def test_feature_names_out_follow_scikit_learn(mall, prefix):
    model = ESTIMATORS[prefix]()
    with pytest.raises(NotFittedError):
        model.get_feature_names_out()
    model.fit(mall)
    reference = getattr(skcluster, type(model).__name__)(3, random_state=0, n_init=1).fit(mall)
    assert model.get_feature_names_out().tolist() == reference.get_feature_names_out().tolist()
    assert model.fit_transform(mall).shape == (len(mall), 3)


# ------------------------------------------------------ scikit-learn's parameters
def test_algorithm_lloyd_is_the_default_and_elkan_warns_that_lloyd_runs(far_rows):
    default = KMeans(4, random_state=1, device="cpu").fit(far_rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lloyd = KMeans(4, algorithm="lloyd", random_state=1, device="cpu").fit(far_rows)
    with pytest.warns(UserWarning, match="algorithm='elkan' runs Lloyd's algorithm") as caught:
        elkan = KMeans(4, algorithm="elkan", random_state=1, device="cpu").fit(far_rows)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    np.testing.assert_array_equal(lloyd.labels_, default.labels_)
    np.testing.assert_array_equal(elkan.cluster_centers_, lloyd.cluster_centers_)


@pytest.mark.parametrize("name, value", [("algorithm", "full"), ("algorithm", None), ("copy_x", "yes")])
def test_scikit_learns_parameters_are_validated_at_fit(far_rows, name, value):
    model = KMeans(2, device="cpu", **{name: value})  # construction only stores them
    with pytest.raises(ValueError, match=f"'{name}' parameter of KMeans"):
        model.fit(far_rows)


def _as_input(rows, kind):
    if kind == "float32":
        return rows.astype(np.float32)
    if kind == "tensor":
        return torch.from_numpy(rows.copy())
    return rows.copy()


@pytest.mark.parametrize("kind", ["float64", "float32", "tensor"])
@pytest.mark.parametrize("copy_x", [True, False])
def test_copy_x_either_way_leaves_the_callers_rows_as_they_were(far_rows, kind, copy_x):
    X = _as_input(far_rows, kind)
    before = X.numpy().copy() if kind == "tensor" else X.copy()
    model = KMeans(4, copy_x=copy_x, random_state=2, device="cpu").fit(X)
    assert not model._fitted_conditioning().is_identity  # the rows were centred (on a copy)
    model.predict(X)
    model.transform(X)
    model.score(X)
    np.testing.assert_array_equal(np.asarray(X), before)
    other = KMeans(4, copy_x=not copy_x, random_state=2, device="cpu").fit(X)
    np.testing.assert_array_equal(np.asarray(other.labels_), np.asarray(model.labels_))


# ------------------------------------------------------------ skops and pickle
def _fitted(prefix, X):
    model = ESTIMATORS[prefix]()
    return model.fit(X)


@pytest.mark.parametrize("prefix", ESTIMATORS)
def test_skops_round_trips_a_fit_trusting_only_the_estimator(mall, prefix):
    model = _fitted(prefix, mall)
    data = sio.dumps(model)
    assert sio.get_untrusted_types(data=data) == [f"{type(model).__module__}.{type(model).__name__}"]
    loaded = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    assert loaded.feature_names_in_.tolist() == MALL_FEATURES and loaded.inertia_ == model.inertia_
    new = mall.sample(50, random_state=0) + 0.5
    np.testing.assert_array_equal(loaded.predict(new), model.predict(new))
    np.testing.assert_array_equal(loaded.transform(new), model.transform(new))
    assert loaded.score(new) == model.score(new)


def test_a_mini_batch_fit_loaded_from_skops_goes_on_as_the_original(far_rows):
    first, second = far_rows[:200], far_rows[200:]
    model = MiniBatchKMeans(3, random_state=0, device="cpu").partial_fit(first)
    data = sio.dumps(model)
    loaded = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    model.partial_fit(second)
    loaded.partial_fit(second)
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(loaded.counts_, model.counts_)


def test_a_fit_on_tensors_keeps_tensors_through_pickle(far_rows):
    X = torch.from_numpy(far_rows)
    model = KMeans(3, random_state=0, device="cpu").fit(X)
    loaded = pickle.loads(pickle.dumps(model))
    assert isinstance(loaded.cluster_centers_, torch.Tensor)
    prediction = loaded.predict(X[:20])
    assert isinstance(prediction, torch.Tensor)
    assert torch.equal(prediction, model.predict(X[:20]))


# ------------------------------------------------------------------ to_sklearn
def _check_equivalent(model, sklearn_model, X_new):
    """The same labels; distances and scores as close as scikit-learn's arithmetic in the
    rows' dtype allows (it expands the squared distance, gpukmeans takes differences)."""
    assert type(sklearn_model) is getattr(skcluster, type(model).__name__)
    np.testing.assert_array_equal(sklearn_model.cluster_centers_, np.asarray(model.cluster_centers_))
    np.testing.assert_array_equal(sklearn_model.predict(X_new), np.asarray(model.predict(X_new)))
    rtol = 1e-9 if sklearn_model.cluster_centers_.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(sklearn_model.transform(X_new), np.asarray(model.transform(X_new)), rtol=rtol)
    assert sklearn_model.score(X_new) == pytest.approx(model.score(X_new), rel=rtol)


@pytest.mark.parametrize("prefix", ESTIMATORS)
def test_to_sklearn_predicts_as_the_fit_on_mall(mall, prefix):
    model = _fitted(prefix, mall)
    sklearn_model = model.to_sklearn()
    new = pd.DataFrame(np.random.default_rng(1).uniform([18, 15, 1], [70, 137, 99], size=(500, 3)),
                       columns=MALL_FEATURES)
    _check_equivalent(model, sklearn_model, new)
    np.testing.assert_array_equal(sklearn_model.labels_, model.labels_)
    assert sklearn_model.labels_.dtype == np.int32
    assert (sklearn_model.inertia_, sklearn_model.n_iter_) == (model.inertia_, model.n_iter_)
    assert sklearn_model.feature_names_in_.tolist() == MALL_FEATURES and sklearn_model.n_features_in_ == 3
    assert sklearn_model.get_feature_names_out().tolist() == model.get_feature_names_out().tolist()
    with pytest.raises(ValueError, match="feature names"):
        sklearn_model.predict(new.rename(columns={"Age": "age"}))
    assert sio.loads(sio.dumps(sklearn_model), trusted=[]).predict(new).tolist() == model.predict(new).tolist()


@pytest.mark.parametrize("prefix", ESTIMATORS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_to_sklearn_predicts_as_the_fit_on_random_rows(prefix, dtype):
    rng = np.random.default_rng(7)
    X = (rng.normal(size=(1_000, 5)) + rng.integers(0, 4, size=(1_000, 1)) * 3.0).astype(dtype)
    model = _fitted(prefix, X)
    sklearn_model = model.to_sklearn()
    assert sklearn_model.cluster_centers_.dtype == dtype
    _check_equivalent(model, sklearn_model, rng.normal(scale=4.0, size=(2_000, 5)).astype(dtype))


def test_to_sklearn_of_a_tensor_fit_and_of_given_centres(far_rows):
    fitted = KMeans(3, init="k-means||", random_state=0, device="cpu").fit(torch.from_numpy(far_rows))
    sklearn_model = fitted.to_sklearn()
    assert isinstance(sklearn_model.cluster_centers_, np.ndarray) and sklearn_model.init == "k-means++"
    assert sklearn_model.labels_.tolist() == fitted.labels_.tolist()
    assert sklearn_model.predict(far_rows).tolist() == fitted.predict(torch.from_numpy(far_rows)).tolist()
    given = KMeans.from_centers(far_rows[:3], device="cpu").to_sklearn()
    assert not hasattr(given, "labels_")
    assert given.predict(far_rows[:3]).tolist() == [0, 1, 2]


def test_a_mini_batch_fit_in_scikit_learn_goes_on_with_partial_fit(far_rows):
    model = MiniBatchKMeans(3, random_state=0, device="cpu").partial_fit(far_rows[:200])
    sklearn_model = model.to_sklearn()
    np.testing.assert_array_equal(sklearn_model._counts, model.counts_)
    sklearn_model.partial_fit(far_rows[200:])
    assert sklearn_model.n_steps_ == model.n_steps_ + 1


def test_to_sklearn_needs_a_fit():
    with pytest.raises(NotFittedError):
        KMeans(2).to_sklearn()


# ------------------------------------------------------------- import and info
OPTIONAL_AT_IMPORT = ("pyarrow", "matplotlib", "typer", "rich")


def _python(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_import_gpukmeans_loads_no_optional_library():
    loaded = _python(
        "import sys, gpukmeans\n"
        f"print(sorted(m for m in {OPTIONAL_AT_IMPORT + ('torch', 'sklearn', 'numba')!r} if m in sys.modules))"
    )
    assert loaded == "[]"


def test_fits_and_scores_import_no_optional_library_themselves():
    """pandas, which scikit-learn imports, loads pyarrow: what counts is who imports it.
    The segmentation and the plots import their libraries where they use them."""
    importers = _python(
        "import importlib.abc, sys, traceback\n"
        "found = set()\n"
        "class Watch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name.split('.')[0] in {OPTIONAL_AT_IMPORT!r}:\n"
        "            caller = [f for f in traceback.extract_stack() if 'importlib' not in f.filename][-2]\n"
        "            if '/gpukmeans/' in caller.filename and 'site-packages' not in caller.filename:\n"
        "                found.add(caller.filename.split('/gpukmeans/')[-1])\n"
        "sys.meta_path.insert(0, Watch())\n"
        "import numpy as np\n"
        "import gpukmeans.plots, gpukmeans.segmentation.pipeline\n"
        "from gpukmeans import KMeans, MiniBatchKMeans, metrics, sweep\n"
        "X = np.random.default_rng(0).normal(size=(200, 3))\n"
        "labels = KMeans(3, device='cpu').fit(X).labels_\n"
        "MiniBatchKMeans(3, device='cpu').fit(X)\n"
        "metrics.silhouette_score(X, labels, sample_size=100)\n"
        "sweep(X, k=range(2, 4), device='cpu')\n"
        "print(sorted(found))\n"
    )
    assert importers == "[]"


def test_info_lists_every_optional_part():
    facts = gpukmeans.info()
    expected = {"numba", "triton", "cupy", "pyarrow", "matplotlib", "kneed", "safetensors", "rich", "typer"}
    assert set(facts["optional"]) == set(OPTIONAL_PARTS) == expected
    for name, installed in facts["optional"].items():
        assert installed is (importlib.util.find_spec(name) is not None)
        assert facts["optional_uses"][name]
    assert facts["optional"]["numba"] is True and facts["versions"]["gpukmeans"] == gpukmeans.__version__
