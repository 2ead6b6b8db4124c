"""The estimator: :class:`KMeans`, and the public :func:`kmeans_plusplus`.

The estimator validates and orchestrates; the passes over the data live in
``_init`` and ``_lloyd``, the arithmetic in ``kernels``, and where the rows come from
(memory, host memory streamed to a GPU, files, torch.distributed ranks) in the data
sources. :class:`_BaseKMeans` holds what :class:`KMeans` and
:class:`~gpukmeans.MiniBatchKMeans` share: building a data source from any input,
validation, and the inference methods.
"""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions, make_constraint
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _arrays
from ._conditioning import Conditioning, check_squares_in_range, fit_conditioning, local_moments
from ._device import auto_chunk_size, resolve_device
from ._distributed import DistributedSource, Exchange, active_group, local_cuda_device
from ._file_sources import FileSource, is_path, open_table, shard_bounds
from ._init import kmeans_parallel, kmeans_plusplus_tensor, random_rows_init
from ._lloyd import lloyd, padded_sq_norms, weighted_sum
from ._random import new_seed
from ._sources import InMemorySource
from ._storage import DTYPE_CONSTRAINTS, compute_dtype, resolve_storage_dtype
from ._streaming import HostStreamSource, fits_on_device

# Storage dtypes as numbers, so that ranks can compare theirs in one all-gather.
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_DTYPE_NAMES = {code: str(dtype).removeprefix("torch.") for dtype, code in _DTYPE_CODES.items()}


class _BaseKMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """Shared by the k-means estimators: inputs to data sources, validation, inference."""

    # The parameters every k-means estimator takes; each subclass adds its own.
    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random", "k-means||"}), callable, "array-like"],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": [str, torch.device, None],
        "chunk_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "dtype": DTYPE_CONSTRAINTS,
    }

    def _validate_params(self):
        """scikit-learn's parameter validation, and a clear error for a bool where a number
        is expected (``True`` is an int to Python, and would reach the engine as 1)."""
        params = self.get_params(deep=False)
        for name, constraints in self._parameter_constraints.items():
            numeric = [c for c in constraints if isinstance(c, Interval)]
            if numeric and isinstance(params.get(name), (bool, np.bool_)):
                allowed = " or ".join(str(make_constraint(c)) for c in constraints if c is not None)
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be {allowed}. Got {params[name]!r} instead."
                )
        super()._validate_params()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -------------------------------------------------------------- inference
    def predict(self, X, sample_weight=None):
        """Index of the closest centre for each row of X (an array, tensor or path)."""
        source, output = self._inference_source(X)
        try:
            labels = self._labels_of(source)
        finally:
            source.close()
        return _labels_output(labels, output)

    def transform(self, X):
        """Euclidean distances from each row of X to every centre, shape (n, k)."""
        source, output = self._inference_source(X)
        # By direct difference in float64, on the conditioned rows: exact for rows near a
        # centre, wherever the table lies.
        centers64 = self._centers.to(source.device).double()
        try:
            parts = [
                torch.cdist(rows.double(), centers64, compute_mode="donot_use_mm_for_euclid_dist")
                for _, rows, _ in source.chunks()
            ]
        finally:
            source.close()
        distances = source.conditioning.distances_out(torch.cat(parts)).to(self._centers.dtype)
        return _arrays.to_output(distances, output)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the weighted inertia of X against the fitted centres."""
        source, _ = self._inference_source(X, sample_weight)
        centers, _ = self._centers_for(source)
        total = 0.0
        try:
            for _, _, weights, result in source.exactly_assigned_blocks(centers):
                total += float(weighted_sum(result.min_sq_distances, weights).sum())
        finally:
            source.close()
        return -source.conditioning.sq_distances_out(total)

    def _labels_of(self, source) -> torch.Tensor:
        """Each row's nearest centre in float64 arithmetic, as the fit's final labels."""
        centers, _ = self._centers_for(source)
        parts = [result.labels[:, 0] for _, _, _, result in source.exactly_assigned_blocks(centers)]
        return torch.cat(parts)

    def _centers_for(self, source):
        """The fitted centres (conditioned as the source's rows are) as one group in the
        source's (compute) dtype and device, and their norms."""
        centers = self._centers[None].to(device=source.device, dtype=source.dtype)
        valid = torch.ones(centers.shape[:2], dtype=torch.bool, device=source.device)
        return centers, padded_sq_norms(centers, valid)

    def _fitted_conditioning(self) -> Conditioning:
        """How the fit's rows were conditioned; every later input is conditioned the same way."""
        return getattr(self, "_conditioning", Conditioning())

    def _fit_device(self) -> torch.device:
        return torch.device(self.device_)

    def _inference_source(self, X, sample_weight=None):
        check_is_fitted(self)
        device = self._fit_device()
        if is_path(X):
            columns = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None
            table = open_table(X, columns)
            if len(table.columns) != self.n_features_in_:
                raise ValueError(
                    f"{X}: {len(table.columns)} numeric column(s), but the model is expecting "
                    f"{self.n_features_in_} features as input."
                )
            storage = self._fitted_storage_dtype() or _torch_dtype(table.dtype)
            weights = self._validate_sample_weight(sample_weight, table.n_rows, compute_dtype(storage), device)
            chunk_size = self._resolve_chunk_size(len(table.columns), compute_dtype(storage), device, 1)
            source = FileSource(table, (0, table.n_rows), chunk_size, device, weights, storage_dtype=storage,
                                conditioning=self._fitted_conditioning())
            return source, _arrays.NUMPY_OUTPUT
        source, output = self._array_source(X, sample_weight, device, 1, reset=False)
        return source.conditioned(self._fitted_conditioning(), self._fitted_storage_dtype()), output

    # ------------------------------------------------------------ data sources
    def _local_fit_source(self, X, sample_weight, columns, device, n_groups, exchange):
        """This process's rows as a data source, and how results go back to the caller.

        Validates X and the weights, but exchanges nothing with other ranks, so that
        every rank can first learn whether all ranks' inputs were valid.
        """
        if is_path(X):
            return self._path_source(X, sample_weight, columns, device, n_groups, exchange), _arrays.NUMPY_OUTPUT
        if columns is not None:
            raise ValueError(
                "columns= selects the columns of a Parquet or CSV file; for a DataFrame pass df[columns]."
            )
        return self._array_source(X, sample_weight, device, n_groups, reset=True, require_positive=exchange is None)

    def _array_source(self, X, sample_weight, device, n_groups, *, reset, require_positive=True):
        """The rows of X as given (not yet conditioned: see ``DataSource.conditioned``), in
        memory on ``device``, or in host memory streamed to the GPU when X is too large for it.

        Rows are held in the input's precision; ``conditioned`` stores them in the fit's
        storage dtype. ``owns_rows`` tells whether they are a copy made here (an upload, a
        conversion), which conditioning may then overwrite instead of copying again.
        """
        storage = self._fitted_storage_dtype()
        on_host = device.type == "cuda" and _is_host_input(X)
        data, output = self._validate_data(
            X, torch.device("cpu") if on_host else device, reset=reset, keep_half=storage is None
        )
        owns_rows = _arrays.is_private_copy(data, X)
        streamed = on_host and not fits_on_device(data.numel() * data.element_size(), device)
        if on_host and not streamed:
            data, owns_rows = data.to(device), True
        dtype = compute_dtype(storage or data.dtype)
        weights = self._validate_sample_weight(
            sample_weight, data.shape[0], dtype, device, require_positive=require_positive
        )
        chunk_size = self._resolve_chunk_size(data.shape[1], dtype, device, n_groups)
        if streamed:
            if self.verbose:
                print("gpukmeans: the data does not fit on the GPU; streaming it from host memory")
            return HostStreamSource(data, weights, chunk_size, device), output
        return InMemorySource(data, weights, chunk_size, owns_rows=owns_rows), output

    def _path_source(self, path, sample_weight, columns, device, n_groups, exchange):
        """This rank's share of the rows of a Parquet or CSV table (all of them alone)."""
        table = open_table(path, columns)
        if table.n_rows == 0:
            raise ValueError(f"{path}: Found array with 0 sample(s) while a minimum of 1 is required.")
        self.n_features_in_ = len(table.columns)
        self.feature_names_in_ = np.asarray(table.columns, dtype=object)
        storage = self._fitted_storage_dtype() or _torch_dtype(table.dtype)
        dtype = compute_dtype(storage)
        rank, world_size = (0, 1) if exchange is None else (exchange.rank, exchange.world_size)
        start, stop = shard_bounds(table.n_rows, rank, world_size)
        weights = self._validate_sample_weight(
            sample_weight, table.n_rows, dtype, device, require_positive=exchange is None
        )
        if weights is not None:
            weights = weights[start:stop]
        chunk_size = self._resolve_chunk_size(len(table.columns), dtype, device, n_groups)
        # the rows as read: ``conditioned`` sets the storage dtype
        return FileSource(table, (start, stop), chunk_size, device, weights)

    # ---------------------------------------------------------- fit validation
    def _start_fit(self):
        """Validate the parameters of a new fit: its device, and its torch.distributed exchange.

        Also fixes the storage dtype, which the fit and every call after it use.
        """
        self._validate_params()
        self._set_storage_dtype()
        exchange = self._fit_exchange()
        return _fit_device(self.device, distributed=exchange is not None), exchange

    def _fit_exchange(self):
        """How the ranks of a torch.distributed fit meet; None: this process fits its rows alone."""
        return None

    def _check_n_samples(self, n_samples) -> None:
        """Raise scikit-learn's error for fewer rows than clusters."""
        if n_samples < self.n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}.")

    def _resolve_n_init(self, init_centers=None, *, stacklevel=3) -> int:
        """Restarts to run; an explicit init array (``self.init`` or ``init_centers``) runs one.

        ``stacklevel`` points the warning at the caller of the public method.
        """
        explicit_init = init_centers is not None or not (isinstance(self.init, str) or callable(self.init))
        if self.n_init == "auto":
            return self._auto_n_init()
        if explicit_init and self.n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{self.__class__.__name__} instead of n_init={self.n_init}.",
                RuntimeWarning,
                stacklevel=stacklevel,
            )
            return 1
        return self.n_init

    def _auto_n_init(self) -> int:
        """The restarts ``n_init="auto"`` stands for, given ``init``."""
        raise NotImplementedError

    def _validate_data(self, X, device, *, reset, keep_half=False):
        """X as a float tensor on ``device``, and how results go back to the caller.

        float32 and float64 are kept, other types become float64, except that
        float16 and bfloat16 tensors become float32, or stay as they are with
        ``keep_half`` (the estimators' ``dtype=None``: 16-bit storage).
        """
        if _arrays.is_tensor_like(X):
            tensor, output = _arrays.tensor_from_tensor_like(X)
            if reset:
                self.n_features_in_ = tensor.shape[1] if tensor.dim() == 2 else None
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            expected = None if reset else self.n_features_in_
            tensor = _arrays.check_tensor_2d(tensor, n_features=expected, keep_half=keep_half)
            return _arrays.to_device(tensor, device), output
        array = validate_data(
            self, X, dtype=[np.float64, np.float32], order="C", accept_large_sparse=False, reset=reset
        )
        return _arrays.numpy_to_tensor(array, device), _arrays.NUMPY_OUTPUT

    def _validate_sample_weight(self, sample_weight, n_samples, dtype=None, device=None, *, require_positive=True):
        """Weights as a tensor of ``dtype`` on ``device``, or None for unit weights.

        ``n_samples`` may also be the data tensor itself (its length, dtype and device).
        """
        if isinstance(n_samples, torch.Tensor):
            n_samples, dtype, device = n_samples.shape[0], n_samples.dtype, n_samples.device
        if sample_weight is None:
            return None
        if isinstance(sample_weight, torch.Tensor):
            weights = sample_weight.detach().to(device=device, dtype=dtype).reshape(-1)
            if weights.shape[0] != n_samples:
                raise ValueError(
                    f"sample_weight.shape == {tuple(sample_weight.shape)}, expected ({n_samples},)!"
                )
            if not bool(torch.isfinite(weights).all()):
                raise ValueError("Input sample_weight contains NaN or infinity.")
        else:
            if _arrays.is_cupy_array(sample_weight):
                sample_weight = torch.from_dlpack(sample_weight).cpu().numpy()
            checked = _check_sample_weight(sample_weight, np.empty((n_samples, 0)), dtype=np.float64)
            weights = torch.from_numpy(checked).to(device=device, dtype=dtype)
        if bool((weights < 0).any()):
            raise ValueError("sample_weight must be non-negative; found negative weights.")
        if require_positive and not bool((weights > 0).any()):
            raise ValueError("sample_weight must have at least one positive weight.")
        return weights

    def _validate_init(self, source):
        """The init array as a tensor in the data's dtype, or None for a named or callable init."""
        if callable(self.init) and _rows_in_memory(source) is None:
            raise ValueError(
                "A callable init needs the data in memory; for a file, pass init as an array of centres."
            )
        if isinstance(self.init, str) or callable(self.init):
            return None
        if _arrays.is_tensor_like(self.init):
            init, _ = _arrays.tensor_from_tensor_like(self.init, name="init")
        else:
            init = torch.as_tensor(np.array(self.init, dtype=np.float64, copy=True))
        init = init.detach().to(device=source.device, dtype=source.dtype).clone()
        expected = (self.n_clusters, source.n_features)
        if tuple(init.shape) != expected:
            raise ValueError(
                f"The shape of the initial centers {tuple(init.shape)} does not match "
                f"the number of clusters {self.n_clusters} and features {source.n_features}: "
                f"expected {expected}."
            )
        if not bool(torch.isfinite(init).all()):
            raise ValueError("Input init contains NaN or infinity.")
        return init

    def _set_fit_result(self, conditioning, centers, inertia: float) -> None:
        """Keep the fitted centres as the conditioned rows see them, and the inertia in the
        table's own units.

        The conditioned centres are what every later call computes with, on rows
        conditioned the same way, so that ``labels_`` equals ``predict(X)`` bit for bit;
        ``cluster_centers_`` (in the input's units and dtype) is derived from them.
        """
        self._conditioning = conditioning
        self._centers = centers
        self.inertia_ = conditioning.sq_distances_out(inertia)
        if not math.isfinite(self.inertia_):
            raise ValueError(
                "The inertia of this fit exceeds float64's range; divide X by a constant first "
                "(k-means is unchanged by scaling)."
            )

    def _set_fitted_centers(self, output, device) -> None:
        """Publish the fitted centres as ``cluster_centers_`` in the table's units; record how
        later results go back, and where."""
        self._output = output
        self.device_ = str(device)
        centers = self._fitted_conditioning().centers_out(self._centers).to(self._centers.dtype)
        self.cluster_centers_ = _arrays.to_output(centers, output)

    def _set_storage_dtype(self) -> None:
        """Resolve the validated ``dtype`` parameter for this fit and the calls after it."""
        self._storage_dtype = resolve_storage_dtype(self.dtype)

    def _fitted_storage_dtype(self):
        """The storage dtype the fit chose (None: each input's own), for every later call."""
        return getattr(self, "_storage_dtype", None)

    def _resolve_chunk_size(self, n_features, dtype, device, n_groups) -> int:
        if self.chunk_size != "auto":
            return int(self.chunk_size)
        return auto_chunk_size(n_features, self.n_clusters * n_groups, dtype, device)

    def _initial_centers(self, source, init_centers, random_state):
        """One set of initial centres, the same on every rank (rank 0's seed and result)."""
        if init_centers is not None:
            return init_centers
        seed = int(source.broadcast(torch.tensor([new_seed(random_state)], dtype=torch.int64))[0])
        generator = torch.Generator().manual_seed(seed)
        if callable(self.init):
            # The callable sees the rows, and returns centres, in the table's own units.
            rows = _rows_in_memory(source)
            if not source.conditioning.is_identity:
                rows = source.conditioning.centers_out(rows)
            numpy_X = rows.to(source.dtype).cpu().numpy()
            centers = np.asarray(self.init(numpy_X, self.n_clusters, random_state), dtype=numpy_X.dtype)
            if centers.shape != (self.n_clusters, source.n_features):
                raise ValueError(
                    f"The init callable returned centres of shape {centers.shape}; expected "
                    f"{(self.n_clusters, source.n_features)}."
                )
            if not np.isfinite(centers).all():
                raise ValueError("The init callable returned centres holding NaN or infinity.")
            centers = source.conditioning.centers_in(torch.from_numpy(centers).to(source.device), source.dtype)
        elif self.init == "k-means++":
            centers = kmeans_plusplus_tensor(source, self.n_clusters, generator)[0]
        elif self.init == "random":
            centers = random_rows_init(source, self.n_clusters, seed)[0]
        else:
            centers = kmeans_parallel(source, self.n_clusters, seed, generator)
        return source.broadcast(centers)


class KMeans(_BaseKMeans):
    """K-means clustering on PyTorch, on a CUDA GPU or the CPU, in one process or many.

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
        "random" and a callable, 1 otherwise (as scikit-learn). Restarts share
        each pass over the data.
    max_iter : int, default=300
        Most Lloyd iterations per restart.
    tol : float, default=1e-4
        Convergence when the squared centre shift is at most ``tol`` times the mean
        feature variance of X; a fit also stops as soon as no label changes.
    random_state : int, RandomState instance or None
        Seed of the initialisation.
    device : "auto", "cpu", "cuda", "cuda:N" or torch.device, default="auto"
        Where to compute. "auto" takes CUDA when available (under torchrun, the GPU
        ``cuda:LOCAL_RANK``), otherwise the CPU. On CUDA, data that does not fit in
        GPU memory stays in host memory and is streamed to the GPU in chunks.
    chunk_size : "auto" or int, default="auto"
        Rows per pass chunk; "auto" sizes it from free device memory. Results do not
        depend on it beyond floating-point summation order. On the CPU kernel a Lloyd
        pass over in-memory rows takes them in one piece (it allocates nothing per row
        there); the other passes still go by chunks.
    verbose : int, default=0
        At 1 or more, says which device runs and reports progress per iteration.
    distributed : bool, default=True
        When torch.distributed is initialised with two or more ranks, ``fit`` on each
        rank with that rank's rows fits the table they form together (rows in rank
        order); every rank ends with the same centres, and its own rows' labels.
        False fits each rank's rows on their own.
    dtype : None, "float32", "float64", "bfloat16" or "float16", default=None
        The dtype X is stored in on the device, in ``fit`` and in every later
        ``predict``, ``transform`` and ``score`` (so that ``labels_`` equals
        ``predict(X)``); the matching torch dtype, or numpy's (no bfloat16), works too.
        None keeps the input's: float32 and float64 as they are, float16 and bfloat16
        tensors as they are (16-bit storage), anything else as float64.
        "bfloat16" and "float16" halve the memory X takes. On CUDA they also halve the
        bytes every pass reads: the Triton kernel loads 16-bit rows and computes in
        float32, and a Lloyd iteration on a customer table is bound by that read. On
        the CPU there is no 16-bit kernel: each chunk is widened to float32 before the
        numba kernel, so memory is halved but time is not (somewhat slower: the
        widening is one more pass over each chunk). Either way only the rows are
        rounded, once, on input (bfloat16 keeps about 3 significant digits and
        float32's range; float16 about 3.3 digits, up to 65504, and larger values are
        a ValueError): centres, sums, distances and the inertia are float32, and so
        are ``cluster_centers_`` and ``transform``'s distances. A path is converted
        batch by batch as it is read; under torch.distributed every rank must store
        its rows in the same dtype.

    Attributes
    ----------
    cluster_centers_ : array of shape (n_clusters, n_features)
        In the storage dtype (by default the input's: float32 or float64, other types
        become float64), float32 for 16-bit storage.
    labels_ : array of shape (n_samples,)
        For a path input: numpy int32, every row of the file (on every rank).
    inertia_ : float
        Weighted sum of squared distances of samples to their closest centre
        (over every rank's rows).
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : array of str, when X was a DataFrame with string columns or a path.
    device_ : str
        Where the fit ran, e.g. "cpu" or "cuda:0".

    Notes
    -----
    Outputs (fitted arrays, ``predict``, ``transform``) are numpy arrays, except
    when the input was a torch tensor (a tensor on the input's device) or a CuPy
    array (a CuPy array, shared through DLPack).

    ``fit``, ``predict``, ``transform`` and ``score`` also take a path (str or
    os.PathLike) to a Parquet file, a folder of Parquet files or a CSV file, read in
    batches of rows on every pass and never loaded whole; ``fit(path, columns=[...])``
    names the feature columns (default: every numeric column), and later calls on a
    path read the same columns.

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

    _parameter_constraints: dict = {**_BaseKMeans._parameter_constraints, "distributed": ["boolean"]}

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
        distributed=True,
        dtype=None,
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
        self.distributed = distributed
        self.dtype = dtype

    # ----------------------------------------------------------------- fitting
    def fit(self, X, y=None, sample_weight=None, *, columns=None):
        """Compute k-means clustering.

        Parameters
        ----------
        X : array-like, DataFrame, torch tensor, CuPy array of shape (n_samples, n_features), or a path
            A path (str or os.PathLike) to a Parquet file, a folder of Parquet files or
            a CSV file is streamed in batches of rows; under torch.distributed each
            rank reads its own contiguous share of the rows.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row: counts in the initialisation, the update, the inertia.
            For a path, one weight per row of the file.
        columns : list of str, default=None
            For a path only: the feature columns. None takes every numeric column.
            A property of this data rather than of the model, hence a fit argument
            (as ``sample_weight``), not a constructor parameter.

        Returns
        -------
        self
        """
        device, exchange = self._start_fit()
        if self.verbose:
            print(f"gpukmeans: fitting on {device}")
        n_init = self._resolve_n_init()
        source, output, init_centers, moments = self._checked_source(
            X, sample_weight, columns, device, n_init, exchange
        )
        try:
            labels = self._fit_lloyd(source, init_centers, n_init, moments)
            if is_path(X):
                # A path names the whole table on every rank: so do its labels.
                self.labels_ = source.concat(labels).cpu().numpy()
            else:
                self.labels_ = _labels_output(labels, output)
        finally:
            source.close()
        self._set_fitted_centers(output, device)
        return self

    @classmethod
    def _fitted_from(
        cls, params, *, centers, labels, inertia, n_iter, output, device, n_features_in, feature_names_in=None,
        conditioning=None,
    ):
        """A fitted estimator from a fit run elsewhere, in the state ``fit`` leaves.

        Internal: :func:`gpukmeans.sweep` fits many k in one pass and hands back one
        ``KMeans`` per k; this is the one place outside ``fit`` that knows the
        fitted state (public attributes and the private centres and output kind).

        Parameters
        ----------
        params : dict
            Constructor parameters, as from ``get_params()``.
        centers : torch.Tensor of shape (n_clusters, n_features)
            On the fit device, in the fit dtype, conditioned as the rows were.
        labels : torch.Tensor of shape (n_samples,), integer
        inertia : float
            In the conditioned units.
        n_iter : int
        output : OutputKind
            How results go back to the caller (numpy, torch or CuPy).
        device : torch.device
            Where the fit ran.
        n_features_in : int
        feature_names_in : array of str, optional
        conditioning : Conditioning, optional
            How the rows were conditioned (None: not at all).
        """
        conditioning = conditioning or Conditioning()
        model = cls(**params)
        model._set_storage_dtype()
        model._set_fit_result(conditioning, centers, inertia)
        model._set_fitted_centers(output, device)
        model.n_features_in_ = n_features_in
        if feature_names_in is not None:
            model.feature_names_in_ = feature_names_in
        model.labels_ = _labels_output(labels.to(torch.int32), output)
        model.n_iter_ = n_iter
        return model

    def _checked_source(self, X, sample_weight, columns, device, n_init, exchange):
        """The fit's data source (conditioned, see ``_conditioning``), the validated init
        array (conditioned too), and the table's moments.

        Under torch.distributed, every rank validates its own input first and then
        learns whether all ranks did: they all go on, or they all raise. The moments pass
        is part of that validation: it reads every row of a file, which checks them.
        """
        error, local, output, init_centers, moments = None, None, None, None, None
        try:
            local, output = self._local_fit_source(X, sample_weight, columns, device, n_init, exchange)
            init_centers = self._validate_init(local)
            moments = local_moments(local)
        except ValueError as caught:
            if local is not None:
                local.close()
            if exchange is None:
                raise
            error = caught
        if exchange is None:
            source = local
        else:
            exchange.all_ok(error)
            source = _join_ranks(local, exchange, is_path(X), self._fitted_storage_dtype() or local.storage_dtype)
        try:
            self._check_n_samples(getattr(source, "total_samples", source.n_samples))
            storage = self._fitted_storage_dtype() or source.storage_dtype
            conditioning, moments = fit_conditioning(source, storage, moments)
            check_squares_in_range(moments)
        except ValueError:
            source.close()
            raise
        source = source.conditioned(conditioning, self._fitted_storage_dtype())
        return source, output, _conditioned_init(source, init_centers), moments

    def _fit_lloyd(self, source, init_centers, n_init, moments) -> torch.Tensor:
        """Initialise and run Lloyd; sets the fitted state and returns this holder's labels."""
        random_state = check_random_state(self.random_state)
        starts = [self._initial_centers(source, init_centers, random_state) for _ in range(n_init)]
        if self.verbose:
            print("Initialization complete")
        result = lloyd(
            source,
            starts,
            max_iter=self.max_iter,
            tol=source.conditioning.tolerance(moments, self.tol),
            verbose=self.verbose,
        )
        best = int(torch.argmin(result.inertia))
        labels = result.labels[:, best].to(torch.int32)
        counts = source.reduce_sum(torch.bincount(labels, minlength=self.n_clusters))
        n_distinct = int((counts > 0).sum())
        if n_distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({n_distinct}) found smaller than "
                f"n_clusters ({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._set_fit_result(source.conditioning, result.centers[best], float(result.inertia[best]))
        self.n_iter_ = int(result.n_iter[best])
        return labels

    def _fit_exchange(self):
        group = active_group(self.distributed)
        return None if group is None else Exchange(group)

    def _auto_n_init(self) -> int:
        # as scikit-learn: a random draw or a callable may start anywhere, so ten restarts
        return 10 if (isinstance(self.init, str) and self.init == "random") or callable(self.init) else 1


def _fit_device(device_param, *, distributed: bool) -> torch.device:
    """The device of a fit, with an explicit CUDA index (each torchrun rank: its own GPU)."""
    if distributed and (device_param is None or device_param == "auto"):
        device = local_cuda_device() or resolve_device(device_param)
    else:
        device = resolve_device(device_param)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _join_ranks(local, exchange, path_input, storage_dtype):
    """Wrap this rank's source after checking that every rank holds the same kind of rows
    (features, and the dtype they will be stored in)."""
    has_weights = local.sample_weight is not None
    facts = torch.tensor([local.n_features, _DTYPE_CODES[storage_dtype], has_weights], dtype=torch.int64)
    every_rank = exchange.all_gather(facts)
    if len(set(every_rank[:, 0].tolist())) > 1 or len(set(every_rank[:, 1].tolist())) > 1:
        local.close()
        described = ", ".join(
            f"rank {r}: {int(f)} features, {_DTYPE_NAMES[int(c)]}"
            for r, (f, c, _) in enumerate(every_rank.tolist())
        )
        raise ValueError(f"Every rank must hold rows with the same features and dtype; got {described}.")
    if bool(every_rank[:, 2].any()) and not has_weights:
        local.sample_weight = torch.ones(local.n_samples, dtype=local.dtype, device=local.device)
    source = DistributedSource(local, exchange, row_offset=local.row_offset if path_input else None)
    if source.sample_weight is not None:
        total = source.reduce_sum(source.sample_weight.double().sum())
        if float(total) <= 0:
            source.close()
            raise ValueError("sample_weight must have at least one positive weight.")
    return source


def _is_host_input(X) -> bool:
    """Inputs whose rows live in host memory (so that a GPU fit may stream them)."""
    if isinstance(X, torch.Tensor):
        return X.device.type == "cpu"
    return not _arrays.is_cupy_array(X)


def _rows_in_memory(source):
    """The tensor of every row of a source that holds them in memory, else None."""
    local = getattr(source, "local", source)
    return getattr(local, "X", None)


def _torch_dtype(numpy_dtype) -> torch.dtype:
    return torch.float32 if np.dtype(numpy_dtype) == np.float32 else torch.float64


def _conditioned_init(source, init_centers):
    """An explicit init array (in the table's units) as the source's conditioned rows see it."""
    if init_centers is None:
        return None
    return source.conditioning.centers_in(init_centers, source.dtype)


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
    estimator._check_n_samples(data.shape[0])
    weights = estimator._validate_sample_weight(sample_weight, data.shape[0], data.dtype, data.device)
    source = InMemorySource(data, weights, estimator._resolve_chunk_size(data.shape[1], data.dtype, data.device, 1))
    conditioning, _ = fit_conditioning(source, data.dtype)
    generator = torch.Generator().manual_seed(new_seed(check_random_state(random_state)))
    _, indices = kmeans_plusplus_tensor(source.conditioned(conditioning), n_clusters, generator, n_local_trials)
    centers = data[indices.to(data.device)]  # the rows themselves, as scikit-learn returns them
    if output.kind == "numpy":
        return _arrays.to_output(centers, output), indices.numpy()
    return _arrays.to_output(centers, output), _arrays.to_output(indices, output)
