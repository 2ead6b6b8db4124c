"""What the k-means estimators share: parameters, validation, fitted state, inference.

An estimator is thin. Its rows come from :func:`gpukmeans.sources.open_source`, the
passes over them from :mod:`gpukmeans.engine`, the arithmetic from the backend the
source holds (:mod:`gpukmeans.kernels`). What is left here is scikit-learn's part:
parameters declared once and validated at ``fit``, inputs checked (feature names and
counts), fitted attributes ending in ``_``, and results returned as the caller's array
type.
"""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _arrays, _interop
from ._constraints import Interval, InvalidParameterError, StrOptions, make_constraint
from ._device import resolve_device
from .engine.initialisation import initial_centers
from .engine.lloyd import padded_sq_norms, weighted_sum
from .engine.uniforms import new_seed
from .sources import Conditioning, is_path, open_source
from .sources.storage import DTYPE_CONSTRAINTS, resolve_storage_dtype


class _BaseKMeans(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """Shared by the k-means estimators: parameters, validation, fitted state, inference.

    ``transform``'s columns are named ``kmeans0``, ``kmeans1``, ... (the lower-cased
    class name and the centre's index, as scikit-learn names them), so that
    ``get_feature_names_out`` and ``set_output(transform="pandas")`` work in pipelines.
    """

    #: Private attributes of scikit-learn's estimator that :meth:`to_sklearn` copies
    #: where a fit has them.
    _sklearn_private_attributes: tuple = ()

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

    @property
    def _n_features_out(self) -> int:
        """Columns of ``transform``: one distance per centre (for ``get_feature_names_out``)."""
        return self._centers.shape[0]

    # ---------------------------------------------------- saving and sharing
    def __getstate__(self):
        """The state for pickle and ``skops.io``: torch objects as numpy arrays and names."""
        return _interop.portable_state(super().__getstate__())

    def __setstate__(self, state):
        super().__setstate__(_interop.restored_state(state))

    def to_sklearn(self):
        """The equivalent fitted scikit-learn estimator, for tools that know scikit-learn's.

        Its ``cluster_centers_``, ``labels_``, ``inertia_``, ``n_iter_``,
        ``n_features_in_`` and ``feature_names_in_`` are this fit's, as numpy arrays, so
        that skops, ONNX converters and other scikit-learn-based tools take the model.
        Its ``predict`` gives this estimator's labels wherever scikit-learn's arithmetic
        tells the nearest centre apart: this estimator compares rows and centres in
        float64 after moving both near the origin, scikit-learn in the rows' dtype as
        they are, so rows nearly equidistant from two centres, or float32 rows far from
        the origin, may go to the other centre there.

        Returns
        -------
        sklearn.cluster.KMeans or sklearn.cluster.MiniBatchKMeans

        Examples
        --------
        >>> import numpy as np
        >>> from gpukmeans import KMeans
        >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
        >>> km = KMeans(n_clusters=2, random_state=0, device="cpu").fit(X)
        >>> sk = km.to_sklearn()
        >>> type(sk).__name__, sk.predict(X).tolist() == km.predict(X).tolist()
        ('KMeans', True)
        """
        check_is_fitted(self)
        return _interop.sklearn_estimator(self, self._sklearn_class(), self._sklearn_private_attributes)

    @staticmethod
    def _sklearn_class():
        """The scikit-learn estimator class this one stands for (imported when asked)."""
        raise NotImplementedError

    # -------------------------------------------------------------- inference
    def predict(self, X, sample_weight=None, *, return_distance=False):
        """Index of the closest centre for each row of X (an array, tensor or path).

        With ``return_distance``, also the Euclidean distance of each row to that
        centre (float64, from the same float64 pass that picks the label), as
        ``(labels, distances)``.
        """
        source, output = self._inference_source(X)
        try:
            if not return_distance:
                return labels_output(self._labels_of(source), output)
            centers, _ = self._centers_for(source)
            labels, sq_distances = [], []
            for _, _, _, result in source.exactly_assigned_blocks(centers):
                labels.append(result.labels[:, 0])
                sq_distances.append(result.min_sq_distances[:, 0])
            distances = source.conditioning.distances_out(torch.cat(sq_distances).sqrt())
        finally:
            source.close()
        return labels_output(torch.cat(labels), output), _arrays.to_output(distances, output)

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
        source's (compute) dtype, or their own when wider (centres given in float64 for
        float32 rows stay float64), on the source's device, and their norms."""
        dtype = torch.promote_types(source.dtype, self._centers.dtype)
        centers = self._centers[None].to(device=source.device, dtype=dtype)
        valid = torch.ones(centers.shape[:2], dtype=torch.bool, device=source.device)
        return centers, padded_sq_norms(centers, valid)

    def _fitted_conditioning(self) -> Conditioning:
        """How the fit's rows were conditioned; every later input is conditioned the same way."""
        return getattr(self, "_conditioning", Conditioning())

    def _inference_source(self, X, sample_weight=None):
        """The rows of a later call, conditioned and stored as the fit's were."""
        check_is_fitted(self)
        device = torch.device(self.device_)
        columns = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None
        opened = open_source(
            X, device=device, sample_weight=sample_weight, columns=columns if is_path(X) else None,
            storage_dtype=self._fitted_storage_dtype(), chunk_size=self.chunk_size, n_centers=self.n_clusters,
            validate=self._validator(reset=False), expected_features=self.n_features_in_,
        )
        source = opened.source.conditioned(self._fitted_conditioning(), self._fitted_storage_dtype())
        return source, opened.output

    # ------------------------------------------------------------ fit inputs
    def _open(self, X, sample_weight, columns, device, n_groups, *, rank=0, world_size=1, require_positive=True):
        """This process's rows of a new fit as a data source (as given), and how results go
        back; for a path, the fitted column names are recorded."""
        opened = open_source(
            X, device=device, sample_weight=sample_weight, columns=columns,
            storage_dtype=self._fitted_storage_dtype(), chunk_size=self.chunk_size,
            n_centers=self.n_clusters * n_groups, rank=rank, world_size=world_size,
            validate=self._validator(reset=True), require_positive_weights=require_positive,
            verbose=bool(self.verbose),
        )
        if opened.columns is not None:
            self.n_features_in_ = len(opened.columns)
            self.feature_names_in_ = np.asarray(opened.columns, dtype=object)
        return opened

    def _validator(self, *, reset):
        """How :func:`open_source` checks an array input: scikit-learn's ``validate_data``
        (feature names and counts recorded or compared), tensors on their device."""

        def validate(X, device, keep_half=False):
            return self._validate_data(X, device, reset=reset, keep_half=keep_half)

        return validate

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

    # ---------------------------------------------------------- fit validation
    def _start_fit(self) -> torch.device:
        """Validate the parameters of a new fit; fix the storage dtype it and every call
        after it use."""
        self._validate_params()
        self._set_storage_dtype()
        return resolve_device(self.device)

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

    def _validate_init(self, source):
        """The init array as a tensor in the data's dtype (the table's own units), or None
        for a named or callable init."""
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

    # ----------------------------------------------------------- fitted state
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

    # ---------------------------------------------------------- initialisation
    def _initial_centers(self, source, init_centers, random_state):
        """One set of initial centres, the same on every rank (rank 0's seed and result),
        as the source's conditioned rows see them."""
        if init_centers is not None:
            return init_centers
        seed = int(source.broadcast(torch.tensor([new_seed(random_state)], dtype=torch.int64))[0])
        if callable(self.init):
            centers = self._centers_from_callable(source, random_state)
        else:
            centers = initial_centers(source, self.init, self.n_clusters, seed)
        return source.broadcast(centers)

    def _centers_from_callable(self, source, random_state):
        """``init(X, n_clusters, random_state)`` on the rows in the table's own units."""
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
        return source.conditioning.centers_in(torch.from_numpy(centers).to(source.device), source.dtype)


def conditioned_init(source, init_centers):
    """An explicit init array (in the table's units) as the source's conditioned rows see it."""
    if init_centers is None:
        return None
    return source.conditioning.centers_in(init_centers, source.dtype)


def labels_output(labels: torch.Tensor, output: _arrays.OutputKind):
    """Labels as int32 numpy (as scikit-learn), or int64 tensors for torch and CuPy callers."""
    if output.kind == "numpy":
        return labels.to(torch.int32).cpu().numpy()
    return _arrays.to_output(labels.long(), output)


def _rows_in_memory(source):
    """The tensor of every row of a source that holds them in memory, else None."""
    local = getattr(source, "local", source)
    return getattr(local, "X", None)

