"""The estimator: :class:`KMeans`, and the public :func:`kmeans_plusplus`.

``fit`` opens the rows (:func:`gpukmeans.sources.open_source`), joins the other ranks'
under torch.distributed, conditions them (:func:`gpukmeans.sources.conditioned_for_fit`),
then draws the initial centres and runs Lloyd's iterations for every restart at once
(:mod:`gpukmeans.engine`). Everything shared with :class:`~gpukmeans.MiniBatchKMeans`
(validation, fitted state, inference) is in :mod:`._estimator`.
"""

import math
import warnings
from numbers import Integral

import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from . import _arrays
from ._constraints import StrOptions
from ._device import resolve_device
from ._estimator import _BaseKMeans, conditioned_init, labels_output
from .engine.initialisation import kmeans_plusplus_tensor
from .engine.lloyd import lloyd
from .engine.uniforms import new_seed
from .sources import (
    Conditioning,
    InMemorySource,
    conditioned_for_fit,
    is_path,
    local_moments,
    validate_sample_weight,
    validated_rows,
)
from .sources.distributed import Exchange, active_group, join_ranks, local_cuda_device
from .sources.factory import resolve_chunk_size


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
    copy_x : bool, default=True
        scikit-learn's parameter, with its promise for True: X is not modified. Here
        that holds for False too: a fit never writes to the caller's X. Rows far from
        the origin are moved near it before the passes (for exact distances), and
        what moves is a copy, or the float copy the fit made of X anyway.
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Lloyd's algorithm runs. "elkan" is accepted, with a warning that Lloyd runs:
        Elkan's bounds skip distances that a CPU computes one at a time, while each
        pass here computes a whole tile of them at once; from the same start both
        reach the same centres.

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

    A fit on numpy data saves without torch objects (pickle or ``skops.io``, which
    then trusts only this class), and :meth:`to_sklearn` gives the equivalent
    fitted :class:`sklearn.cluster.KMeans`.

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
        **_BaseKMeans._parameter_constraints,
        "distributed": ["boolean"],
        "copy_x": ["boolean"],
        "algorithm": [StrOptions({"lloyd", "elkan"})],
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
        distributed=True,
        dtype=None,
        copy_x=True,
        algorithm="lloyd",
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
        self.copy_x = copy_x
        self.algorithm = algorithm

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
        self._start_fit()
        self._warn_if_elkan()
        exchange = self._fit_exchange()
        device = fit_device(self.device, distributed=exchange is not None)
        if self.verbose:
            print(f"gpukmeans: fitting on {device}")
        n_init = self._resolve_n_init()
        source, output, init_centers, moments = self._fit_source(X, sample_weight, columns, device, n_init, exchange)
        try:
            labels = self._fit_lloyd(source, init_centers, n_init, moments)
            if is_path(X):
                # A path names the whole table on every rank: so do its labels.
                self.labels_ = source.concat(labels).cpu().numpy()
            else:
                self.labels_ = labels_output(labels, output)
        finally:
            source.close()
        self._set_fitted_centers(output, device)
        return self

    @classmethod
    def from_centers(cls, centers, *, device="auto", **params):
        """A fitted estimator whose centres are ``centers``, for ``predict``, ``transform``
        and ``score`` (a saved model's centres, say).

        Parameters
        ----------
        centers : array-like or tensor of shape (n_clusters, n_features)
            float32 or float64 (other types become float64). Later calls keep their
            rows' own dtype and compare them with these centres in float64.
        device : "auto", "cpu", "cuda", "cuda:N" or torch.device, default="auto"
        **params
            Other constructor parameters.

        Returns
        -------
        KMeans
            With ``cluster_centers_``, ``n_features_in_`` and ``device_``; ``inertia_``
            is NaN and ``n_iter_`` 0, as nothing was fitted.

        Examples
        --------
        >>> import numpy as np
        >>> from gpukmeans import KMeans
        >>> km = KMeans.from_centers(np.array([[0.0, 0.0], [10.0, 10.0]]), device="cpu")
        >>> km.predict(np.array([[1.0, 2.0], [9.0, 8.0]])).tolist()
        [0, 1]
        """
        model = cls(n_clusters=len(centers), device=device, **params)
        model._validate_params()
        target = resolve_device(device)
        tensor, output = model._validate_data(centers, target, reset=True)
        if tensor.dim() != 2 or tensor.shape[0] < 1:
            raise ValueError(f"centers must have shape (n_clusters, n_features); got {tuple(tensor.shape)}")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError("centers hold NaN or infinity")
        model._storage_dtype = None
        conditioning = _conditioning_for_centers(tensor)
        model._set_fit_result(conditioning, conditioning.rows(tensor), 0.0)
        model.inertia_ = math.nan
        model.n_iter_ = 0
        model._set_fitted_centers(output, target)
        return model

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
        model.labels_ = labels_output(labels.to(torch.int32), output)
        model.n_iter_ = n_iter
        return model

    def _fit_source(self, X, sample_weight, columns, device, n_init, exchange):
        """The fit's data source (conditioned), the validated init array (conditioned
        too), and the table's moments.

        Under torch.distributed, every rank validates its own input first and then
        learns whether all ranks did: they all go on, or they all raise. The moments pass
        is part of that validation: it reads every row of a file, which checks them.
        """
        local = None
        rank, world_size = (0, 1) if exchange is None else (exchange.rank, exchange.world_size)
        try:
            opened = self._open(X, sample_weight, columns, device, n_init, rank=rank, world_size=world_size,
                                require_positive=exchange is None)
            local, output = opened.source, opened.output
            init_centers = self._validate_init(local)
            moments = local_moments(local)
        except ValueError:
            if local is not None:
                local.close()
            if exchange is not None:
                exchange.all_ok(failed=True)
            # A bare raise, never a saved error: a saved error's traceback holds this frame,
            # which holds the error, and that cycle keeps the process group alive past
            # destroy_process_group (gloo then aborts the process as Python exits).
            raise
        if exchange is None:
            source = local
        else:
            exchange.all_ok(failed=False)
            source = join_ranks(local, exchange, self._fitted_storage_dtype() or local.storage_dtype,
                                shared_table=is_path(X))
        try:
            self._check_n_samples(getattr(source, "total_samples", source.n_samples))
            source, moments = conditioned_for_fit(source, self._fitted_storage_dtype(), moments)
        except ValueError:
            source.close()
            raise
        return source, output, conditioned_init(source, init_centers), moments

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

    def _warn_if_elkan(self) -> None:
        if self.algorithm == "elkan":
            warnings.warn(
                "algorithm='elkan' runs Lloyd's algorithm in gpukmeans (the same centres from the same start).",
                UserWarning,
                stacklevel=3,
            )

    @staticmethod
    def _sklearn_class():
        from sklearn.cluster import KMeans as SklearnKMeans

        return SklearnKMeans

    def _fit_exchange(self):
        """How the ranks of a torch.distributed fit meet; None: this process fits its rows alone."""
        group = active_group(self.distributed)
        return None if group is None else Exchange(group)

    def _auto_n_init(self) -> int:
        # as scikit-learn: a random draw or a callable may start anywhere, so ten restarts
        return 10 if (isinstance(self.init, str) and self.init == "random") or callable(self.init) else 1


def _conditioning_for_centers(centers: torch.Tensor) -> Conditioning:
    """Centres known without their rows: move later rows by the centres' mean when it lies
    farther from the origin than the centres spread (rounded to their dtype, so that a row
    near it subtracts it exactly), as a fit moves its rows by theirs."""
    wide = centers.detach().to(torch.float64).cpu()
    mean = wide.mean(dim=0)
    spread_sq = float(((wide - mean) ** 2).sum(dim=1).mean())
    if float((mean * mean).sum()) <= spread_sq:
        return Conditioning()
    return Conditioning(mean.to(centers.dtype).double())


def fit_device(device_param, *, distributed: bool) -> torch.device:
    """The device of a fit, with an explicit CUDA index (each torchrun rank: its own GPU)."""
    if distributed and (device_param is None or device_param == "auto"):
        device = local_cuda_device() or resolve_device(device_param)
    else:
        device = resolve_device(device_param)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


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
    data, output = validated_rows(X, resolve_device(device))
    estimator._check_n_samples(data.shape[0])
    weights = validate_sample_weight(sample_weight, data.shape[0], data.dtype, data.device)
    source = InMemorySource(data, weights, resolve_chunk_size("auto", data.shape[1], n_clusters, data.dtype, data.device))
    source, _ = conditioned_for_fit(source)
    generator = torch.Generator().manual_seed(new_seed(check_random_state(random_state)))
    _, indices = kmeans_plusplus_tensor(source, n_clusters, generator, n_local_trials)
    centers = data[indices.to(data.device)]  # the rows themselves, as scikit-learn returns them
    if output.kind == "numpy":
        return _arrays.to_output(centers, output), indices.numpy()
    return _arrays.to_output(centers, output), _arrays.to_output(indices, output)
