"""The estimator: :class:`KMeans`, and the public :func:`kmeans_plusplus`.

The estimator validates and orchestrates; the passes over the data live in
``_init`` and ``_lloyd`` and the arithmetic in ``kernels``.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _arrays
from ._device import auto_chunk_size, resolve_device
from ._init import kmeans_parallel, kmeans_plusplus_tensor, random_rows_init
from ._lloyd import exact_sq_distances, lloyd, padded_sq_norms
from ._random import new_seed
from ._sources import InMemorySource
from .kernels import assign_accumulate


class KMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """K-means clustering on PyTorch, on a CUDA GPU or the CPU.

    A drop-in for :class:`sklearn.cluster.KMeans` (Lloyd's algorithm) that runs its
    passes in memory-bounded chunks of rows on a torch device.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (k).
    init : {"k-means++", "random", "k-means||"}, callable or array of shape (k, d)
        "k-means++" is scikit-learn's greedy k-means++; "random" picks k rows
        (weighted by ``sample_weight``); "k-means||" is the scalable k-means++ of
        Bahmani et al. (2012), a few passes instead of k, for very large tables.
        A callable is called as ``init(X, n_clusters, random_state)`` on numpy data.
    n_init : "auto" or int, default="auto"
        Restarts; the one with the lowest inertia is kept. "auto" is 10 for
        "random" and 1 otherwise. Restarts share each pass over the data.
    max_iter : int, default=300
        Most Lloyd iterations per restart.
    tol : float, default=1e-4
        Convergence when the squared centre shift is at most ``tol`` times the mean
        feature variance of X; a fit also stops as soon as no label changes.
    random_state : int, RandomState instance or None
        Seed of the initialisation.
    device : "auto", "cpu", "cuda", "cuda:N" or torch.device, default="auto"
        Where to compute. "auto" takes CUDA when available, otherwise the CPU.
    chunk_size : "auto" or int, default="auto"
        Rows per pass chunk; "auto" sizes it from free device memory. Results do not
        depend on it beyond floating-point summation order.
    verbose : int, default=0
        At 1 or more, says which device runs and reports progress per iteration.

    Attributes
    ----------
    cluster_centers_ : array of shape (n_clusters, n_features)
        In the input's dtype (float32 or float64; other types become float64).
    labels_ : array of shape (n_samples,)
    inertia_ : float
        Weighted sum of squared distances of samples to their closest centre.
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : array of str, when X was a DataFrame with string columns.
    device_ : str
        Where the fit ran, e.g. "cpu" or "cuda:0".

    Notes
    -----
    Outputs (fitted arrays, ``predict``, ``transform``) are numpy arrays, except
    when the input was a torch tensor (a tensor on the input's device) or a CuPy
    array (a CuPy array, shared through DLPack).

    Examples
    --------
    >>> import numpy as np
    >>> from gpukmeans import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, random_state=0, device="cpu").fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    >>> km.predict([[0, 0], [12, 3]]).tolist() == [km.labels_[0], km.labels_[3]]
    True
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random", "k-means||"}), callable, "array-like"],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str, torch.device, None],
        "chunk_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        random_state=None,
        device="auto",
        chunk_size="auto",
        verbose=0,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.chunk_size = chunk_size
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ----------------------------------------------------------------- fitting
    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering.

        Parameters
        ----------
        X : array-like, DataFrame, torch tensor or CuPy array of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row: counts in the initialisation, the update, the inertia.

        Returns
        -------
        self
        """
        self._validate_params()
        device = resolve_device(self.device)
        if self.verbose:
            print(f"gpukmeans: fitting on {device}")
        data, output = self._validate_data(X, device, reset=True)
        n_samples = data.shape[0]
        if n_samples < self.n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}.")
        weights = self._validate_sample_weight(sample_weight, data)
        init_centers = self._validate_init(data)
        n_init = self._resolve_n_init(init_centers)
        chunk_size = self._resolve_chunk_size(data, n_init)
        source = InMemorySource(data, weights, chunk_size)
        random_state = check_random_state(self.random_state)

        starts = [self._initial_centers(source, init_centers, random_state) for _ in range(n_init)]
        if self.verbose:
            print("Initialization complete")
        result = lloyd(
            source,
            starts,
            max_iter=self.max_iter,
            tol=_absolute_tolerance(source, self.tol),
            verbose=self.verbose,
        )
        best = int(torch.argmin(result.inertia))
        labels = result.labels[:, best].to(torch.int32)
        n_distinct = int((torch.bincount(labels, minlength=self.n_clusters) > 0).sum())
        if n_distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({n_distinct}) found smaller than "
                f"n_clusters ({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._centers = result.centers[best]
        self._output = output
        self.device_ = str(device if device.type == "cpu" else data.device)
        self.cluster_centers_ = _arrays.to_output(self._centers, output)
        self.labels_ = _labels_output(labels, output)
        self.inertia_ = float(result.inertia[best])
        self.n_iter_ = int(result.n_iter[best])
        return self

    # -------------------------------------------------------------- inference
    def predict(self, X, sample_weight=None):
        """Index of the closest centre for each row of X."""
        labels, _, output = self._assign(X)
        return _labels_output(labels, output)

    def transform(self, X):
        """Euclidean distances from each row of X to every centre, shape (n, k)."""
        check_is_fitted(self)
        data, output = self._validate_data(X, self._fit_device(), reset=False)
        centers = self._centers
        # float64 keeps distances of rows near a centre exact even far from the origin.
        data64, centers64 = data.double(), centers.double()
        chunk = self._resolve_chunk_size(data, 1)
        parts = []
        for start in range(0, data.shape[0], chunk):
            rows = data64[start : start + chunk]
            parts.append(torch.cdist(rows, centers64, compute_mode="donot_use_mm_for_euclid_dist"))
        return _arrays.to_output(torch.cat(parts).to(data.dtype), output)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the weighted inertia of X against the fitted centres."""
        labels, data, _ = self._assign(X)
        weights = self._validate_sample_weight(sample_weight, data)
        distances = exact_sq_distances(data, self._centers[None], labels[:, None], weights)
        return -float(distances.sum())

    # ---------------------------------------------------------------- helpers
    def _fit_device(self) -> torch.device:
        return torch.device(self.device_)

    def _assign(self, X):
        check_is_fitted(self)
        data, output = self._validate_data(X, self._fit_device(), reset=False)
        centers = self._centers[None]
        norms = padded_sq_norms(centers, torch.ones(centers.shape[:2], dtype=torch.bool, device=centers.device))
        chunk = self._resolve_chunk_size(data, 1)
        centers = centers.to(data.dtype)
        norms = norms.to(data.dtype)
        labels = torch.cat(
            [
                assign_accumulate(data[start : start + chunk], centers, norms, accumulate=False).labels[:, 0]
                for start in range(0, data.shape[0], chunk)
            ]
        )
        return labels, data, output

    def _validate_data(self, X, device, *, reset):
        """X as a float tensor on ``device``, and how results go back to the caller."""
        if _arrays.is_tensor_like(X):
            tensor, output = _arrays.tensor_from_tensor_like(X)
            if reset:
                self.n_features_in_ = tensor.shape[1] if tensor.dim() == 2 else None
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            expected = None if reset else self.n_features_in_
            tensor = _arrays.check_tensor_2d(tensor, n_features=expected)
            return _arrays.to_device(tensor, device), output
        array = validate_data(
            self, X, dtype=[np.float64, np.float32], order="C", accept_large_sparse=False, reset=reset
        )
        return _arrays.numpy_to_tensor(array, device), _arrays.NUMPY_OUTPUT

    def _validate_sample_weight(self, sample_weight, data):
        """Weights as a tensor in X's dtype and device, or None for unit weights."""
        if sample_weight is None:
            return None
        if isinstance(sample_weight, torch.Tensor):
            weights = sample_weight.detach().to(device=data.device, dtype=data.dtype).reshape(-1)
            if weights.shape[0] != data.shape[0]:
                raise ValueError(
                    f"sample_weight.shape == {tuple(sample_weight.shape)}, expected ({data.shape[0]},)!"
                )
            if not bool(torch.isfinite(weights).all()):
                raise ValueError("Input sample_weight contains NaN or infinity.")
        else:
            if _arrays.is_cupy_array(sample_weight):
                sample_weight = torch.from_dlpack(sample_weight).cpu().numpy()
            checked = _check_sample_weight(sample_weight, np.empty((data.shape[0], 0)), dtype=np.float64)
            weights = torch.from_numpy(checked).to(device=data.device, dtype=data.dtype)
        if bool((weights < 0).any()):
            raise ValueError("sample_weight must be non-negative; found negative weights.")
        if not bool((weights > 0).any()):
            raise ValueError("sample_weight must have at least one positive weight.")
        return weights

    def _validate_init(self, data):
        """The init array as a tensor in X's dtype, or None for a named or callable init."""
        if isinstance(self.init, str) or callable(self.init):
            return None
        if _arrays.is_tensor_like(self.init):
            init, _ = _arrays.tensor_from_tensor_like(self.init, name="init")
        else:
            init = torch.as_tensor(np.array(self.init, dtype=np.float64, copy=True))
        init = init.detach().to(device=data.device, dtype=data.dtype).clone()
        expected = (self.n_clusters, data.shape[1])
        if tuple(init.shape) != expected:
            raise ValueError(
                f"The shape of the initial centers {tuple(init.shape)} does not match "
                f"the number of clusters {self.n_clusters} and features {data.shape[1]}: "
                f"expected {expected}."
            )
        if not bool(torch.isfinite(init).all()):
            raise ValueError("Input init contains NaN or infinity.")
        return init

    def _resolve_n_init(self, init_centers) -> int:
        if self.n_init == "auto":
            return 10 if isinstance(self.init, str) and self.init == "random" else 1
        if init_centers is not None and self.n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{self.__class__.__name__} instead of n_init={self.n_init}.",
                RuntimeWarning,
                stacklevel=3,
            )
            return 1
        return self.n_init

    def _resolve_chunk_size(self, data, n_groups) -> int:
        if self.chunk_size != "auto":
            return int(self.chunk_size)
        return auto_chunk_size(data.shape[1], self.n_clusters * n_groups, data.dtype, data.device)

    def _initial_centers(self, source, init_centers, random_state):
        if init_centers is not None:
            return init_centers
        seed = new_seed(random_state)
        generator = torch.Generator().manual_seed(seed)
        if callable(self.init):
            numpy_X = source.X.cpu().numpy()
            centers = np.asarray(self.init(numpy_X, self.n_clusters, random_state), dtype=numpy_X.dtype)
            if centers.shape != (self.n_clusters, source.n_features):
                raise ValueError(
                    f"The init callable returned centres of shape {centers.shape}; expected "
                    f"{(self.n_clusters, source.n_features)}."
                )
            return torch.from_numpy(centers).to(source.device)
        if self.init == "k-means++":
            return kmeans_plusplus_tensor(source, self.n_clusters, generator)[0]
        if self.init == "random":
            return random_rows_init(source, self.n_clusters, seed)[0]
        return kmeans_parallel(source, self.n_clusters, seed, generator)


def _absolute_tolerance(source, tol) -> float:
    """scikit-learn's tolerance: ``tol`` times the mean per-feature variance of X (unweighted)."""
    if tol == 0:
        return 0.0
    count = 0
    mean = torch.zeros(source.n_features, dtype=torch.float64, device=source.device)
    sum_sq_dev = torch.zeros_like(mean)
    for _, rows, _ in source.chunks():
        # Chan et al.'s pairwise merge keeps the variance exact in one pass of chunks.
        rows = rows.double()
        m = rows.shape[0]
        chunk_mean = rows.mean(dim=0)
        chunk_sq_dev = ((rows - chunk_mean) ** 2).sum(dim=0)
        delta = chunk_mean - mean
        total = count + m
        mean += delta * (m / total)
        sum_sq_dev += chunk_sq_dev + delta**2 * (count * m / total)
        count = total
    return float((sum_sq_dev / count).mean()) * tol


def _labels_output(labels: torch.Tensor, output: _arrays.OutputKind):
    """Labels as int32 numpy (as scikit-learn), or int64 tensors for torch and CuPy callers."""
    if output.kind == "numpy":
        return labels.to(torch.int32).cpu().numpy()
    return _arrays.to_output(labels.long(), output)


def kmeans_plusplus(
    X, n_clusters, *, sample_weight=None, x_squared_norms=None, random_state=None, n_local_trials=None, device="auto"
):
    """Initial centres by greedy k-means++, like :func:`sklearn.cluster.kmeans_plusplus`.

    Parameters
    ----------
    X : array-like, torch tensor or CuPy array of shape (n_samples, n_features)
    n_clusters : int
    sample_weight : array-like of shape (n_samples,), optional; zero-weight rows are never chosen.
    x_squared_norms : ignored, accepted for scikit-learn compatibility.
    random_state : int, RandomState instance or None
    n_local_trials : int, default ``2 + int(log(n_clusters))``
    device : "auto", "cpu" or "cuda"

    Returns
    -------
    centers : (n_clusters, n_features), same type as X (numpy for array-likes)
    indices : (n_clusters,) row indices of the chosen centres

    Examples
    --------
    >>> import numpy as np
    >>> from gpukmeans import kmeans_plusplus
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> centers, indices = kmeans_plusplus(X, n_clusters=2, random_state=0, device="cpu")
    >>> centers.shape, sorted(X[indices, 0].tolist())
    ((2, 2), [1, 10])
    """
    estimator = KMeans(n_clusters=n_clusters, random_state=random_state, device=device)
    estimator._validate_params()
    if n_local_trials is not None and (not isinstance(n_local_trials, Integral) or n_local_trials < 1):
        raise ValueError(f"n_local_trials must be a positive integer, got {n_local_trials!r}.")
    data, output = estimator._validate_data(X, resolve_device(device), reset=True)
    if data.shape[0] < n_clusters:
        raise ValueError(f"n_samples={data.shape[0]} should be >= n_clusters={n_clusters}.")
    weights = estimator._validate_sample_weight(sample_weight, data)
    source = InMemorySource(data, weights, estimator._resolve_chunk_size(data, 1))
    generator = torch.Generator().manual_seed(new_seed(check_random_state(random_state)))
    centers, indices = kmeans_plusplus_tensor(source, n_clusters, generator, n_local_trials)
    if output.kind == "numpy":
        return _arrays.to_output(centers, output), indices.numpy()
    return _arrays.to_output(centers, output), _arrays.to_output(indices, output)
